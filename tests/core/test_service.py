"""The service skeleton (``tickpipe.service``): one bind report, stop on signals, sidecars, the uvicorn wrapper.

Signals are real (sent to this process while ``run`` holds the handlers);
servers are real uvicorn on free ports.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from tickpipe.service import BindError, Uvicorn, bind, run


class Recorder:
    """A sidecar that writes down when it starts and stops."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    async def start(self) -> None:
        self.log.append(f"start {self.name}")

    async def stop(self) -> None:
        self.log.append(f"stop {self.name}")


def test_a_taken_port_is_one_line_naming_the_setting() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(BindError) as info:
            bind("127.0.0.1", port, "API_HOST/API_PORT")
    assert str(info.value) == (
        f"API_HOST/API_PORT: cannot listen on 127.0.0.1:{port} (Address already in use); "
        "another process holds it: choose another port (0 = any free)"
    )
    assert "\n" not in str(info.value)


def test_an_address_not_on_this_host_says_so() -> None:
    with pytest.raises(
        BindError, match=r"^SIMULATOR_PORT: cannot listen on 192\.0\.2\.1:8765 \(.+\); check the address"
    ):
        bind("192.0.2.1", 8765, "SIMULATOR_PORT")  # TEST-NET-1: never a local address


def test_port_zero_gives_a_free_port() -> None:
    with bind("127.0.0.1", 0, "X_PORT") as sock:
        assert sock.getsockname()[1] > 0


async def test_sigterm_stops_the_work_and_sidecars_wrap_it() -> None:
    log: list[str] = []
    stopped = asyncio.Event()

    async def work() -> str:
        log.append("working")
        os.kill(os.getpid(), signal.SIGTERM)  # handled by run(): calls stop, does not end the process
        await stopped.wait()
        return "done"

    result = await run(work(), stopped.set, sidecars=[Recorder("a", log), Recorder("b", log)])
    assert result == "done"
    assert log == ["start a", "start b", "working", "stop b", "stop a"]
    assert gc.get_freeze_count() > 0
    gc.unfreeze()  # this is a test process: give its objects back to the collector
    loop = asyncio.get_running_loop()
    assert not loop.remove_signal_handler(signal.SIGTERM), "run() must remove its handlers"


async def test_sidecars_stop_when_the_work_fails() -> None:
    log: list[str] = []

    async def work() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await run(work(), lambda: None, sidecars=[Recorder("a", log)])
    gc.unfreeze()
    assert log == ["start a", "stop a"]


@asynccontextmanager
async def serving(server: Uvicorn, sock: socket.socket) -> AsyncIterator[None]:
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await server.wait_started(task)
    try:
        yield
    finally:
        server.should_exit = True
        await task


async def test_uvicorn_runs_sidecars_after_the_lifespan_and_stops_them_first() -> None:
    log: list[str] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.append("lifespan up")
        yield
        log.append("lifespan down")

    app = FastAPI(lifespan=lifespan)

    @app.get("/")
    async def root() -> dict[str, str]:
        return {"ok": "yes"}

    sock = bind("127.0.0.1", 0, "TEST_PORT")
    server = Uvicorn(uvicorn.Config(app, log_level="warning", lifespan="on"), sidecars=[Recorder("health", log)])
    async with serving(server, sock), httpx.AsyncClient() as http:
        assert (await http.get(f"http://127.0.0.1:{sock.getsockname()[1]}/")).json() == {"ok": "yes"}
    sock.close()
    assert log == ["lifespan up", "start health", "stop health", "lifespan down"]
