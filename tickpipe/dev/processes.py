"""Child-process plumbing for the embedded services: ports, liveness, parent-death, owner files.

Kept apart from ``embedded.py`` so that the lifecycle there reads as a story
and these small, separately testable facts live in one place. ``psutil`` is
imported inside the functions: it ships with the ``embedded`` extra, and
importing ``tickpipe.dev.services`` must work without it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger("tickpipe.dev.services")


def free_port(host: str = "127.0.0.1", *, besides: Collection[int] = ()) -> int:
    """A port nobody listens on right now (another process may still take it first), and none of ``besides``:
    ports chosen for one service but not bound yet (the kernel may hand the same free port out twice)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
        if port not in besides:
            return port


def port_is_free(host: str, port: int) -> bool:
    """Whether ``port`` can be bound now (a port left in TIME_WAIT by our own last run counts as free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def parent_death_signal(sig: int, parent: int) -> Callable[[], None]:
    """A ``preexec_fn`` that has the kernel send ``sig`` to the child when its parent dies (Linux).

    The kernel ties this to the *thread* that forked, so use it only from a
    thread that lives as long as the child should (the main thread).
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    def setup() -> None:
        libc.prctl(1, sig, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), sig)

    return setup


def process_alive(pid: int, started: float | None = None) -> bool:
    """Whether ``pid`` runs (a zombie does not) and, given ``started``, is the process created then."""
    import psutil

    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and (started is None or abs(proc.create_time() - started) < 0.01)
    except psutil.Error:
        return False


def create_time(pid: int) -> float | None:
    """When ``pid`` was created (epoch seconds), to tell it from a later process with the same pid."""
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def signal_and_wait(pid: int, sig: int, *, started: float | None = None, timeout: float = 30.0) -> bool:
    """Signal a process that may not be our child and wait until it is gone; SIGKILL after ``timeout``.

    A stopped (paused) process gets SIGCONT first so it can act on ``sig``.
    Returns whether it is gone.
    """
    for signum in (signal.SIGCONT, sig, signal.SIGKILL):
        if signum == signal.SIGKILL and sig != signal.SIGKILL:
            log.warning("pid %d ignored signal %d for %g s; killing it", pid, sig, timeout)
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            return True
        if signum == signal.SIGCONT:
            continue
        deadline = time.monotonic() + timeout
        while process_alive(pid, started):
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        else:
            return True
    return not process_alive(pid, started)


@dataclass(frozen=True)
class Owner:
    """Which process (``owner``) started which service process (``pid``), and when each began."""

    owner: int
    owner_started: float | None
    pid: int
    started: float | None
    url: str

    @property
    def service_alive(self) -> bool:
        return process_alive(self.pid, self.started)

    @property
    def owner_alive(self) -> bool:
        return process_alive(self.owner, self.owner_started)


class OwnerFile:
    """``<service>.owner.json`` in a data folder: lets the next start find an orphan and stop it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> Owner | None:
        try:
            return Owner(**json.loads(self.path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def write(self, pid: int, url: str) -> None:
        me = os.getpid()
        owner = Owner(owner=me, owner_started=create_time(me), pid=pid, started=create_time(pid), url=url)
        self.path.write_text(json.dumps(asdict(owner)))

    def remove(self, pid: int | None = None) -> None:
        """Remove the file; with ``pid``, only if it still names that process (not a later start's)."""
        owner = self.read()
        if pid is None or (owner is not None and owner.pid == pid):
            self.path.unlink(missing_ok=True)
