"""The new-run form: every field of RunConfig, prefilled with the notebook's experiment,
validated inline as it is typed (the dataclasses' own GrokError message next to the field).

Enter (in any input, or on the focused Start button) starts the run; with no runs yet the
app opens this form, so the notebook's default experiment starts with one key.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from grok_engine.config import (ACT_FNS, DEVICES, NORMALIZATIONS, TASKS, ModelConfig, RunConfig,
                                TaskConfig, TrainConfig)
from grok_engine.errors import GrokError
from grok_tui.widgets.footer import Footer

SECTIONS: tuple[tuple[str, type], ...] = (("task", TaskConfig), ("model", ModelConfig),
                                          ("train", TrainConfig))
CHOICES = {"task": TASKS, "act_fn": ACT_FNS, "normalization": NORMALIZATIONS, "device": DEVICES}
FIELD_IN_MESSAGE = re.compile(r"^(\w+)=")


@dataclasses.dataclass
class NewRunRequest:
    """What the form returns: a validated config and an optional run id."""

    config: RunConfig
    run_id: str | None


def _parse(name: str, kind: str, text: str) -> Any:
    text = text.strip()
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            try:
                as_float = float(text)  # 1e3 is a fine way to write 1000
            except ValueError:
                raise GrokError(f"{name}={text!r} is not an integer") from None
            if not as_float.is_integer():
                raise GrokError(f"{name}={text!r} is not an integer") from None
            return int(as_float)
    if kind == "float":
        try:
            return float(text)
        except ValueError:
            raise GrokError(f"{name}={text!r} is not a number") from None
    return text


def _field_named(message: str, names: Any) -> str | None:
    """The field a GrokError message starts with ("p=12 is not prime: ..." -> "p")."""
    match = FIELD_IN_MESSAGE.match(message)
    return match.group(1) if match and match.group(1) in names else None


def check_section(klass: type, values: dict[str, Any]) -> tuple[dict[str, str], Any]:
    """Validate one section's parsed ``values`` (fields that failed to parse are absent
    and take their defaults): (field -> message, the section's config or None).

    Each field is checked on its own first, so that several bad fields are all marked;
    a field that fails only against another field's default (task mod_div with the
    default p=10) is checked again with the form's values of the fields that are valid
    on their own, and kept only if it still fails. A message names the field it is
    about ("p=12 is not prime: task mod_div needs a prime p" marks p).
    """
    fields = [f.name for f in dataclasses.fields(klass)]
    alone: dict[str, str] = {}
    for name, value in values.items():
        try:
            klass(**{name: value})
        except GrokError as exc:
            alone[name] = str(exc)
    valid = {n: v for n, v in values.items() if n not in alone}
    errors: dict[str, str] = {}
    for name, message in alone.items():
        try:
            klass(**{**valid, name: values[name]})
            continue  # fine with the form's other values
        except GrokError as exc:
            message = str(exc)
        about = _field_named(message, fields) or name
        if about == name or about in valid:  # not about another field's default
            errors.setdefault(about, message)
    try:  # every field together (mod_div needs a prime p, the split needs both sides)
        return errors, klass(**values)
    except (GrokError, TypeError) as exc:
        about = _field_named(str(exc), fields)
        if about in values:
            errors.setdefault(about, str(exc))
        elif about is None and not errors and len(values) == len(fields):
            errors[fields[0]] = str(exc)
        return errors, None


class NewRunScreen(Screen):
    """A form with one row per config field; returns a NewRunRequest through dismiss."""

    HELP_NAME = "New run"
    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "start", "Start")]

    def __init__(self, config: RunConfig | None = None, first_run: bool = False) -> None:
        super().__init__()
        self.config = config or RunConfig()
        self.first_run = first_run
        self.errors: dict[str, str] = {}

    def compose(self) -> ComposeResult:
        intro = ("No runs yet. Enter starts the notebook's experiment (integer addition, p=10); "
                 "change any field first if you like." if self.first_run else
                 "A new run. Enter starts it; Escape goes back.")
        with Vertical(id="new-run"):
            yield Static(intro, id="new-run-intro")
            with VerticalScroll(id="form"):
                with Horizontal(classes="form-row"):
                    yield Label("run id", classes="form-label")
                    yield Input("", placeholder="(automatic)", id="field-run_id",
                                classes="form-input")
                    yield Static("", classes="field-error")
                for section, klass in SECTIONS:
                    yield Label(section, classes="form-section")
                    values = getattr(self.config, section)
                    for f in dataclasses.fields(klass):
                        value = getattr(values, f.name)
                        with Horizontal(classes="form-row"):
                            yield Label(f.name, classes="form-label")
                            if f.name in CHOICES:
                                yield Select([(c, c) for c in CHOICES[f.name]], value=value,
                                             allow_blank=False, id=f"field-{f.name}",
                                             classes="form-input")
                            elif f.type == "bool":
                                yield Checkbox("", value=value, id=f"field-{f.name}",
                                               classes="form-input")
                            else:
                                yield Input(str(value), id=f"field-{f.name}", classes="form-input",
                                            select_on_focus=False)
                            yield Static("", id=f"error-{f.name}", classes="field-error")
            yield Button("Start (Enter)", id="start", variant="primary")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#new-run").border_title = "New run"
        self.query_one("#start", Button).focus()

    # -- validation ----------------------------------------------------------------------
    def _value(self, name: str, kind: str) -> Any:
        widget = self.query_one(f"#field-{name}")
        if isinstance(widget, (Select, Checkbox)):
            return widget.value
        return _parse(name, kind, widget.value)

    def validate(self) -> RunConfig | None:
        """Check every field; mark each bad one with its message. The config, or None."""
        errors: dict[str, str] = {}
        parts: dict[str, Any] = {}
        for section, klass in SECTIONS:
            values: dict[str, Any] = {}
            for f in dataclasses.fields(klass):
                try:
                    values[f.name] = self._value(f.name, f.type)
                except GrokError as exc:
                    errors[f.name] = str(exc)
            section_errors, parts[section] = check_section(klass, values)
            for name, message in section_errors.items():
                errors.setdefault(name, message)
        self.errors = errors
        for section, klass in SECTIONS:
            for f in dataclasses.fields(klass):
                message = errors.get(f.name, "")
                self.query_one(f"#error-{f.name}", Static).update(Content(message))  # quotes the input
                self.query_one(f"#field-{f.name}").set_class(bool(message), "-invalid")
        if errors:
            return None
        return RunConfig(**parts)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id != "field-run_id":
            self.validate()

    def on_select_changed(self, event: Select.Changed) -> None:
        self.validate()

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        self.validate()

    # -- starting ------------------------------------------------------------------------
    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_start()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_start()

    def action_start(self) -> None:
        config = self.validate()
        if config is None:
            first = next(iter(self.errors))
            self.query_one(f"#field-{first}").focus()
            self.notify(f"{len(self.errors)} field(s) need fixing: {self.errors[first]}",
                        severity="error")
            return
        run_id = self.query_one("#field-run_id", Input).value.strip() or None
        self.dismiss(NewRunRequest(config, run_id))

    def action_cancel(self) -> None:
        self.dismiss(None)
