"""Fourier structure (notebook: "Explaining Algorithm" to "Read Off the Neuron-Logit
Weights", and "Logit Periodicity").

A modular-addition model that has grokked embeds each token as cos/sin of a few key
frequencies, its neurons respond to one frequency of a + b each, and its logits are
close to a sum of cos(w (a + b - c)) over the key frequencies. This study measures all of
that at one checkpoint:

* the Fourier basis (grid "basis") and the norm of W_E in it (table "embedding_norms");
* the key frequencies, found from the data (see
  :func:`grok_engine.fourier_basis.find_key_frequencies`: the frequencies above the largest
  drop in each frequency's share of the neurons' variance, if that drop is at least 4x;
  otherwise none is found: scalar ``key_frequencies_found`` False, ``key_frequencies`` empty)
  and, found or not, ``top_frequencies``: the 5 largest shares, largest first; table
  "frequency_shares" (with the embedding's and W_logit's shares beside);
* neuron clusters: each neuron's best frequency by the notebook's neuron_freq_norm, or
  cluster 0 ("none") below ``threshold`` (tables "neuron_clusters", "cluster_sizes", grid
  "neuron_freq_norm");
* W_logit in the Fourier basis over the outputs (table "w_logit_norms");
* the 2-D Fourier transform of one neuron's activations (grid "neuron_fourier");
* logit periodicity: the logits' coefficient on the normalised cos(w (a + b - c)) of each
  key frequency (of the top 5 when none is found: scalar ``periodicity_frequencies``), its
  cosine similarity, the residual fraction and the loss of the logits rebuilt from those
  terms alone (table "logit_periodicity", scalars).

For ``mod_sub`` the phase is a - b; ``add`` (labels up to 2p - 2, not periodic) gets the
basis and the embedding norms only, with a note. Nothing loops over neurons or rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from grok_engine.errors import GrokError
from grok_engine.fast import loss_fn
from grok_engine.fourier_basis import (
    CosCube,
    embedding_component_norms,
    embedding_frequency_shares,
    find_key_frequencies,
    fourier_2d,
    fourier_basis,
    frequency_energy,
    neuron_freq_energy,
    neuron_freq_fractions,
    phase_of,
    rows_to_grid,
    top_frequencies,
)
from grok_engine.results import Grid, StudyResult, Table
from grok_engine.studies import register

PERIODIC_TASKS = ("mod_add", "mod_sub")
N_TOP_FREQUENCIES = 5  # shown (and used for the logit periodicity) when no key frequency is found


def parse_key_freqs(key_freqs: Any, p: int) -> list[int] | None:
    """None (find them from the data) or frequencies in 1 .. p//2 (ints or "17,25")."""
    if key_freqs is None:
        return None
    if isinstance(key_freqs, str):
        key_freqs = [s for s in key_freqs.replace(" ", ",").split(",") if s]
    elif isinstance(key_freqs, (int, np.integer)):
        key_freqs = [key_freqs]
    out = []
    for k in key_freqs:
        try:
            k = int(k)
        except (TypeError, ValueError):
            k = None
        if k is None or not 1 <= k <= p // 2:
            raise GrokError(f"key_freqs={key_freqs!r} is not allowed: frequencies 1..{p // 2}")
        out.append(k)
    if not out:
        raise GrokError(f"key_freqs=() is empty: give frequencies 1..{p // 2}, or none to find them")
    return sorted(set(out))


def acts_square(ctx, values: torch.Tensor) -> torch.Tensor:
    """Per-row values [N, d] -> [p, p, d] over (a, b) (absent rows: the column mean)."""
    return rows_to_grid(values, ctx.tokens[:, 0], ctx.tokens[:, 1], ctx.p)


def neuron_spectrum(ctx) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The MLP neurons at '=' over the (a, b) grid in the 2-D Fourier basis: (acts
    [p, p, d_mlp], per_freq [n_freqs, d_mlp] and total [d_mlp] as in
    :func:`grok_engine.fourier_basis.neuron_freq_energy`, freq_norm [n_freqs, d_mlp]: the
    fraction of each neuron's variance each frequency explains)."""
    acts = acts_square(ctx, ctx.neuron_acts)
    per_freq, total = neuron_freq_energy(acts, fourier_basis(ctx.p))
    return acts, per_freq, total, neuron_freq_fractions(per_freq, total)


@register("fourier")
def fourier(ctx, threshold: float = 0.85, neuron: int = 0, key_freqs: Any = None) -> StudyResult:
    """See the module docstring. Options: ``threshold`` (fraction of a neuron's variance one
    frequency must explain to cluster it, the notebook's 0.85), ``neuron`` (whose 2-D
    Fourier transform to show), ``key_freqs`` (override the frequencies found)."""
    p, task = ctx.p, ctx.config.task.task
    d_mlp = ctx.config.model.d_mlp
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise GrokError(f"threshold={threshold!r} is out of range: allowed a number in [0, 1]")
    if isinstance(neuron, bool) or not isinstance(neuron, (int, np.integer)) or not 0 <= neuron < d_mlp:
        raise GrokError(f"neuron={neuron!r} is out of range: allowed 0..{d_mlp - 1}")
    chosen = parse_key_freqs(key_freqs, p)

    fb = fourier_basis(p)
    result = StudyResult("fourier", ctx.epoch)
    result.add(Grid("basis", fb.basis.numpy(), "component", "input", list(fb.names), list(range(p)),
                    title="Fourier basis (normalised)"))
    norms = embedding_component_norms(ctx.W_E, fb)
    result.add(Table("embedding_norms", {"component": list(fb.names), "frequency": fb.freqs,
                                         "norm": norms.numpy()},
                     title="Norms of the embedding in the Fourier basis", noise_floor=(("norm",),)))
    if task == "add":
        result.scalars["note"] = ("integer addition is not periodic in p: only the Fourier basis "
                                  "and the embedding norms are shown")
        return result
    if task not in PERIODIC_TASKS:
        result.scalars["note"] = (f"the Fourier algorithm is the notebook's for addition; for {task} "
                                  f"the measures below test the a + b hypothesis, they need not fit")

    # -- neurons and key frequencies ------------------------------------------------------
    embed_share = embedding_frequency_shares(ctx.W_E, fb)
    acts, per_freq, total, freq_norm = neuron_spectrum(ctx)  # [p, p, d_mlp], [F, d_mlp], [d_mlp], [F, d_mlp]
    best_frac, best = freq_norm.max(dim=0)
    cluster = torch.where(best_frac > threshold, best + 1, 0)
    neuron_share = per_freq.sum(1) / total.sum() if total.sum() > 0 else torch.zeros(fb.n_freqs)
    found = find_key_frequencies(neuron_share)
    keys = chosen if chosen is not None else found
    top = top_frequencies(neuron_share, N_TOP_FREQUENCIES)
    periodic = keys or sorted(top)  # the cos(w(a+b-c)) terms the logits are measured on
    key_options = {} if chosen is None else {"key_freqs": chosen}  # overridden: in export names

    W_logit = ctx.W_logit.to(torch.float64)
    if W_logit.shape[1] == p:
        w_logit_norms = (W_logit @ fb.basis.to(torch.float64).T).norm(dim=0)  # [p]
        w_logit_share = frequency_energy(w_logit_norms ** 2, fb)
        w_logit_share = w_logit_share / w_logit_share.sum().clamp_min(1e-300)
    else:  # pragma: no cover - every non-add task has p outputs
        w_logit_norms = torch.full((p,), float("nan"), dtype=torch.float64)
        w_logit_share = torch.full((fb.n_freqs,), float("nan"), dtype=torch.float64)

    freqs = np.arange(1, fb.n_freqs + 1)
    result.add(Table("frequency_shares", {
        "frequency": freqs,
        "embedding_share": embed_share.numpy(),
        "neuron_share": neuron_share.numpy(),
        "w_logit_share": w_logit_share.numpy(),
        "key": np.isin(freqs, keys).astype(np.int64),
    }, title="Share of each frequency (sin + cos) in W_E, the neurons' variance and W_logit",
        description="Key frequencies (key = 1): those above the largest drop in neuron_share, "
                    "if it is at least 4x; none when no drop is that large.", options=key_options))
    result.add(Table("neuron_clusters", {
        "neuron": np.arange(d_mlp),
        "frequency": cluster.numpy(),
        "frac_explained": best_frac.numpy(),
    }, title=f"Neuron clusters (frequency explaining > {threshold:g} of the variance; 0 = none)"))
    sizes = torch.bincount(cluster, minlength=fb.n_freqs + 1)
    present = torch.nonzero(sizes).flatten()
    result.add(Table("cluster_sizes", {
        "frequency": present.numpy(),
        "n_neurons": sizes[present].numpy(),
    }, title="Neurons per cluster (frequency 0 = none)"))
    result.add(Grid("neuron_freq_norm", freq_norm.numpy(), "frequency", "neuron",
                    list(freqs), list(range(d_mlp)), title="Neuron frac explained by freq",
                    centered=False))
    result.add(Table("w_logit_norms", {"component": list(fb.names), "frequency": fb.freqs,
                                       "norm": w_logit_norms.numpy()},
                     title="W_logit in the Fourier basis (norm over neurons)", noise_floor=(("norm",),)))
    result.add(Grid("neuron_fourier", fourier_2d(acts[:, :, neuron], fb).numpy(), "a", "b",
                    list(fb.names), list(fb.names),
                    title=f"2-D Fourier transform of neuron {neuron}", options={"neuron": neuron}))

    # -- logit periodicity ---------------------------------------------------------------
    logits = ctx.logits.to(torch.float64)
    phase = phase_of(task, ctx.tokens[:, 0], ctx.tokens[:, 1], p)
    cube = CosCube.build(phase, logits.shape[1], p, periodic)
    coeffs = cube.coefficients(logits)
    approx = cube.reconstruct(coeffs)
    logit_norm = logits.norm()
    which = "key frequency" if keys else f"of the top {len(periodic)} frequencies (no key frequency found)"
    result.add(Table("logit_periodicity", {
        "frequency": np.asarray(periodic, dtype=np.int64),
        "coefficient": coeffs.numpy(),
        "cos_sim": (coeffs / logit_norm).numpy(),
    }, title=f"Logits projected on cos(w(a+b-c)) of each {which}", options=key_options))
    result.scalars.update({
        "key_frequencies": list(keys),
        "key_frequencies_found": bool(found),
        "top_frequencies": top,
        "periodicity_frequencies": list(periodic),
        "threshold": float(threshold),
        "n_clustered": int((cluster > 0).sum()),
        "residual_fraction": float((logits - approx).norm() / logit_norm),
        "loss": float(loss_fn(logits, ctx.labels)),
        "approx_loss": float(loss_fn(approx, ctx.labels)),
    })
    return result
