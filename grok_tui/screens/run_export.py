"""The run screen's export keys: ``e`` writes the focused table or grid, ``E`` every study
of the selected checkpoint, as CSV through the screen's RunSession (grok_engine.export
names the files); a prompt proposes the path, a toast says what was written."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from textual import work

from grok_engine.paths import export_file, export_folder
from grok_engine.session import describe
from grok_tui.messages import ExportDone
from grok_tui.screens.prompts import ExportScreen

class ExportKeys:
    """Mixed into RunScreen (which binds ``e``/``E``): needs ``session``, ``run``, ``epoch``
    and ``current_pane``."""

    session: Any
    run: Any
    epoch: int | None
    current_pane: Any

    def action_export_pane(self) -> None:
        pane, epoch = self.current_pane, self.epoch
        target = pane.export_target()
        if target is None or epoch is None:
            self.notify(f"{pane.TITLE}: nothing to export yet", severity="warning")
            return
        from grok_engine.export import export_file_name

        proposal = export_file(self.run.id, export_file_name(pane.STUDY, target, epoch))
        self._ask_export(f"Export {target.name} to CSV", proposal, "Enter writes, Esc cancels",
                         lambda path: [self.session.export_item(target, path)])

    def action_export_all(self) -> None:
        epoch = self.epoch
        if epoch is None:
            self.notify("no checkpoints yet", severity="warning")
            return
        self._ask_export(f"Export every study at epoch {epoch}", export_folder(self.run.id, epoch),
                         "a folder; Enter writes, Esc cancels",
                         lambda folder: self.session.export_checkpoint(epoch, folder))

    def _ask_export(self, title: str, proposal: Path, hint: str, write: Callable[[str], list[Path]]) -> None:
        def go(path: str | None) -> None:
            if path:
                self.write_export(lambda: write(path))

        self.app.push_screen(ExportScreen(title, str(proposal), hint), go)

    @work(thread=True, group="export", exit_on_error=False)
    def write_export(self, write: Callable[[], list[Path]]) -> None:
        try:
            self.post_message(ExportDone(write()))
        except Exception as exc:  # noqa: BLE001 - a toast, never a traceback
            self.post_message(ExportDone([], describe(exc)))

    def on_export_done(self, message: ExportDone) -> None:
        if message.error:
            self.notify(message.error, severity="error", title="export failed")
        elif len(message.paths) == 1:
            self.notify(f"wrote {message.paths[0]}", title="export")
        else:
            folder = message.paths[0].parent if message.paths else "?"
            self.notify(f"wrote {len(message.paths)} files in {folder}", title="export")
