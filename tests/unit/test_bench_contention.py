"""bench.contention's pause: a component and its children stop while the floor runs, then go on."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest

from bench.contention import paused

PARENT_WITH_CHILD = (
    "import subprocess, sys, time; "
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
    "print(child.pid, flush=True); time.sleep(60)"
)


def wait_for_status(proc: psutil.Process, wanted: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while (status := proc.status()) != wanted and time.monotonic() < deadline:
        time.sleep(0.02)
    return status


def test_paused_stops_the_tree_and_resumes_it() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT_WITH_CHILD], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = psutil.Process(int(parent.stdout.readline()))
        tree = [psutil.Process(parent.pid), child]
        with paused([parent.pid]):
            assert [wait_for_status(p, psutil.STATUS_STOPPED) for p in tree] == [psutil.STATUS_STOPPED] * 2
        assert [wait_for_status(p, psutil.STATUS_SLEEPING) for p in tree] == [psutil.STATUS_SLEEPING] * 2
    finally:
        for proc in psutil.Process(parent.pid).children(recursive=True):
            proc.kill()
        parent.kill()
        parent.wait()


def test_paused_resumes_when_the_block_fails() -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with pytest.raises(RuntimeError), paused([sleeper.pid]):
            raise RuntimeError("the floor failed")
        assert wait_for_status(psutil.Process(sleeper.pid), psutil.STATUS_SLEEPING) == psutil.STATUS_SLEEPING
    finally:
        sleeper.kill()
        sleeper.wait()
