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
import contextlib
import errno
import gc
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable, Iterator, Sequence
from types import FrameType
from typing import Protocol, TypeVar

import uvicorn

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


def bind(host: str, port: int, setting: str) -> socket.socket:
    """A bound TCP socket (not yet listening), or a :class:`BindError` naming ``setting``.

    Binding before a server starts is what lets the error be one line rather than a server's traceback,
    and ``port=0`` then tells the caller which port it got.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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


def run_workers(count: int, serve: Callable[[], int]) -> int:
    """Run ``serve`` in ``count`` forked processes sharing what the parent bound; the parent waits.

    Why fork after binding: every worker accepts on the one socket, and each is a whole instance
    (its own loop, connections and health document), so ``tickpipe status`` lists each worker. A
    stop signal reaching the parent is passed on as SIGTERM (a terminal's Ctrl-C reaches the
    workers too, and a second SIGINT would make them drop their connections). A worker that dies
    is not replaced: it shows as lost, and the parent's exit status becomes 1.
    """
    children: list[int] = []

    def pass_on(sig: int, frame: FrameType | None) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, pass_on) for sig in STOP_SIGNALS}
    try:
        for _ in range(count):
            pid = os.fork()
            if pid == 0:  # the worker: its own signal handling (uvicorn's), then never back into the parent's code
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
                code = 1
                try:
                    code = serve()
                finally:
                    logging.shutdown()
                    os._exit(code)
            children.append(pid)
        codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for pid, code in zip(children, codes, strict=True):
        if code != 0:
            log.error("worker %d ended with %s", pid, f"signal {-code}" if code < 0 else f"exit status {code}")
    return 0 if all(code == 0 for code in codes) else 1
