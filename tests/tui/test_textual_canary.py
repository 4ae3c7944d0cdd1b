"""Canary: Textual 8's Footer still leaks its removed keys (grok_tui/widgets/footer.py works
around it). When this test fails, Textual has fixed the leak upstream: delete
grok_tui/widgets/footer.py, import textual.widgets.Footer instead, and drop this test.

The leak: ``Footer.compose`` data-binds each new FooterKey to ``Footer.compact``, which adds
``(key, setter)`` to the footer's ``__watchers["compact"]``; the list is pruned of removed
keys only when ``compact`` changes. Every recompose (a focus change) leaves the old keys in
it. The same app with the project's Footer keeps only attached keys."""

from __future__ import annotations

import pytest
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Button
from textual.widgets import Footer as TextualFooter

from grok_tui.widgets.footer import Footer as ProjectFooter

pytestmark = pytest.mark.anyio


class Left(Button):
    BINDINGS = [Binding("a", "noop", "Left key")]


class Right(Button):
    BINDINGS = [Binding("b", "noop", "Right key")]


def footer_app(footer_class: type) -> App:
    class Demo(App):
        def compose(self) -> ComposeResult:
            yield Left("left")
            yield Right("right")
            yield footer_class()

    return Demo()


async def dead_compact_watchers(footer_class: type) -> tuple[int, int]:
    """(watchers of removed keys, watchers in all) after focus moved 6 times."""
    app = footer_app(footer_class)
    async with app.run_test(size=(60, 10)) as pilot:
        for _ in range(6):  # each focus change makes the footer recompose its keys
            await pilot.press("tab")
            await pilot.pause()
        footer = app.query_one(footer_class)
        watchers = getattr(footer, "__watchers")["compact"]
        return sum(not node.is_attached for node, _ in watchers), len(watchers)


async def test_textual_footer_still_keeps_removed_keys():
    dead, total = await dead_compact_watchers(TextualFooter)
    assert dead > 0, ("Textual's Footer no longer keeps removed keys bound to Footer.compact: "
                      "the leak is fixed upstream, remove grok_tui/widgets/footer.py")
    assert total > dead


async def test_the_project_footer_keeps_only_attached_keys():
    dead, total = await dead_compact_watchers(ProjectFooter)
    assert dead == 0 and total > 0
