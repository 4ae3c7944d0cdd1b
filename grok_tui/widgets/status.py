"""The status line: which run, which checkpoint, and its metrics."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from grok_tui.format import number as _fmt


class StatusLine(Static):
    """One line: ``RUN  epoch E (i/n)  loss train/test  acc train/test  [training]``.

    ``epoch`` is kept as an attribute so tests and the app can read what is shown.
    """

    DEFAULT_CSS = """
    StatusLine {
        height: 1;  /* fixed: an auto height re-lays the screen out on every update */
        width: 1fr;
        padding: 0 1;
    }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.run_id = ""
        self.epoch: int | None = None

    def set_checkpoint(self, run_id: str, epoch: int | None, index: int, count: int,
                       metrics: dict[str, float], training: str = "") -> None:
        """``metrics``: train_loss, test_loss, train_acc, test_acc at ``epoch`` (NaN = none)."""
        self.run_id = run_id
        self.epoch = epoch
        if epoch is None:  # the run id is data, never markup
            self.update(Content(f"{run_id}  no checkpoints yet  {training}".rstrip()))
            return
        text = Content.assemble(
            (run_id, "bold"), "  epoch ", (str(epoch), "bold"), f" ({index + 1}/{count})  "
            f"loss {_fmt(metrics['train_loss'], '.3g')}/{_fmt(metrics['test_loss'], '.3g')}  "
            f"acc {_fmt(metrics['train_acc'], '.1%')}/{_fmt(metrics['test_acc'], '.1%')}",
            f"  {training}" if training else "")
        self.update(text)
