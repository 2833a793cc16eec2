"""Table api_keys: the API's keys (key id and a hash of its secret), as ``tickpipe keys`` manages them.

The secret itself is never stored: ``secret_hash`` is scrypt of it with a salt
of its own, in the form ``scrypt$n$r$p$salt$hash`` (see ``api.auth``), so a
copy of the database gives nobody a working key. A revoked key keeps its row
(``revoked_at``), so ``tickpipe keys list`` can say when it stopped working.
The three limits are the key's own; NULL takes the API's setting.

The read-only role of 0003 may read every table made after it by default;
not this one.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

READER = "tickpipe_reader"

TABLE = """
CREATE TABLE api_keys (
    key_id TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
    revoked_at TIMESTAMP WITH TIME ZONE,
    max_connections INTEGER CHECK (max_connections > 0),
    max_symbols INTEGER CHECK (max_symbols > 0),
    requests_per_minute INTEGER CHECK (requests_per_minute > 0),
    CONSTRAINT api_keys_pkey PRIMARY KEY (key_id)
)
"""

COMMENTS = {
    "": "keys of the API (tickpipe keys add|list|revoke): a client sends the key id and its secret",
    "key_id": "public identifier of the key (APCA-API-KEY-ID, the key of the auth message)",
    "secret_hash": "scrypt$n$r$p$salt$hash of the secret (the secret itself is shown once, never stored)",
    "name": "what the key is for, as given to tickpipe keys add",
    "created_at": "when the key was added",
    "revoked_at": "when tickpipe keys revoke stopped it; NULL while it works",
    "max_connections": "WebSocket connections at once per API process; NULL: API_KEY_MAX_CONNECTIONS",
    "max_symbols": "symbols per WebSocket connection; NULL: WS_MAX_SYMBOLS",
    "requests_per_minute": "HTTP requests per minute per API process; NULL: API_KEY_REQUESTS_PER_MINUTE",
}

NOT_FOR_READERS = f"""
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{READER}') THEN
        REVOKE ALL ON api_keys FROM {READER};
    END IF;
END $$
"""


def upgrade() -> None:
    op.execute(TABLE)
    for column, text in COMMENTS.items():
        target = f"COLUMN api_keys.{column}" if column else "TABLE api_keys"
        quoted = text.replace("'", "''")
        op.execute(f"COMMENT ON {target} IS '{quoted}'")
    op.execute(NOT_FOR_READERS)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS api_keys")
