"""``python -m grok_tui.cli``: the console script ``grok-tui``."""

import os

from grok_tui.cli import entry

os.environ.setdefault("PYTHONUNBUFFERED", "1")
entry()
