"""Ports for test servers: never the same twice, never one the kernel hands to connections."""

from __future__ import annotations

import socket

from taskpilot.runtime.servers import _ephemeral_low, free_port


def test_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    ports = [free_port() for _ in range(300)]

    assert len(set(ports)) == len(ports)  # bind(0) alone can hand out one port twice
    low = _ephemeral_low()
    if low is not None:  # Linux: where no outgoing connection can take them meanwhile
        assert all(1024 <= p < low for p in ports)
    for port in ports[:20]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
