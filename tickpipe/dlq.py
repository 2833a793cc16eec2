"""The dead-letter record: what could not be decoded or stored, why, from where, and the original bytes.

Producer and consumers both write it to ``tickpipe.dlq``; ``tickpipe dlq`` reads
it back and can replay it to its source topic after a fix.
"""

from __future__ import annotations

import time

import msgspec


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    #: Why it was rejected, e.g. ``"bp: Expected `float`, got `str`"``.
    reason: str
    #: The field at fault (``"$"`` for the whole message).
    field: str = "$"
    #: ``producer`` (bad upstream message) or ``consumer`` (bad Kafka record or refused by PostgreSQL).
    stage: str
    #: Where it came from: the Kafka topic/partition/offset for consumers; the upstream URL for the producer.
    source_topic: str = ""
    source_partition: int = -1
    source_offset: int = -1
    #: The record key (symbol) if there was one.
    key: bytes | None = None
    #: The original bytes, untouched, so a replay sends exactly what arrived.
    original: bytes
    #: When it was dead-lettered, ns since the epoch.
    at: int = msgspec.field(default_factory=time.time_ns)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(DeadLetter)


def encode_dead_letter(letter: DeadLetter) -> bytes:
    return _encoder.encode(letter)


def decode_dead_letter(value: bytes) -> DeadLetter:
    return _decoder.decode(value)
