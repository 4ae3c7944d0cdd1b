"""Byte-bounded LRU caches for checkpoint contexts and study results.

A Context at p=113 holds ~65 MB of activations at '=' (logits, pre/post, resid_mid), and
the probe adds a float64 copy of the MLP activations (~52 MB) on first use, so a cache
bounded by COUNT grows with p and with the panes visited: four p=113 contexts were most of
the 1.28 GB the app held after 20 minutes (issue 12). These caches are bounded by BYTES,
measured after each use (a context grows when a study builds its lazy parts), and always
keep the newest entry, whatever its size.

Not thread-safe: the session uses them under its engine lock only.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Generic, Hashable, TypeVar

import numpy as np

V = TypeVar("V")


def nbytes(obj: Any, _seen: set[int] | None = None) -> int:
    """Bytes held by the arrays and tensors reachable from ``obj`` through dicts, lists,
    tuples, dataclass-like ``__dict__``s and ``__slots__``; each array counted once.
    Strings and numbers are ignored (small next to the arrays)."""
    seen = set() if _seen is None else _seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if type(obj).__module__.startswith("torch") and hasattr(obj, "element_size"):
        return int(obj.element_size() * obj.nelement())
    if isinstance(obj, dict):
        return sum(nbytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple, set, frozenset)):
        return sum(nbytes(v, seen) for v in obj)
    if isinstance(obj, (str, bytes, int, float, bool, type(None))):
        return 0
    total = 0
    if hasattr(obj, "__dict__"):
        total += sum(nbytes(v, seen) for v in vars(obj).values())
    for slot in getattr(type(obj), "__slots__", ()):
        total += nbytes(getattr(obj, slot, None), seen)
    return total


class ByteLRU(Generic[V]):
    """An LRU of values whose total size (``size_of``, default :func:`nbytes`) stays at or
    under ``max_bytes``; the most recently used entry is kept even when it alone is over,
    and so is the entry named by ``pinned`` (the selected checkpoint's: a prefetch of its
    neighbours never pushes it out).

    >>> c = ByteLRU(max_bytes=100)
    >>> c.put("a", np.zeros(10)); c.put("b", np.zeros(10))  # 80 bytes each
    >>> list(c.keys()), c.total_bytes
    (['b'], 80)
    """

    def __init__(self, max_bytes: int, size_of: Callable[[V], int] = nbytes) -> None:
        self.max_bytes = int(max_bytes)
        self._size_of = size_of
        self._items: OrderedDict[Hashable, V] = OrderedDict()
        self._sizes: dict[Hashable, int] = {}
        self.pinned: Hashable | None = None
        self.evictions = 0  # entries pushed out to fit, so far

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def keys(self) -> list[Hashable]:
        return list(self._items)

    @property
    def total_bytes(self) -> int:
        return sum(self._sizes.values())

    def get(self, key: Hashable) -> V | None:
        """The value (now the most recent) or None."""
        if key not in self._items:
            return None
        self._items.move_to_end(key)
        return self._items[key]

    def put(self, key: Hashable, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        self.remeasure(key)

    def remeasure(self, key: Hashable) -> None:
        """Measure ``key``'s value again (it grew) and evict the oldest entries to fit."""
        if key in self._items:
            self._sizes[key] = self._size_of(self._items[key])
        self._evict()

    def pop(self, key: Hashable) -> V | None:
        self._sizes.pop(key, None)
        return self._items.pop(key, None)

    def drop(self, keep: Callable[[Hashable], bool]) -> None:
        """Remove every entry whose key ``keep`` refuses."""
        for key in [k for k in self._items if not keep(k)]:
            self.pop(key)

    def clear(self) -> None:
        self._items.clear()
        self._sizes.clear()

    def pin(self, key: Hashable | None) -> None:
        """Keep ``key`` (None: nothing) whatever else comes in."""
        self.pinned = key
        self._evict()

    def _evict(self) -> None:
        newest = next(reversed(self._items), None)
        while self.total_bytes > self.max_bytes:
            oldest = next((k for k in self._items if k != self.pinned and k != newest), None)
            if oldest is None:
                return
            self.pop(oldest)
            self.evictions += 1
