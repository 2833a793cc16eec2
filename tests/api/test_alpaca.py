"""The real alpaca-py ``StockDataStream`` pointed at ``/v2/stream`` gets exactly what Redis carried.

alpaca-py speaks msgpack (``Content-Type: application/msgpack``), sends its
subscribe in fragmented frames and parses events into its own models; each
client gets only its own symbols.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from datetime import date
from typing import Any

import redis.asyncio

from api.stream.protocol import STREAMS
from tests.helpers.api import ApiServer, publish
from tests.helpers.events import day_ns, quote, trade
from tests.helpers.feed_streams import alpaca_stream, stamp
from tests.helpers.waiting import wait_for
from tickpipe.events import Quote as OurQuote
from tickpipe.events import Trade as OurTrade

with warnings.catch_warnings():  # alpaca-py imports websockets.legacy, deprecated since websockets 14
    warnings.simplefilter("ignore", DeprecationWarning)
    from alpaca.data.live import StockDataStream
    from alpaca.data.models import Quote, Trade


DAY = date(2024, 3, 4)


def same(model: Any, event: OurQuote | OurTrade) -> bool:
    """An alpaca-py model carries what the event carried (alpaca-py keeps microseconds)."""
    if isinstance(event, OurQuote):
        return isinstance(model, Quote) and (
            model.symbol,
            model.timestamp,
            model.bid_price,
            model.bid_size,
            model.ask_price,
            model.ask_size,
            model.bid_exchange,
            model.ask_exchange,
            model.conditions,
            model.tape,
        ) == (
            event.symbol,
            stamp(event.timestamp),
            event.bid_price,
            event.bid_size,
            event.ask_price,
            event.ask_size,
            event.bid_exchange,
            event.ask_exchange,
            list(event.conditions),
            event.tape,
        )
    return isinstance(model, Trade) and (
        model.symbol,
        model.timestamp,
        model.price,
        model.size,
        model.id,
        model.exchange,
        model.conditions,
        model.tape,
    ) == (
        event.symbol,
        stamp(event.timestamp),
        event.price,
        event.size,
        event.trade_id,
        event.exchange,
        list(event.conditions),
        event.tape,
    )


async def test_alpaca_clients_get_exactly_their_events(
    api: ApiServer, redis_client: redis.asyncio.Redis, listed_symbol: Callable[[], str]
) -> None:
    a, b, c, nobody = (listed_symbol() for _ in range(4))

    def first_wants(stream: StockDataStream, handler: Any) -> None:
        stream.subscribe_quotes(handler, a, b)
        stream.subscribe_trades(handler, a, b)

    def second_wants(stream: StockDataStream, handler: Any) -> None:
        stream.subscribe_quotes(handler, c)

    hub = api.app.state.api.hub
    async with (
        alpaca_stream(StockDataStream, api.ws_url, first_wants) as first,
        alpaca_stream(StockDataStream, api.ws_url, second_wants) as second,
    ):
        await wait_for(
            lambda: all(
                hub.clients_of(STREAMS[kind], s) == 1 for kind, s in (("quotes", a), ("trades", b), ("quotes", c))
            ),
            what="both alpaca-py clients to subscribe",
        )
        ns = day_ns(DAY, 15)
        events: list[OurQuote | OurTrade] = []
        for n in range(25):
            for symbol in (a, b, c, nobody):
                events.append(quote(symbol, ns + n * 1_000_001, bid=100 + n / 8))
                events.append(trade(symbol, ns + n * 1_000_001 + 7, trade_id=n, price=101 + n / 4))
        await publish(redis_client, *events)
        want_first = [e for e in events if e.symbol in (a, b)]
        want_second = [e for e in events if e.symbol == c and isinstance(e, OurQuote)]
        await wait_for(
            lambda: len(first) >= len(want_first) and len(second) >= len(want_second),
            what="alpaca-py to receive the events",
        )
        # Markers afterwards: anything extra would arrive before them.
        markers = quote(a, ns + 10**9), quote(c, ns + 10**9)
        await publish(redis_client, *markers)
        await wait_for(lambda: len(first) > len(want_first) and len(second) > len(want_second), what="the markers")
        want_first.append(markers[0])
        want_second.append(markers[1])

    assert len(first) == len(want_first) and all(same(m, e) for m, e in zip(first, want_first, strict=True))
    assert len(second) == len(want_second) and all(same(m, e) for m, e in zip(second, want_second, strict=True))
