"""The news feed's table: news (daily partitions on created_at, a GIN index on symbols).

One row per story, keyed by Alpaca's id and its creation time (the partition key must be in the key):
a story re-sent with a newer ``updated_at`` replaces the row (the consumers' upsert), a redelivery
changes nothing. Searched by symbol with ``symbols && ARRAY['AAPL']`` (the GIN index). Descriptions
frozen here as in 0005 and 0006; tickpipe_reader reads it (0003's default privileges).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = """
CREATE TABLE news (
    news_id BIGINT NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL,
    headline TEXT NOT NULL,
    summary TEXT NOT NULL,
    author TEXT NOT NULL,
    url TEXT,
    content TEXT NOT NULL,
    symbols TEXT[] NOT NULL,
    source TEXT NOT NULL,
    received_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT news_pkey PRIMARY KEY (news_id, created_at)
)
 PARTITION BY RANGE (created_at);

CREATE INDEX news_symbols_idx ON news USING gin (symbols);
"""

PARTITIONED_TABLES = ("news",)

#: Description of each table, then of each of its columns.
COMMENTS: dict[str, tuple[str, dict[str, str]]] = {
    "news": (
        "News stories (Alpaca's news stream, from Benzinga): one row per story, its latest version (a story "
        "re-sent with a newer updated_at replaces it). Search by symbol with symbols && ARRAY['AAPL']. Daily "
        "partitions news_pYYYYMMDD.",
        {
            "news_id": "Alpaca's story id; a story re-sent with it is an update",
            "created_at": "when the story was first published (UTC, as Alpaca sent it); the daily partition key",
            "updated_at": "when the story was last changed (UTC): the stored version is the one with the newest",
            "headline": "the story's headline",
            "summary": "the story's summary (often its first sentence; may be empty)",
            "author": "who wrote it (e.g. Benzinga Newsdesk)",
            "url": "where the story is published; NULL when Alpaca gives none",
            "content": "the story's text, HTML as sent (empty when not sent)",
            "symbols": "the symbols the story is about, as Alpaca lists them (may be empty: a story about the market)",
            "source": "where the story comes from (e.g. benzinga)",
            "received_at": "when tickpipe's producer received this version of the story from Alpaca (the "
            "producer's clock); NULL when unknown",
        },
    ),
}


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def upgrade() -> None:
    for statement in TABLES.split(";")[:-1]:
        op.execute(statement)
    for name in PARTITIONED_TABLES:
        op.execute(
            f"SELECT tickpipe_ensure_partitions('{name}', (now() AT TIME ZONE 'UTC')::date - 1, "
            f"(now() AT TIME ZONE 'UTC')::date + 7)"
        )
    for table, (description, columns) in COMMENTS.items():
        op.execute(f"COMMENT ON TABLE {table} IS {_quoted(description)}")
        for column, text in columns.items():
            op.execute(f"COMMENT ON COLUMN {table}.{column} IS {_quoted(text)}")


def downgrade() -> None:
    for name in reversed(PARTITIONED_TABLES):
        op.execute(f"DROP TABLE IF EXISTS {name} CASCADE")
