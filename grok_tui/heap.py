"""Short garbage collections for a long-lived app that imports torch.

About 400,000 objects (the modules, classes and functions of torch, transformer_lens,
scikit-learn and textual) live as long as the process, yet every full collection walked
them all: a 270-360 ms stop of the UI thread every second or so while training streams
metrics, which was the tail of the key latency. ``freeze`` moves everything alive out of
the collector's reach once the imports are done; a full collection then walks only what the
app made since (~15 ms here). A frozen object is never collected, so whatever was alive at
the freeze and is let go later (the screen of a run that another run replaces, with its
activation caches) needs ``refreeze``; ``thaw`` gives everything back when the app exits
(several apps in one process: the tests).
"""

from __future__ import annotations

import gc


def freeze() -> None:
    """Collect first (start-up garbage stays collectable), then freeze what is alive."""
    gc.collect()
    gc.freeze()


def refreeze() -> None:
    """Something frozen was let go: thaw, collect it, freeze the rest again (~0.3 s)."""
    gc.unfreeze()
    freeze()


def thaw() -> None:
    """Make every frozen object collectable again."""
    gc.unfreeze()
