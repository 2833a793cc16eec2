"""The producer's health document in the shared terms (what ``tickpipe status`` and ``/status`` show)."""

from __future__ import annotations

from typing import Any, cast

from producer.cli import reader
from producer.service import ProducerService


class Health:
    """Stands in for the service's own reports (``ready()``, ``health()``): the reader only reshapes them."""

    def __init__(self, doc: dict[str, Any], ready: bool) -> None:
        self.doc = doc
        self.is_ready = ready

    async def ready(self) -> tuple[bool, dict[str, Any]]:
        return self.is_ready, {}

    async def health(self) -> dict[str, Any]:
        return self.doc


async def test_a_dead_kafka_task_and_a_full_spool_show_as_errors_and_drops() -> None:
    doc = {
        "upstream": {"events": 1_000, "state": "streaming", "last_error": None},
        "redis": {"dropped": {"quotes": 2}, "last_error": None},
        "kafka": {"task_error": "OSError: [Errno 28] No space left on device", "fatal_error": None,
                  "last_error": "timeout", "dropped": {"spool_full": 5}},
        "spool": {"depth": 7, "error": "spool full: 256 KiB"},
        "dead_letters": 1,
    }  # fmt: skip
    reading = await reader(cast(ProducerService, Health(doc, ready=False)))()
    assert not reading.ready and reading.count == 1_000
    assert reading.last_error == "kafka: OSError: [Errno 28] No space left on device; spool: spool full: 256 KiB"
    assert reading.figures == {"upstream": "streaming", "drops": 7, "spool_depth": 7, "dead_letters": 1}


async def test_a_healthy_producer_has_no_error() -> None:
    doc = {"upstream": {"events": 5, "state": "streaming"}, "redis": {"dropped": 0}, "kafka": {"dropped": 0},
           "spool": {"depth": 0}, "dead_letters": 0}  # fmt: skip
    reading = await reader(cast(ProducerService, Health(doc, ready=True)))()
    assert reading.ready and reading.last_error is None and reading.figures["drops"] == 0
