"""The command palette (Ctrl+P): every action of the app, by name.

Commands call the same ``action_*`` methods as the keys, on the screen the palette was
opened over, so a key and its command cannot do different things.
"""

from __future__ import annotations

from functools import partial
from typing import Iterator

from textual.command import DiscoveryHit, Hit, Hits, Provider


class GrokCommands(Provider):
    """Switch pane, navigate checkpoints, export, train, open or create a run, help."""

    def _commands(self) -> Iterator[tuple[str, str, object, str]]:
        """(name, action, namespace node, help text)."""
        from grok_tui.screens.run import RunScreen

        screen, app = self.screen, self.app
        if isinstance(screen, RunScreen):
            for study, pane in screen.panes.items():
                yield (f"Show pane: {pane.TITLE}", f"show_pane('{study}')", screen,
                       f"key {pane.KEY}")
            yield ("Next checkpoint", "step(1)", screen, "right / l")
            yield ("Previous checkpoint", "step(-1)", screen, "left / h")
            yield ("Ten checkpoints forward", "step(10)", screen, "]")
            yield ("Ten checkpoints back", "step(-10)", screen, "[")
            yield ("First checkpoint", "select(0)", screen, "Home")
            yield ("Last checkpoint", "select(-1)", screen, "End")
            yield ("Go to epoch…", "goto_epoch", screen, "g")
            yield ("Export the focused pane to CSV", "export_pane", screen, "e")
            yield ("Export every study of this checkpoint", "export_all", screen, "E")
            yield ("Stop training", "stop_training", screen, "s")
            yield ("Resume training", "resume_training", screen, "r")
            yield ("Continue training for more epochs…", "continue_training", screen, "c")
        yield ("New run…", "new_run", app, "n")
        yield ("Open run…", "open_run", app, "o")
        yield ("Help: keys", "help", app, "? / F1")

    def _hit_command(self, action: str, node: object):
        return partial(self.app.run_action, action, node)

    async def discover(self) -> Hits:
        for name, action, node, help_text in self._commands():
            yield DiscoveryHit(name, self._hit_command(action, node), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, action, node, help_text in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), self._hit_command(action, node),
                          text=name, help=help_text)
