"""Textual's Footer without its leak of old key widgets.

Textual 8's ``Footer.compose`` data-binds every new ``FooterKey`` to ``Footer.compact``; the
binding adds ``(key, setter)`` to the footer's watcher list, and Textual prunes that list of
removed keys only when ``compact`` changes, which in this app it never does. The footer
recomposes on every focus change (each pane switch), so every switch kept ~17 dead keys
alive with their styles and render caches: after 20 switches about 100,000 more objects for
each full garbage collection to walk (270-360 ms pauses while training, the tail of the key
latency). This footer drops the dead keys' watchers after each recompose.
"""

from __future__ import annotations

from textual.widgets import Footer as TextualFooter


class Footer(TextualFooter):
    """A drop-in ``textual.widgets.Footer`` that does not keep its removed keys alive."""

    async def recompose(self) -> None:
        await super().recompose()
        # Reactive._watch stores the list under the literal attribute name "__watchers".
        watchers: dict[str, list] = getattr(self, "__watchers", {})
        for watcher_list in watchers.values():
            watcher_list[:] = [(node, callback) for node, callback in watcher_list
                               if not (node._closing or node._closed)]
