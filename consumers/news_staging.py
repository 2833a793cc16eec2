"""News stories to staging rows: checked, and in the cheapest form to send (as :mod:`consumers.staging`).

A story's times travel as nanosecond integers (``created_ns``, ``updated_ns``; PostgreSQL computes the
``timestamptz`` values) and its symbols as one array literal. What PostgreSQL cannot hold or Alpaca
never sends raises :class:`~tickpipe.errors.DecodeError` naming the field, and the record becomes a
dead letter: an id outside ``bigint`` (or negative), a time outside 1970-2200, an empty headline or
symbol, and a NUL character in any text (PostgreSQL's ``text`` refuses it, which would fail the
whole batch rather than the one story).
"""

from __future__ import annotations

from typing import Any

from consumers.staging import MAX_BIGINT, MAX_TIMESTAMP_NS, array_literal, out_of_range
from tickpipe.errors import DecodeError
from tickpipe.news_events import NewsStory


def _check(ev: NewsStory) -> None:
    if not 0 <= ev.news_id <= MAX_BIGINT:
        raise out_of_range("id", f"an integer from 0 to {MAX_BIGINT}", ev.news_id)
    for name, stamp in (("created_at", ev.created_at), ("updated_at", ev.updated_at), ("_r", ev.received_at)):
        if not 0 <= stamp < MAX_TIMESTAMP_NS:
            raise out_of_range(name, "nanoseconds between 1970 and 2200", stamp)
    if not ev.headline.strip():
        raise DecodeError("headline", "expected a headline, got an empty string")
    if any(not symbol for symbol in ev.symbols):
        raise DecodeError("symbols", f"expected non-empty symbols, got {list(ev.symbols)!r}")
    texts = (("headline", ev.headline), ("summary", ev.summary), ("author", ev.author), ("url", ev.url or ""),
             ("content", ev.content), ("source", ev.source), ("symbols", "".join(ev.symbols)))  # fmt: skip
    for name, text in texts:
        if "\x00" in text:
            raise DecodeError(name, "expected text without NUL characters (PostgreSQL cannot store them)")


def news_row(ev: NewsStory) -> tuple[Any, ...]:
    _check(ev)
    return (
        ev.news_id, ev.created_at, ev.updated_at, ev.received_at, ev.headline, ev.summary, ev.author, ev.url,
        ev.content, array_literal(ev.symbols), ev.source,
    )  # fmt: skip
