"""Small modals that ask for one value: an epoch to go to, how many more epochs to train,
where to export. Each returns its value through ``dismiss`` (None when cancelled)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static


class PromptScreen(ModalScreen):
    """A question, an input prefilled with a proposal, an inline error line.

    Enter accepts (when :meth:`parse` accepts the text), Escape cancels.
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    # A number's proposal is replaced by what is typed (it was appended to: "1000" became
    # "10003000"); a path's is edited in place.
    SELECT_ON_FOCUS = False

    def __init__(self, title: str, value: str, hint: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.value = value
        self.hint = hint

    def compose(self) -> ComposeResult:
        with Vertical(classes="prompt"):
            yield Label(self.title_text, classes="prompt-title")
            yield Input(self.value, id="prompt-input", select_on_focus=self.SELECT_ON_FOCUS)
            yield Static(self.hint, classes="prompt-hint")
            yield Static("", id="prompt-error", classes="field-error")

    def on_mount(self) -> None:
        self.query_one(Vertical).border_title = self.title_text
        self.query_one(Input).focus()

    def parse(self, text: str):
        """The value to return for ``text``; raise ValueError with a message to refuse it."""
        return text

    def check(self, text: str) -> tuple[bool, object]:
        """(True, value) when :meth:`parse` accepts ``text``, else (False, None); the error
        line shows the reason, or nothing once the text is fixed."""
        try:
            value = self.parse(text.strip())
        except ValueError as exc:
            self.query_one("#prompt-error", Static).update(Content(str(exc)))  # quotes the input
            return False, None
        self.query_one("#prompt-error", Static).update("")
        return True, value

    def on_input_changed(self, event: Input.Changed) -> None:
        # Only clear a shown error as the text changes (a half-typed value is not wrong
        # yet); Enter checks again and says why it refuses.
        if str(self.query_one("#prompt-error", Static).render()):
            self.check(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        ok, value = self.check(event.value)
        if ok:
            self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ExportScreen(PromptScreen):
    """Where to write a CSV (a file for `e`, a folder for `E`)."""

    def parse(self, text: str) -> str:
        if not text:
            raise ValueError("give a path")
        return text


class GotoEpochScreen(PromptScreen):
    """An epoch; the app moves to the nearest checkpoint."""

    SELECT_ON_FOCUS = True

    def __init__(self, epochs: list[int], current: int) -> None:
        shown = f"{epochs[0]} .. {epochs[-1]}" if epochs else "none"
        super().__init__("Go to epoch", str(current), f"checkpoints: {shown} (nearest is taken)")
        self.epochs = epochs

    def parse(self, text: str) -> int:
        try:
            epoch = int(text)
        except ValueError:
            raise ValueError(f"epoch={text!r} is not an integer") from None
        if epoch < 0:
            raise ValueError(f"epoch={epoch} is out of range: allowed >= 0")
        return epoch


class EpochsPrompt(PromptScreen):
    """How many more epochs to train."""

    SELECT_ON_FOCUS = True

    def __init__(self, done: int, default: int = 1000) -> None:
        super().__init__("Continue training", str(default),
                         f"more epochs after epoch {done}")

    def parse(self, text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise ValueError(f"epochs={text!r} is not an integer") from None
        if n < 1:
            raise ValueError(f"epochs={n} is out of range: allowed >= 1")
        return n
