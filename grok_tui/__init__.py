"""grok_tui: the Textual explorer and the ``grok-tui`` command for grok_engine runs."""
