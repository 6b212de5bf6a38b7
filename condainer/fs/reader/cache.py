"""Bounded, locked LRU caches for decompressed blocks, metadata blocks, inodes and listings.

The kernel keeps file pages and attributes; these caches only spare re-decompressing a block that
several reads share and re-parsing the metadata of a working set.
"""

from __future__ import annotations

import collections
import threading
from typing import Any


class LRUCache:
    """A thread-safe LRU map bounded by a total weight (bytes for blocks, 1 per item otherwise)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.weight = 0
        self.hits = 0
        self.misses = 0
        self._data: collections.OrderedDict = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            try:
                value = self._data[key]
            except KeyError:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return value[0]

    def put(self, key: Any, value: Any, weight: int = 1) -> None:
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self.weight -= old[1]
            self._data[key] = (value, weight)
            self.weight += weight
            while self.weight > self.capacity and len(self._data) > 1:
                _, (_, w) = self._data.popitem(last=False)
                self.weight -= w

    def __len__(self) -> int:
        return len(self._data)
