"""A bounded queue drained by one daemon thread, for work kept off a request path.

Producers never wait: what does not fit is counted as dropped. ``close`` hands the drain a
``CLOSED`` signal, so it finishes what it holds, and joins the thread.
"""

from __future__ import annotations

import enum
import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Signal(enum.Enum):
    """What the drain is handed instead of an item."""

    CLOSED = "closed"  # close() was called: finish and return


class BackgroundQueue(Generic[T]):
    """Items offered by any thread, taken by one drain function running on its own daemon thread."""

    def __init__(self, name: str, capacity: int) -> None:
        self.name = name
        self.dropped = 0  # units (records, rows) offered while the queue was full
        self._items: queue.Queue[T | Signal] = queue.Queue(maxsize=capacity)
        self._thread: threading.Thread | None = None

    def start(self, drain: Callable[[], None]) -> None:
        """Run ``drain`` on a daemon thread; it takes items until it is handed ``Signal.CLOSED``."""
        self._thread = threading.Thread(target=drain, name=self.name, daemon=True)
        self._thread.start()

    def offer(self, item: T, units: int) -> bool:
        """Queue ``item`` without waiting; when the queue is full, count its ``units`` as dropped."""
        try:
            self._items.put_nowait(item)
        except queue.Full:
            self.dropped += units
            return False
        return True

    def take(self) -> T | Signal:
        """The next item, waiting until one comes."""
        return self._items.get()

    def take_ready(self) -> list[T | Signal]:
        """Everything queued now, without waiting (a drain that wakes on a timer takes its items
        this way: one wake-up per batch instead of one per item, each costing the producers the
        interpreter lock)."""
        ready: list[T | Signal] = []
        while True:
            try:
                ready.append(self._items.get_nowait())
            except queue.Empty:
                return ready

    def close(self, timeout: float = 60.0) -> None:
        """Let the drain finish what is queued, and wait for its thread (no-op if never started)."""
        if self._thread is None:
            return
        self._items.put(Signal.CLOSED)
        self._thread.join(timeout=timeout)
        self._thread = None
