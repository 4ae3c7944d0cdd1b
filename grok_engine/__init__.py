"""grok_engine: tasks, a hooked transformer, a fast full-batch trainer, a run store and the
notebook's analyses, batched.

This package never imports textual, rich or plotext. Importing it is cheap: torch and
transformer_lens load only when a module that needs them is imported.
"""

from grok_engine.errors import GrokError

__all__ = ["GrokError"]
