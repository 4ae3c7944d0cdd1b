"""grok_engine.sweep.diagram: cells over two axes, fixed axes, seeds aggregated."""

from __future__ import annotations

import math

import numpy as np
import pytest

from grok_engine.sweep.diagram import build_diagram, fixed_choices
from grok_engine.sweep.summary import RunFigures

AXES = [{"flag": "weight-decay", "values": [0.1, 1.0]}, {"flag": "frac-train", "values": [0.3, 0.5, 0.7]},
        {"flag": "lr", "values": [1e-3, 1e-2]}, {"flag": "seed", "values": [1, 2, 3]}]


def figures():
    """A member per grid point; test_99 = 100 * (index of frac) + 10 * wd + seed, lr 1e-2 halves it."""
    out = []
    for wd in AXES[0]["values"]:
        for i, frac in enumerate(AXES[1]["values"]):
            for lr in AXES[2]["values"]:
                for seed in AXES[3]["values"]:
                    t99 = (100 * (i + 1) + 10 * wd + seed) / (2 if lr == 1e-2 else 1)
                    phase = "grokking" if seed < 3 else "comprehension"
                    out.append(RunFigures(f"m{len(out)}", "s", {"weight-decay": wd, "frac-train": frac, "lr": lr,
                                                                "seed": seed}, test_99=t99, phase=phase))
    return out


def test_axes_fixed_and_aggregated():
    d = build_diagram(AXES, figures(), "frac-train", "weight-decay", mode="delay")
    assert d.grid.values.shape == (2, 3)
    assert d.fixed == {"lr": 1e-3} and d.aggregated == ["seed"]
    assert d.grid.row_labels == ["0.1", "1"] and d.grid.col_labels == ["0.3", "0.5", "0.7"]
    assert all(len(c.members) == 3 for row in d.cells for c in row)
    assert np.isnan(d.grid.values).all()  # no delays given


def test_median_and_spread_over_seeds():
    d = build_diagram(AXES, figures(), "frac-train", "weight-decay", mode="test_99", fixed={"lr": 1e-2})
    cell = d.cell(1, 2)  # wd 1.0, frac 0.7
    assert 10 ** cell.value == pytest.approx((300 + 10 + 2) / 2)  # the median seed
    assert cell.spread == pytest.approx(math.log10(313 / 2) - math.log10(311 / 2))


def test_phase_is_the_most_common_with_its_share():
    d = build_diagram(AXES, figures(), "lr", "seed", mode="phase", fixed={"weight-decay": 1.0, "frac-train": 0.5})
    assert d.aggregated == []
    assert d.grid.values[0, 0] == 1.0 and d.grid.values[2, 0] == 0.0  # grokking, comprehension
    d = build_diagram(AXES, figures(), "lr", "frac-train", mode="phase")
    assert d.grid.values[0, 0] == 1.0 and d.cell(0, 0).spread == pytest.approx(2 / 3)


def test_fixed_choices_and_one_axis():
    assert len(fixed_choices(AXES, "frac-train", "weight-decay")) == 2
    assert fixed_choices(AXES[:2], "frac-train", "weight-decay") == [{}]
    d = build_diagram(AXES[:1], figures()[:1], "weight-decay", None, mode="test_99")
    assert d.grid.values.shape == (1, 2) and d.cell(0, 0).members == [0]
    with pytest.raises(ValueError, match="colour mode"):
        build_diagram(AXES, figures(), "lr", None, mode="bogus")
