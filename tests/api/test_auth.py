"""API keys (``api.auth``): the auth on/off matrix of every data route and the stream, per-key limits,
revocation, and the refusal to serve beyond loopback without a key.

The servers are real: uvicorn in the test's loop for the matrix and the
limits, ``tickpipe api`` processes for start-up. Keys live in a database of
this module (``keyed_db``); the session's database never holds one, so there
auth is off, as every other API test expects.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import psutil
import pytest

from api.auth import Keys, check_exposure, hash_secret, new_key, plain_hash, secret_matches
from tests.helpers.api import ApiServer, WsClient, api_process, api_settings, running_api
from tests.helpers.keys import add_key, key_headers, revoke_key
from tests.helpers.waiting import wait_for
from tickpipe.admin import is_loopback
from tickpipe.errors import SettingsError

SYMBOL = "AUTHX"
#: Every data route, as JSON and (history) as CSV; each must refuse a request without a key when auth is on.
DATA_ROUTES: list[tuple[str, dict[str, str], dict[str, str]]] = [
    ("/quotes/" + SYMBOL, {}, {}),
    ("/trades/" + SYMBOL, {}, {}),
    ("/bars/" + SYMBOL, {"timeframe": "5Min"}, {}),
    ("/bars/" + SYMBOL, {"timeframe": "5Min"}, {"Accept": "text/csv"}),
    ("/quotes/latest", {"symbols": SYMBOL}, {}),
    ("/trades/latest", {"symbols": SYMBOL}, {}),
    ("/bars/latest", {"symbols": SYMBOL}, {}),
    ("/symbols", {}, {}),
    ("/news", {"symbols": SYMBOL}, {}),
    ("/v1beta1/news", {"symbols": SYMBOL}, {}),  # Alpaca's news route: alpaca-py's NewsClient sends its headers
]
#: Routes that stay open: health for probes, the docs.
OPEN_ROUTES = ["/healthz", "/readyz", "/docs", "/openapi.json"]
#: What a client shows -> the status of a data route with auth on (off: always 200).
CREDENTIALS = {"none": 401, "unknown key": 403, "wrong secret": 403, "revoked": 403, "valid": 200}


# --- secrets, addresses ------------------------------------------------------------------------------------
def test_a_secret_is_stored_as_a_salted_scrypt_hash_and_matched_in_constant_form() -> None:
    key_id, secret = new_key()
    assert key_id.startswith("TK") and len(key_id) == 20 and key_id.isalnum()
    assert len(secret) == 40
    stored = hash_secret(secret)
    assert stored.startswith("scrypt$") and secret not in stored
    assert hash_secret(secret) != stored, "a salt of its own each time"
    assert secret_matches(secret, stored)
    assert not secret_matches(secret + "x", stored)
    assert secret_matches("s3cret", plain_hash("s3cret")) and not secret_matches("other", plain_hash("s3cret"))
    for malformed in ("", "scrypt$", "scrypt$x$8$1$AA==$AA==", "md5$abc", stored.replace("$", "!")):
        assert not secret_matches(secret, malformed)


async def test_the_key_table_is_kept_from_the_read_only_role(keyed_db: str) -> None:
    """tickpipe_reader reads every table by default (migration 0003); api_keys is taken back (0004)."""
    user, password = f"reader_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admin = await asyncpg.connect(keyed_db)
    await admin.execute(f"CREATE ROLE {user} LOGIN PASSWORD '{password}' IN ROLE tickpipe_reader")
    try:
        parts = urlsplit(keyed_db)
        host = parts.netloc.rsplit("@", 1)[-1]
        reader = await asyncpg.connect(urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}")))
        try:
            assert await reader.fetchval("SELECT count(*) >= 0 FROM quotes")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await reader.fetchval("SELECT count(*) FROM api_keys")
        finally:
            await reader.close()
    finally:
        await admin.execute(f"DROP OWNED BY {user}")
        await admin.execute(f"DROP ROLE {user}")
        await admin.close()


def test_only_loopback_addresses_count_as_private() -> None:
    assert all(is_loopback(host) for host in ("127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(host) for host in ("0.0.0.0", "::", "10.0.0.5", "192.168.1.2", "api.example.com"))


def test_serving_beyond_loopback_needs_a_key_unless_auth_is_off() -> None:
    no_keys, one_key = (lambda: 0), (lambda: 1)
    base = api_settings("postgresql://unused", "redis://unused")
    check_exposure(base, "127.0.0.1", no_keys)
    check_exposure(base, "0.0.0.0", one_key)
    with pytest.raises(SettingsError, match=r"API_HOST=0\.0\.0\.0 .*tickpipe keys add.*TICKPIPE_API_AUTH=off"):
        check_exposure(base, "0.0.0.0", no_keys)
    check_exposure(base.model_copy(update={"tickpipe_api_auth": "off"}), "0.0.0.0", no_keys)
    with_env_keys = api_settings("postgresql://unused", "redis://unused", tickpipe_api_keys="web:s3cret")
    check_exposure(with_env_keys, "0.0.0.0", no_keys)


class NoRows:
    async def fetch(self, query: str, *args: Any) -> list[Any]:
        return []


@pytest.mark.parametrize(
    ("mode", "listens", "came_in_on", "required"),
    [
        ("auto", "127.0.0.1", ("127.0.0.1", 8000), False),
        ("auto", "127.0.0.1", ("::1", 8000), False),
        ("auto", "127.0.0.1", ("10.1.2.3", 8000), True),  # `--host 0.0.0.0`: reached from another machine
        ("auto", "127.0.0.1", None, True),
        ("auto", "0.0.0.0", ("127.0.0.1", 8000), True),
        ("on", "127.0.0.1", ("127.0.0.1", 8000), True),
        ("off", "0.0.0.0", ("10.1.2.3", 8000), False),
    ],
)
async def test_who_needs_a_key_without_any_key(
    mode: str, listens: str, came_in_on: tuple[str, int] | None, required: bool
) -> None:
    settings = api_settings("postgresql://unused", "redis://unused", tickpipe_api_auth=mode)
    keys = Keys(settings, NoRows(), exposed=not is_loopback(listens))
    await keys.refresh()
    assert keys.required_for(came_in_on) is required


# --- the matrix ----------------------------------------------------------------------------------------------
@pytest.fixture
async def keys(keyed_db: str) -> dict[str, tuple[str, str]]:
    """One key per kind of credential the matrix tries."""
    valid = await add_key(keyed_db, "valid")
    revoked = await add_key(keyed_db, "revoked")
    await revoke_key(keyed_db, revoked[0])
    return {
        "valid": valid,
        "revoked": revoked,
        "wrong secret": (valid[0], new_key()[1]),
        "unknown key": new_key(),
    }


@pytest.fixture
async def keyed_api(keyed_db: str, redis_url: str, keys: dict[str, tuple[str, str]]) -> AsyncIterator[ApiServer]:
    """The API on the database with keys: auth on (TICKPIPE_API_AUTH=auto); the matrix's keys made first."""
    async with running_api(api_settings(keyed_db, redis_url, api_keys_refresh_s=0.1)) as server:
        yield server


@pytest.fixture
async def open_api(migrated_db: str, redis_url: str) -> AsyncIterator[ApiServer]:
    """The API on the session's database, which has no key: auth off."""
    async with running_api(api_settings(migrated_db, redis_url)) as server:
        yield server


async def new_key_of(server: ApiServer, database_url: str, name: str, **limits: Any) -> tuple[str, str]:
    """A key added while ``server`` runs, once the server has reloaded it."""
    key = await add_key(database_url, name, **limits)
    await wait_for(lambda: server.app.state.api.keys.active(key[0]), what=f"the API to load key {name!r}")
    return key


def headers_for(credential: str, keys: dict[str, tuple[str, str]]) -> dict[str, str]:
    return {} if credential == "none" else key_headers(*keys[credential])


@pytest.mark.parametrize("credential", list(CREDENTIALS))
async def test_data_routes_with_auth_on(
    keyed_api: ApiServer, keys: dict[str, tuple[str, str]], credential: str
) -> None:
    async with httpx.AsyncClient(base_url=keyed_api.url, timeout=30) as http:
        for path, params, extra in DATA_ROUTES:
            response = await http.get(path, params=params, headers={**extra, **headers_for(credential, keys)})
            expected = CREDENTIALS[credential]
            assert response.status_code == expected, (path, extra, response.text)
            if expected != 200:
                body = response.json()
                assert set(body) == {"code", "message"}, body
                assert body["code"] == expected * 100_000 + 10_000
                if expected == 401:
                    assert "APCA-API-KEY-ID" in body["message"]
        for path in OPEN_ROUTES:
            assert (await http.get(path)).status_code == 200, path


async def test_a_request_without_a_key_learns_nothing_of_its_parameters(keyed_api: ApiServer) -> None:
    """Auth comes before validation: a bad parameter of a client without a key is a 401, not a 422 echoing it."""
    async with httpx.AsyncClient(base_url=keyed_api.url, timeout=30) as http:
        response = await http.get("/quotes/" + SYMBOL, params={"page_token": "Q" * 500, "limit": "nan"})
    assert response.status_code == 401
    assert "QQQQ" not in response.text


@pytest.mark.parametrize("credential", list(CREDENTIALS))
async def test_data_routes_with_auth_off_ignore_any_key(
    open_api: ApiServer, keys: dict[str, tuple[str, str]], credential: str
) -> None:
    async with httpx.AsyncClient(base_url=open_api.url, timeout=30) as http:
        for path, params, extra in DATA_ROUTES:
            response = await http.get(path, params=params, headers={**extra, **headers_for(credential, keys)})
            assert response.status_code == 200, (path, extra, response.text)


async def test_the_stream_with_auth_on_wants_auth_first(keyed_api: ApiServer) -> None:
    client = await WsClient.connect(keyed_api.ws_url)
    await client.send({"action": "subscribe", "quotes": [SYMBOL]})
    assert await client.message() == {"T": "error", "code": 401, "msg": "not authenticated"}
    await client.close()


@pytest.mark.parametrize("how", ["message", "headers"])
@pytest.mark.parametrize("credential", [credential for credential in CREDENTIALS if credential != "none"])
async def test_the_stream_with_auth_on(
    keyed_api: ApiServer, keys: dict[str, tuple[str, str]], credential: str, how: str
) -> None:
    key_id, secret = keys[credential]
    if how == "headers":
        client = await WsClient.connect(keyed_api.ws_url, headers=key_headers(key_id, secret))
    else:
        client = await WsClient.connect(keyed_api.ws_url)
        await client.send({"action": "auth", "key": key_id, "secret": secret})
    if credential == "valid":
        assert await client.message() == {"T": "success", "msg": "authenticated"}
        await client.send({"action": "auth", "key": key_id, "secret": secret})
        assert await client.message() == {"T": "error", "code": 403, "msg": "already authenticated"}
        assert (await client.subscribe(quotes=[SYMBOL]))["quotes"] == [SYMBOL]
        await client.close()
    else:
        got, code = await client.until_closed()
        assert (got, code) == ([{"T": "error", "code": 402, "msg": "auth failed"}], 1008)


async def test_the_stream_with_auth_off_takes_any_key(open_api: ApiServer) -> None:
    client = await WsClient.connect(open_api.ws_url)
    await client.login("anyone", "anything")
    await client.close()
    by_headers = await WsClient.connect(open_api.ws_url, headers=key_headers("anyone", "anything"))
    assert await by_headers.message() == {"T": "success", "msg": "authenticated"}
    await by_headers.close()


async def test_keys_of_the_environment_turn_auth_on_too(migrated_db: str, redis_url: str) -> None:
    settings = api_settings(migrated_db, redis_url, tickpipe_api_keys="web:s3cret")
    async with running_api(settings) as server, httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        assert (await http.get("/symbols")).status_code == 401
        assert (await http.get("/symbols", headers=key_headers("web", "wrong"))).status_code == 403
        assert (await http.get("/symbols", headers=key_headers("web", "s3cret"))).status_code == 200
        client = await WsClient.connect(server.ws_url)
        await client.login("web", "s3cret")
        await client.close()


# --- per-key limits ------------------------------------------------------------------------------------------
async def test_a_key_beyond_its_connections_gets_406(keyed_api: ApiServer, keyed_db: str) -> None:
    key = await new_key_of(keyed_api, keyed_db, "two connections", connections=2)
    first, second = [await WsClient.connect(keyed_api.ws_url, headers=key_headers(*key)) for _ in range(2)]
    for client in (first, second):
        assert await client.message() == {"T": "success", "msg": "authenticated"}
    third = await WsClient.connect(keyed_api.ws_url)
    await third.send({"action": "auth", "key": key[0], "secret": key[1]})
    assert await third.until_closed() == ([{"T": "error", "code": 406, "msg": "connection limit exceeded"}], 1008)
    await first.close()  # a connection given back is a connection to spare
    keys = keyed_api.app.state.api.keys
    await wait_for(lambda: keys.connections(key[0]) == 1, what="the first connection to be given back")
    fourth = await WsClient.connect(keyed_api.ws_url)
    await fourth.login(*key)
    for client in (second, fourth):
        await client.close()


async def test_a_key_beyond_its_symbols_gets_405(keyed_api: ApiServer, keyed_db: str) -> None:
    key = await new_key_of(keyed_api, keyed_db, "three symbols", symbols=3)
    client = await WsClient.connect(keyed_api.ws_url)
    await client.login(*key)
    await client.subscribe(quotes=["AA", "BB"], trades=["AA", "CC"])  # three distinct symbols
    await client.send({"action": "subscribe", "bars": ["DD"]})
    error = await client.message()
    assert (error["code"], error["msg"]) == (405, "symbol limit exceeded")
    assert (await client.subscribe("unsubscribe", quotes=["BB"]))["quotes"] == ["AA"]
    await client.close()


async def test_a_key_beyond_its_requests_per_minute_gets_429_with_retry_after(
    keyed_api: ApiServer, keyed_db: str
) -> None:
    key = await new_key_of(keyed_api, keyed_db, "three a minute", requests_per_minute=3)
    other = await new_key_of(keyed_api, keyed_db, "another")
    async with httpx.AsyncClient(base_url=keyed_api.url, headers=key_headers(*key), timeout=30) as http:
        for _ in range(3):
            assert (await http.get("/symbols")).status_code == 200
        refused = await http.get("/quotes/" + SYMBOL)
        assert refused.status_code == 429
        assert refused.json()["code"] == 42910000
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        # Another key has a window of its own.
        assert (await http.get("/symbols", headers=key_headers(*other))).status_code == 200


async def test_a_revoked_key_is_refused_and_its_streams_are_closed(keyed_api: ApiServer, keyed_db: str) -> None:
    key = await new_key_of(keyed_api, keyed_db, "soon revoked")
    client = await WsClient.connect(keyed_api.ws_url)
    await client.login(*key)
    async with httpx.AsyncClient(base_url=keyed_api.url, headers=key_headers(*key), timeout=30) as http:
        assert (await http.get("/symbols")).status_code == 200
        await revoke_key(keyed_db, key[0])
        got, code = await client.until_closed()  # at the next reload of the keys (API_KEYS_REFRESH_S)
        assert (got, code) == ([{"T": "error", "code": 402, "msg": "auth failed"}], 1008)
        assert (await http.get("/symbols")).status_code == 403
    assert keyed_api.app.state.api.keys.connections(key[0]) == 0


# --- tickpipe api beyond loopback ---------------------------------------------------------------------------
async def run_api(env: dict[str, str], until: str) -> tuple[asyncio.subprocess.Process, list[str]]:
    """``tickpipe api`` with ``env``; returns once a stderr line holds ``until`` or the process ended."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tickpipe.cli",
        "api",
        env={**os.environ, "API_PORT": "0", "LOG_LEVEL": "INFO", **env},
        stderr=asyncio.subprocess.PIPE,
    )
    lines: list[str] = []

    async def read() -> None:
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            lines.append(line.decode())
            if until in lines[-1]:
                return

    async with asyncio.timeout(60):
        await read()
    return proc, lines


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
    async with asyncio.timeout(30):
        await proc.wait()


async def test_tickpipe_api_refuses_to_listen_beyond_loopback_without_a_key(migrated_db: str, redis_url: str) -> None:
    env = {"DATABASE_URL": migrated_db, "REDIS_URL": redis_url, "API_HOST": "0.0.0.0"}
    proc, lines = await run_api(env, "Application startup complete")
    # It exits by itself. No terminate(): Popen.send_signal polls first, and that poll would reap the child
    # before asyncio's watcher does, which then reports 255 for it.
    async with asyncio.timeout(30):
        assert await proc.wait() == 1, "".join(lines)
    assert len(lines) == 1, lines
    assert lines[0].startswith("tickpipe api: API_HOST=0.0.0.0 is reachable beyond this machine"), lines
    assert "TICKPIPE_API_AUTH=off" in lines[0]
    # Explicitly off: it serves, without keys.
    proc, lines = await run_api({**env, "TICKPIPE_API_AUTH": "off"}, "Application startup complete")
    try:
        assert proc.returncode is None, "".join(lines)
    finally:
        await stop(proc)


async def test_tickpipe_api_beyond_loopback_with_a_key_wants_it(keyed_db: str, redis_url: str) -> None:
    key = await add_key(keyed_db, "beyond loopback")
    env = {"DATABASE_URL": keyed_db, "REDIS_URL": redis_url, "API_HOST": "0.0.0.0"}
    proc, lines = await run_api(env, "Application startup complete")
    try:
        assert proc.returncode is None, "".join(lines)
        port = next(line for line in lines if "http://0.0.0.0:" in line).split("http://0.0.0.0:")[1].split()[0]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            assert (await http.get("/bars/" + SYMBOL)).status_code == 401
            assert (await http.get("/bars/" + SYMBOL, headers=key_headers(*key))).status_code == 200
    finally:
        await stop(proc)


# --- abuse of a tickpipe api process with keys ------------------------------------------------------------
#: What the abuse below may add to the process's resident memory: the sessions it keeps at once (four), the
#: outbox of the client that stops reading (WS_CLIENT_QUEUE_BYTES, 64 KiB here) and the interpreter's own
#: growth (scrypt's 16 MiB while it hashes, frames parsed, allocator pools). Unbounded, the replies the reader-less
#: client asked for and the 100 refused connections would all stay.
MEMORY_BOUND = 64 * 1024 * 1024


async def slow_disconnects(http: httpx.AsyncClient) -> float:
    text = (await http.get("/metrics")).text
    line = next(line for line in text.splitlines() if line.startswith("tickpipe_api_ws_slow_client_disconnects_total "))
    return float(line.split()[1])


async def test_an_api_process_with_keys_stays_within_its_memory_bound_under_abuse(
    keyed_db: str, redis_url: str
) -> None:
    """Wrong secrets, unknown keys, a key past its connections, a client that never authenticates nor reads
    but keeps asking, a frame past the limit before auth: each ends in its Alpaca code, memory stays bounded."""

    key = await add_key(keyed_db, "abused", connections=4)
    env = {"WS_CLIENT_QUEUE_BYTES": "65536", "WS_AUTH_TIMEOUT_S": "300", "API_KEYS_REFRESH_S": "0.5"}
    async with (
        api_process(keyed_db, redis_url, **env) as (pid, url),
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        ws_url = url.replace("http", "ws") + "/v2/stream"
        process = psutil.Process(pid)
        warm = await WsClient.connect(ws_url)  # one polite session first: what a session costs anyway
        await warm.login(*key)
        await warm.subscribe(quotes=["AAPL", "MSFT"])
        await warm.close()
        before = peak = process.memory_info().rss

        for n in range(100):  # wrong secrets of a real key (scrypt each), and keys that do not exist
            client = await WsClient.connect(ws_url)
            wrong = (key[0], new_key()[1]) if n % 2 else new_key()
            await client.send({"action": "auth", "key": wrong[0], "secret": wrong[1]})
            assert await client.until_closed() == ([{"T": "error", "code": 402, "msg": "auth failed"}], 1008)
        peak = max(peak, process.memory_info().rss)

        held = [await WsClient.connect(ws_url, headers=key_headers(*key)) for _ in range(4)]
        for client in held:
            assert await client.message() == {"T": "success", "msg": "authenticated"}
        for _ in range(20):
            extra = await WsClient.connect(ws_url, headers=key_headers(*key))
            assert await extra.until_closed() == (
                [{"T": "error", "code": 406, "msg": "connection limit exceeded"}],
                1008,
            )
        peak = max(peak, process.memory_info().rss)

        mute = await WsClient.connect(ws_url, rcvbuf=4096, max_queue=1)
        # Never authenticates, never reads, keeps asking: each reply (~170 bytes) is queued, and the kernel's
        # socket buffers take megabytes before the outbox holds any.
        asking = {"action": "Q" * 60}
        for sent in range(1, 200_001):
            await mute.send(asking if sent % 2 else {"action": "subscribe", "quotes": ["AAPL"]})
            if sent % 500 == 0:
                peak = max(peak, process.memory_info().rss)
                if await slow_disconnects(http) >= 1:
                    break
        else:
            raise AssertionError("a client that never reads was never cut")
        got, code = await mute.until_closed()
        assert got[-1] == {"T": "error", "code": 407, "msg": "slow client"}
        assert {message["code"] for message in got[:-1]} <= {400, 401}
        assert all("Q" * 61 not in message.get("detail", "") for message in got), "echoes at most a prefix"
        assert code == 1008

        big = await WsClient.connect(ws_url)
        await big.ws.send('{"action":"auth","key":"' + "K" * 64 * 1024 + '"}')
        assert await big.until_closed() == ([], 1009)
        peak = max(peak, process.memory_info().rss)
        for client in held:
            await client.close()
        assert peak - before < MEMORY_BOUND, f"grew {(peak - before) / 2**20:.1f} MiB"
        print(f"RSS growth under abuse: {(peak - before) / 2**20:.1f} MiB (bound {MEMORY_BOUND / 2**20:.0f} MiB)")
