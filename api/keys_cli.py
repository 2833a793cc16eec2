"""``tickpipe keys add|list|revoke``: the API keys in PostgreSQL (``DATABASE_URL``).

``add NAME`` makes a key and prints its id and secret once, on its last line,
separated by one space (only a hash of the secret is stored: a lost secret
is replaced, not recovered). ``list`` shows every key without its secret,
``revoke KEY_ID`` stops one; each API process refuses it within
API_KEYS_REFRESH_S and closes its streams. To rotate a key: add a new one,
move the clients to it, revoke the old one.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import asyncpg

from api.auth import connected, hash_secret, new_key
from tickpipe.errors import SettingsError
from tickpipe.settings import get_settings

#: The scope that lets a key see the account's order updates.
TRADE_UPDATES = "trade_updates"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tickpipe keys", description=(__doc__ or "").split("\n\n")[0])
    commands = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add = commands.add_parser("add", help="make a key; prints KEY_ID SECRET on its last line (the secret only once)")
    add.add_argument("name", help="what the key is for (a person, an application)")
    add.add_argument("--connections", type=int, help="WebSocket connections at once (default API_KEY_MAX_CONNECTIONS)")
    add.add_argument("--symbols", type=int, help="symbols per WebSocket connection (default WS_MAX_SYMBOLS)")
    add.add_argument(
        "--requests-per-minute", type=int, help="HTTP requests per minute (default API_KEY_REQUESTS_PER_MINUTE)"
    )
    add.add_argument(
        "--trade-updates",
        action="store_true",
        help="let the key see the account's order updates (WS /stream, GET /trade_updates); without it, market "
        "data only",
    )
    commands.add_parser("list", help="every key, its state and limits (never a secret)")
    revoke = commands.add_parser("revoke", help="stop a key (API processes refuse it within API_KEYS_REFRESH_S)")
    revoke.add_argument("key_id", help="the key id, as `tickpipe keys list` shows it")
    return p


async def insert_key(
    conn: asyncpg.Connection,
    name: str,
    connections: int | None = None,
    symbols: int | None = None,
    requests_per_minute: int | None = None,
    scopes: tuple[str, ...] = (),
) -> tuple[str, str]:
    """A new key in ``api_keys`` with these limits (None: the API's settings) and scopes (``trade_updates``:
    the order updates), its secret kept only as a hash; its id and secret."""
    key_id, secret = new_key()
    await conn.execute(
        "INSERT INTO api_keys (key_id, secret_hash, name, max_connections, max_symbols, requests_per_minute, scopes) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7)",
        key_id,
        hash_secret(secret),
        name,
        connections,
        symbols,
        requests_per_minute,
        list(scopes),
    )
    return key_id, secret


async def add(url: str, args: argparse.Namespace) -> int:
    limits = (args.connections, args.symbols, args.requests_per_minute)
    if any(limit is not None and limit < 1 for limit in limits):
        raise SettingsError("--connections, --symbols and --requests-per-minute must be at least 1")
    async with connected(url) as conn:
        key_id, secret = await insert_key(
            conn, args.name, *limits, scopes=(TRADE_UPDATES,) if args.trade_updates else ()
        )
    seen = " with the order updates" if args.trade_updates else ""
    print(f"API key {key_id} ({args.name}) added{seen}. Its secret is shown this once; keep it safe:")
    print(f"{key_id} {secret}")
    return 0


async def list_keys(url: str) -> int:
    async with connected(url) as conn:
        rows = await conn.fetch(
            "SELECT key_id, name, created_at, revoked_at, max_connections, max_symbols, requests_per_minute, scopes "
            "FROM api_keys ORDER BY created_at, key_id"
        )
    print(f"{'KEY_ID':<22}{'CREATED (UTC)':<18}{'STATE':<26}{'CONNS':>6}{'SYMBOLS':>8}{'RPM':>7}  {'SCOPES':<15}NAME")
    for row in rows:
        state = "active" if row["revoked_at"] is None else f"revoked {row['revoked_at']:%Y-%m-%d %H:%M}"
        limits = [str(row[name]) if row[name] else "-" for name in ("max_connections", "max_symbols")]
        rpm = str(row["requests_per_minute"] or "-")
        print(
            f"{row['key_id']:<22}{row['created_at']:%Y-%m-%d %H:%M}  {state:<26}"
            f"{limits[0]:>6}{limits[1]:>8}{rpm:>7}  {','.join(row['scopes']) or '-':<15}{row['name']}"
        )
    return 0


async def revoke(url: str, key_id: str) -> int:
    async with connected(url) as conn:
        done = await conn.fetchval(
            "UPDATE api_keys SET revoked_at = now() WHERE key_id = $1 AND revoked_at IS NULL RETURNING key_id", key_id
        )
        known = done is not None or await conn.fetchval("SELECT true FROM api_keys WHERE key_id = $1", key_id)
    if not known:
        print(f"tickpipe keys: no key {key_id!r} (see `tickpipe keys list`)", file=sys.stderr)
        return 1
    print(f"API key {key_id} {'revoked' if done else 'was revoked already'}")
    return 0


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    url = get_settings().database_url
    if not url:
        raise SettingsError("DATABASE_URL: expected a postgresql:// URL for the database that holds the API keys")
    if args.command == "add":
        return asyncio.run(add(url, args))
    if args.command == "list":
        return asyncio.run(list_keys(url))
    return asyncio.run(revoke(url, args.key_id))
