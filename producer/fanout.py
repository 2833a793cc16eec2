"""What the read loop does with a decoded frame: count it and hand it to both sinks, awaiting nothing.

The live sink gets the events as they are (it packs Redis commands itself);
the durable sink gets Kafka records keyed by symbol. Messages that could not
be decoded become dead letters on the DLQ topic, through the durable sink,
so they are spooled like everything else while Kafka is away.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from typing import Final, Protocol

import msgpack

from producer.durable_sink import DurableSink
from producer.gaps import GapTracker
from producer.live_sink import LiveSink
from producer.transcode import Transcoded
from tickpipe.codecs import Rejected
from tickpipe.dlq import DeadLetter, encode_dead_letter
from tickpipe.feeds import STOCK, Feed


def tick_codes(feed: Feed) -> frozenset[str]:
    """Type codes stamped with the moment they happened (quotes, trades, books): the only ones upstream
    lag is measured on."""
    return frozenset(kind.code for _, kind in feed.event_types() if kind.tick)


#: The stock feed's tick codes.
TICK_CODES: Final = tick_codes(STOCK)


class Observer(Protocol):
    def observe(self, amount: float) -> None: ...


class FrameTimings(Protocol):
    """The two histograms the fan-out feeds (:class:`~producer.metrics.ProducerMetrics` has them)."""

    @property
    def upstream_lag(self) -> Observer: ...
    @property
    def handler_seconds(self) -> Observer: ...


class Fanout:
    """The upstream client's :class:`~producer.source.FrameSink`."""

    def __init__(
        self,
        live: LiveSink,
        durable: DurableSink,
        topics: Mapping[str, str],
        dlq_topic: str,
        source: str,
        metrics: FrameTimings,
        gaps: GapTracker | None = None,
        ticks: frozenset[str] = TICK_CODES,
        keyed_by_symbol: bool = True,
    ) -> None:
        self.live = live
        self.durable = durable
        self.topics = dict(topics)  # type code -> Kafka topic
        self.dlq_topic = dlq_topic
        self.source = source
        self.metrics = metrics
        self.gaps = gaps  # told every frame first, so a gap opens before the frame's records are offered
        self.ticks = ticks  # the feed's tick codes (:func:`tick_codes`)
        #: Which field of a :class:`Transcoded` is the record key: the symbol, or its own ``key`` (order
        #: updates: the order id, as ``Family.key`` declares), read by position as cheaply as the symbol.
        self.key_at = Transcoded._fields.index("symbol" if keyed_by_symbol else "key")
        self.received: Counter[str] = Counter()
        self.dead_letters = 0
        self._keys: dict[str, bytes] = {}

    def on_events(self, events: list[Transcoded], received_at: int) -> None:
        started = time.perf_counter()
        if self.gaps is not None:
            self.gaps.note(events)
        self.live.offer(events)
        topics, keys, at = self.topics, self._keys, self.key_at
        records = []
        for event in events:
            text: str = event[at]  # type: ignore[assignment]  # the symbol or the key: both str
            key = keys.get(text)
            if key is None:
                if len(keys) > 100_000:
                    keys.clear()
                key = keys[text] = text.encode()
            records.append((topics[event.type_code], key, event.kafka))
        self.durable.offer(records)
        self.received.update(event.type_code for event in events)
        ticks = self.ticks
        for event in reversed(events):  # bars carry their minute, not the moment: lag only from ticks
            if event.type_code in ticks:
                self.metrics.upstream_lag.observe(max(0, received_at - event.timestamp) / 1e9)
                break
        self.metrics.handler_seconds.observe(time.perf_counter() - started)

    def on_rejected(self, rejected: list[Rejected]) -> None:
        records = []
        for reject in rejected:
            letter = DeadLetter(
                reason=str(reject.error),
                field=reject.error.field,
                stage="producer",
                source_topic=self.source,
                key=_symbol_of(reject.raw),
                original=reject.raw,
            )
            records.append((self.dlq_topic, letter.key, encode_dead_letter(letter)))
        self.dead_letters += len(records)
        self.durable.offer(records)


def _symbol_of(raw: bytes) -> bytes | None:
    """The ``S`` of a rejected message, if it has one, as the record key."""
    try:
        message = msgpack.unpackb(raw, raw=False, strict_map_key=False, timestamp=0)
    except Exception:
        return None
    symbol = message.get("S") if isinstance(message, dict) else None
    return symbol.encode() if isinstance(symbol, str) else None
