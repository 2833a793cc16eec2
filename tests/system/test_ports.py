"""Embedded services keep their ports across runs (DATA_DIR/ports.json), unless another process took one."""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path

import pytest

from tickpipe.dev.services import PORTS_FILE, PortBook, start_services


def test_a_second_start_reuses_every_port(service_dir: Path) -> None:
    """Two runs on one data folder: the same three ports, and ports.json names them."""
    with start_services(service_dir, kafka=None, redis=None, database=None, persistent_postgres=False) as first:
        assert first.kafka is not None and first.redis is not None and first.postgres is not None
        ports = {"kafka": first.kafka.port, "redis": first.redis.port, "postgres": first.postgres.port}
    assert json.loads((service_dir / PORTS_FILE).read_text()) == ports
    with start_services(service_dir, kafka=None, redis=None, database=None, persistent_postgres=False) as second:
        assert second.kafka is not None and second.redis is not None and second.postgres is not None
        assert {"kafka": second.kafka.port, "redis": second.redis.port, "postgres": second.postgres.port} == ports
        assert (second.kafka_bootstrap, second.redis_url) == (first.kafka_bootstrap, first.redis_url)


def test_a_kept_port_someone_else_holds_is_replaced_and_said(
    service_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        PortBook(service_dir / PORTS_FILE).record("redis", taken)
        with (
            caplog.at_level(logging.WARNING),
            start_services(service_dir, kafka="unused:9092", redis=None, database="postgresql://unused") as urls,
        ):
            assert urls.redis is not None and urls.redis.port != taken
            new_port = urls.redis.port
        assert any(f"port {taken}" in r.getMessage() and "taken" in r.getMessage() for r in caplog.records)
    assert PortBook(service_dir / PORTS_FILE).read() == {"redis": new_port}


def test_given_urls_keep_no_ports(service_dir: Path) -> None:
    """Services from the environment are not ours to remember."""
    with start_services(service_dir, kafka="k:9092", redis="redis://r:6379/0", database="postgresql://d"):
        pass
    assert not (service_dir / PORTS_FILE).exists()


def test_an_unreadable_ports_file_means_new_ports(tmp_path: Path) -> None:
    (tmp_path / PORTS_FILE).write_text("{not json")
    assert PortBook(tmp_path / PORTS_FILE).read() == {}
    (tmp_path / PORTS_FILE).write_text('{"redis": "6379", "kafka": 70000, "postgres": 5432}')
    assert PortBook(tmp_path / PORTS_FILE).read() == {"postgres": 5432}
