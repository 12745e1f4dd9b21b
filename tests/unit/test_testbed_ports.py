"""The test and bench harness hands out loopback ports that servers bind later."""

from __future__ import annotations

import socket

from testbed.services import free_port


def test_free_port_never_hands_out_the_same_port_twice() -> None:
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)


def test_a_free_port_can_be_bound_on_loopback() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
