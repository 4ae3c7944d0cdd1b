"""The studies' least squares equal sklearn's LinearRegression on float64 input, including
the ill-conditioned, under-determined systems the probe meets (the notebook's p=10 probe:
70 train rows x 512 neurons, condition number ~3e7)."""

from __future__ import annotations

import numpy as np
import pytest

from grok_engine.studies._linalg import least_squares, r2_score


def ill_conditioned(n_rows: int, d_mlp: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """X [n_rows, d_mlp] with singular values spread over 8 decades (the cutoff at 1e-6 of
    the largest falls inside them), stored as float32 as activations are, and a target
    that leans on strong and weak directions alike."""
    rng = np.random.default_rng(seed)
    r = min(n_rows, d_mlp)
    U, _ = np.linalg.qr(rng.normal(size=(n_rows, r)))
    V, _ = np.linalg.qr(rng.normal(size=(d_mlp, r)))
    s = np.logspace(0, -8, r)
    X = ((U * s) @ V.T * 100 + rng.normal(size=d_mlp)).astype(np.float32).astype(np.float64)
    y = U @ rng.normal(size=r) + 0.01 * rng.normal(size=n_rows)
    return X, y


def sklearn_fit(X: np.ndarray, y: np.ndarray):
    from sklearn.linear_model import LinearRegression

    return LinearRegression().fit(X, y)


def assert_same_fit(X_train, y_train, X_test, y_test) -> None:
    coef, intercept = least_squares(X_train, y_train)
    ref = sklearn_fit(X_train, y_train)
    assert abs(r2_score(y_test, X_test @ coef + intercept) - r2_score(y_test, ref.predict(X_test))) < 1e-6
    assert abs(r2_score(y_train, X_train @ coef + intercept) - r2_score(y_train, ref.predict(X_train))) < 1e-6
    np.testing.assert_allclose(X_test @ coef + intercept, ref.predict(X_test), rtol=0, atol=1e-6)


@pytest.mark.parametrize("n_rows, d_mlp", [(70, 512), (300, 64), (200, 128)])
def test_least_squares_equals_sklearn_on_held_out_rows(n_rows, d_mlp):
    """Under-determined as the notebook's p=10 probe (70 x 512), over-determined, square-ish."""
    X, y = ill_conditioned(n_rows + 60, d_mlp, seed=n_rows)
    assert_same_fit(X[:n_rows], y[:n_rows], X[n_rows:], y[n_rows:])


def test_the_cutoff_is_sklearns():
    """The same data with a smaller cutoff gives another fit: the equality above holds
    because the cutoff is sklearn's 1e-6, not by accident."""
    X, y = ill_conditioned(360, 64, seed=300)
    coef, intercept = least_squares(X[:300], y[:300], rcond=1e-9)
    r2_ref = r2_score(y[300:], sklearn_fit(X[:300], y[:300]).predict(X[300:]))
    assert abs(r2_score(y[300:], X[300:] @ coef + intercept) - r2_ref) > 1e-3


def test_the_probe_of_a_512_neuron_model_equals_sklearn(tmp_path):
    """Real activations: the notebook's shape (add, p=10, d_mlp 512: a 70 x 512 fit),
    trained briefly; the probe study against sklearn's LinearRegression on the same
    float64 activations and split."""
    from sklearn.model_selection import train_test_split

    from grok_engine.config import RunConfig
    from grok_engine.context import context_for
    from grok_engine.store import RunStore
    from grok_engine.studies import run_study

    run = RunStore(tmp_path).create(RunConfig().replace(epochs=300, checkpoint_every=300, device="cpu"),
                                    run_id="p10")
    run.trainer().run(callback=run)
    ctx = context_for(run, 300)
    X, y = ctx.neuron_acts_f64.numpy(), ctx.labels.numpy()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=42)
    assert X_train.shape == (70, 512)
    result = run_study("probe", ctx)
    assert abs(result.scalars["r2"] - r2_score(y_test, sklearn_fit(X_train, y_train).predict(X_test))) < 1e-6
    assert_same_fit(X_train, y_train, X_test, y_test)


def test_least_squares_exact_on_a_consistent_system():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 5))
    coef_true = np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    coef, intercept = least_squares(X, X @ coef_true + 7.0)
    np.testing.assert_allclose(coef, coef_true, atol=1e-10)
    assert intercept == pytest.approx(7.0, abs=1e-10)
