"""The gap tracker, its state file and the backfilled mark, without services.

What the integration tests cannot pin down cheaply: when a gap opens and
what it covers, that the state stays bounded, that a state is written only
once the records before it are safe, and that ``_b`` changes neither how a
record decodes nor the key its row gets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest

from consumers.option_staging import trade_row as option_trade_row
from consumers.staging import quote_row, trade_row
from producer.backfill import is_backfilled, mark_backfilled, to_records
from producer.gaps import DONE, EVERY, Checkpoints, Gap, GapTracker, StateFile, chunks
from producer.transcode import Transcoded, feed_transcoder
from simulator import DEFAULT_START_NS
from simulator.options import chain
from tickpipe.codecs import decode_kafka, encode_kafka, event_key, format_rfc3339_ns
from tickpipe.crypto_events import CryptoBar, CryptoTrade
from tickpipe.events import Quote, Trade
from tickpipe.feeds import CRYPTO, NEWS, OPTIONS
from tickpipe.news_events import NewsStory
from tickpipe.option_events import OptionTrade

S = 1_000_000_000


def tick(symbol: str, t: int, code: str = "t") -> Transcoded:
    return Transcoded(code, symbol, t, b"", b"")


def tracker(symbols: list[str] | None = None, **kw: Any) -> GapTracker:
    return GapTracker(margin_ns=2 * S, max_window_ns=3600 * S, subscribed=lambda: symbols or ["*"], **kw)


def test_the_first_tick_of_a_new_connection_opens_a_gap_from_the_watermark() -> None:
    gaps = tracker()
    gaps.session_started("restart")
    gaps.note([tick("AAA", 100 * S), tick("BBB", 101 * S, "q"), tick("AAA", 60 * S, "b")])
    assert not gaps.gaps, "no earlier position: nothing to fill"
    assert gaps.watermark == 101 * S and gaps.last["b"] == {"AAA": 60 * S}
    gaps.session_started("silence")
    gaps.note([tick("CCC", 130 * S)])
    gaps.note([tick("CCC", 131 * S)])  # only the first tick of a connection opens one
    assert len(gaps.gaps) == 1 and gaps.gaps_seen == 1
    gap = gaps.gaps[0]
    assert (gap.start_ns, gap.end_ns, gap.cause) == (99 * S, 132 * S, "silence")
    assert gap.symbols == ["AAA", "BBB", "CCC"]
    assert gaps.open_seconds(["trades", "bars"]) == 33


def test_with_a_symbol_list_only_subscribed_symbols_are_filled() -> None:
    gaps = tracker(["AAA"])
    gaps.note([tick("AAA", 10 * S), tick("ZZZ", 10 * S)])
    gaps.session_started("connect")
    gaps.note([tick("AAA", 20 * S)])
    assert gaps.gaps[0].symbols == ["AAA"]


def test_a_gap_never_reaches_back_further_than_the_longest_window() -> None:
    gaps = GapTracker(margin_ns=0, max_window_ns=10 * S, subscribed=lambda: ["*"])
    gaps.note([tick("AAA", 10 * S)])
    gaps.session_started("restart")
    gaps.note([tick("AAA", 1000 * S)])
    assert gaps.gaps[0].start_ns == 990 * S


def test_the_state_is_bounded_in_symbols_and_gaps() -> None:
    gaps = tracker(max_symbols=3, max_gaps=2)
    gaps.note([tick(f"S{i}", (i + 1) * S) for i in range(10)])
    assert gaps.last["t"] == {"S7": 8 * S, "S8": 9 * S, "S9": 10 * S}, "the least recently seen are forgotten"
    for i in range(5):
        gaps.session_started("connect")
        gaps.note([tick("S9", (20 + 10 * i) * S)])
    assert len(gaps.gaps) == 2 and gaps.gaps_seen == 5
    assert gaps.gaps[0].start_ns == 8 * S and gaps.gaps[0].cause == "merged"


def test_the_state_file_round_trips_and_is_replaced_whole(tmp_path: Path) -> None:
    gaps = tracker()
    gaps.note([tick("AAA", 10 * S)])
    gaps.session_started("connect")
    gaps.note([tick("AAA", 20 * S)])
    gaps.gaps[0].progress["trades/0"] = "token"
    file = StateFile(tmp_path / "spool" / "gaps.json")
    assert file.read() is None
    file.write(gaps.snapshot())
    assert not list(tmp_path.glob("spool/*.tmp"))
    again = tracker()
    state = file.read()
    assert state is not None
    again.restore(state)
    assert again.watermark == 20 * S and again.last == gaps.last and again.gaps == gaps.gaps
    (tmp_path / "spool" / "gaps.json").write_bytes(b"{not json")
    assert file.read() is None  # a damaged file costs the state, never the start


def test_a_state_is_written_only_once_every_record_offered_before_it_is_safe(tmp_path: Path) -> None:
    counts = {"offered": 0, "settled": 0}
    file = StateFile(tmp_path / "gaps.json")
    checkpoints = Checkpoints(file, lambda: counts["offered"], lambda: counts["settled"])
    counts["offered"] = 100
    checkpoints.take({"watermark": 1})
    counts["offered"] = 200
    checkpoints.take({"watermark": 2})
    assert not checkpoints.flush() and file.read() is None
    counts["settled"] = 150
    assert checkpoints.flush() and file.read() == {"watermark": 1}
    counts["settled"] = 200
    assert checkpoints.flush() and file.read() == {"watermark": 2} and not checkpoints.pending


def test_a_gap_is_finished_per_resource_once_every_symbol_chunk_is_done() -> None:
    gap = Gap(0, 10 * S, [f"S{i:03d}" for i in range(150)])
    gap.progress["trades/0"] = DONE
    assert not gap.finished("trades")
    gap.progress["trades/1"] = DONE
    assert gap.finished("trades") and not gap.finished("bars")


@pytest.mark.parametrize(
    "event",
    [
        Trade(symbol="AAPL", timestamp=1_700_000_000_123_456_789, received_at=5, trade_id=42, exchange="V",
              price=189.25, size=100, conditions=("@", "I"), tape="C"),
        Quote(symbol="AAPL", timestamp=1_700_000_000_123_456_789, received_at=5, bid_exchange="V", bid_price=189.2,
              bid_size=3, ask_exchange="V", ask_price=189.3, ask_size=1, conditions=("R",), tape="C"),
    ],
)  # fmt: skip
def test_the_backfilled_mark_changes_neither_the_event_nor_its_key(event: Trade | Quote) -> None:
    plain = encode_kafka(event)
    marked = mark_backfilled(plain)
    assert is_backfilled(marked) and not is_backfilled(plain)
    assert decode_kafka(marked) == decode_kafka(plain) == event  # old readers ignore `_b`
    assert event_key(decode_kafka(marked)) == event_key(event)
    row = trade_row if isinstance(event, Trade) else quote_row
    assert row(decode_kafka(marked)) == row(event)  # type: ignore[arg-type]


def test_a_rest_item_becomes_the_event_the_stream_carried() -> None:
    """The REST shape (no T, S; ``t`` as RFC 3339) to the same event, whatever the receive time."""
    streamed = Trade(symbol="AAPL", timestamp=1_700_000_000_123_456_789, trade_id=42, exchange="V", price=189.25,
                     size=100, conditions=("@", "I"), tape="C")  # fmt: skip
    item = {"t": format_rfc3339_ns(streamed.timestamp), "x": "V", "p": 189.25, "s": 100, "c": ["@", "I"], "i": 42,
            "z": "C"}  # fmt: skip
    records, bad = to_records("trades", {"AAPL": [item]}, {"t": "trades-topic"}, received_at=99)
    assert bad == 0 and records[0][:2] == ("trades-topic", b"AAPL")
    event = decode_kafka(records[0][2])
    assert msgspec.structs.replace(event, received_at=0) == streamed and event.received_at == 99
    assert event_key(event) == event_key(streamed)


def test_a_crypto_gap_is_opened_by_trades_and_quotes_never_by_order_books() -> None:
    """Books have no REST history: they neither move the watermark nor open a gap (the new connection's
    ``r``: true snapshot restores them); minute and updated bars are kept as one."""
    gaps = GapTracker(margin_ns=2 * S, max_window_ns=3600 * S, subscribed=lambda: ["*"], feed=CRYPTO)
    assert set(gaps.last) == {"t", "q", "b"}
    gaps.note([tick("BTC/USD", 100 * S), tick("ETH/USD", 60 * S, "u"), tick("ETH/USD", 120 * S, "o")])
    assert gaps.watermark == 100 * S and gaps.last["b"] == {"ETH/USD": 60 * S}
    gaps.session_started("reconnect")
    gaps.note([tick("BTC/USD", 140 * S, "o")])  # the snapshot of the new subscription comes first
    assert not gaps.gaps and gaps.watermark == 100 * S
    gaps.note([tick("ETH/USD", 141 * S, "q")])
    assert [(g.start_ns, g.end_ns, g.symbols) for g in gaps.gaps] == [(98 * S, 143 * S, ["BTC/USD", "ETH/USD"])]


def test_a_crypto_rest_item_becomes_the_crypto_event_the_stream_carried() -> None:
    trade = CryptoTrade(symbol="BTC/USD", timestamp=1_700_000_000_123_456_789, price=65_000.5, size=0.0012,
                        trade_id=7, taker_side="S")  # fmt: skip
    bar = CryptoBar(symbol="BTC/USD", timestamp=1_700_000_040_000_000_000, open=1.5, high=2.0, low=1.0, close=1.75,
                    volume=0.25, trade_count=3, vwap=1.6)  # fmt: skip
    stamp = format_rfc3339_ns(trade.timestamp)
    items = {"BTC/USD": [{"t": stamp, "p": 65_000.5, "s": 0.0012, "i": 7, "tks": "S"}]}
    records, bad = to_records("trades", items, {"t": "tickpipe.crypto.trades"}, received_at=99, feed=CRYPTO)
    assert bad == 0 and records[0][:2] == ("tickpipe.crypto.trades", b"BTC/USD") and is_backfilled(records[0][2])
    decoded = msgspec.msgpack.decode(records[0][2], type=CryptoTrade)
    assert msgspec.structs.replace(decoded, received_at=0) == trade and decoded.received_at == 99
    item = {"t": format_rfc3339_ns(bar.timestamp), "o": 1.5, "h": 2.0, "l": 1.0, "c": 1.75, "v": 0.25, "n": 3,
            "vw": 1.6}  # fmt: skip
    records, bad = to_records("bars", {"BTC/USD": [item]}, {"b": "tickpipe.crypto.bars"}, 0, feed=CRYPTO)
    assert bad == 0 and msgspec.msgpack.decode(records[0][2], type=CryptoBar) == bar
    records, bad = to_records("trades", {"BTC/USD": [{"t": stamp, "p": 1.0}]}, {"t": "x"}, 0, feed=CRYPTO)
    assert (records, bad) == ([], 1)


def test_with_a_symbol_list_every_subscribed_symbol_is_filled_seen_or_not() -> None:
    """A contract of a chain may trade for the first time in the gap: a listed symbol is filled unseen."""
    gaps = tracker(["AAA", "NEW"])
    gaps.note([tick("AAA", 10 * S)])
    gaps.session_started("reconnect")
    gaps.note([tick("AAA", 20 * S)])
    assert gaps.gaps[0].symbols == ["AAA", "NEW"]


def test_an_options_gap_is_opened_by_trades_its_only_rest_history() -> None:
    """Option quotes have no REST history: they neither move the watermark nor open a gap."""
    contracts = ["SPY240607C00530000", "SPY240607P00530000", "TSLA240607C00180000"]
    gaps = GapTracker(margin_ns=2 * S, max_window_ns=3600 * S, subscribed=lambda: contracts, feed=OPTIONS)
    assert set(gaps.last) == {"t"}
    gaps.note([tick(contracts[0], 100 * S), tick(contracts[1], 120 * S, "q")])
    assert gaps.watermark == 100 * S and gaps.last["t"] == {contracts[0]: 100 * S}
    gaps.session_started("reconnect")
    gaps.note([tick(contracts[1], 140 * S, "q")])
    assert not gaps.gaps, "expected a quote not to close the gap"
    gaps.note([tick(contracts[2], 141 * S)])
    assert [(g.start_ns, g.end_ns, g.symbols) for g in gaps.gaps] == [(98 * S, 143 * S, sorted(contracts))]


def test_a_chain_is_fetched_in_requests_of_at_most_100_contracts() -> None:
    """Alpaca's option routes take at most 100 contracts a request; every contract is asked once."""
    contracts = chain(start_ns=DEFAULT_START_NS)
    groups = chunks(contracts)
    assert len(contracts) == 2560 and len(groups) == 26
    assert max(map(len, groups)) == 100 and sorted(c for g in groups for c in g) == sorted(contracts)


def test_an_option_rest_item_becomes_the_option_trade_the_stream_carried() -> None:
    streamed = OptionTrade(symbol="SPY240607C00530000", timestamp=1_717_421_400_123_456_789, price=4.35, size=3,
                           exchange="C", condition="I")  # fmt: skip
    item = {"t": format_rfc3339_ns(streamed.timestamp), "x": "C", "p": 4.35, "s": 3, "c": "I"}
    records, bad = to_records("trades", {streamed.symbol: [item]}, {"t": "tickpipe.options.trades"}, 99, OPTIONS)
    assert bad == 0 and records[0][:2] == ("tickpipe.options.trades", streamed.symbol.encode())
    assert is_backfilled(records[0][2])
    decoded = msgspec.msgpack.decode(records[0][2], type=OptionTrade)
    assert msgspec.structs.replace(decoded, received_at=0) == streamed and decoded.received_at == 99
    assert option_trade_row(decoded)[3] == option_trade_row(streamed)[3], "expected the row key of the streamed one"


def story(story_id: int, created: int, symbols: tuple[str, ...] = ("AAPL",)) -> Transcoded:
    """A news story (or an update of one) as the news transcoder hands it on: keyed (``symbol``) by its id,
    timed by its ``created_at``."""
    return Transcoded("n", str(story_id), created, b"", b"", str(story_id), symbols)


def test_a_news_gap_is_a_window_of_the_feed_not_of_its_stories() -> None:
    """A story is not a symbol's: its time is kept once for the feed (not per story id), and the gap of a
    ``*`` subscription is every story of the window (asked for no symbols), those naming none too."""
    gaps = GapTracker(margin_ns=2 * S, max_window_ns=3600 * S, subscribed=lambda: ["*"], feed=NEWS)
    assert set(gaps.last) == {"n"}
    gaps.note([story(1, 100 * S), story(2, 101 * S, symbols=()), story(3, 99 * S)])
    assert gaps.watermark == 101 * S and gaps.last == {"n": {EVERY: 101 * S}}
    gaps.session_started("reconnect")
    gaps.note([story(4, 130 * S)])
    assert [(g.start_ns, g.end_ns, g.symbols) for g in gaps.gaps] == [(99 * S, 132 * S, [EVERY])]
    assert chunks(gaps.gaps[0].symbols) == [[EVERY]] and chunks(["AAPL", EVERY]) == [[EVERY]]

    listed = GapTracker(margin_ns=2 * S, max_window_ns=3600 * S, subscribed=lambda: ["TSLA", "AAPL"], feed=NEWS)
    listed.note([story(1, 100 * S)])
    listed.session_started("reconnect")
    listed.note([story(2, 110 * S, symbols=("MSFT",))])
    assert listed.gaps[0].symbols == ["AAPL", "TSLA"], "a symbol list: the stories naming any of them"


def test_an_update_of_an_older_story_first_does_not_end_the_gap_before_it_began() -> None:
    """A story's update is stamped with its creation: the gap closes on the first tick newer than the watermark."""
    gaps = GapTracker(margin_ns=2 * S, max_window_ns=3600 * S, subscribed=lambda: ["*"], feed=NEWS)
    gaps.note([story(1, 100 * S)])
    gaps.session_started("reconnect")
    gaps.note([story(1, 100 * S), story(0, 40 * S)])  # updates of two older stories, sent again now
    assert not gaps.gaps and gaps.watermark == 100 * S
    gaps.note([story(9, 160 * S)])
    assert [(g.start_ns, g.end_ns) for g in gaps.gaps] == [(98 * S, 162 * S)]


def test_a_news_rest_item_becomes_the_story_the_stream_carried_keyed_by_its_id() -> None:
    """Alpaca's REST story (no T; ``images``; times RFC 3339) is the streamed story, its record keyed by the id."""
    created, updated = 1_717_421_400 * S, 1_717_421_460 * S
    message = {
        "T": "n", "id": 24_918_784, "headline": "AAPL Files 10-Q", "summary": "s", "author": "Benzinga Newsdesk",
        "created_at": format_rfc3339_ns(created), "updated_at": format_rfc3339_ns(updated), "url": None,
        "content": "<p>c</p>", "symbols": ["AAPL", "TSLA"], "source": "benzinga",
    }  # fmt: skip
    (streamed,) = feed_transcoder(NEWS)(orjson.dumps([message]).decode(), 99).events
    item = {k: v for k, v in message.items() if k != "T"} | {"images": []}
    records, bad = to_records("news", {"": [item]}, {"n": "tickpipe.news"}, 99, NEWS)
    assert bad == 0 and records[0][:2] == ("tickpipe.news", streamed.key.encode()) == ("tickpipe.news", b"24918784")
    assert is_backfilled(records[0][2]) and not is_backfilled(streamed.kafka)
    decoded = msgspec.msgpack.decode(records[0][2], type=NewsStory)
    assert decoded == msgspec.msgpack.decode(streamed.kafka, type=NewsStory)
    assert (decoded.created_at, decoded.updated_at, decoded.received_at) == (created, updated, 99)
    records, bad = to_records("news", {"": [{**item, "created_at": "soon"}]}, {"n": "x"}, 0, NEWS)
    assert (records, bad) == ([], 1)
