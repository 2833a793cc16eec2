"""The schema as an analyst meets it: descriptions in the database, the role tickpipe_reader, the README's SQL.

One database of its own, migrated to head, with a small day of sample rows
(2024-03-04), so that the README's queries have exact answers to check.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from tests.helpers.services import database_of_its_own, run_sync
from tickpipe import schema

README = Path(__file__).parents[2] / "README.md"
DAY = datetime(2024, 3, 4, tzinfo=UTC)


def at(hour: int, minute: int, second: int = 0) -> datetime:
    return DAY.replace(hour=hour, minute=minute, second=second)


def ns(when: datetime) -> int:
    return int(when.timestamp()) * 10**9


def _sample_rows() -> dict[str, list[tuple[Any, ...]]]:
    """A day of two symbols: quotes (one one-sided, one crossed), trades with a gap, a correction and a
    cancel, minute bars with two minutes missing, a daily and an updated bar, a halt and its resumption."""
    quotes = [
        ("AAPL", at(14, 30), 100.00, 100.02),
        ("AAPL", at(14, 30, 30), 0.0, 100.05),  # one-sided
        ("AAPL", at(14, 31), 100.10, 100.14),
        ("AAPL", at(14, 32), 100.20, 100.18),  # crossed
        ("AAPL", at(14, 35), 100.30, 100.36),
        ("AAPL", DAY + timedelta(days=1, seconds=1), 100.50, 100.60),  # the next day
        ("MSFT", at(14, 30), 400.00, 400.10),
        ("MSFT", at(15, 0), 401.00, 401.30),
    ]
    trades = [  # symbol, time, exchange, id, price, size, latency (ms; None: received_at unknown)
        ("AAPL", at(14, 30, 5), "V", 1, 100.00, 100, 10),
        ("AAPL", at(14, 30, 30), "V", 2, 100.10, 300, 20),
        ("AAPL", at(14, 31, 10), "V", 3, 100.20, 200, 30),
        ("AAPL", at(14, 40), "V", 4, 100.50, 100, 40),
        ("AAPL", at(14, 40, 30), "V", 5, 101.00, 100, 50),  # corrected to 100.60
        ("AAPL", at(14, 41), "V", 7, 100.70, 50, 60),  # cancelled
        ("MSFT", at(14, 30), "Q", 1, 400.00, 10, None),
        ("MSFT", at(14, 35), "Q", 2, 401.00, 10, 5),  # five minutes after: no gap
    ]
    minutes = [0, 1, 3, 4, 5, 7, 8, 9]  # 14:32 and 14:36 missing
    bars = [("AAPL", "1Min", at(14, 30 + m), 100.0, "b") for m in minutes]
    bars[1] = ("AAPL", "1Min", at(14, 31), 100.0, "u")
    bars.append(("AAPL", "1Day", at(5, 0), 100.0, "d"))
    return {
        "quotes": [
            (s, t, ns(t), n, "V", bid, 100, "Q", ask, 200, ["R"], "C", t + timedelta(milliseconds=3))
            for n, (s, t, bid, ask) in enumerate(quotes)
        ],
        "trades": [
            (s, t, ns(t), x, i, p, size, ["@"], "C", None if ms is None else t + timedelta(milliseconds=ms))
            for s, t, x, i, p, size, ms in trades
        ],
        "bars": [(s, tf, t, ns(t), o, o + 1, o - 1, o, 1000, o, 10, u, t) for s, tf, t, o, u in bars],
        "corrections": [
            ("AAPL", at(14, 40, 40), ns(at(14, 40, 40)), "V", 5, 101.00, 100, ["@"], 6, 100.60, 100, ["@"], "C", None)
        ],
        "cancels": [("AAPL", at(14, 41, 20), ns(at(14, 41, 20)), "V", 7, 100.70, 50, "C", "C", None)],
        "statuses": [
            ("AAPL", at(15, 0), ns(at(15, 0)), "H", "Trading Halt", "LUDP", "Volatility Trading Pause", "C", None),
            ("AAPL", at(15, 5), ns(at(15, 5)), "T", "Resume", "LUDP", "Volatility Trading Pause", "C", None),
        ],
    }


@pytest.fixture(scope="module")
def analyst_db(postgres_server_url: str) -> Iterator[str]:
    """A database of its own at head, with the sample day in it; dropped at the end."""

    async def fill(url: str) -> None:
        conn = await asyncpg.connect(url)
        try:
            for table, rows in _sample_rows().items():
                await conn.execute("SELECT tickpipe_ensure_partitions($1, '2024-03-04', '2024-03-05')", table)
                await conn.copy_records_to_table(table, records=rows)
        finally:
            await conn.close()

    with database_of_its_own(postgres_server_url, "tickpipe_analyst") as url:
        run_sync(fill(url))
        yield url


# --- descriptions --------------------------------------------------------------------------------

MODEL = [*schema.metadata.tables.values(), *schema.views.tables.values()]


@pytest.mark.parametrize("relation", MODEL, ids=[table.name for table in MODEL])
async def test_the_database_describes_each_table_and_column_as_the_model_does(analyst_db: str, relation: Any) -> None:
    """What ``\\d+`` shows: the description of the table or view and of each of its columns, the text of
    tickpipe/schema.py; and the model has exactly the database's columns (the view's too)."""
    conn = await asyncpg.connect(analyst_db)
    try:
        described = await conn.fetchval("SELECT obj_description($1::regclass, 'pg_class')", relation.name)
        columns = await conn.fetch(
            "SELECT attname, col_description(attrelid, attnum) AS description FROM pg_attribute "
            "WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            relation.name,
        )
    finally:
        await conn.close()
    assert described == relation.comment
    assert [row["attname"] for row in columns] == [column.name for column in relation.columns]
    assert {row["attname"]: row["description"] for row in columns} == {c.name: c.comment for c in relation.columns}


async def test_every_table_view_and_column_has_a_description(analyst_db: str) -> None:
    """Whatever a migration adds (tables of later revisions too), ``\\d+`` never shows a blank."""
    conn = await asyncpg.connect(analyst_db)
    try:
        blank = await conn.fetch(
            "SELECT c.relname, a.attname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
            "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v') AND NOT c.relispartition "
            "AND c.relname <> 'alembic_version' "
            "AND (coalesce(obj_description(c.oid, 'pg_class'), '') = '' "
            "     OR coalesce(col_description(c.oid, a.attnum), '') = '')"
        )
    finally:
        await conn.close()
    assert [tuple(row) for row in blank] == []


# --- the role tickpipe_reader -----------------------------------------------------------------------


def as_user(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


async def test_a_member_of_tickpipe_reader_reads_everything_and_writes_nothing(analyst_db: str) -> None:
    """The README's recipe (a login role in tickpipe_reader), logged in for real: every table and view
    reads, a partition made after the migration too (default privileges); no write of any kind passes."""
    user, password = f"reader_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admin = await asyncpg.connect(analyst_db)
    await admin.execute(f"CREATE ROLE {user} LOGIN PASSWORD '{password}' IN ROLE tickpipe_reader")
    try:
        await admin.execute("SELECT tickpipe_ensure_partitions('quotes', '2024-03-10', '2024-03-10')")
        reader = await asyncpg.connect(as_user(analyst_db, user, password))
        try:
            for relation in MODEL:
                assert await reader.fetchval(f"SELECT count(*) >= 0 FROM {relation.name}")
            assert await reader.fetchval("SELECT count(*) FROM quotes_p20240304") == 7
            assert await reader.fetchval("SELECT count(*) FROM quotes_p20240310") == 0
            for write in (
                "INSERT INTO quotes SELECT * FROM quotes LIMIT 1",
                "UPDATE trades SET price = 0",
                "DELETE FROM bars",
                "TRUNCATE cancels",
                "DELETE FROM quotes_p20240310",
                "CREATE TABLE mine (x int)",
                "SELECT tickpipe_drop_partitions_before('quotes', '2030-01-01')",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await reader.execute(write)
        finally:
            await reader.close()
        assert await admin.fetchval("SELECT count(*) FROM quotes") == 8
    finally:
        await admin.execute(f"DROP OWNED BY {user}")
        await admin.execute(f"DROP ROLE {user}")
        await admin.close()


# --- the README's "Querying the data" -------------------------------------------------------------------


def readme_sql() -> list[str]:
    text = README.read_text()
    section = text.split("\n## Querying the data\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```sql\n(.*?)^```$", section, flags=re.DOTALL | re.MULTILINE)


def rounded(value: Any) -> Any:
    return round(value, 6) if isinstance(value, float) else value


ms = timedelta(milliseconds=1)

#: What each ``sql`` block of the section returns on the sample day, in order.
EXPECTED: list[list[tuple[Any, ...]]] = [
    [],  # CREATE ROLE alice ... (checked apart, then rolled back)
    [  # the last quote of each symbol that day
        ("AAPL", at(14, 35), 100.30, 100, 100.36, 200, 0.06),
        ("MSFT", at(15, 0), 401.00, 100, 401.30, 200, 0.30),
    ],
    [("AAPL", DAY + timedelta(days=1, seconds=1), 100.50, 100.60), ("MSFT", at(15, 0), 401.00, 401.30)],
    [  # minute VWAP: the correction applied, the cancelled trade left out
        (at(14, 30), (100.00 * 100 + 100.10 * 300) / 400, 400, 2),
        (at(14, 31), 100.20, 200, 1),
        (at(14, 40), (100.50 + 100.60) / 2, 200, 2),
    ],
    [  # spread statistics: the one-sided and the crossed quote left out
        ("AAPL", 3, 0.04, 0.04, 0.06, (0.02 / 100.01 + 0.04 / 100.12 + 0.06 / 100.33) / 3 * 10000),
        ("MSFT", 2, 0.20, 0.20, 0.30, (0.10 / 400.05 + 0.30 / 401.15) / 2 * 10000),
    ],
    [("AAPL", at(14, 31, 10), at(14, 40), timedelta(minutes=8, seconds=50))],
    [(at(14, 32),), (at(14, 36),)],
    [
        (at(14, 40, 30), "V", 5, 101.00, 100.60, 100, 100, 6, None),
        (at(14, 41), "V", 7, 100.70, 100.70, 50, 50, None, "C"),
    ],
    [("AAPL", 6, 35 * ms, 60 * ms), ("MSFT", 1, 5 * ms, 5 * ms)],
    [
        ("AAPL", at(15, 0), "H", "Trading Halt", "LUDP", "Volatility Trading Pause"),
        ("AAPL", at(15, 5), "T", "Resume", "LUDP", "Volatility Trading Pause"),
    ],
]


def test_the_readme_section_has_the_examples_this_test_expects() -> None:
    blocks = readme_sql()
    assert len(blocks) == len(EXPECTED), "a new ```sql block in README's 'Querying the data' needs its answer here"
    assert blocks[0].startswith("CREATE ROLE alice LOGIN")


@pytest.mark.parametrize("n", range(len(EXPECTED)))
async def test_readme_sql_returns_the_expected_rows(analyst_db: str, n: int) -> None:
    """Each block as an analyst pastes it, in a transaction rolled back afterwards (the role example too)."""
    sql = readme_sql()[n]
    conn = await asyncpg.connect(analyst_db)
    transaction = conn.transaction()
    await transaction.start()
    try:
        await conn.execute("SET LOCAL TimeZone = 'America/New_York'")  # the literals say +00: no effect
        rows = await conn.fetch(sql)
        assert [tuple(rounded(v) for v in row) for row in rows] == [
            tuple(rounded(v) for v in row) for row in EXPECTED[n]
        ]
        if sql.startswith("CREATE ROLE alice"):
            member = await conn.fetchval(
                "SELECT pg_has_role('alice', 'tickpipe_reader', 'MEMBER') AND has_table_privilege('alice', "
                "'trades_corrected', 'SELECT') AND NOT has_table_privilege('alice', 'quotes', 'INSERT')"
            )
            assert member
    finally:
        await transaction.rollback()
        await conn.close()
