"""The producer: one upstream connection fanned out to Redis (live) and Kafka (durable).

Entry point ``tickpipe producer`` (:func:`producer.cli.main`); the pieces, each
a seam of its own, are re-exported here.
"""

from producer.durable_sink import DurableSink
from producer.kafka_backend import AiokafkaBackend, KafkaBackend
from producer.live_sink import LiveSink
from producer.service import ProducerService
from producer.source import Connection, Connector, FrameSink, UpstreamOptions, UpstreamState
from producer.spool import Spool
from producer.symbols import SymbolRegistry
from producer.upstream import UpstreamClient

__all__ = [
    "AiokafkaBackend",
    "Connection",
    "Connector",
    "DurableSink",
    "FrameSink",
    "KafkaBackend",
    "LiveSink",
    "ProducerService",
    "Spool",
    "SymbolRegistry",
    "UpstreamClient",
    "UpstreamOptions",
    "UpstreamState",
]
