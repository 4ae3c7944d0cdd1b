"""The study panes in their key order (key "1" is the app's Training pane)."""

from __future__ import annotations

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

__all__ = ["PANE_CLASSES"]
