"""``tickpipe keys add|list|revoke`` as a user runs it: a process, on a database of this module."""

from __future__ import annotations

import os
import subprocess
import sys

import asyncpg

from api.auth import secret_matches


def keys(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "SERVICE_WAIT_S": "5"}
    return subprocess.run(
        [sys.executable, "-m", "tickpipe.cli", "keys", *args], env=env, capture_output=True, text=True, timeout=60
    )


async def test_add_prints_the_key_once_list_never_shows_a_secret_revoke_stops_it(keyed_db: str) -> None:
    added = keys(keyed_db, "add", "dashboard", "--connections", "3", "--requests-per-minute", "120")
    assert added.returncode == 0, added.stderr
    key_id, secret = added.stdout.splitlines()[-1].split(" ")
    assert key_id.startswith("TK") and len(secret) == 40
    conn = await asyncpg.connect(keyed_db)
    try:
        row = await conn.fetchrow("SELECT * FROM api_keys WHERE key_id = $1", key_id)
    finally:
        await conn.close()
    assert row is not None and secret not in row["secret_hash"] and secret_matches(secret, row["secret_hash"])
    assert (row["name"], row["max_connections"], row["max_symbols"], row["requests_per_minute"]) == (
        "dashboard",
        3,
        None,
        120,
    )

    listed = keys(keyed_db, "list")
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if line.startswith(key_id))
    assert "active" in line and "dashboard" in line
    assert secret not in listed.stdout

    assert keys(keyed_db, "revoke", key_id).returncode == 0
    assert "revoked" in next(line for line in keys(keyed_db, "list").stdout.splitlines() if line.startswith(key_id))
    again = keys(keyed_db, "revoke", key_id)
    assert again.returncode == 0 and "already" in again.stdout


def test_revoking_an_unknown_key_fails_naming_it(keyed_db: str) -> None:
    result = keys(keyed_db, "revoke", "TKNOSUCHKEY")
    assert result.returncode == 1
    assert "TKNOSUCHKEY" in result.stderr


def test_add_refuses_a_limit_below_one(keyed_db: str) -> None:
    result = keys(keyed_db, "add", "bad", "--symbols", "0")
    assert result.returncode == 1
    assert result.stderr.startswith("tickpipe keys: ") and len(result.stderr.splitlines()) == 1
