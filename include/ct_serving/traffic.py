"""Per-version request figures (the guardrails online validation reads) and canary routing."""

from __future__ import annotations

import random
import threading
import zlib
from collections import deque
from collections.abc import Sequence
from typing import Any

LATENCY_WINDOW = 4096  # the most recent predictions whose latency makes up p99


class VersionStats:
    """Requests, failures and recent latencies of one model version in this process."""

    def __init__(self, role: str) -> None:
        self.role = role  # champion | challenger
        self.requests = 0
        self.errors = 0
        self.requests_at_share = 0  # since the canary share last changed
        self.share: float | None = None
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._lock = threading.Lock()  # the event loop and the shadow thread both record

    def record(self, milliseconds: float, *, ok: bool) -> None:
        with self._lock:
            self.requests += 1
            self.requests_at_share += 1
            if not ok:
                self.errors += 1
            self._latencies.append(milliseconds)

    def at_share(self, share: float | None) -> None:
        """Restart the per-step count when the share this version gets changes."""
        if share != self.share:
            self.share = share
            self.requests_at_share = 0

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            latencies = sorted(self._latencies)
        p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else None
        p50 = latencies[len(latencies) // 2] if latencies else None
        return {
            "role": self.role,
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.errors / self.requests if self.requests else 0.0,
            "requests_at_share": self.requests_at_share,
            "p50_ms": round(p50, 3) if p50 is not None else None,
            "p99_ms": round(p99, 3) if p99 is not None else None,
        }


def routes_to_challenger(share: float, ids: Sequence[str] | None) -> bool:
    """Whether a canary request goes to the challenger: sticky by the request's first id when it
    has ids (the same client id always lands on the same side at a given share), random otherwise."""
    if ids:
        bucket = zlib.crc32(ids[0].encode()) % 10_000
        return bucket < share * 10_000
    return random.random() < share
