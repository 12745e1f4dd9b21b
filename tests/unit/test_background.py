"""The background queue: producers never wait, overflow is counted, close lets the drain finish."""

from __future__ import annotations

import threading

from include.ct.background import BackgroundQueue, Signal


def test_a_full_queue_counts_what_it_drops_and_close_drains_the_rest() -> None:
    items: BackgroundQueue[list[int]] = BackgroundQueue("test-drain", capacity=2)
    assert items.offer([1, 2], units=2) and items.offer([3], units=1)
    assert not items.offer([4, 5, 6], units=3)  # nobody drains yet: full
    assert items.dropped == 3

    taken: list[int] = []
    names: list[str] = []

    def drain() -> None:
        names.append(threading.current_thread().name)
        while not isinstance(batch := items.take(), Signal):
            taken.extend(batch)

    items.start(drain)
    items.close()
    assert taken == [1, 2, 3] and names == ["test-drain"]
    items.close()  # a second close is a no-op


def test_close_without_a_started_drain_is_a_no_op() -> None:
    items: BackgroundQueue[int] = BackgroundQueue("test-unstarted", capacity=1)
    items.close()  # never started: nothing to stop, nothing queued
    assert items.take_ready() == []


def test_take_ready_returns_everything_queued_without_waiting() -> None:
    items: BackgroundQueue[int] = BackgroundQueue("test-ready", capacity=10)
    assert items.take_ready() == []
    for item in (1, 2, 3):
        items.offer(item, units=1)
    assert items.take_ready() == [1, 2, 3]
    assert items.take_ready() == []
