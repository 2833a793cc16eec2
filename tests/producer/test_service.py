"""The producer's admin surface and its dead letters: symbols at run time, health, readiness, metrics, DLQ."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis.asyncio

from producer.kafka_backend import AiokafkaBackend, AiokafkaRound
from producer.service import ProducerService
from producer.symbols import symbols_key
from simulator import Faults, Simulator, SimulatorConfig
from simulator.wire import malformed
from tests.helpers.producer import RedisCollector, producer_settings, read_topics, ready, running
from tests.helpers.waiting import wait_for
from tickpipe.dlq import decode_dead_letter


async def test_symbols_added_and_removed_at_run_time_without_reconnecting_and_kept_for_a_restart(
    kafka_bootstrap: str, redis_url: str, redis_client: redis.asyncio.Redis, topic_prefix: str,
    unique_symbol: Callable[[], str], tmp_path: Path,
) -> None:  # fmt: skip
    first, second = unique_symbol(), unique_symbol()
    async with Simulator(SimulatorConfig(symbols=(first, second), rate=2_000)) as sim:
        settings = producer_settings(
            kafka_bootstrap, redis_url, topic_prefix, tmp_path / "spool", sim.url, subscribed_symbols=first
        )
        service = ProducerService(settings)
        async with running(service), RedisCollector(redis_url, [first, second]) as seen:
            await ready(service)
            assert service.admin is not None
            async with httpx.AsyncClient(base_url=service.admin.url) as http:
                await wait_for(lambda: f"quotes:{first}" in seen.messages, what=f"{first} quotes")
                assert f"quotes:{second}" not in seen.messages

                added = await http.post("/symbols", json={"symbols": [second.lower()]})
                assert added.status_code == 200 and added.json()["added"] == [second]
                await wait_for(lambda: f"quotes:{second}" in seen.messages, what=f"{second} quotes after POST")
                assert await redis_client.smembers(symbols_key(topic_prefix)) == {second.encode()}

                bad = await http.post("/symbols", json={"symbols": ["not a symbol"]})
                assert bad.status_code == 422 and "expected a ticker symbol" in bad.text
                configured = await http.delete(f"/symbols/{first}")
                assert configured.status_code == 409 and "SUBSCRIBED_SYMBOLS" in configured.text
                assert (await http.delete("/symbols/NOTADDED")).status_code == 404
                listing = (await http.get("/symbols")).json()
                assert listing["symbols"] == [first, second] and listing["runtime"] == [second]
            assert len(sim.sessions) == 1 and not service.upstream.reconnects, "changed on the open connection"

        again = ProducerService(settings)
        async with running(again):
            await ready(again)
            await wait_for(lambda: again.upstream.subscription.get("quotes") == [first, second], what="resumed")
            assert again.admin is not None
            async with httpx.AsyncClient(base_url=again.admin.url) as http:
                removed = await http.delete(f"/symbols/{second}")
                assert removed.status_code == 200 and removed.json()["symbols"] == [first]
                await wait_for(lambda: again.upstream.subscription.get("quotes") == [first], what="unsubscribed")
    assert await redis_client.smembers(symbols_key(topic_prefix)) == set()


async def test_symbols_changes_need_the_admin_token_beyond_loopback(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, unique_symbol: Callable[[], str], tmp_path: Path
) -> None:
    """Bound to every interface (as in compose), POST /symbols needs TICKPIPE_ADMIN_TOKEN; reads do not."""
    symbol = unique_symbol()
    async with Simulator(SimulatorConfig(symbols=(symbol,), rate=100)) as sim:
        settings = producer_settings(
            kafka_bootstrap, redis_url, topic_prefix, tmp_path / "spool", sim.url,
            producer_admin_host="0.0.0.0", tickpipe_admin_token="t0ken",
        )  # fmt: skip
        service = ProducerService(settings)
        async with running(service):
            await ready(service)
            assert service.admin is not None
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.admin.port}") as http:
                body = {"symbols": [symbol]}
                assert (await http.post("/symbols", json=body)).status_code == 401
                wrong = await http.post("/symbols", json=body, headers={"Authorization": "Bearer nope"})
                assert wrong.status_code == 403
                right = await http.post("/symbols", json=body, headers={"Authorization": "Bearer t0ken"})
                assert right.status_code == 200, right.text
                assert (await http.get("/symbols")).status_code == 200


async def test_health_readiness_and_metrics_tell_the_state(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, unique_symbol: Callable[[], str], tmp_path: Path
) -> None:
    config = SimulatorConfig(symbols=(unique_symbol(),), max_events=5_000)
    async with Simulator(config) as sim:
        settings = producer_settings(kafka_bootstrap, redis_url, topic_prefix, tmp_path / "spool", sim.url)
        service = ProducerService(settings)
        async with running(service):
            await wait_for(lambda: service.admin is not None, what="the admin endpoints")
            assert service.admin is not None
            async with httpx.AsyncClient(base_url=service.admin.url) as http:
                assert (await http.get("/healthz")).json() == {"status": "alive"}
                await ready(service)
                await wait_for(lambda: service.durable.stats.acked == 5_000, what="all in Kafka")
                readyz = await http.get("/readyz")
                assert readyz.status_code == 200
                assert readyz.json()["checks"] == {"upstream": True, "redis": True, "kafka": True}
                health = (await http.get("/health")).json()
                metrics = (await http.get("/metrics")).text
    assert health["upstream"]["state"] == "streaming" and health["upstream"]["events"] == 5_000
    assert sum(health["received"].values()) == 5_000
    assert health["kafka"]["acked"] == 5_000 and health["spool"]["depth"] == 0 and health["uptime_s"] > 0
    assert health["redis"]["dropped"] == {} and health["redis"]["connected"]
    assert 'tickpipe_producer_received_total{type="q"}' in metrics
    assert 'tickpipe_producer_published_total{sink="kafka"} 5000.0' in metrics
    assert 'tickpipe_producer_dropped_total{reason="queue_full",sink="redis"} 0.0' in metrics
    assert "tickpipe_producer_upstream_lag_seconds_bucket" in metrics
    assert "tickpipe_producer_handler_seconds_count" in metrics
    assert 'tickpipe_producer_upstream_state{state="streaming"} 1.0' in metrics


async def test_a_malformed_upstream_frame_goes_to_the_dlq_with_its_bytes(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, unique_symbol: Callable[[], str], tmp_path: Path
) -> None:
    config = SimulatorConfig(symbols=(unique_symbol(),), max_events=3_000, faults=Faults(malformed_after=1_000))
    async with Simulator(config) as sim:
        settings = producer_settings(kafka_bootstrap, redis_url, topic_prefix, tmp_path / "spool", sim.url)
        service = ProducerService(settings)
        async with running(service):
            await wait_for(lambda: service.upstream.events == 3_000, what="all events read")
            await wait_for(lambda: service.durable.stats.acked == 3_001, what="events and the dead letter in Kafka")
    (record,) = await read_topics(kafka_bootstrap, [f"{topic_prefix}dlq"], expected=1)
    letter = decode_dead_letter(record.value)
    assert letter.stage == "producer" and letter.field == "$" and "neither valid msgpack" in letter.reason
    assert letter.original == malformed("msgpack") and letter.source_topic == sim.url
    assert service.fanout.dead_letters == 1 and not service.upstream.reconnects


class BrokenRounds(AiokafkaBackend):
    """The real backend, until ``broken``: then building a round raises, as a bug of ours would."""

    broken = False

    def new_round(self) -> AiokafkaRound:
        if self.broken:
            raise RuntimeError("a bug in building a round")
        return super().new_round()


async def test_a_dead_kafka_task_is_logged_with_its_traceback_and_makes_the_producer_unready(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, unique_symbol: Callable[[], str], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    # Issue #13: an exception in the Kafka task (an OSError from the spool, say) ended it unseen; memory then
    # grew without bound and /readyz still said ready.
    async with Simulator(SimulatorConfig(symbols=(unique_symbol(),), rate=2_000)) as sim:
        settings = producer_settings(kafka_bootstrap, redis_url, topic_prefix, tmp_path / "spool", sim.url,
                                     spool_hold_events=50)  # fmt: skip
        assert settings.kafka_bootstrap_servers is not None
        backend = BrokenRounds(settings, settings.kafka_bootstrap_servers, [f"{topic_prefix}quotes"])
        service = ProducerService(settings, backend=backend)
        async with running(service):
            await ready(service)
            await wait_for(lambda: service.durable.stats.acked > 100, what="events in Kafka")
            backend.broken = True
            await wait_for(lambda: service.tasks["durable-sink"].done(), what="the Kafka task to die")
            await wait_for(lambda: service.durable.stats.dropped["sink_failed"] > 0, what="later records dropped")
            assert service.durable.pending <= 50, "what waits in memory stays bounded"
            assert service.admin is not None
            async with httpx.AsyncClient(base_url=service.admin.url) as http:
                readyz = await http.get("/readyz")
                health = (await http.get("/health")).json()
                metrics = (await http.get("/metrics")).text

    assert readyz.status_code == 503 and readyz.json()["checks"]["kafka"] is False
    assert "RuntimeError: a bug in building a round" in readyz.json()["tasks"]["durable-sink"]
    assert "a bug in building a round" in health["tasks"]["durable-sink"]
    assert "a bug in building a round" in health["kafka"]["task_error"] and health["kafka"]["state"] == "failed"
    assert health["tasks"]["live-sink"] == "running"
    assert 'tickpipe_producer_kafka_state{state="failed"} 1.0' in metrics
    assert 'tickpipe_producer_dropped_total{reason="sink_failed",sink="kafka"}' in metrics
    (died,) = [r for r in caplog.records if r.levelname == "ERROR" and "durable-sink task died" in r.getMessage()]
    assert died.name == "producer" and died.exc_info is not None and died.exc_info[0] is RuntimeError
