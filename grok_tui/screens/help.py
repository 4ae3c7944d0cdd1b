"""The help screen (`?`, F1): every key of the focused pane, the screen and the app.

Built from the bindings themselves, so it cannot drift from what the keys do.
"""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Static


def binding_rows(app: App, sections: list[tuple[str, list[Binding]]]) -> list[tuple[str, str, str]]:
    """(section, keys, description) per action; several keys of one action are joined."""
    rows: list[tuple[str, str, str]] = []
    seen: set[tuple[str, str]] = set()
    for section, bindings in sections:
        merged: dict[str, tuple[list[str], str]] = {}
        for binding in bindings:
            if binding.action in ("", "noop") or (section, binding.action) in seen:
                continue
            keys, description = merged.setdefault(binding.action, ([], binding.description))
            for key in binding.key.split(","):
                shown = app.get_key_display(Binding(key.strip(), binding.action))
                if shown not in keys:
                    keys.append(shown)
        for action, (keys, description) in merged.items():
            seen.add((section, action))
            rows.append((section, " ".join(keys), description or action))
    return rows


def collect_sections(screen: Screen, pane=None) -> list[tuple[str, list[Binding]]]:
    """Bindings of ``pane`` (the visible study pane), then of the focused widget's chain."""
    sections: list[tuple[str, list[Binding]]] = []
    if pane is not None:
        sections.append((f"{pane.TITLE} pane", [b for bl in pane._bindings.key_to_bindings.values()
                                               for b in bl]))
    by_node: dict[int, tuple[str, list[Binding]]] = {}
    for active in screen.active_bindings.values():
        node = active.node
        if node is pane:  # listed first, under its title
            continue
        if isinstance(node, App):
            name = "App"
        elif isinstance(node, Screen):
            name = getattr(node, "HELP_NAME", type(node).__name__)
        else:
            name = getattr(node, "TITLE", "") or type(node).__name__
        by_node.setdefault(id(node), (name, []))[1].append(active.binding)
    ordered = sorted(by_node.values(), key=lambda s: (s[0] == "App", 0))
    names = {s[0] for s in sections}
    sections.extend(s for s in ordered if s[0] not in names)
    return sections


class HelpScreen(ModalScreen):
    """A table of keys; Escape, q, ? or F1 closes it."""

    HELP_NAME = "Help"
    BINDINGS = [Binding("escape,q,question_mark,f1", "dismiss", "Close")]

    def __init__(self, rows: list[tuple[str, str, str]]) -> None:
        super().__init__()
        self.rows = rows

    def compose(self) -> ComposeResult:
        with Vertical(id="help"):
            yield DataTable(id="help-table", cursor_type="row", zebra_stripes=True)
            yield Static("Esc closes  ·  Ctrl+P: command palette", classes="prompt-hint")

    def on_mount(self) -> None:
        self.query_one("#help").border_title = "Keys"
        table = self.query_one(DataTable)
        table.add_columns("where", "keys", "does")
        for row in self.rows:
            table.add_row(*row)
        table.focus()

    async def action_dismiss(self, result=None) -> None:
        self.dismiss(result)
