"""API processes listen on their own sockets, and never share a port with another platform."""

from __future__ import annotations

import errno
import socket

import pytest

from broker.api.processes import ApiProcesses, reuse_port_socket
from ops.kafka.broker import free_port


def test_processes_each_get_a_socket_on_the_same_port() -> None:
    port = free_port()
    first = reuse_port_socket("127.0.0.1", port)
    second = reuse_port_socket("127.0.0.1", port)  # what the second API process does
    try:
        assert first.getsockname() == second.getsockname() == ("127.0.0.1", port)
    finally:
        first.close()
        second.close()


def test_a_port_another_platform_listens_on_is_refused_before_any_process_starts() -> None:
    port = free_port()
    # Another platform's API process: its socket allows SO_REUSEPORT, as ours do.
    other = reuse_port_socket("127.0.0.1", port)
    try:
        processes = ApiProcesses("broker.api.serve:app_for_process", "127.0.0.1", port, 2)
        with pytest.raises(OSError) as refused:
            processes.run()
        assert refused.value.errno == errno.EADDRINUSE
        assert processes._processes == []
    finally:
        other.close()


def test_a_plain_listener_on_the_port_is_refused_too() -> None:
    port = free_port()
    with socket.socket() as other:
        other.bind(("127.0.0.1", port))
        other.listen()
        with pytest.raises(OSError):
            ApiProcesses("broker.api.serve:app_for_process", "127.0.0.1", port, 2).run()
