"""The app keeps full garbage collections short: the Footer lets go of its old keys, the
heap is frozen once the engine is warm, a replaced run screen is collected, and everything
is thawed when the app exits."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from tests.fixtures import make_tiny_run, settle

from grok_tui.app import GrokApp
from grok_tui.widgets.footer import Footer

pytestmark = pytest.mark.anyio


async def test_pane_switches_keep_no_removed_footer_keys(runs):
    app = GrokApp("tiny", runs)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        keys = [pane.KEY for pane in app.screen.panes.values()]
        for key in keys * 3:  # every switch moves the focus: the footer recomposes
            await pilot.press(key)
        await settle(app, pilot)
        footer = app.screen.query_one(Footer)
        watchers = getattr(footer, "__watchers")["compact"]
        assert watchers, "the footer's keys are bound to Footer.compact"
        assert all(node.is_attached for node, _ in watchers)
        assert len(watchers) <= len(footer.children)


async def test_heap_frozen_when_warm_and_thawed_on_exit(runs):
    app = GrokApp("tiny", runs)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0


async def test_a_replaced_run_screen_is_collected(runs):
    app = GrokApp("tiny", runs)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        first = weakref.ref(app.screen)
        assert gc.get_freeze_count() > 0  # the first run screen is in the frozen heap
        make_tiny_run(runs, "other", train=False)
        app.open_run_id("other")
        await settle(app, pilot)
        assert app.screen.run.id == "other"
        for _ in range(50):  # the refreeze runs once the old screen is removed
            await asyncio.sleep(0.1)
            if first() is None:
                break
        assert first() is None
        assert gc.get_freeze_count() > 0
