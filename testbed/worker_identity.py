"""Hostname callable for test workers: several Celery workers on one machine, told apart by name."""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    """``CT_TEST_WORKER`` (set per worker process by the test stack), else the machine's name."""
    return os.environ.get("CT_TEST_WORKER") or socket.getfqdn()
