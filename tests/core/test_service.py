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
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

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


#: Each service, the option that names its port, and the setting its report must name.
SERVICES = [
    ("producer", [], "PRODUCER_ADMIN_PORT", "PRODUCER_ADMIN_PORT"),
    ("consume", ["quotes", "--admin-port"], None, "CONSUMER_ADMIN_PORT"),
    ("api", ["--port"], None, "API_HOST/API_PORT"),
    ("simulate", ["--port"], None, "SIMULATOR_PORT (--host/--port)"),
]


@pytest.mark.parametrize(("command", "args", "variable", "setting"), SERVICES, ids=[s[0] for s in SERVICES])
def test_every_service_reports_a_taken_port_in_the_same_one_line(
    command: str, args: list[str], variable: str | None, setting: str,
    kafka_bootstrap: str, redis_url: str, migrated_db: str, topic_prefix: str, tmp_path: Path,
) -> None:  # fmt: skip
    env = {
        **os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "REDIS_URL": redis_url, "DATABASE_URL": migrated_db,
        "KAFKA_TOPIC_PREFIX": topic_prefix, "SPOOL_DIR": str(tmp_path / "spool"), "KAFKA_ENABLE_IDEMPOTENCE": "false",
        "LOG_LEVEL": "WARNING",
    }  # fmt: skip
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        if variable is not None:
            env[variable] = str(port)
        argv = [*args, str(port)] if args and args[-1].startswith("--") else args
        result = subprocess.run(
            [sys.executable, "-m", "tickpipe.cli", command, *argv],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    line = (
        f"tickpipe {command}: {setting}: cannot listen on 127.0.0.1:{port} (Address already in use); "
        "another process holds it: choose another port (0 = any free)"
    )
    assert result.returncode == 1, result.stderr
    assert line in result.stderr.splitlines(), result.stderr
    assert "Traceback" not in result.stderr
