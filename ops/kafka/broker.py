"""Apache Kafka (KRaft) for tests, benchmarks and ``make kafka``: the real broker, from Maven.

``kafka_jars()`` fetches ``org.apache.kafka:kafka_2.13`` and its dependencies once with Maven
(``ops/kafka/pom.xml``) into a cache outside the work tree. ``KafkaBroker`` formats a KRaft
storage directory and runs ``kafka.Kafka`` (broker and controller in one JVM, ``-Xmx512m``) on
free loopback ports; ``KafkaCluster`` runs three of them as one quorum for the fault tests.
Storage is on disk, so a broker stopped and started again keeps its topics, records, groups
and producer ids, as a real restart does.

With ``users`` the broker listens with SASL/PLAIN and enforces ACLs (StandardAuthorizer, deny
when no ACL matches): ``admin`` is the super user the platform's own admin calls use; every
other user may do only what an ACL grants (``tsunagu topics apply``'s ``producers``).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from ops.maven_cache import cache_dir, fetched

POM = Path(__file__).with_name("pom.xml")
KAFKA_VERSION = "4.3.2"
ADMIN_USER = "admin"


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def jar_cache() -> Path:
    """Where the Kafka jars live: ``$TSUNAGU_KAFKA_JARS``, else ``~/.cache/tsunagu/kafka-<v>``."""
    return cache_dir("TSUNAGU_KAFKA_JARS", f"kafka-{KAFKA_VERSION}")


def kafka_jars() -> Path:
    """The directory of the broker's jars, fetched with Maven on first use (locked, atomic)."""
    return fetched(jar_cache(), _fetch_jars, KAFKA_VERSION)


def _fetch_jars(staging: Path) -> Path:
    subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
            "-DincludeScope=runtime",
        ],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return staging


def _die_with_parent() -> None:
    """In the child: have Linux kill the broker if its parent dies without stopping it."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (as Kafka makes)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


def _jaas(users: Mapping[str, str]) -> str:
    """The PLAIN login module's JAAS line: the broker logs in as admin and knows every user."""
    known = " ".join(f'user_{name}="{secret}"' for name, secret in users.items())
    return (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{ADMIN_USER}" password="{users[ADMIN_USER]}" {known};'
    )


class KafkaBroker:
    """One Kafka 4.x process (broker and controller) on 127.0.0.1; storage survives restarts."""

    def __init__(
        self,
        *,
        workdir: Path | None = None,
        node_id: int = 1,
        port: int | None = None,
        controller_port: int | None = None,
        voters: str | None = None,
        cluster_id: str | None = None,
        users: Mapping[str, str] | None = None,
        config: Mapping[str, str] | None = None,
        heap: str = "512m",
    ) -> None:
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="kafka-"))
        self.node_id = node_id
        self.port = port or free_port()
        self.controller_port = controller_port or free_port()
        self.voters = voters  # None: a standalone (single-voter) quorum
        self.cluster_id = cluster_id or _cluster_id()
        self.users = dict(users) if users else None
        if self.users is not None and ADMIN_USER not in self.users:
            raise ValueError(f"users must include {ADMIN_USER!r}, the platform's super user")
        self.extra = dict(config or {})
        self.heap = heap
        self.log_path = self.workdir / "kafka.log"
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
    def pid(self) -> int | None:
        """The JVM's pid while it runs."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def client_config(self, user: str = ADMIN_USER) -> dict[str, object]:
        """kafka-python settings to reach this broker as ``user`` (nothing without SASL)."""
        if self.users is None:
            return {}
        return {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "PLAIN",
            "sasl_plain_username": user,
            "sasl_plain_password": self.users[user],
        }

    def properties(self) -> dict[str, str]:
        """The broker's ``server.properties``."""
        listener = "SASL_PLAINTEXT" if self.users else "PLAINTEXT"
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "listeners": (
                f"{listener}://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
            ),
            "advertised.listeners": f"{listener}://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": listener,
            "listener.security.protocol.map": (
                f"CONTROLLER:{listener},{listener}:{listener}"
                if self.users
                else "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
            ),
            "log.dirs": str(self.workdir / "data"),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            # The cleaner runs often enough for a compaction test to see it.
            "log.cleaner.backoff.ms": "500",
            "log.segment.delete.delay.ms": "1000",
        }
        if self.voters:
            props["controller.quorum.voters"] = self.voters
        else:
            props["controller.quorum.bootstrap.servers"] = f"127.0.0.1:{self.controller_port}"
        if self.users:
            jaas = _jaas(self.users)
            props |= {
                "sasl.enabled.mechanisms": "PLAIN",
                "sasl.mechanism.inter.broker.protocol": "PLAIN",
                "sasl.mechanism.controller.protocol": "PLAIN",
                f"listener.name.{listener.lower()}.plain.sasl.jaas.config": jaas,
                "listener.name.controller.plain.sasl.jaas.config": jaas,
                "authorizer.class.name": (
                    "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
                ),
                "super.users": f"User:{ADMIN_USER}",
                "allow.everyone.if.no.acl.found": "false",
            }
        props |= self.extra
        return props

    def _format(self, standalone: bool) -> None:
        config = self.workdir / "server.properties"
        config.write_text("".join(f"{k}={v}\n" for k, v in self.properties().items()))
        if (self.workdir / "data" / "meta.properties").exists():
            return
        command = [
            *self._java(),
            "kafka.tools.StorageTool",
            "format",
            # One argument each: a cluster id may begin with "-" (URL-safe base64).
            f"--cluster-id={self.cluster_id}",
            f"--config={config}",
            "--ignore-formatted",
        ]
        if standalone:
            command.append("--standalone")
        done = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise RuntimeError(f"kafka storage format failed:\n{done.stdout}\n{done.stderr}")

    def _java(self) -> list[str]:
        return [
            os.environ.get("TSUNAGU_JAVA", "java"),
            f"-Xmx{self.heap}",
            f"-Xms{self.heap}",
            "-XX:+UseG1GC",
            "-XX:TieredStopAtLevel=1",  # C1 only: a much faster start for a short-lived broker
            "-Djava.awt.headless=true",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            "-cp",
            f"{kafka_jars()}/*",
        ]

    def launch(self) -> None:
        """Start the JVM (formatting the storage on first start) without waiting for it."""
        if self.running:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._format(standalone=self.voters is None)
        with self.log_path.open("ab") as out:
            self._proc = subprocess.Popen(
                [*self._java(), "kafka.Kafka", str(self.workdir / "server.properties")],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Linux signals the death of the starting *thread*: only the main thread's
                # brokers get it (a restart from a timer thread must outlive that thread).
                preexec_fn=(
                    _die_with_parent
                    if threading.current_thread() is threading.main_thread()
                    else None
                ),
            )

    def start(self, timeout_s: float = 60.0) -> None:
        """Start the broker (again, on the same ports and storage) and wait until it serves."""
        if self.running:
            return
        self.launch()
        self.wait_ready(timeout_s)

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Wait until the broker answers metadata with itself registered."""
        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(
                    f"Kafka exited with {self._proc.returncode}; see {self.log_path}:\n"
                    + self.log_path.read_text(errors="replace")[-3000:]
                )
            try:
                # A plain connect first: kafka-python logs every refused connection as an error.
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                with self.admin() as admin:
                    if admin.describe_cluster().get("brokers"):
                        return
            except (KafkaError, OSError) as exc:
                last = exc
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"Kafka did not serve metadata within {timeout_s} s: {last!r}")

    @contextlib.contextmanager
    def admin(self) -> Iterator[KafkaAdminClient]:
        """A kafka-python admin client as the super user, closed after use."""
        client = KafkaAdminClient(
            bootstrap_servers=self.bootstrap,
            client_id="kafka-fixture",
            request_timeout_ms=5000,
            **self.client_config(),
        )
        try:
            yield client
        finally:
            client.close()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the broker cleanly (SIGTERM, a controlled shutdown), killing it if it hangs."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL the broker: a crash, with whatever it had not yet flushed."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)

    def __enter__(self) -> KafkaBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class KafkaCluster:
    """Three (or ``size``) brokers forming one KRaft quorum on loopback, for the fault tests."""

    def __init__(self, size: int = 3, workdir: Path | None = None) -> None:
        root = workdir or Path(tempfile.mkdtemp(prefix="kafka-cluster-"))
        controller_ports = [free_port() for _ in range(size)]
        voters = ",".join(f"{i + 1}@127.0.0.1:{p}" for i, p in enumerate(controller_ports))
        cluster_id = _cluster_id()
        internal_rf = str(min(size, 3))
        self.brokers = [
            KafkaBroker(
                workdir=root / f"node-{i + 1}",
                node_id=i + 1,
                controller_port=controller_ports[i],
                voters=voters,
                cluster_id=cluster_id,
                config={
                    "offsets.topic.replication.factor": internal_rf,
                    "transaction.state.log.replication.factor": internal_rf,
                    "transaction.state.log.min.isr": "2",
                    "default.replication.factor": internal_rf,
                    "min.insync.replicas": "2",
                    "unclean.leader.election.enable": "false",
                },
                heap="384m",
            )
            for i in range(size)
        ]

    @property
    def bootstrap(self) -> str:
        """Every broker's address, comma-separated."""
        return ",".join(b.bootstrap for b in self.brokers)

    @property
    def url(self) -> str:
        """The bus URL naming every broker."""
        return f"kafka://{self.bootstrap}"

    def start(self, timeout_s: float = 90.0) -> None:
        """Start every broker at once (a quorum needs a majority before any serves)."""
        for broker in self.brokers:
            broker.launch()
        for broker in self.brokers:
            broker.wait_ready(timeout_s)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.brokers[0].admin() as admin:
                if len(admin.describe_cluster().get("brokers", [])) == len(self.brokers):
                    return
            time.sleep(0.2)
        raise RuntimeError("the cluster's brokers did not all register")

    def stop(self) -> None:
        """Stop every broker."""
        for broker in self.brokers:
            broker.stop()

    def __enter__(self) -> KafkaCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main() -> None:
    """``make kafka``: run one broker in the foreground until Ctrl-C, printing its address."""
    workdir = Path(os.environ.get("TSUNAGU_KAFKA_DIR", "var/kafka")).resolve()
    port = int(os.environ.get("TSUNAGU_KAFKA_PORT", "9092"))
    # Fixed ports: the storage records the controller's address at its first format.
    broker = KafkaBroker(workdir=workdir, port=port, controller_port=port + 1)
    broker.start()
    print(f"Kafka {KAFKA_VERSION} on {broker.bootstrap}  (data {workdir}, log {broker.log_path})")
    print(f"  TSUNAGU_BUS={broker.url} make run   # the platform on it")
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
