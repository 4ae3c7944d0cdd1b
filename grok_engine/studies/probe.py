"""Linear probe of the MLP at '=' (notebook: "Step 3: MLP Analysis", the LinearRegression cell).

The notebook collects the post-ReLU activations at '=' for every (a, b) with one
``run_with_hooks`` call per pair, splits them with ``train_test_split(test_size=0.3,
random_state=42)``, fits ``LinearRegression`` to the target a+b and compares R^2 and MSE
on the held-out rows with predicting the train mean. Here the activations come from the
context's single cache and the split is sklearn's, so the rows are the notebook's.

The fit is sklearn's LinearRegression done in float64 (:func:`least_squares`: the same
centring, SVD-based minimum-norm solution and 1e-6 singular-value cutoff), on activations
computed in float64 from the checkpoint's weights. The notebook hands LinearRegression
float32 activations, and these are nearly collinear (condition number about 3e7 on its
p=10 run, d_mlp 512 > 70 train rows), so their last-bit rounding, which differs between
CPUs' BLAS kernels, moves R^2 in the fourth digit or worse; in float64 throughout, R^2 is a
property of the weights (on the notebook's own checkpoint: R^2 0.99439 here, 0.9945
printed by the notebook).

The baseline predicts the train mean. The notebook's ``np.full_like(y_test, y_train.mean())``
inherits y_test's integer dtype and so predicts the mean rounded toward zero (9.41 -> 9 on
its run: baseline MSE 17.63 there, 18.61 with the true mean here).
"""

from __future__ import annotations

import numpy as np

from grok_engine.errors import GrokError
from grok_engine.results import StudyResult, Table
from grok_engine.studies import register
from grok_engine.studies._linalg import as_f64, least_squares, mse, r2_score


def probe_target(ctx) -> np.ndarray:
    """The probe's target per row [N]: a+b for integer addition (which is its label), the
    label for every other task."""
    return ctx.labels.detach().cpu().numpy()


@register("probe")
def probe(ctx, test_size: float = 0.3, random_state: int = 42) -> StudyResult:
    """Table "probe" (metric, probe, baseline) with r2 and mse on the probe's test rows;
    table "predictions" (a, b, true, predicted) for those rows. Options: ``test_size``
    (fraction held out) and ``random_state`` of ``train_test_split``, the notebook's
    0.3 and 42 by default. Scalars r2, mse, baseline_r2, baseline_mse, n_train, n_test."""
    from sklearn.model_selection import train_test_split

    if isinstance(test_size, bool) or not isinstance(test_size, (int, float)) or not 0 < test_size < 1:
        raise GrokError(f"test_size={test_size!r} is out of range: allowed (0, 1)")
    if isinstance(random_state, bool) or not isinstance(random_state, int) or random_state < 0:
        raise GrokError(f"random_state={random_state!r} is not allowed: an integer >= 0")
    X = as_f64(ctx.neuron_acts_f64)  # [N, d_mlp]: a float64 forward (see Context.neuron_acts_f64)
    y = probe_target(ctx)
    rows = np.arange(len(y))
    n_test = int(np.ceil(test_size * len(y)))
    if n_test < 2 or len(y) - n_test < 1:
        raise GrokError(f"test_size={test_size} leaves {n_test} test and {len(y) - n_test} train rows "
                        f"of {len(y)}: need at least 2 and 1")
    X_train, X_test, y_train, y_test, _, rows_test = train_test_split(
        X, y, rows, test_size=test_size, random_state=random_state)

    coef, intercept = least_squares(X_train, y_train)
    y_pred = X_test @ coef + intercept
    baseline = np.full(len(y_test), y_train.mean(), dtype=np.float64)
    scores = {"r2": r2_score(y_test, y_pred), "mse": mse(y_test, y_pred),
              "baseline_r2": r2_score(y_test, baseline), "baseline_mse": mse(y_test, baseline)}

    result = StudyResult("probe", ctx.epoch)
    result.add(Table("probe", {
        "metric": ["r2", "mse"],
        "probe": [scores["r2"], scores["mse"]],
        "baseline": [scores["baseline_r2"], scores["baseline_mse"]],
    }, title="Linear probe of the MLP at '=' on the target",
        description=f"LinearRegression of post-ReLU activations at '=' on the target, scored on "
                    f"{len(y_test)} held-out rows, beside predicting the train mean."))
    tokens = ctx.tokens.detach().cpu().numpy()
    result.add(Table("predictions", {
        "a": tokens[rows_test, 0], "b": tokens[rows_test, 1],
        "true": y_test, "predicted": y_pred,
    }, title="Probe predictions on its test rows"))
    result.scalars.update(scores)
    result.scalars.update({"n_train": len(y_train), "n_test": len(y_test)})
    return result
