"""Records to rows: good records become staging rows, bad ones dead letters naming why, offsets move on."""

from __future__ import annotations

import msgpack
import msgspec
import pytest
from aiokafka.structs import TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from consumers.batch import Batch, build_batch
from consumers.staging import MAX_TIMESTAMP_NS, array_literal, key_of
from consumers.tables import SPECS
from tests.helpers.consumers import Rec, make_bars, make_quotes, make_trades
from tickpipe.codecs import encode_kafka, event_key
from tickpipe.events import Bar, Event, Quote, TradingStatus, UpdatedBar

TP = TopicPartition("t.quotes", 3)


def recs(values: list[bytes | None], tp: TopicPartition = TP, first: int = 100) -> list[Rec]:
    return [Rec(tp.topic, tp.partition, first + i, b"KEY", value) for i, value in enumerate(values)]


def one(table: str, values: list[bytes | None]) -> Batch:
    return build_batch(table, {TP: recs(values)})


def quote_dict(**changes: object) -> dict[str, object]:
    data: dict[str, object] = msgspec.to_builtins(make_quotes(1)[0])
    data.update(changes)
    return data


def test_good_records_become_rows_in_the_staging_order() -> None:
    quotes = make_quotes(20)
    batch = one("quotes", [encode_kafka(q) for q in quotes])
    assert batch.records == 20 and not batch.dead and not batch.skipped
    assert batch.rows == [SPECS["quotes"].stage_row(q) for q in quotes]
    first = batch.rows[0]
    assert first[:4] == (quotes[0].symbol, quotes[0].timestamp, quotes[0].received_at, event_key(quotes[0]))
    assert batch.offsets == {TP: 120}
    assert [r.offset for r in batch.sources] == list(range(100, 120))


def test_offsets_are_per_partition_and_cover_dead_records() -> None:
    other = TopicPartition("t.quotes", 0)
    status = TradingStatus(symbol="AAPL", timestamp=1, status_code="H")
    batch = build_batch(
        "quotes",
        {TP: recs([b"\xc1garbage", encode_kafka(status)]), other: recs([encode_kafka(make_quotes(1)[0])], other, 7)},
    )
    assert batch.offsets == {TP: 102, other: 8}
    assert len(batch.rows) == 1 and batch.dead_kinds == {"decode": 1, "misrouted": 1} and not batch.skipped


def test_undecodable_bytes_become_a_dead_letter_with_source_and_original() -> None:
    batch = one("quotes", [b"\xc1 not msgpack"])
    (letter,) = batch.dead
    assert letter.stage == "consumer" and letter.field == "$"
    assert "not a msgpack event" in letter.reason
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == ("t.quotes", 3, 100)
    assert letter.original == b"\xc1 not msgpack" and letter.key == b"KEY"
    assert batch.dead_kinds == {"decode": 1}


def test_a_record_without_value_is_a_dead_letter() -> None:
    batch = one("quotes", [None])
    assert batch.dead[0].reason == "expected an event, got a record without a value"


def test_a_missing_field_is_named() -> None:
    data = quote_dict()
    del data["bp"]
    batch = one("quotes", [msgpack.packb(data)])
    assert batch.dead[0].field == "bp" and "missing required field" in batch.dead[0].reason


def test_a_wrong_type_is_named() -> None:
    batch = one("quotes", [msgpack.packb(quote_dict(bs="ten"))])
    assert batch.dead[0].field == "bs" and "Expected `int`" in batch.dead[0].reason


@pytest.mark.parametrize(
    ("changes", "field", "expected"),
    [
        ({"bs": -1}, "bs", "an integer from 0 to"),
        ({"as": 2**63}, "as", "an integer from 0 to"),
        ({"bp": float("nan")}, "bp", "a finite price >= 0"),
        ({"ap": float("inf")}, "ap", "a finite price >= 0"),
        ({"bp": -0.01}, "bp", "a finite price >= 0"),
        ({"t": MAX_TIMESTAMP_NS}, "t", "between 1970 and 2200"),
        ({"t": -1}, "t", "between 1970 and 2200"),
        ({"_r": -5}, "_r", "between 1970 and 2200"),
        ({"S": ""}, "S", "expected a symbol"),
    ],
)
def test_values_out_of_range_are_dead_letters_naming_field_and_value(
    changes: dict[str, object], field: str, expected: str
) -> None:
    batch = one("quotes", [msgpack.packb(quote_dict(**changes))])
    (letter,) = batch.dead
    assert letter.field == field and expected in letter.reason
    assert batch.dead_kinds == {"range": 1} and not batch.rows


def test_out_of_range_in_trades_and_bars() -> None:
    trade = msgspec.to_builtins(make_trades(1)[0])
    bar = msgspec.to_builtins(make_bars(1)[0])
    assert one("trades", [msgpack.packb({**trade, "i": 2**64 - 1})]).dead[0].field == "i"
    assert one("bars", [msgpack.packb({**bar, "vw": float("-inf")})]).dead[0].field == "vw"
    assert one("bars", [msgpack.packb({**bar, "n": -3})]).dead[0].field == "n"


def test_a_trade_on_the_quotes_topic_is_misrouted() -> None:
    batch = one("quotes", [encode_kafka(make_trades(1)[0])])
    assert batch.dead_kinds == {"misrouted": 1}
    assert batch.dead[0].reason == "expected a quote on t.quotes, got a trade"


def test_statuses_are_rows_of_their_own_table_and_misrouted_on_another() -> None:
    status = TradingStatus(symbol="AAPL", timestamp=5, status_code="H", status_message="Halt")
    batch = one("statuses", [encode_kafka(status)] * 3)
    assert len(batch.rows) == 3 and not batch.dead and not batch.skipped
    batch = one("quotes", [encode_kafka(status)] * 3)
    assert batch.dead_kinds == {"misrouted": 3} and not batch.rows and not batch.skipped
    assert batch.dead[0].reason == "expected a quote on t.quotes, got a trading status"


def test_the_rest_of_a_batch_survives_its_poison() -> None:
    quotes = make_quotes(5)
    values: list[bytes | None] = [encode_kafka(q) for q in quotes]
    values[1:1] = [b"junk", msgpack.packb(quote_dict(bs=-1))]
    batch = one("quotes", values)
    assert len(batch.rows) == 5 and len(batch.dead) == 2
    assert [r.offset for r in batch.sources] == [100, 103, 104, 105, 106]


def test_bars_keep_the_last_version_of_a_key_but_never_a_minute_bar_over_an_update() -> None:
    bar = make_bars(1)[0]
    assert isinstance(bar, Bar)
    fields = {name: getattr(bar, name) for name in ("symbol", "timestamp", "open", "high", "low", "close", "vwap")}
    first = Bar(**fields, volume=1, trade_count=1)
    update = UpdatedBar(**fields, volume=2, trade_count=2)
    late_minute = Bar(**fields, volume=3, trade_count=3)
    update2 = UpdatedBar(**fields, volume=4, trade_count=4)
    batch = one("bars", [encode_kafka(ev) for ev in (first, update, late_minute)])
    assert len(batch.rows) == 1 and batch.rows[0][8] == 2 and batch.rows[0][-1] == "u"
    assert batch.superseded == 2 and batch.sources[0].offset == 101
    batch = one("bars", [encode_kafka(ev) for ev in (first, update, update2)])
    assert batch.rows[0][8] == 4
    daily = make_bars(1)[-1]
    batch = one("bars", [encode_kafka(ev) for ev in (first, daily)])
    assert len(batch.rows) == 2


def test_days_are_the_utc_days_of_the_rows() -> None:
    quotes = make_quotes(30, days=3)
    batch = one("quotes", [encode_kafka(q) for q in quotes])
    assert [d.isoformat() for d in batch.days] == ["2024-03-04", "2024-03-05", "2024-03-06", "2024-03-07"]


def test_unknown_table_is_a_clear_error() -> None:
    with pytest.raises(
        ValueError,
        match="expected a table among quotes, trades, bars, statuses, corrections, cancels, crypto_trades, "
        "crypto_quotes, crypto_bars, crypto_orderbooks, options_trades, options_quotes, news, trade_updates, "
        "got 'lulds'",
    ):
        build_batch("lulds", {})


@given(st.lists(st.text(max_size=5), max_size=4).map(tuple))
def test_array_literal_quotes_every_element(items: tuple[str, ...]) -> None:
    literal = array_literal(items)
    assert literal.startswith("{") and literal.endswith("}")
    inner = literal[1:-1]
    if not items:
        assert inner == ""
        return
    # Undo the quoting the way PostgreSQL's array parser does, and get the items back.
    parsed, current, quoted, escaped = [], "", False, False
    for char in inner:
        if escaped:
            current, escaped = current + char, False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            parsed.append(current)
            current = ""
        else:
            current += char
    parsed.append(current)
    assert tuple(parsed) == items


def test_a_quote_row_carries_ns_times_and_the_event_key() -> None:
    quote = Quote(symbol="A", timestamp=123_456_789, received_at=0, bid_exchange="Q", bid_price=0.1,
                  bid_size=1, ask_exchange="N", ask_price=0.2, ask_size=2, conditions=("R",), tape="C")  # fmt: skip
    row = SPECS["quotes"].stage_row(quote)
    assert row == ("A", 123_456_789, 0, event_key(quote), "Q", 0.1, 1, "N", 0.2, 2, '{"R"}', "C")


@given(st.sampled_from(["quotes", "trades", "bars"]), st.integers(min_value=0, max_value=2**32))
def test_the_fast_key_is_the_codecs_event_key(table: str, seed: int) -> None:
    events: list[Event] = (
        list(make_quotes(3, seed=seed)) if table == "quotes"
        else list(make_trades(3, seed=seed)) if table == "trades"
        else make_bars(2, seed=seed)
    )  # fmt: skip
    for ev in events:
        assert key_of(ev) == event_key(ev)
