"""Progress measures over every checkpoint of a run (notebook: "Black Box Methods +
Progress Measures"; Nanda et al. 2023, "Progress measures for grokking via mechanistic
interpretability").

Per checkpoint:

* ``cos_coeffs`` / ``cos_sim``: the logits' coefficient on the normalised
  cos(w_k (a + b - c)) for every k = 1 .. p//2, and that divided by the logits' norm;
  ``residual_cos_sim``: the norm of what those p//2 terms leave, over the logits' norm.
  The notebook builds a p//2 x p^3 cube of cosines for this (323 MB at p = 113); here
  cos(w(s - c)) = cos(ws)cos(wc) + sin(ws)sin(wc) turns it into two small matmuls
  (:class:`grok_engine.fourier_basis.CosCube`).
* ``restricted_loss`` (test rows): the loss when the neurons keep only their mean and
  their cos/sin(w(a+b)) parts at the key frequencies, logits bias-corrected to the model's
  mean (the notebook's get_restricted_loss); ``excluded_loss`` (train rows): the loss when
  exactly those parts are removed from the neurons (get_excluded_loss);
  ``test_restricted_ratio`` = test_loss / restricted_loss.
* ``sum_sq_weights``: the total sum of squared weights; ``gini_W_E`` / ``gini_W_logit``: the
  Gini coefficient of the norms of W_E's Fourier components (over the inputs) and of
  W_logit's (over the outputs): it rises as the embedding concentrates on a few frequencies.

The key frequencies are found from the final checkpoint's neurons, with the fourier
study's rule. Activations come from last-position math (no activation cache) one
checkpoint at a time. Results are cached beside the run (``analysis/progress``), keyed by
the checkpoint epochs, the key frequencies, the final epoch they came from and
:data:`VERSION`; only checkpoints missing from the cache are computed (and the final
checkpoint's key frequencies only when the final checkpoint is new).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from grok_engine import param_names as names
from grok_engine.errors import CorruptCheckpoint, GrokError
from grok_engine.fast import last_activations, layer_norm, loss_fn
from grok_engine.fourier_basis import (
    CosCube,
    embedding_component_norms,
    fourier_basis,
    gini,
    key_frequencies,
    n_frequencies,
    neuron_frequency_shares,
    phase_of,
    rows_to_grid,
    trig_rows,
)
from grok_engine.results import Grid, StudyResult, Table
from grok_engine.studies import register

if TYPE_CHECKING:  # pragma: no cover
    from grok_engine.store import Run
    from grok_engine.tasks import Dataset

VERSION = "progress-2"
CACHE_NAME = "progress"
MEASURES = ("train_loss", "test_loss", "restricted_loss", "excluded_loss", "test_restricted_ratio",
            "residual_cos_sim", "sum_sq_weights", "gini_W_E", "gini_W_logit")

ProgressCallback = Callable[[int, int, int], None]  # (done, to_do, epoch just computed)


# The last layer at '=' only, without an activation cache (grok_engine.fast).
last_position_activations = last_activations


class _Pass:
    """What every checkpoint of one run shares: rows, phases, the cos factors."""

    def __init__(self, run: "Run", key_freqs: list[int]):
        cfg = run.config
        self.cfg = cfg
        self.ds: "Dataset" = run.dataset()
        p = cfg.task.p
        self.a, self.b = self.ds.tokens[:, 0], self.ds.tokens[:, 1]
        self.labels = self.ds.labels
        phase = phase_of(cfg.task.task, self.a, self.b, p)
        self.cube = CosCube.build(phase, cfg.task.d_vocab_out, p)
        self.gram = self.cube.gram()
        self.key_freqs = key_freqs
        # orthonormal cos/sin(w (a+b)) rows of the key frequencies [2K, N] (zero rows dropped)
        V = trig_rows(phase, key_freqs, p) if key_freqs else torch.zeros(0, len(self.labels), dtype=torch.float64)
        self.V = V[V.norm(dim=-1) > 0]
        self.V32 = self.V.to(torch.float32)
        self.fb_in = fourier_basis(p)
        self.fb_out = fourier_basis(cfg.task.d_vocab_out)

    def measure(self, w: dict[str, torch.Tensor]) -> tuple[list[float], list[float], list[float]]:
        """One checkpoint -> (measures [len(MEASURES)], cos_coeffs [F], cos_sim [F]), as Python
        floats: a small tensor kept across checkpoints would pin malloc's heap under the
        large temporaries of the next ones and the RSS would grow with every checkpoint."""
        cfg, ds = self.cfg, self.ds
        last = cfg.model.n_layers - 1
        with torch.inference_mode():
            logits, resid_mid, post = last_position_activations(w, self.a, self.b, cfg.model)
            L = logits.to(torch.float64)
            coeffs = self.cube.coefficients(L)
            logit_norm = L.norm()
            residual = self.cube.residual_norm(L, coeffs, self.gram) / logit_norm

            W_out = w[names.mlp(last, "W_out")].to(torch.float64)
            W_U = w[names.W_U].to(torch.float64)
            W_logit = names.w_logit(w, last, cast=lambda t: t.to(torch.float64))
            # The neurons' key-frequency part is V^T (V post); its logits V^T ((V post) W_logit)
            # never need the [N, d_mlp] part itself.
            key_coords = (self.V32 @ post).to(torch.float64)  # [2K, d_mlp]
            key_logits = self.V.T @ (key_coords @ W_logit)  # [N, d_vocab_out]
            # restricted: mean + key parts through W_logit, bias-corrected to the model's mean
            # logits (so the mean's own term cancels)
            restricted = key_logits - key_logits.mean(0) + L.mean(0)
            # excluded: the model with the key parts taken out of the neurons
            if cfg.model.normalization == "LN":
                key_part = self.V.T @ key_coords
                resid_post = resid_mid.to(torch.float64) + (post.to(torch.float64) - key_part) @ W_out
                resid_post = resid_post + w.get(f"blocks.{last}.mlp.b_out", torch.zeros(())).to(torch.float64)
                excluded = layer_norm(resid_post, w["ln_final.w"].double(), w["ln_final.b"].double()) @ W_U
                excluded = excluded + w.get("unembed.b_U", torch.zeros(())).to(torch.float64)
            else:
                excluded = L - key_logits

            test, train = ds.test_indices, ds.train_indices
            labels = self.labels
            test_loss = float(loss_fn(L[test], labels[test]))
            restricted_loss = float(loss_fn(restricted[test], labels[test]))
            measures = [
                float(loss_fn(L[train], labels[train])),
                test_loss,
                restricted_loss,
                float(loss_fn(excluded[train], labels[train])),
                test_loss / restricted_loss if restricted_loss > 0 else float("nan"),
                float(residual),
                float(sum(float(v.double().pow(2).sum()) for v in w.values() if v.is_floating_point())),
                gini(embedding_component_norms(w["embed.W_E"][:-1], self.fb_in)),
                gini((W_logit @ self.fb_out.basis.T).norm(dim=0)),
            ]
            return measures, coeffs.tolist(), (coeffs / logit_norm).tolist()


def final_key_frequencies(run: "Run", final_weights: dict[str, torch.Tensor]) -> tuple[list[int], np.ndarray]:
    """Key frequencies of the final checkpoint (the fourier study's rule: each frequency's
    share of the neurons' variance over the (a, b) grid) and every frequency's share."""
    cfg, ds = run.config, run.dataset()
    p = cfg.task.p
    a, b = ds.tokens[:, 0], ds.tokens[:, 1]
    with torch.inference_mode():
        _, _, post = last_position_activations(final_weights, a, b, cfg.model)
        shares = neuron_frequency_shares(rows_to_grid(post, a, b, p), fourier_basis(p))
    return key_frequencies(shares), shares.numpy()


def _cache_key(run: "Run", key_freqs: list[int], final_epoch: int) -> dict[str, str]:
    cfg = run.config.to_dict()
    return {"version": VERSION, "key_frequencies": json.dumps(key_freqs), "final_epoch": str(final_epoch),
            "measures": json.dumps(list(MEASURES)),
            "task": json.dumps(cfg["task"], sort_keys=True), "model": json.dumps(cfg["model"], sort_keys=True)}


Cached = tuple[dict[str, torch.Tensor], dict[str, str]]


def _cached_keys(run: "Run", loaded: Cached | None, final_epoch: int) -> tuple[list[int], np.ndarray] | None:
    """The key frequencies (and shares) a cache found at the same final checkpoint."""
    if loaded is None:
        return None
    tensors, meta = loaded
    same = _cache_key(run, [], final_epoch)
    if any(meta.get(k) != v for k, v in same.items() if k != "key_frequencies") or "neuron_shares" not in tensors:
        return None
    try:
        return [int(k) for k in json.loads(meta["key_frequencies"])], tensors["neuron_shares"].numpy()
    except (KeyError, ValueError, TypeError):
        return None


def _cached_rows(loaded: Cached | None, key: dict[str, str]) -> dict[int, tuple[list[float], list[float], list[float]]]:
    """epoch -> (measures, cos_coeffs, cos_sim) from a cache written under the same key."""
    if loaded is None:
        return {}
    tensors, meta = loaded
    if any(meta.get(k) != v for k, v in key.items() if k != "final_epoch"):
        return {}
    try:
        epochs = tensors["epochs"].tolist()
        m, c, s = (tensors[n].numpy() for n in ("measures", "cos_coeffs", "cos_sim"))
        return {int(e): (m[i].tolist(), c[i].tolist(), s[i].tolist()) for i, e in enumerate(epochs)}
    except (KeyError, IndexError):
        return {}


def cached_progress(run: "Run") -> tuple[dict[str, np.ndarray], list[int]] | None:
    """(the table "measures" as columns: epoch [c], then one [c] column per measure; the
    key frequencies) that :func:`progress_measures` would return now, read from the cache
    alone (one read of its file); None when the cache is absent, stale or lacks one of the
    run's checkpoints. Nothing is computed."""
    epochs = run.checkpoint_epochs()
    if not epochs:
        return None
    loaded = run.load_analysis(CACHE_NAME)
    known = _cached_keys(run, loaded, epochs[-1])
    if known is None:
        return None
    rows = _cached_rows(loaded, _cache_key(run, known[0], epochs[-1]))
    if any(e not in rows for e in epochs):
        return None
    measures = np.array([rows[e][0] for e in epochs], dtype=np.float64)
    return ({"epoch": np.asarray(epochs, dtype=np.int64),
             **{name: measures[:, j] for j, name in enumerate(MEASURES)}}, known[0])


def cached_measures(run: "Run") -> dict[str, np.ndarray] | None:
    """The table "measures" of :func:`cached_progress` (None as there)."""
    cached = cached_progress(run)
    return None if cached is None else cached[0]


class ProgressStopped(Exception):
    """``progress_measures`` was told to stop between two checkpoints (its ``should_stop``);
    the checkpoints computed before are in the cache."""


def _newest_readable(run: "Run", epochs: list[int],
                     skipped: dict[int, str]) -> tuple[int, dict[str, torch.Tensor]]:
    """The newest checkpoint that loads (epoch, weights); the corrupt ones met on the way
    go into ``skipped``."""
    for epoch in reversed(epochs):
        try:
            return epoch, run.load_checkpoint(epoch)
        except CorruptCheckpoint as exc:
            skipped[epoch] = str(exc)
    raise GrokError(f"no checkpoint of run {run.id} can be read: {skipped[epochs[-1]]}")


def _save_cache(run: "Run", rows: dict[int, tuple[list[float], list[float], list[float]]],
                shares: np.ndarray, key: dict[str, str]) -> None:
    """The cache file of ``rows`` (epoch -> measures, cos_coeffs, cos_sim), in epoch order."""
    epochs = sorted(rows)
    run.save_analysis(CACHE_NAME, {
        "epochs": torch.tensor(epochs, dtype=torch.int64),
        **{name: torch.tensor([rows[e][j] for e in epochs], dtype=torch.float64)
           for j, name in enumerate(("measures", "cos_coeffs", "cos_sim"))},
        "neuron_shares": torch.from_numpy(np.ascontiguousarray(shares, dtype=np.float64)),
    }, key)


def progress_measures(run: "Run", progress_callback: ProgressCallback | None = None,
                      save_cache: bool = True, should_stop: Callable[[], bool] | None = None) -> StudyResult:
    """Progress measures of every checkpoint of ``run`` (see the module docstring).

    ``progress_callback(done, to_do, epoch)`` is called after each checkpoint computed
    (not for those read from the cache). ``should_stop()`` is asked before each checkpoint
    to compute: when it says True, the checkpoints computed so far are cached (a later
    call computes only the others) and :class:`ProgressStopped` is raised.

    Returns tables "measures" (epoch + one column per measure), "cos_coeffs" (epoch,
    freq_1 ..), "key_frequencies" and grid "cos_sim" (frequency x epoch); scalars
    key_frequencies, n_checkpoints, n_computed and the phase ends these measures give
    (:func:`grok_engine.studies.curves.find_phases`). A checkpoint that cannot be read is
    skipped: scalar ``skipped_checkpoints`` lists its epoch and ``note`` names its file.
    The cache is written when ``save_cache`` and the run folder allows (best-effort).
    """
    epochs = run.checkpoint_epochs()
    if not epochs:
        raise GrokError(f"run {run.id} has no checkpoints: train it first")
    skipped: dict[int, str] = {}
    loaded = run.load_analysis(CACHE_NAME)
    final: dict[str, torch.Tensor] | None = None
    final_epoch = epochs[-1]
    known = _cached_keys(run, loaded, final_epoch)
    if known is None:  # the final checkpoint is new: find its key frequencies
        final_epoch, final = _newest_readable(run, epochs, skipped)
        known = final_key_frequencies(run, final)
    key_freqs, shares = known
    key = _cache_key(run, key_freqs, final_epoch)
    cached = _cached_rows(loaded, key)
    todo = [e for e in epochs if e not in cached and e not in skipped]
    rows = {e: cached[e] for e in epochs if e in cached}
    if todo:
        shared = _Pass(run, key_freqs)
        for i, epoch in enumerate(todo):
            if should_stop is not None and should_stop():
                if save_cache and any(e not in cached for e in rows):
                    _save_cache(run, rows, shares, key)
                raise ProgressStopped(f"stopped after {i} of {len(todo)} checkpoints of run {run.id}")
            try:
                weights = final if epoch == final_epoch and final is not None else run.load_checkpoint(epoch)
            except CorruptCheckpoint as exc:  # one bad file hides nothing else
                skipped[epoch] = str(exc)
            else:
                rows[epoch] = shared.measure(weights)
                del weights
            if progress_callback is not None:
                progress_callback(i + 1, len(todo), epoch)
    del final
    computed = [e for e in todo if e in rows]
    epochs = [e for e in epochs if e in rows]
    if not epochs:
        raise GrokError(f"no checkpoint of run {run.id} can be read: {next(iter(skipped.values()))}")
    measures = np.array([rows[e][0] for e in epochs], dtype=np.float64)
    cos_coeffs = np.array([rows[e][1] for e in epochs], dtype=np.float64)
    cos_sim = np.array([rows[e][2] for e in epochs], dtype=np.float64)
    stale = computed or set(cached) != set(epochs) or loaded is None \
        or loaded[1].get("final_epoch") != str(final_epoch)
    if save_cache and stale:
        _save_cache(run, rows, shares, key)

    p = run.config.task.p
    freqs = list(range(1, n_frequencies(p) + 1))
    result = StudyResult("progress", epochs[-1])
    ep = np.asarray(epochs, dtype=np.int64)
    result.add(Table("measures", {"epoch": ep, **{name: measures[:, j] for j, name in enumerate(MEASURES)}},
                     title="Progress measures per checkpoint",
                     description=f"restricted/excluded loss at key frequencies {key_freqs} "
                                 f"(from the final checkpoint's neurons)"))
    result.add(Table("cos_coeffs", {"epoch": ep, **{f"freq_{k}": cos_coeffs[:, k - 1] for k in freqs}},
                     title="Coefficient of the logits on cos(w(a+b-c)) per frequency",
                     noise_floor=(tuple(f"freq_{k}" for k in freqs),)))
    result.add(Table("key_frequencies", {"frequency": np.asarray(key_freqs, dtype=np.int64),
                                         "neuron_share": shares[np.asarray(key_freqs, dtype=np.int64) - 1]},
                     title="Key frequencies of the final checkpoint"))
    result.add(Grid("cos_sim", cos_sim.T, "frequency", "epoch", freqs, list(epochs),
                    title="Cosine similarity of the logits with cos(w(a+b-c))"))
    result.scalars.update({"key_frequencies": list(key_freqs), "n_checkpoints": len(epochs),
                           "n_computed": len(computed)})
    # the grokking phases these measures define (the curves study's rule; imported here, it
    # imports this module)
    from grok_engine.studies.curves import find_phases

    measures_table = result.tables["measures"].columns
    result.scalars.update(find_phases(run.metrics(), measures_table).as_dict())
    notes = []
    if skipped:
        result.scalars["skipped_checkpoints"] = sorted(skipped)
        notes.append(f"skipped {len(skipped)} unreadable checkpoint(s): "
                     + "; ".join(skipped[e] for e in sorted(skipped)))
    if run.config.task.task not in ("mod_add", "mod_sub"):
        notes.append(f"the cos(w(a+b-c)) measures are the modular-addition hypothesis; "
                     f"for {run.config.task.task} they need not fit")
    if notes:
        result.scalars["note"] = "; ".join(notes)
    return result


@register("progress")
def progress(ctx, save_cache: bool = True, **_options) -> StudyResult:
    """The registry entry: progress measures over the context's run (needs a run on disk)."""
    if ctx.run is None:
        raise GrokError("study progress needs a saved run: it reads every checkpoint of the run")
    return progress_measures(ctx.run, save_cache=save_cache)
