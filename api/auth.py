"""API keys, as Alpaca's: a key id and a secret, checked on every data route and on the stream.

Every key check of the API lives here. A client sends the key id and its
secret in Alpaca's headers (``APCA-API-KEY-ID``, ``APCA-API-SECRET-KEY``) on
HTTP and on the WebSocket upgrade, or in the stream's auth message. Keys come
from the ``api_keys`` table (``tickpipe keys add|list|revoke``; migration
0004), where only a salted scrypt hash of each secret is kept, and from
TICKPIPE_API_KEYS (``KEY:SECRET`` pairs of the environment).

When: TICKPIPE_API_AUTH ``on`` always, ``off`` never, ``auto`` (the default)
once any key exists (a revoked one too: revoking the last key does not open
the API again) or when the API listens beyond loopback; there,
:func:`check_exposure` refuses to start with no key at all, unless auth is
explicitly off.

Fast: scrypt costs ~50 ms of CPU by design, so a (key id, SHA-256 of the
secret) pair that verified once is remembered (:data:`VERIFIED_CACHE` pairs
at most), and the next request with it costs one hash. Hashing runs on a
thread, one at a time, so wrong secrets sent in a loop cost one core at most
and never stall the event loop.

Per key, across every API process that shares the Redis (``tickpipe api
--workers N``, replicas): WebSocket connections (406 beyond) and HTTP requests
per minute (429 with ``Retry-After``, a moving window), both counted in Redis
by :mod:`api.key_limits`, which falls back to counting in each process while
Redis does not answer. Per connection: symbols (405 beyond, read by the stream
handler). Keys are reloaded every API_KEYS_REFRESH_S: a revoked key is
refused from then on and its open streams are closed. Until the first read
succeeds (PostgreSQL down at start-up) no key is known: beyond loopback, or
with TICKPIPE_API_AUTH=on, every client is refused; on loopback in ``auto``
the API stays open until it learns that keys exist.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import secrets
import string
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final, Protocol

import asyncpg

from api.key_limits import KeyLimits
from tickpipe.admin import is_loopback
from tickpipe.db import asyncpg_dsn, connection_errors
from tickpipe.errors import SettingsError
from tickpipe.settings import Settings

log = logging.getLogger(__name__)

KEY_HEADER: Final = "APCA-API-KEY-ID"
SECRET_HEADER: Final = "APCA-API-SECRET-KEY"
#: scrypt's cost: 16 MiB and ~50 ms per hash (OWASP's minimum for scrypt is N=2**17 with r=8 for passwords;
#: our secrets are 240 random bits, so the hash guards a leaked table, not a guessable word).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
#: Verified (key id, secret digest) pairs remembered; past this many the memory starts over.
VERIFIED_CACHE: Final = 1024
KEY_ID_CHARS: Final = 20
_KEY_ALPHABET: Final = string.ascii_uppercase + string.digits

SELECT_KEYS: Final = (
    "SELECT key_id, secret_hash, revoked_at IS NOT NULL AS revoked, "
    "max_connections, max_symbols, requests_per_minute, scopes FROM api_keys"
)


# --- secrets -----------------------------------------------------------------------------------------------
def new_key() -> tuple[str, str]:
    """A new key id (``TK`` and 18 capitals or digits, as Alpaca's ``PK...``) and its secret (40 characters)."""
    key_id = "TK" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(KEY_ID_CHARS - 2))
    return key_id, secrets.token_urlsafe(30)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def hash_secret(secret: str, *, salt: bytes | None = None) -> str:
    """``scrypt$n$r$p$salt$hash`` of ``secret``: what the table keeps."""
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def plain_hash(secret: str) -> str:
    """``sha256$hex``: how a TICKPIPE_API_KEYS secret is held (it is in the environment as it is anyway)."""
    return "sha256$" + hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored: str) -> bool:
    """Whether ``secret`` is the one ``stored`` was made from (constant time); False for a malformed hash."""
    scheme, _, rest = stored.partition("$")
    if scheme == "sha256":
        return hmac.compare_digest(plain_hash(secret), stored)
    if scheme != "scrypt":
        return False
    try:
        n, r, p, salt, digest = rest.split("$")
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(
            secret.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(got, expected)


# --- where the API listens ---------------------------------------------------------------------------------
def check_exposure(settings: Settings, host: str, count_keys: Callable[[], int]) -> None:
    """Refuse to serve beyond loopback with no key at all (SettingsError, one line), unless auth is off."""
    if settings.tickpipe_api_auth == "off" or is_loopback(host) or settings.tickpipe_api_keys:
        return
    if count_keys() == 0:
        raise SettingsError(
            f"API_HOST={host} is reachable beyond this machine and no API key exists: add one with "
            "`tickpipe keys add NAME` (or set TICKPIPE_API_AUTH=off to serve without keys)"
        )


@asynccontextmanager
async def connected(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection of its own to the keys' database; a missing ``api_keys`` table is a SettingsError."""
    with connection_errors(database_url):
        conn = await asyncpg.connect(asyncpg_dsn(database_url), timeout=10)
    try:
        yield conn
    except asyncpg.UndefinedTableError:
        raise SettingsError("the database has no api_keys table yet: run `tickpipe migrate` first") from None
    finally:
        await conn.close()


def count_keys(database_url: str) -> int:
    """Rows of ``api_keys`` (revoked ones too): start-up is synchronous, so asked on a thread of its own."""

    async def count() -> int:
        async with connected(database_url) as conn:
            return int(await conn.fetchval("SELECT count(*) FROM api_keys"))

    with ThreadPoolExecutor(1, thread_name_prefix="count-api-keys") as thread:
        return thread.submit(asyncio.run, count()).result()


# --- the keys of a running API ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: str
    secret_hash: str
    max_connections: int
    max_symbols: int
    requests_per_minute: int
    #: What it may see beyond market data (``trade_updates``: the account's order updates; migration 0008).
    scopes: frozenset[str] = frozenset()


class Denied(Exception):
    """A request without a usable key, or over its key's limit: Alpaca's JSON ``{"code", "message"}``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = status * 100_000 + 10_000  # Alpaca's style: 40110000, 40310000, 42910000
        self.message = message
        self.headers = headers or {}


class Fetcher(Protocol):
    """What the keys are read through: the API's pool."""

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]: ...


class Keys:
    """The keys one API process accepts, what each may still do, and who uses them now.

    ``limits``: where streams and requests are counted (:class:`KeyLimits`); by default in this process alone.
    """

    def __init__(self, settings: Settings, db: Fetcher, *, exposed: bool, limits: KeyLimits | None = None) -> None:
        self.settings = settings
        self.db = db
        self.exposed = exposed
        self.loaded = False
        self.any_key = False  # a row exists (revoked or not), or TICKPIPE_API_KEYS is set
        self._keys: dict[str, ApiKey] = {}
        self._static = {
            key: self._key(key, plain_hash(secret), None, None, None) for key, secret in settings.api_key_pairs.items()
        }
        self._verified: dict[tuple[str, bytes], str] = {}
        self._hashing = asyncio.Lock()
        self._sessions: dict[str, dict[object, Callable[[], None]]] = {}
        #: Each stream's slot in ``limits``: session -> (key id, member).
        self._slots: dict[object, tuple[str, str]] = {}
        self.limits = KeyLimits(None) if limits is None else limits

    def _key(
        self,
        key_id: str,
        secret_hash: str,
        conns: int | None,
        symbols: int | None,
        rpm: int | None,
        scopes: list[str] | None = None,
    ) -> ApiKey:
        s = self.settings
        return ApiKey(
            key_id,
            secret_hash,
            conns or s.api_key_max_connections,
            symbols or s.ws_max_symbols,
            rpm or s.api_key_requests_per_minute,
            frozenset(scopes or ()),
        )

    @property
    def required(self) -> bool:
        """Whether a client must show a key now (TICKPIPE_API_AUTH, and in ``auto`` the keys and the address)."""
        mode = self.settings.tickpipe_api_auth
        if mode != "auto":
            return mode == "on"
        return self.exposed or self.any_key or bool(self._static)

    def required_for(self, server: tuple[str, int | None] | None) -> bool:
        """:attr:`required`, or in ``auto`` a connection that came in on an address beyond loopback.

        ``server`` is the connection's local address (ASGI's ``scope["server"]``): whatever the API
        was told it binds (``--host``), a client that reached it from another machine needs a key.
        """
        if self.required:
            return True
        return self.settings.tickpipe_api_auth == "auto" and (server is None or not is_loopback(str(server[0])))

    # --- loading ----------------------------------------------------------------------------------------
    async def refresh(self) -> None:
        """Read the table again; the streams of keys revoked (or gone) since are closed."""
        rows = await self.db.fetch(SELECT_KEYS)
        keys = dict(self._static)
        for row in rows:
            if not row["revoked"]:
                keys[row["key_id"]] = self._key(
                    row["key_id"],
                    row["secret_hash"],
                    row["max_connections"],
                    row["max_symbols"],
                    row["requests_per_minute"],
                    row["scopes"],
                )
        self._keys, self.any_key, self.loaded = keys, bool(rows), True
        for key_id in [key_id for key_id in self._sessions if key_id not in keys]:
            for close in list(self._sessions.pop(key_id).values()):
                close()

    async def keep_fresh(self) -> None:
        """Reload every API_KEYS_REFRESH_S until cancelled (the lifespan's task); PostgreSQL down: try again."""
        while True:
            await asyncio.sleep(self.settings.api_keys_refresh_s)
            try:
                await self.refresh()
            except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
                level = logging.WARNING if self.loaded else logging.ERROR
                log.log(level, "API keys not reloaded, PostgreSQL did not answer: %s", type(exc).__name__)
            except Exception:  # the pool's own errors (PoolBusy ...): keep the keys we have
                log.exception("API keys not reloaded")

    # --- checking ---------------------------------------------------------------------------------------
    async def verify(self, key_id: str, secret: str) -> ApiKey | None:
        """The key if ``secret`` is its secret, else None."""
        key = self._keys.get(key_id)
        if key is None or len(secret) > 256:
            return None
        remembered = (key_id, hashlib.sha256(secret.encode()).digest())
        if self._verified.get(remembered) == key.secret_hash:
            return key
        async with self._hashing:
            ok = await asyncio.to_thread(secret_matches, secret, key.secret_hash)
        if not ok:
            return None
        if len(self._verified) >= VERIFIED_CACHE:
            self._verified.clear()
        self._verified[remembered] = key.secret_hash
        return key

    async def http_key(
        self, key_id: str | None, secret: str | None, server: tuple[str, int | None] | None
    ) -> ApiKey | None:
        """The key of an HTTP request (``server``: the address it came in on), counted against its rate;
        None when auth is off.

        Raises :class:`Denied`: 401 without a key, 403 with a wrong one, 429 over the key's rate.
        """
        if not self.required_for(server):
            return None
        if not key_id or not secret:
            raise Denied(401, f"request is not authorized: send the {KEY_HEADER} and {SECRET_HEADER} headers")
        key = await self.verify(key_id, secret)
        if key is None:
            raise Denied(403, "forbidden: unknown or revoked key, or a wrong secret")
        wait = await self.limits.admit_request(key.key_id, key.requests_per_minute)
        if wait is not None:
            message = f"too many requests: at most {key.requests_per_minute} per minute for this key"
            raise Denied(429, message, {"Retry-After": str(wait)})
        return key

    # --- streams ------------------------------------------------------------------------------------------
    async def attach(self, key: ApiKey, session: object, on_revoked: Callable[[], None]) -> bool:
        """Count a stream of ``key``; False when it has ``max_connections`` already, in every process (406)."""
        member = await self.limits.take_stream(key.key_id, key.max_connections)
        if member is None:
            return False
        self._slots[session] = (key.key_id, member)
        self._sessions.setdefault(key.key_id, {})[session] = on_revoked
        return True

    async def detach(self, key: ApiKey, session: object) -> None:
        """Give the stream's slot back; it leaves :meth:`connections` once the slot is free for any process."""
        slot = self._slots.pop(session, None)
        try:
            if slot is not None:
                await self.limits.give_stream(*slot)
        finally:
            sessions = self._sessions.get(key.key_id)
            if sessions is not None:
                sessions.pop(session, None)
                if not sessions:
                    del self._sessions[key.key_id]

    def active(self, key_id: str) -> bool:
        """Whether this process accepts ``key_id`` now (as of its last reload)."""
        return key_id in self._keys

    def connections(self, key_id: str) -> int:
        """Streams of ``key_id`` this process holds (the limit counts every process's: see :mod:`api.key_limits`)."""
        return len(self._sessions.get(key_id, ()))
