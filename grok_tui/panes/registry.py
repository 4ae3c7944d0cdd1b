"""The study panes in their key order (key "1" is the app's Training pane)."""

from __future__ import annotations

from textual.widgets import Tabs

from grok_tui.panes.ablation import AblationPane
from grok_tui.panes.attention import AttentionPane
from grok_tui.panes.base import StudyPane
from grok_tui.panes.embedding import EmbeddingPane
from grok_tui.panes.fourier import FourierPane
from grok_tui.panes.neurons import NeuronsPane
from grok_tui.panes.progress import ProgressPane

PANE_CLASSES: list[type[StudyPane]] = [
    EmbeddingPane,  # 2
    AttentionPane,  # 3
    NeuronsPane,  # 4
    AblationPane,  # 5
    FourierPane,  # 6
    ProgressPane,  # 7
]



class PaneTabs(Tabs, can_focus=False):
    """The run screen's pane tabs: clicked with the mouse, switched with the number keys;
    never focused, so left/right stay the checkpoint keys."""


def pane_classes() -> list[type[StudyPane]]:
    """The run screen's panes: Training (key 1), then PANE_CLASSES."""
    from grok_tui.panes.training import TrainingPane

    return [TrainingPane, *[c for c in PANE_CLASSES if c.STUDY != TrainingPane.STUDY]]


__all__ = ["PANE_CLASSES", "PaneTabs", "pane_classes"]
