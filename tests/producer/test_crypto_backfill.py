"""Gaps in the crypto stream filled from the crypto REST history: after an upstream cut, the missed
crypto trades and minute bars are in the ``tickpipe.crypto.*`` topics, each once.

As the stock backfill (``test_backfill.py``), against the simulator's ``/v1beta3/crypto/us`` stream and
its REST history ``/v1beta3/crypto/us/{trades,bars}`` and real Kafka; there are no crypto tables yet, so
the count is made in Kafka, under the rules the consumers store by (the stock backfill's): the
stream's records and the backfilled ones (``_b``) together hold exactly the REST history of the run's
window (0 missing, 0 extra), each source brings an event at most once, an event the stream never
delivered is there exactly once (backfilled), and the only events there twice are those of the gap's
margins, once from each source, which the consumers' keys make one row. Order books have no REST
history: the new connection's snapshot (``r`` true) restores each book.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import msgspec

from producer.backfill import is_backfilled, to_records
from producer.history_client import HistoryClient
from producer.service import ProducerService
from simulator import Simulator
from simulator.history import History
from tests.helpers.producer import (
    LATE_REPORT,
    MINUTE,
    SECOND,
    KafkaRecord,
    market_start,
    producer_settings,
    read_topics,
    ready,
    running,
)
from tests.helpers.waiting import wait_for
from tickpipe.crypto_events import AnyCryptoEvent, CryptoBar
from tickpipe.dev.tcp_proxy import TcpProxy
from tickpipe.feeds import CRYPTO

from .test_crypto_feed import FEED, PAIRS, crypto_config, crypto_topics

_decoder = msgspec.msgpack.Decoder(AnyCryptoEvent)


def event_of(record: KafkaRecord) -> Any:
    """A Kafka record's crypto event, receive time cleared (``_b`` is not a field: it is skipped)."""
    return msgspec.structs.replace(_decoder.decode(record.value), received_at=0)


def content(event: Any) -> bytes:
    return msgspec.msgpack.encode(event)


def bar_key(event: CryptoBar) -> tuple[str, int]:
    return event.symbol, event.timestamp


def bar_values(event: CryptoBar) -> tuple[Any, ...]:
    """A minute bar's values, whether sent as a minute (``b``) or an updated (``u``) bar."""
    return (event.symbol, event.timestamp, event.open, event.high, event.low, event.close, event.volume,
            event.trade_count, event.vwap)  # fmt: skip


async def rest_history(base_url: str, resource: str, start_ns: int, end_ns: int) -> list[Any]:
    """The crypto REST history of the window, as the events a backfill sends (receive time 0)."""
    client = HistoryClient(base_url, "key", "secret", None, of=CRYPTO, per_minute=10_000)
    out: list[Any] = []
    try:
        async for page in client.pages(resource, list(PAIRS), start_ns, end_ns):
            records, bad = to_records(resource, page.items, {"t": "t", "q": "q", "b": "b"}, 0, CRYPTO)
            assert bad == 0
            out += [_decoder.decode(value) for _, _, value in records]
    finally:
        await client.aclose()
    return out


async def test_a_crypto_stream_cut_is_filled_from_the_rest_api_each_missed_event_once(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    # The market clock 10 s before a minute mark: the cut below spans the mark, so bars close unseen.
    config = crypto_config(rate=1000, start_ns=market_start(10), record=False)
    async with Simulator(config) as sim:
        history = sim.history(FEED)
        assert isinstance(history, History)
        async with TcpProxy("127.0.0.1", sim.port) as proxy:
            settings = producer_settings(
                kafka_bootstrap, redis_url, topic_prefix, tmp_path / "spool", proxy.rewrite(sim.url),
                alpaca_data_url=sim.rest_url, backfill_enabled=True, backfill_margin_s=2.0,
            )  # fmt: skip
            service = ProducerService(settings, feed=CRYPTO)
            gaps, backfiller = service.gaps, service.backfiller
            assert gaps is not None and backfiller is not None
            assert service.resources == ["trades", "bars"]
            assert service.state_file.path == tmp_path / "spool" / "crypto" / "gaps.json"
            async with running(service):
                await ready(service)
                await wait_for(lambda: service.upstream.events >= 4_000, 30, "4000 streamed crypto events")
                await proxy.cut()
                clock, made = history.clock_ns, history.recorded
                boundary = clock - clock % MINUTE + MINUTE
                await wait_for(
                    lambda: history.recorded >= made + 2_000 and history.clock_ns >= boundary + 2 * SECOND,
                    timeout=90, what="the crypto market to run on past a minute while nobody reads it",
                )  # fmt: skip
                missed_by_market = history.recorded - made
                await proxy.restore()
                await wait_for(lambda: gaps.gaps_seen >= 1, 30, "a gap to be seen")
                await wait_for(lambda: not gaps.gaps, 60, "the gap to be filled")
                streamed = service.upstream.events
                await wait_for(lambda: service.upstream.events >= streamed + 500, 30, "the stream to go on")
                # Newly created topics may refuse a first round (no leader yet): what was spooled meanwhile
                # is replayed into Kafka before the producer stops.
                await wait_for(lambda: service.spool.depth == 0, 60, "the spool replayed into Kafka")
                health = await service.health()
            assert service.upstream.reconnects, "expected the cut to cause a reconnect"
            live = service.live
            assert live.published + sum(live.dropped.values()) == service.upstream.events, (
                "backfilled events must not reach the live Redis channels"
            )
            acked, left = service.durable.stats.acked, service.spool.depth
        backfill = health["backfill"]
        assert backfill["enabled"] and backfill["url"] == sim.rest_url and backfill["resources"] == ["trades", "bars"]
        assert backfill["gaps_seen"] == 1 and backfill["gaps_open"] == 0 and backfill["open_seconds"] == 0
        assert backfill["last_error"] is None and backfill["unreadable"] == 0
        assert backfill["events"]["trades"] > 0 and backfill["events"]["bars"] > 0 and missed_by_market > 0
        assert "quotes" not in backfill["events"], "crypto quotes are filled only with BACKFILL_QUOTES"

        # Every record offered (streamed and backfilled) is in the crypto topics once: Kafka holds what it acked.
        assert left == 0, "expected Kafka to take every record by the end (none left in the spool)"
        records = await read_topics(kafka_bootstrap, crypto_topics(topic_prefix), expected=acked)
        assert len(records) == acked
        marked = [r for r in records if is_backfilled(r.value)]
        assert len(marked) == sum(backfill["events"].values()), "every backfilled event counted, end to end"
        assert {r.topic for r in marked} == {f"{topic_prefix}crypto.trades", f"{topic_prefix}crypto.bars"}
        assert all(r.key == event_of(r).symbol.encode() for r in marked)

        # The run's window: from the first quote the stream brought (a trade reported late, stamped up to 2 s
        # back, may reach the first connection before anything else) to its last tick (trades: but the last 2 s,
        # which a trade reported late after the producer stopped may still join).
        def from_stream(family: str) -> list[Any]:
            return [event_of(r) for r in records if r.topic.endswith(family) and not is_backfilled(r.value)]

        first = min(e.timestamp for e in from_stream(".quotes"))
        last = max(e.timestamp for e in from_stream(".quotes") + from_stream(".trades"))

        # Trades: the stream's and the backfilled together are exactly the REST history of the window.
        def trades(backfilled: bool) -> Counter[bytes]:
            events = [
                event_of(r) for r in records if r.topic.endswith(".trades") and is_backfilled(r.value) == backfilled
            ]
            return Counter(content(e) for e in events if first <= e.timestamp <= last - LATE_REPORT)

        stream, filled = trades(False), trades(True)
        want = Counter(map(content, await rest_history(sim.rest_url, "trades", first, last - LATE_REPORT)))
        assert max(want.values()) == 1
        assert max(stream.values()) == 1 and max(filled.values()) == 1, "each source brings a trade at most once"
        have = stream + filled
        missing, extra = set(want) - set(have), set(have) - set(want)
        assert not missing and not extra, f"trades: {len(missing)} missing, {len(extra)} extra of {len(want)}"
        missed = set(want) - set(stream)
        assert missed and all(have[m] == 1 for m in missed), "each trade the stream missed is in Kafka once"
        overlap = set(stream) & set(filled)
        assert overlap, "expected the gap's margins to fetch some trades the stream also sent"
        assert all(have[e] == 2 for e in overlap) and len(have) == len(want)
        assert set(stream) - set(filled), "expected the gap not to reach back to the stream's first trades"

        # Minute bars of the minutes that closed during the run: each minute's final bar (the REST history's)
        # is in Kafka; a minute the stream missed has exactly one bar, the backfilled one.
        lo, hi = first - first % MINUTE, last - MINUTE - 2 * SECOND
        bars: dict[bool, list[CryptoBar]] = {False: [], True: []}
        for r in records:
            event = event_of(r)
            if isinstance(event, CryptoBar) and event.type_code in ("b", "u") and lo <= event.timestamp <= hi:
                bars[is_backfilled(r.value)].append(event)
        expected_bars = await rest_history(sim.rest_url, "bars", lo, hi)
        expected_keys = {bar_key(b) for b in expected_bars}
        assert len(expected_keys) == len(expected_bars)
        assert {bar_key(b) for b in bars[False] + bars[True]} == expected_keys, "0 minutes missing, 0 extra"
        values: dict[tuple[str, int], set[tuple[Any, ...]]] = {}
        for bar in bars[False] + bars[True]:
            values.setdefault(bar_key(bar), set()).add(bar_values(bar))
        assert all(bar_values(b) in values[bar_key(b)] for b in expected_bars), "each minute's final bar is in Kafka"
        filled_keys = Counter(bar_key(b) for b in bars[True])
        streamed_minutes = Counter(bar_key(b) for b in bars[False] if b.type_code == "b")
        assert all(n == 1 for n in (*filled_keys.values(), *streamed_minutes.values()))
        missed_minutes = expected_keys - set(streamed_minutes)
        assert missed_minutes, "expected the cut to span a minute's end"
        assert missed_minutes <= set(filled_keys), "each minute the stream missed is backfilled once"
        assert all(b.type_code == "b" for b in bars[True])
