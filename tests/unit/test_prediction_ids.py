"""Prediction ids made for records sent without ``ids``: unique in a process and across a fork."""

from __future__ import annotations

import os

from include.ct.monitoring.prediction_log import new_prediction_ids


def test_ids_never_repeat_in_a_process() -> None:
    ids = new_prediction_ids(1000) + new_prediction_ids(1)
    assert len(set(ids)) == 1001


def test_a_forked_child_draws_its_own_prefix() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its first id and leave at once
        os.write(write, new_prediction_ids(1)[0].encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 200).decode()
    os.close(read)
    parent = new_prediction_ids(1)[0]
    assert child.split("-")[0] != parent.split("-")[0]
