"""Several API processes on one port, each with its own listening socket (SO_REUSEPORT).

uvicorn's own workers share one socket, and whichever process wakes first accepts every
connection waiting: a burst of keep-alive clients can land 31 to 1 on two processes, and the
busy one's queue sets everyone's tail latency. With a socket per process the kernel spreads
new connections over the processes by their addresses instead.

The supervisor (the caller's thread, usually the main process that also runs ingest) starts
``count`` processes, restarts one that dies after it has started serving, and stops them all
on SIGINT or SIGTERM or when ``stop`` is set.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import threading
from multiprocessing.context import SpawnProcess
from types import FrameType

import uvicorn

from broker.api.metrics import process_ended

log = logging.getLogger(__name__)

#: How often the supervisor looks at its processes, in seconds.
WATCH_S = 0.5
#: How long a stopping process may take before it is killed.
STOP_TIMEOUT_S = 30.0
#: Exit code of a process that could not start serving (bad settings, port in use...).
STARTUP_FAILURE = 3


def _bound(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` (OSError if the address is taken)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` that other processes may also bind."""
    sock = _bound(host, port, reuse_port=True)
    sock.listen(2048)
    return sock


def _check_port_free(host: str, port: int) -> None:
    """OSError (address in use) if anything listens on ``host``:``port``."""
    _bound(host, port, reuse_port=False).close()


def _serve(app: str, host: str, port: int) -> None:
    """One API process: its own socket, then uvicorn on it until SIGTERM."""
    try:
        sock = reuse_port_socket(host, port)
    except OSError as exc:
        log.error("API process cannot listen on %s:%s: %s", host, port, exc)
        raise SystemExit(STARTUP_FAILURE) from None
    config = uvicorn.Config(app, factory=True, log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])


class ApiProcesses:
    """``count`` processes serving the uvicorn app factory ``app`` on ``host``:``port``."""

    def __init__(self, app: str, host: str, port: int, count: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.count = count
        self.stop = threading.Event()
        self._context = multiprocessing.get_context("spawn")
        self._processes: list[SpawnProcess] = []

    def _start_one(self) -> SpawnProcess:
        process = self._context.Process(
            target=_serve, args=(self.app, self.host, self.port), name="tsunagu-api", daemon=False
        )
        process.start()
        return process

    def run(self) -> None:
        """Start the processes and watch them until a signal or ``stop``; then stop them."""
        # A port in use fails now, in the foreground. The check binds without SO_REUSEPORT:
        # with it, a second platform of the same user would silently share the port.
        _check_port_free(self.host, self.port)
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            self._processes = [self._start_one() for _ in range(self.count)]
            while not self.stop.wait(WATCH_S):
                self._keep_alive()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._stop_all()

    def _on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self.stop.set()

    def _keep_alive(self) -> None:
        for index, process in enumerate(self._processes):
            if process.is_alive() or self.stop.is_set():
                continue
            if process.exitcode == STARTUP_FAILURE:
                log.error("an API process could not start; stopping")
                self.stop.set()
                return
            log.warning(
                "API process %s ended (exit code %s); starting another",
                process.pid,
                process.exitcode,
            )
            if process.pid is not None:
                process_ended(process.pid)
            self._processes[index] = self._start_one()

    def _stop_all(self) -> None:
        for process in self._processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes the requests in flight
        for process in self._processes:
            process.join(STOP_TIMEOUT_S)
            if process.is_alive():
                process.kill()
                process.join()
            if process.pid is not None:
                process_ended(process.pid)
