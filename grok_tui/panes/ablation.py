"""Ablation pane: keep only some principal components of the embeddings and see what breaks.

Renders the "ablation" study: scalars keep, acc_before, acc_after, n_failures, n_rows;
table "failures" (a, b, true, predicted); grid "failures" [a, b] (1 = fails). The input
takes the 1-based components to keep ("1" or "1,2"); it is checked as you type (an error
shows under it) and Enter posts ``OptionsChanged(pane, {"keep": (1, 2)})`` when it is valid.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.content import Content
from textual.validation import ValidationResult, Validator
from textual.widgets import Input, Label, Static

from grok_engine.results import Grid, StudyResult, Table
from grok_tui.panes.base import StudyPane, fmt_pct
from grok_tui.widgets.heatmap import Heatmap
from grok_tui.widgets.result_table import ResultTable


def parse_components(text: str, n_components: int | None) -> tuple[int, ...]:
    """'1, 2' -> (1, 2): component numbers, sorted, without repeats, each in 1..n_components
    (any positive number when n_components is None). Raises ValueError with the reason."""
    parts = [s for s in text.replace(" ", ",").split(",") if s]
    if not parts:
        raise ValueError("enter the components to keep, e.g. 1 or 1,2")
    values = []
    for s in parts:
        if not s.isdigit():
            raise ValueError(f"{s!r} is not a component number")
        v = int(s)
        if v < 1 or (n_components is not None and v > n_components):
            allowed = f"1..{n_components}" if n_components is not None else "numbers from 1"
            raise ValueError(f"component {v} is out of range: allowed {allowed}")
        values.append(v)
    return tuple(sorted(set(values)))


class ComponentsValidator(Validator):
    def __init__(self, pane: "AblationPane") -> None:
        super().__init__()
        self.pane = pane

    def validate(self, value: str) -> ValidationResult:
        try:
            parse_components(value, self.pane.n_components)
        except ValueError as e:
            return self.failure(str(e))
        return self.success()


class KeepInput(Input):
    """The components to keep; Escape gives the keys back to the pane (digits switch panes)."""

    BINDINGS = [Binding("escape", "leave", "Stop editing")]

    def action_leave(self) -> None:
        pane = next((a for a in self.ancestors if isinstance(a, StudyPane)), None)
        if pane is not None:
            pane.focus()


class AblationPane(StudyPane):
    STUDY = "ablation"
    TITLE = "Ablation"
    KEY = "5"

    BINDINGS = [Binding("i", "edit_keep", "Edit kept components")]

    DEFAULT_CSS = """
    AblationPane #keep-row { height: 3; }
    AblationPane #keep-row Label { padding: 1 1 0 1; }
    AblationPane #keep { width: 16; }
    AblationPane #keep-error { padding: 1 1 0 1; color: $text-error; width: 1fr; }
    AblationPane #failures-table { width: auto; max-width: 50%; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.options = {"keep": (1,)}

    def compose(self) -> ComposeResult:
        with Horizontal(id="keep-row"):
            yield Label("keep PCs")
            yield KeepInput("1", id="keep", placeholder="1 or 1,2", validators=[ComponentsValidator(self)],
                        validate_on=["changed", "submitted"])
            yield Static("", id="keep-error")
        yield Static("waiting for a checkpoint", id="summary", classes="pane-summary")
        with Horizontal():
            yield ResultTable(id="failures-table")
            yield Heatmap(id="failures-map", empty_text="no failures map")

    @property
    def n_components(self) -> int | None:
        """How many components there are: one per token, the rows of the failures map."""
        grid = self.read().grid("failures")
        return None if grid is None else len(grid.row_labels)

    def render_result(self, result: StudyResult) -> None:
        r = self.read(result)
        keep = r.scalar("keep")
        names = ", ".join(f"PC{k}" for k in keep)
        self.set_summary(f"keeping {names}: accuracy {fmt_pct(r.scalar('acc_before'))} → "
                         f"{fmt_pct(r.scalar('acc_after'))} · {r.scalar('n_failures')} of {r.scalar('n_rows')} "
                         f"pairs fail")
        self.query_one("#failures-table", ResultTable).set_table(r.table("failures"))
        self.query_one("#failures-map", Heatmap).set_grid(r.grid("failures"))
        keep_input = self.query_one("#keep", Input)
        if not keep_input.has_focus:
            keep_input.value = ",".join(str(k) for k in keep)

    @on(Input.Changed, "#keep")
    def _changed(self, event: Input.Changed) -> None:
        self._show_validation(event.validation_result)

    @on(Input.Submitted, "#keep")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._show_validation(event.validation_result)
        if event.validation_result is not None and not event.validation_result.is_valid:
            return
        keep = parse_components(event.value, self.n_components)
        self.options = {**self.options, "keep": keep}
        self.post_message(self.OptionsChanged(self, dict(self.options)))
        self.query_one("#failures-table", ResultTable).focus()  # digits switch panes again

    def _show_validation(self, result: ValidationResult | None) -> None:
        error = "" if result is None or result.is_valid else "; ".join(result.failure_descriptions)
        self.query_one("#keep-error", Static).update(Content(error))

    def show_error(self, message: str) -> None:
        super().show_error(message)
        if self.is_mounted:
            self.query_one("#keep-error", Static).update(Content(message))

    def action_edit_keep(self) -> None:
        self.query_one("#keep", Input).focus()

    def default_export(self) -> Table | Grid | None:
        return self.read().table("failures")
