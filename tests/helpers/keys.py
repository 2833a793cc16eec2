"""API keys for tests: rows written as ``tickpipe keys add`` writes them, revoked as it revokes them."""

from __future__ import annotations

import asyncpg

from api.auth import KEY_HEADER, SECRET_HEADER, connected
from api.keys_cli import insert_key


async def add_key(
    database_url: str,
    name: str = "test",
    *,
    connections: int | None = None,
    symbols: int | None = None,
    requests_per_minute: int | None = None,
    trade_updates: bool = False,
) -> tuple[str, str]:
    """A new key in ``api_keys`` with these limits (None: the API's settings), allowed to see the order
    updates with ``trade_updates``; its id and secret."""
    scopes = ("trade_updates",) if trade_updates else ()
    async with connected(database_url) as conn:
        return await insert_key(conn, name, connections, symbols, requests_per_minute, scopes)


async def revoke_key(database_url: str, key_id: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE api_keys SET revoked_at = now() WHERE key_id = $1", key_id)
    finally:
        await conn.close()


def key_headers(key_id: str, secret: str) -> dict[str, str]:
    """Alpaca's headers for a key, as on HTTP and the WebSocket upgrade."""
    return {KEY_HEADER: key_id, SECRET_HEADER: secret}
