"""The skeleton every tickpipe process runs in: signals, frozen start-up, bound ports, uvicorn, health.

The producer, the consumers, the API and the simulator differ in their work,
not in how they start and stop. Written once here, a SIGTERM means the same
thing to each of them (finish cleanly, exit 0), a port that cannot be bound is
reported in the same one line, and each publishes the same health document
(:mod:`tickpipe.health`) while it runs. Each ``cli.py`` builds its service and
hands it to :func:`run`; the API, which uvicorn runs, uses :class:`Uvicorn`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import errno
import gc
import logging
import os
import select
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from types import FrameType
from typing import Final, Protocol, TypeVar

import uvicorn

from tickpipe.backoff import EqualJitterBackoff
from tickpipe.errors import SettingsError

log = logging.getLogger(__name__)

T = TypeVar("T")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class BindError(SettingsError):
    """A port the service must listen on cannot be bound; the message names the setting to change."""


def bind_error(setting: str, host: str, port: int, exc: OSError) -> BindError:
    """One line for every service: which setting, which address, why, and what to do.

    Why one wording: a deployer reading a failed start should not have to learn four phrasings of the
    same fault, and the setting's name is what they will edit.
    """
    # The errno's own words: asyncio's wrapping of them repeats the address this line already names.
    cause = os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__
    hint = "another process holds it" if exc.errno == errno.EADDRINUSE else "check the address"
    return BindError(f"{setting}: cannot listen on {host}:{port} ({cause}); {hint}: choose another port (0 = any free)")


def bind(host: str, port: int, setting: str, *, reuse_port: bool = False) -> socket.socket:
    """A bound TCP socket (not yet listening), or a :class:`BindError` naming ``setting``.

    Binding before a server starts is what lets the error be one line rather than a server's traceback,
    and ``port=0`` then tells the caller which port it got. ``reuse_port``: SO_REUSEPORT, so processes
    of the same user may each bind and listen on the port, and the kernel spreads new connections over
    the listening sockets (a socket bound but not listening takes none: a parent may hold the port so).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise bind_error(setting, host, port, exc) from None
    return sock


def freeze_startup(young_threshold: int | None = None) -> None:
    """Move what start-up built (modules, clients, caches) out of the cyclic collector's reach.

    Everything wired before the loop runs lives as long as the process; full collections over it
    otherwise stall a hot loop for tens of milliseconds. ``young_threshold`` raises the first
    generation's threshold for services that make many short-lived objects per record.
    """
    gc.collect()
    gc.freeze()
    if young_threshold is not None:
        gc.set_threshold(young_threshold, *gc.get_threshold()[1:])


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """Call ``stop`` on SIGTERM or SIGINT while inside.

    The loop's handlers rather than ``signal.signal``: ``stop`` then runs on the loop between two
    callbacks, so it may touch the service's state without a lock; removed on the way out so a
    second run (tests) starts clean.
    """
    loop = asyncio.get_running_loop()
    installed = []
    for sig in STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError):  # not on this platform's loop
            loop.add_signal_handler(sig, stop)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


class Sidecar(Protocol):
    """Something that runs beside a service for its whole life (the health publisher)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def run(
    work: Awaitable[T],
    stop: Callable[[], None],
    *,
    sidecars: Sequence[Sidecar] = (),
    young_threshold: int | None = None,
) -> T:
    """Run ``work`` until it returns; SIGTERM/SIGINT call ``stop``, which must make it return soon.

    The sidecars start before the work and stop after it, whichever way it ends, so a health
    document is withdrawn on a clean stop and left to expire (and be shown as lost) on a crash.
    """
    with stop_on_signals(stop):
        freeze_startup(young_threshold)
        started: list[Sidecar] = []
        try:
            for sidecar in sidecars:
                await sidecar.start()
                started.append(sidecar)
            return await work
        finally:
            for sidecar in reversed(started):
                await sidecar.stop()


class Uvicorn(uvicorn.Server):
    """The one uvicorn server of tickpipe, in either of the two places it runs.

    ``owns_signals=True`` (``tickpipe api``): uvicorn handles SIGTERM/SIGINT, but a stop exits 0
    (uvicorn re-raises the signal once shut down, and process managers would read that as a crash);
    a second Ctrl-C stops waiting for connections. ``owns_signals=False`` (an admin surface inside a
    service): signals are the service's, which stops this server itself (uvicorn's handler would
    swallow the SIGTERM). ``sidecars`` start once the app's lifespan has run and stop first on
    shutdown.
    """

    def __init__(self, config: uvicorn.Config, *, owns_signals: bool = False, sidecars: Sequence[Sidecar] = ()):
        super().__init__(config)
        self.owns_signals = owns_signals
        self.sidecars = list(sidecars)
        self._started_sidecars: list[Sidecar] = []

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if self.owns_signals:
            with super().capture_signals():
                yield
        else:
            yield

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        self.should_exit = True

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.should_exit:
            return
        for sidecar in self.sidecars:
            await sidecar.start()
            self._started_sidecars.append(sidecar)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        while self._started_sidecars:
            await self._started_sidecars.pop().stop()
        await super().shutdown(sockets)

    async def wait_started(self, task: asyncio.Task[None]) -> None:
        """Until the server answers; a server that failed to start raises its error here."""
        while not self.started:  # uvicorn has no start event, only this flag
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.01)


#: The wait before a worker that died is replaced: 0.25-0.5 s after the first death, doubling to 2.5-5 s.
RESTART_BACKOFF: Final = EqualJitterBackoff(base=0.5, cap=5.0)
#: Deaths within CRASH_WINDOW_S after which the parent stops replacing workers and gives up.
CRASH_LIMIT: Final = 5
CRASH_WINDOW_S: Final = 60.0
PR_SET_PDEATHSIG: Final = 1  # linux/prctl.h


def describe_exit(code: int) -> str:
    """``os.waitstatus_to_exitcode``'s number in words: ``signal 9`` or ``exit status 1``."""
    return f"signal {-code}" if code < 0 else f"exit status {code}"


def stop_with_parent(parent: int) -> None:
    """Have the kernel send this process SIGTERM when ``parent`` ends (Linux; elsewhere nothing).

    A parent killed outright (SIGKILL, OOM) must not leave its workers serving the port unsupervised.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it ended before the request above was made
        os.kill(os.getpid(), signal.SIGTERM)


def run_workers(
    count: int,
    serve: Callable[[], int],
    *,
    on_exit: Callable[[int], None] | None = None,
    backoff: EqualJitterBackoff = RESTART_BACKOFF,
    crash_limit: int = CRASH_LIMIT,
    crash_window_s: float = CRASH_WINDOW_S,
) -> int:
    """Run ``serve`` in ``count`` forked processes and keep ``count`` running until a stop signal.

    Why fork after binding: each worker inherits what the parent bound (or binds its own socket on
    the port the parent holds, see :func:`bind`), and each is a whole instance (its own loop,
    connections and health document), so ``tickpipe status`` lists each worker. A worker that ends
    unasked is logged at ERROR with its exit status and replaced after ``backoff``; ``crash_limit``
    deaths within ``crash_window_s`` mean something outside the worker is wrong (the database is
    gone, the code is broken), so the parent stops the others and returns 1 rather than spin.
    SIGTERM or SIGINT to the parent is passed on as SIGTERM (a terminal's Ctrl-C reaches the workers
    too, and a second SIGINT would make them drop their connections) and the parent returns 0 once
    all have ended cleanly. ``on_exit(pid)`` runs in the parent after each worker has ended.
    """
    children: set[int] = set()
    stopping = False
    wake_r, wake_w = os.pipe()  # a stop signal ends a restart backoff at once
    os.set_blocking(wake_w, False)

    def stop_all(sig: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        with contextlib.suppress(BlockingIOError):
            os.write(wake_w, b"x")
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def spawn() -> None:
        pid = os.fork()
        if pid == 0:  # the worker: its own signal handling (uvicorn's), then never back into the parent's code
            stop_with_parent(parent)
            os.close(wake_r)
            os.close(wake_w)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            code = 1
            try:
                code = serve()
            except BaseException:  # os._exit below skips the interpreter's own report: say what ended it
                log.exception("worker %d failed", os.getpid())
            finally:
                logging.shutdown()
                os._exit(code)
        children.add(pid)

    parent = os.getpid()
    previous = {sig: signal.signal(sig, stop_all) for sig in STOP_SIGNALS}
    deaths: collections.deque[float] = collections.deque()
    failed = False
    try:
        for _ in range(count):
            spawn()
        while children:
            pid, status = os.wait()
            if pid not in children:
                continue
            children.discard(pid)
            code = os.waitstatus_to_exitcode(status)
            if on_exit is not None:
                on_exit(pid)
            if stopping:
                if code != 0:
                    log.error("worker %d ended with %s while stopping", pid, describe_exit(code))
                    failed = True
                continue
            now = time.monotonic()
            deaths.append(now)
            while deaths[0] < now - crash_window_s:
                deaths.popleft()
            if len(deaths) >= crash_limit:
                log.error(
                    "worker %d ended with %s: %d workers ended in %g s, giving up (stopping the others, exit 1)",
                    pid, describe_exit(code), len(deaths), crash_window_s,
                )  # fmt: skip
                failed = True
                stop_all(signal.SIGTERM, None)
                continue
            delay = backoff.compute(len(deaths))
            log.error("worker %d ended with %s; starting another in %.2f s", pid, describe_exit(code), delay)
            select.select([wake_r], [], [], delay)
            if not stopping:
                spawn()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.close(wake_r)
        os.close(wake_w)
    return 1 if failed else 0
