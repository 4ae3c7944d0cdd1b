"""Study panes, one module each; PANE_CLASSES (in grok_tui/panes/registry.py) lists them in order."""
