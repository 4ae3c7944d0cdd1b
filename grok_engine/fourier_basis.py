"""The Fourier basis over Z_p and the frequency helpers the Fourier studies share (pure).

The basis is the notebook's: ``Constant``, then ``Sin k``, ``Cos k`` for k = 1 .. p//2,
each row normalised, so ``Sin k`` is row ``2k - 1`` and ``Cos k`` row ``2k``. For even p
``Sin p/2`` is identically zero (sin(pi n) = 0); the notebook's normalisation would turn it
into noise, so it is left out and the basis keeps p orthonormal rows, the last ``Cos p/2``.

Everything here is a function of tensors in and tensors out; no model, no disk.
Angles are computed from integers ``(k * x) mod p`` so large ``k * x`` lose no precision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

# A frequency is "key" when its share (of the neurons' variance, or of the embedding's
# norm^2) is at least this many times the share of the next one down.
KEY_FREQUENCY_MIN_GAP = 4.0


@dataclass(frozen=True)
class FourierBasis:
    """basis: [p, p] orthonormal rows (component x input); names[i] names row i;
    freqs[i] is the frequency of row i (0 for ``Constant``)."""

    basis: torch.Tensor
    names: list[str]
    freqs: np.ndarray

    @property
    def p(self) -> int:
        return self.basis.shape[1]

    @property
    def n_freqs(self) -> int:
        return n_frequencies(self.p)


def n_frequencies(p: int) -> int:
    """Frequencies 1 .. p//2 (the notebook's ``range(1, p//2 + 1)``)."""
    return p // 2


def _angles(k: torch.Tensor | np.ndarray, x: torch.Tensor | np.ndarray, p: int) -> torch.Tensor:
    """2 pi (k x mod p) / p in float64. k: [F] ints, x: [N] ints -> [F, N]"""
    k = torch.as_tensor(np.asarray(k), dtype=torch.int64)
    x = torch.as_tensor(np.asarray(x), dtype=torch.int64)
    return (2 * math.pi / p) * torch.remainder(k[:, None] * x[None, :], p).to(torch.float64)


def fourier_basis(p: int, dtype: torch.dtype = torch.float64) -> FourierBasis:
    """The normalised Fourier basis of functions on 0 .. p-1 (see the module docstring).

    >>> fb = fourier_basis(5)
    >>> fb.names
    ['Constant', 'Sin 1', 'Cos 1', 'Sin 2', 'Cos 2']
    """
    k = np.arange(1, n_frequencies(p) + 1)
    ang = _angles(k, np.arange(p), p)  # [n_freqs, p], one cos and one sin call for all
    rows = torch.stack([torch.sin(ang), torch.cos(ang)], dim=1).reshape(-1, p)  # Sin 1, Cos 1, ...
    names = [f"{kind} {f}" for f in k for kind in ("Sin", "Cos")]
    freqs = np.repeat(k, 2)
    if p % 2 == 0:  # sin(pi x) vanishes: no Sin p/2 for even p
        keep = np.array([name != f"Sin {p // 2}" for name in names])
        rows, names, freqs = rows[torch.from_numpy(keep)], [n for n, ok in zip(names, keep) if ok], freqs[keep]
    basis = torch.cat([torch.ones(1, p, dtype=torch.float64), rows])
    basis = basis / basis.norm(dim=-1, keepdim=True)
    return FourierBasis(basis.to(dtype), ["Constant", *names], np.concatenate([[0], freqs]).astype(np.int64))


def frequency_membership(fb: FourierBasis) -> torch.Tensor:
    """[n_freqs, p] float64: row k-1 is 1 on the components of frequency k (sin k, cos k)."""
    member = torch.zeros(fb.n_freqs, fb.p, dtype=torch.float64)
    idx = np.nonzero(fb.freqs)[0]
    member[fb.freqs[idx] - 1, idx] = 1.0
    return member


def frequency_energy(component_sq: torch.Tensor, fb: FourierBasis) -> torch.Tensor:
    """Sum a per-component quantity over each frequency's components.

    component_sq: [p, ...] (e.g. squared norms per Fourier component) -> [n_freqs, ...]
    """
    member = frequency_membership(fb).to(component_sq.dtype)
    return torch.tensordot(member, component_sq, dims=1)


def embedding_component_norms(W_E: torch.Tensor, fb: FourierBasis) -> torch.Tensor:
    """Norm of each Fourier component of the embedding. W_E [p, d_model] -> [p]
    (the notebook's ``(fourier_basis @ W_E).norm(dim=-1)``)."""
    return (fb.basis.to(torch.float64) @ W_E.to(torch.float64)).norm(dim=-1)


def embedding_frequency_shares(W_E: torch.Tensor, fb: FourierBasis) -> torch.Tensor:
    """Each frequency's share of the embedding's non-constant norm^2 (sin k + cos k).
    W_E [p, d_model] -> [n_freqs], summing to 1 (zeros for an all-constant embedding)."""
    energy = frequency_energy(embedding_component_norms(W_E, fb) ** 2, fb)
    total = energy.sum()
    return energy / total if total > 0 else torch.zeros_like(energy)


def find_key_frequencies(shares: torch.Tensor | np.ndarray,
                         min_gap: float = KEY_FREQUENCY_MIN_GAP) -> list[int]:
    """Frequencies that stand out, found from the data; ``[]`` when none does.

    The studies pass each frequency's share of the neurons' variance
    (:func:`neuron_frequency_shares`: on a grokked p=53 model it separates the frequencies
    the neurons cluster on by 5-9x, where the embedding's shares still carry a tail of
    half-cleaned-up frequencies); :func:`embedding_frequency_shares` works too.
    The rule: sort the frequencies by share (descending) and find the largest ratio
    between consecutive shares. If that drop is at least ``min_gap`` the frequencies above
    it are the key frequencies; if no drop is that large the spectrum has no clear head (an
    untrained model, one mid-way through training, or one that uses every frequency) and
    none is key: see :func:`top_frequencies` for what to show instead.

    shares: [n_freqs] non-negative (frequency k at index k-1). Returns frequencies, ascending.

    >>> find_key_frequencies([0.01, 0.45, 0.01, 0.52, 0.01])
    [2, 4]
    >>> find_key_frequencies([0.2, 0.25, 0.15, 0.22, 0.18])
    []
    """
    s = np.asarray(shares, dtype=np.float64)
    n = len(s)
    if n == 0:
        return []
    order = np.argsort(-s, kind="stable")
    ranked = s[order]
    if n == 1:
        return [1] if ranked[0] > 0 else []
    if ranked[0] <= 0:
        return []
    tiny = ranked[0] * 1e-12
    ratios = ranked[:-1] / np.maximum(ranked[1:], tiny)
    cut = int(np.argmax(ratios))
    if ratios[cut] < min_gap:
        return []
    return sorted(int(k) + 1 for k in order[: cut + 1])


def key_frequencies(shares: torch.Tensor | np.ndarray,
                    min_gap: float = KEY_FREQUENCY_MIN_GAP) -> list[int]:
    """:func:`find_key_frequencies`, or every frequency when none stands out (what the
    progress measures restrict to).

    >>> key_frequencies([0.2, 0.25, 0.15])
    [1, 2, 3]
    """
    return find_key_frequencies(shares, min_gap) or list(range(1, len(np.asarray(shares)) + 1))


def top_frequencies(shares: torch.Tensor | np.ndarray, n: int = 5) -> list[int]:
    """The ``n`` frequencies of largest share, largest first (ties: lower frequency first).

    >>> top_frequencies([0.1, 0.4, 0.2, 0.3], n=2)
    [2, 4]
    """
    s = np.asarray(shares, dtype=np.float64)
    return [int(k) + 1 for k in np.argsort(-s, kind="stable")[:n]]


def block_partners(fb: FourierBasis) -> tuple[torch.Tensor, torch.Tensor]:
    """For each component x, the components y of its frequency's block {Constant, Sin k,
    Cos k}: indices [p, 3] and a 0/1 mask [p, 3] (even p: Cos p/2 has no Sin, masked;
    the Constant's own row is all masked, it is handled apart)."""
    p = fb.p
    idx = torch.zeros(p, 3, dtype=torch.int64)
    mask = torch.zeros(p, 3, dtype=torch.float64)
    where = {name: i for i, name in enumerate(fb.names)}
    for x in range(1, p):
        k = int(fb.freqs[x])
        for slot, name in enumerate(("Constant", f"Sin {k}", f"Cos {k}")):
            if name in where:
                idx[x, slot], mask[x, slot] = where[name], 1.0
    return idx, mask


def neuron_freq_energy(acts_grid: torch.Tensor, fb: FourierBasis) -> tuple[torch.Tensor, torch.Tensor]:
    """Each neuron's variance over the (a, b) grid split by frequency.

    In the 2-D Fourier transform ``H = F @ acts @ F.T`` of a neuron, with its
    Constant x Constant term (the mean) removed, frequency k owns the terms H[x, y] with x
    and y both in {Constant, Sin k, Cos k}. Only those terms are computed: one transform
    along a, then for each row x the three components along b it pairs with (and the
    whole Constant row); the total comes from Parseval.

    The transforms run in the activations' own precision (float32 from a model: half the
    work of float64, ~1e-7 relative) on the activations less their mean, so the mean's
    size costs no precision; the sums of squares are float64.

    acts_grid: [p, p, d_mlp] (a, b, neuron) -> (per_freq [n_freqs, d_mlp], total [d_mlp]),
    float64 sums of squares.
    """
    p = fb.p
    work = acts_grid.dtype if acts_grid.dtype in (torch.float32, torch.float64) else torch.float64
    acts = acts_grid.to(work)
    n = acts.shape[-1]
    centred = acts - acts.mean(dim=(0, 1), dtype=torch.float64).to(work)  # H[Constant, Constant] = 0
    F = fb.basis.to(work)
    along_a = (F @ centred.reshape(p, -1)).reshape(p, p, n)  # [component x, b, neuron]
    idx, mask = block_partners(fb)
    pairs = torch.bmm(F[idx], along_a) * mask.to(work)[:, :, None]  # [x, 3, neuron]: H[x, y] for y in x's block
    row_energy = pairs.to(torch.float64).pow(2).sum(dim=1)  # [x, neuron]
    constant_row = (F @ along_a[0]).to(torch.float64)  # [y, neuron]: H[Constant, y]
    row_energy[0] = 0.0
    per_component = row_energy + constant_row.pow(2)  # H[x, .]^2 in the block + H[Constant, x]^2
    per_component[0] = 0.0  # Constant x Constant: the mean
    per_freq = frequency_energy(per_component, fb)
    total = (centred.reshape(-1, n).pow(2).sum(0, dtype=torch.float64) - constant_row[0].pow(2)).clamp_min(0.0)
    return per_freq, total


def neuron_frequency_shares(acts_grid: torch.Tensor, fb: FourierBasis) -> torch.Tensor:
    """Each frequency's share of the neurons' total variance over the (a, b) grid (summed
    over neurons; see :func:`neuron_freq_energy`). acts_grid [p, p, d_mlp] -> [n_freqs]."""
    per_freq, total = neuron_freq_energy(acts_grid, fb)
    t = total.sum()
    return per_freq.sum(1) / t if t > 0 else torch.zeros(fb.n_freqs, dtype=torch.float64)


def neuron_freq_fractions(per_freq: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """Fraction of each neuron's variance over the (a, b) grid that each frequency explains
    (the notebook's ``neuron_freq_norm``), from :func:`neuron_freq_energy`'s
    (per_freq [n_freqs, d_mlp], total [d_mlp]); 0 for a neuron that never changes.
    Returns [n_freqs, d_mlp] float64."""
    live = total > 0
    return torch.where(live, per_freq / torch.where(live, total, 1.0), 0.0)


def rows_to_grid(values: torch.Tensor, a: torch.Tensor, b: torch.Tensor, p: int) -> torch.Tensor:
    """Per-row values [N, d] -> [p, p, d] over (a, b), in the values' floating dtype
    (float64 for integers). Absent rows (b = 0 for mod_div) get each column's mean, so
    they add nothing to the 2-D Fourier terms but the constant."""
    if not values.is_floating_point():
        values = values.to(torch.float64)
    if values.shape[0] == p * p:  # every row, a-major
        return values.reshape(p, p, -1)
    grid = values.mean(0).expand(p, p, -1).clone()
    grid[a, b] = values
    return grid


def fourier_2d(grid: torch.Tensor, fb: FourierBasis) -> torch.Tensor:
    """2-D Fourier transform of a function on the (a, b) grid: [p, p] -> [p, p] with
    rows the component of a and columns the component of b (``F @ grid @ F.T``)."""
    F = fb.basis.to(torch.float64)
    return F @ grid.to(torch.float64) @ F.T


def phase_of(task: str, a: torch.Tensor, b: torch.Tensor, p: int) -> torch.Tensor:
    """The integer the Fourier algorithm rotates by: a - b for ``mod_sub``, a + b otherwise
    (the notebook's a + b; for mul/div/poly the hypothesis does not fit)."""
    return (a - b) % p if task == "mod_sub" else a + b


def trig_rows(phase: torch.Tensor, freqs: list[int] | np.ndarray, p: int,
              normalise: bool = True) -> torch.Tensor:
    """cos(w_k s) and sin(w_k s) over the rows, w_k = 2 pi k / p, as one matrix.

    phase: [N] ints; returns [2F, N] float64 (cos of every frequency, then sin), each row
    divided by its norm (the notebook's ``cos_apb_vec``/``sin_apb_vec``). A row that is zero
    (sin of the Nyquist frequency p/2 for even p) is left zero instead of divided by ~0.
    """
    ang = _angles(np.asarray(freqs, dtype=np.int64), phase, p)
    rows = torch.cat([torch.cos(ang), torch.sin(ang)])
    if normalise:
        norm = rows.norm(dim=-1, keepdim=True)
        live = norm > 1e-6 * math.sqrt(max(rows.shape[1], 1))
        rows = torch.where(live, rows / torch.where(live, norm, 1.0), 0.0)
    return rows


@dataclass(frozen=True)
class CosCube:
    """The notebook's ``cos_cube`` without building it: cube_k[r, c] = cos(w_k (s_r - c))
    / ||.||, held as cos/sin factors, since cos(w(s - c)) = cos(ws)cos(wc) + sin(ws)sin(wc).

    freqs [F]; row_cos/row_sin [F, N] over the rows' phases s; out_cos/out_sin [F, C] over
    the outputs c; norm [F] the norm of each (unnormalised) cube over the rows present.
    """

    freqs: np.ndarray
    row_cos: torch.Tensor
    row_sin: torch.Tensor
    out_cos: torch.Tensor
    out_sin: torch.Tensor
    norm: torch.Tensor

    @classmethod
    def build(cls, phase: torch.Tensor, n_out: int, p: int, freqs: list[int] | np.ndarray | None = None) -> "CosCube":
        freqs = np.arange(1, n_frequencies(p) + 1) if freqs is None else np.asarray(freqs, np.int64)
        rows = _angles(freqs, phase, p)
        outs = _angles(freqs, np.arange(n_out), p)
        rc, rs, oc, os_ = torch.cos(rows), torch.sin(rows), torch.cos(outs), torch.sin(outs)
        # ||cube||^2 = sum_{r,c} (rc oc + rs os)^2, expanded into per-axis sums
        norm_sq = ((rc * rc).sum(1) * (oc * oc).sum(1) + 2 * (rc * rs).sum(1) * (oc * os_).sum(1)
                   + (rs * rs).sum(1) * (os_ * os_).sum(1))
        return cls(freqs, rc, rs, oc, os_, norm_sq.clamp_min(0).sqrt())

    def coefficients(self, logits: torch.Tensor) -> torch.Tensor:
        """<logits, cube_k> for every frequency: logits [N, C] -> [F] float64
        (the notebook's ``(cos_cube * logits).sum([-3, -2, -1])``)."""
        L = logits.to(torch.float64)
        raw = ((self.row_cos @ L) * self.out_cos).sum(-1) + ((self.row_sin @ L) * self.out_sin).sum(-1)
        return raw / self.norm

    def reconstruct(self, coeffs: torch.Tensor) -> torch.Tensor:
        """sum_k coeffs[k] * cube_k: [F] -> [N, C] float64."""
        alpha = (coeffs.to(torch.float64) / self.norm)[:, None]
        return self.row_cos.T @ (alpha * self.out_cos) + self.row_sin.T @ (alpha * self.out_sin)

    def gram(self) -> torch.Tensor:
        """<cube_j, cube_k> [F, F] (the identity when every (a, b) row is present)."""
        rc, rs, oc, os_ = self.row_cos, self.row_sin, self.out_cos, self.out_sin
        g = (rc @ rc.T) * (oc @ oc.T) + (rc @ rs.T) * (oc @ os_.T) + (rs @ rc.T) * (os_ @ oc.T) \
            + (rs @ rs.T) * (os_ @ os_.T)
        return g / (self.norm[:, None] * self.norm[None, :])

    def residual_norm(self, logits: torch.Tensor, coeffs: torch.Tensor, gram: torch.Tensor | None = None) -> torch.Tensor:
        """||logits - reconstruct(coeffs)|| without building the reconstruction:
        ||L||^2 - 2 c.c + c^T G c, since <L, cube_k> = c_k. gram: :meth:`gram`, if at hand."""
        c = coeffs.to(torch.float64)
        g = self.gram() if gram is None else gram
        sq = logits.to(torch.float64).pow(2).sum() - 2 * (c @ c) + c @ g @ c
        return sq.clamp_min(0.0).sqrt()


def gini(values: torch.Tensor | np.ndarray) -> float:
    """Gini coefficient of non-negative values (0: all equal, -> 1: one value holds all):
    sum_ij |x_i - x_j| / (2 n sum x), computed from the sorted values."""
    x = np.sort(np.abs(np.asarray(values, dtype=np.float64)).ravel())
    n, total = len(x), x.sum()
    if n == 0 or total <= 0:
        return 0.0
    i = np.arange(1, n + 1)
    return float(2.0 * (i * x).sum() / (n * total) - (n + 1.0) / n)
