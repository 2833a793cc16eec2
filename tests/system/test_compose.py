"""The deployment files checked without a Docker engine: docker-compose.yml against the CLI
and the settings, the Dockerfile's stages, and the observability config against the metrics
the code registers. ``docker compose config`` runs too where the compose plugin exists.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from consumers.service import TABLES as CONSUMED  # every table a consumer writes, from the feed declaration
from consumers.tables import tables_of
from tests.helpers.compose import (
    COMPOSE_FILE,
    ENV_EXAMPLE,
    ROOT,
    MissingVariable,
    dockerfile_stages,
    dockerignore_patterns,
    dockerignored,
    env_example_sections,
    environment,
    interpolate,
    interpolate_tree,
    load_compose,
    registered_metric_names,
)
from tickpipe import names
from tickpipe.admin import AdminServer, admin_app
from tickpipe.cli import SERVICES
from tickpipe.feeds import CRYPTO, FEEDS, STOCK
from tickpipe.settings import Settings, load_settings

SETTINGS = {name.upper() for name in Settings.model_fields}
#: Only what docker compose itself needs: the required password.
MINIMAL_ENV = {"POSTGRES_PASSWORD": "s3cret"}
ONE_SHOT = {"migrate", "kafka-init"}
#: Variables each third-party image reads (by image repository); anything else would be a typo.
IMAGE_VARIABLES: dict[str, tuple[set[str], tuple[str, ...]]] = {
    "apache/kafka": ({"CLUSTER_ID"}, ("KAFKA_",)),
    "redis": (set(), ()),
    "postgres": ({"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "PGDATA", "POSTGRES_INITDB_ARGS"}, ()),
    "provectuslabs/kafka-ui": ({"DYNAMIC_CONFIG_ENABLED", "SERVER_PORT"}, ("KAFKA_CLUSTERS_",)),
    "prom/prometheus": (set(), ()),
    "grafana/grafana": (set(), ("GF_",)),
}
#: Container port of each tickpipe service's health endpoint, and the setting that chooses it.
ADMIN_PORTS = {
    "producer": "PRODUCER_ADMIN_PORT",
    "producer-crypto": "CRYPTO_PRODUCER_ADMIN_PORT",
    "producer-options": "OPTIONS_PRODUCER_ADMIN_PORT",
    "producer-news": "NEWS_PRODUCER_ADMIN_PORT",
    "producer-trade_updates": "TRADE_UPDATES_PRODUCER_ADMIN_PORT",
    "consumer-quotes": "CONSUMER_ADMIN_PORT",
    "api": "API_PORT",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose(MINIMAL_ENV)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


def tickpipe_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The services run from our own image (built from this repository)."""
    return {name: svc for name, svc in services.items() if "build" in svc}


# --- compose's interpolation, as these tests implement it ----------------------------------
def test_interpolation_follows_compose_rules() -> None:
    env = {"SET": "v", "EMPTY": ""}
    assert interpolate("$$x ${SET} $SET ${NOPE}", env) == "$x v v "
    assert interpolate("${EMPTY:-d} ${EMPTY-d} ${NOPE-d} ${SET:-d}", env) == "d  d v"
    assert interpolate("${SET:+alt} ${EMPTY:+alt} ${EMPTY+alt}", env) == "alt  alt"
    with pytest.raises(MissingVariable, match="EMPTY"):
        interpolate("${EMPTY:?needed}", env)
    assert interpolate("${EMPTY?needed}", env) == ""


def test_compose_refuses_to_start_without_the_postgres_password() -> None:
    with pytest.raises(MissingVariable) as caught:
        load_compose({})
    assert caught.value.name == "POSTGRES_PASSWORD"


# --- services and the CLI ----------------------------------------------------------------------
def test_the_stack_has_every_part(services: dict[str, dict[str, Any]]) -> None:
    core = {"kafka", "kafka-init", "redis", "postgres", "migrate", "producer", "api"}
    core |= {f"consumer-{table}" for table in tables_of((STOCK,))}
    assert core <= {name for name, svc in services.items() if not svc.get("profiles")}
    assert services["simulator"]["profiles"] == ["simulator"]
    for feed in FEEDS:  # every other feed: its producer and the writers of its tables in a profile of its name
        if feed is not STOCK:
            for name in (f"producer-{feed.name}", *(f"consumer-{table}" for table in tables_of((feed,)))):
                assert services[name]["profiles"] == [feed.name], f"expected {name} in the profile {feed.name}"
    assert services["kafka-ui"]["profiles"] == ["kafka-ui"]
    assert services["prometheus"]["profiles"] == services["grafana"]["profiles"] == ["observability"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["redis"]["image"].startswith("redis:7")
    assert services["postgres"]["image"].startswith("postgres:16")


def test_every_tickpipe_command_is_a_cli_subcommand(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in tickpipe_services(services).items():
        command = svc["command"]
        assert command[0] in SERVICES, f"{name}: `tickpipe {command[0]}` is not a subcommand (have {sorted(SERVICES)})"
        if command[0] == "consume":
            assert command[1:] == [name.removeprefix("consumer-")], f"{name} should consume its own table"
            assert command[1] in CONSUMED
    consumed = {svc["command"][1] for svc in tickpipe_services(services).values() if svc["command"][0] == "consume"}
    assert consumed == set(CONSUMED), "one consumer service per table"


@pytest.mark.parametrize("service", ["migrate", "producer", "producer-crypto", "consumer-quotes", "api", "simulator"])
def test_tickpipe_command_arguments_parse(services: dict[str, dict[str, Any]], service: str) -> None:
    command = services[service]["command"]
    module_name = SERVICES[command[0]][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            pytest.skip(f"{module_name} is not written yet: only the subcommand name was checked")
        raise
    build_parser = getattr(module, "build_parser", None)
    if build_parser is None:
        pytest.skip(f"{module_name} has no build_parser(): only the subcommand name was checked")
    try:
        build_parser().parse_args(command[1:])
    except SystemExit as exc:
        pytest.fail(f"{service}: `tickpipe {' '.join(command)}` is refused by {module_name} (exit {exc.code})")


# --- environment ---------------------------------------------------------------------------------
def test_tickpipe_services_get_every_setting_and_nothing_else(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in tickpipe_services(services).items():
        env = set(environment(svc))
        assert env <= SETTINGS, f"{name}: not tickpipe settings: {sorted(env - SETTINGS)}"
        assert env >= SETTINGS, f"{name}: settings not passed through: {sorted(SETTINGS - env)}"


def test_every_env_example_setting_reaches_the_services(services: dict[str, dict[str, Any]]) -> None:
    documented, _ = env_example_sections()
    for name, svc in tickpipe_services(services).items():
        missing = documented - set(environment(svc))
        assert not missing, f"{name}: .env.example variables not passed: {sorted(missing)}"


def test_compose_runs_the_kafka_version_the_tests_run(services: dict[str, dict[str, Any]]) -> None:
    from tickpipe.dev.kafka_jars import KAFKA_VERSION

    images = {svc["image"] for svc in services.values() if svc.get("image", "").startswith("apache/kafka:")}
    assert images == {f"apache/kafka:{KAFKA_VERSION}"}


def test_third_party_images_get_only_their_own_variables(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        if "build" in svc:
            continue
        repository = svc["image"].rsplit(":", 1)[0]
        assert repository in IMAGE_VARIABLES, f"{name}: unknown image {svc['image']} (add its variables here)"
        exact, prefixes = IMAGE_VARIABLES[repository]
        unknown = [var for var in environment(svc) if var not in exact and not var.startswith(prefixes)]
        assert not unknown, f"{name} ({repository}) does not read {unknown}"


def test_every_compose_variable_is_documented_in_env_example() -> None:
    used: set[str] = set()
    interpolate_tree(yaml.safe_load(COMPOSE_FILE.read_text()), MINIMAL_ENV, used)
    settings_part, compose_part = env_example_sections()
    undocumented = used - settings_part - compose_part
    assert not undocumented, f"used in docker-compose.yml, missing from .env.example: {sorted(undocumented)}"
    stale = compose_part - used - {"COMPOSE_PROFILES"}
    assert not stale, f".env.example's compose section documents variables compose does not use: {sorted(stale)}"
    lines = ENV_EXAMPLE.read_text().splitlines()
    index = lines.index("POSTGRES_PASSWORD=")
    assert "REQUIRED" in lines[index - 1], "POSTGRES_PASSWORD must be marked REQUIRED in .env.example"


def _settings_of(service: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The Settings a container of this service builds from its (interpolated) environment."""
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    for name, value in environment(service).items():
        monkeypatch.setenv(name, value)
    return load_settings(_env_file=None)


def test_the_settings_a_container_reads(services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings_of(services["producer"], monkeypatch)
    assert settings.kafka_bootstrap_servers == "kafka:9092"
    assert settings.redis_url == "redis://redis:6379/0"
    assert settings.database_url == "postgresql://tickpipe:s3cret@postgres:5432/tickpipe"
    assert settings.kafka_enable_idempotence is True
    assert (settings.producer_admin_host, settings.consumer_admin_host, settings.api_host) == ("0.0.0.0",) * 3
    assert str(settings.spool_path) == "/var/lib/tickpipe/spool"
    assert "/var/lib/tickpipe/spool" in {volume.split(":")[1] for volume in services["producer"]["volumes"]}
    # Empty pass-through values mean "unset": the settings' own defaults apply.
    fields = Settings.model_fields
    assert settings.batch_size == fields["batch_size"].default
    assert settings.kafka_partitions == fields["kafka_partitions"].default
    # Without Alpaca keys the producer reads the simulator service.
    assert not settings.uses_alpaca
    assert settings.upstream_url == "ws://simulator:8765/v2/iex"


def test_the_crypto_producer_carries_the_crypto_feed_with_its_own_port_and_spool(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from producer.cli import build_parser, feed_of

    crypto = services["producer-crypto"]
    assert feed_of(build_parser().parse_args(crypto["command"][1:]).feed) is CRYPTO
    settings = _settings_of(crypto, monkeypatch)
    assert settings.upstream_url_for(CRYPTO) == "ws://simulator:8765/v1beta3/crypto/us"  # no keys: the simulator
    assert settings.data_url == "http://simulator:8765"  # where its gaps are filled from
    assert crypto["ports"] == [f"127.0.0.1:8083:{settings.admin_port_for(CRYPTO)}"]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in crypto["volumes"]}
    assert mounts[str(settings.spool_path_for(CRYPTO))] == "producer-crypto-spool"
    assert crypto["depends_on"] == services["producer"]["depends_on"]
    assert crypto["stop_grace_period"] == services["producer"]["stop_grace_period"]


def test_alpaca_keys_switch_the_source_to_alpaca(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {**MINIMAL_ENV, "ALPACA_API_KEY": "key", "ALPACA_API_SECRET": "secret", "ALPACA_FEED": "sip"}
    settings = _settings_of(load_compose(env)["services"]["producer"], monkeypatch)
    assert settings.uses_alpaca
    assert settings.upstream_url == "wss://stream.data.alpaca.markets/v2/sip"


def test_the_simulator_binds_every_interface(services: dict[str, dict[str, Any]]) -> None:
    simulator = services["simulator"]
    command = simulator["command"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert command[command.index("--port") + 1] == environment(simulator)["SIMULATOR_PORT"] == "8765"
    assert environment(simulator)["SIMULATOR_HOST"] == "0.0.0.0"


# --- health, dependencies, restarts, scaling ---------------------------------------------------
def test_every_long_running_service_has_a_health_check_and_restarts(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        if name in ONE_SHOT:
            assert svc.get("restart") == "no", f"{name} runs once: it must not restart"
            continue
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no health check"
        assert svc.get("restart") in ("always", "unless-stopped", "on-failure"), f"{name}: no restart policy"


def test_every_dependency_waits_for_health_or_completion(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        depends = svc.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on must name a condition for each dependency"
        for target, rule in depends.items():
            assert target in services, f"{name} depends on unknown service {target}"
            wanted = "service_completed_successfully" if target in ONE_SHOT else "service_healthy"
            assert rule.get("condition") == wanted, f"{name} -> {target}: expected condition {wanted}"
            if set(services[target].get("profiles", [])) - set(svc.get("profiles", [])):
                assert rule.get("required") is False, f"{name} -> {target} (in a profile) needs required: false"
    assert set(services["producer"]["depends_on"]) >= {"kafka", "kafka-init", "redis"}
    assert set(services["api"]["depends_on"]) >= {"redis", "postgres", "migrate"}
    for family in CONSUMED:
        assert set(services[f"consumer-{family}"]["depends_on"]) >= {"kafka", "kafka-init", "postgres", "migrate"}


def test_consumers_scale_and_no_host_port_is_published_twice(services: dict[str, dict[str, Any]]) -> None:
    assert not [name for name, svc in services.items() if "container_name" in svc]
    for family in CONSUMED:
        assert "ports" not in services[f"consumer-{family}"], "a published port would stop --scale"
    published = [port.rsplit(":", 1)[0] for svc in services.values() for port in svc.get("ports", [])]
    assert len(published) == len(set(published)), f"host ports published twice: {published}"
    assert services["api"]["ports"] == ["127.0.0.1:8000:8000"]


def test_every_port_is_published_on_this_host_only_unless_told(services: dict[str, dict[str, Any]]) -> None:
    """Every published port, of every profile, binds 127.0.0.1 by default; TICKPIPE_BIND moves them all."""
    published = {name: svc["ports"] for name, svc in services.items() if svc.get("ports")}
    assert {"api", "producer", "producer-crypto", "kafka-ui", "prometheus", "grafana"} <= set(published)
    for name, ports in published.items():
        for port in ports:
            assert isinstance(port, str) and port.count(":") == 2, f"{name}: {port!r} names no host address"
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port!r} beyond this host"
    raw = load_compose()
    for name in published:
        for port in raw["services"][name]["ports"]:
            assert port.startswith("${TICKPIPE_BIND:-127.0.0.1}:"), f"{name}: {port!r} ignores TICKPIPE_BIND"
    everywhere = load_compose({**MINIMAL_ENV, "TICKPIPE_BIND": "0.0.0.0"})["services"]
    assert everywhere["api"]["ports"] == ["0.0.0.0:8000:8000"]


def test_state_lives_in_named_volumes(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    declared = set(compose["volumes"])
    for name in ("kafka", "redis", "postgres", "producer", "producer-crypto"):
        sources = {volume.split(":")[0] for volume in services[name]["volumes"]}
        assert sources & declared, f"{name} keeps its state outside a named volume"
    for svc in services.values():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith("./") or source in declared, f"undeclared volume {source}"
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"bind-mounted {source} does not exist"


def _created_topics(env: dict[str, str], tmp_path: Path) -> list[list[str]]:
    """Run kafka-init's script with a stand-in kafka-topics.sh that records its arguments."""
    init = load_compose(env)["services"]["kafka-init"]
    tmp_path.mkdir(exist_ok=True)
    log = tmp_path / "calls"
    stub = tmp_path / "kafka-topics.sh"
    stub.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {log}\n')
    stub.chmod(0o755)
    script = init["command"][0].replace("/opt/kafka/bin/kafka-topics.sh", str(stub))
    subprocess.run([*init["entrypoint"], script], check=True, timeout=30)
    calls = [line.split() for line in log.read_text().splitlines()]
    return [call for call in calls if "--create" in call]


def _option(call: list[str], name: str) -> str:
    return call[call.index(name) + 1]


@pytest.mark.skipif(shutil.which("bash") is None, reason="kafka-init's script is bash")
def test_kafka_init_creates_the_topics_partitioned(services: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    assert services["kafka-init"]["image"] == services["kafka"]["image"]
    partitions = str(Settings.model_fields["kafka_partitions"].default)
    created = _created_topics(MINIMAL_ENV, tmp_path)
    # Every feed's topics, by its words: tickpipe.quotes ..., tickpipe.crypto.trades ..., tickpipe.options.quotes
    words = [word for feed in FEEDS for word in feed.words]
    assert sorted(_option(call, "--topic") for call in created) == sorted(
        [names.topic(word) for word in words] + [names.DLQ_TOPIC]
    )
    assert {_option(call, "--partitions") for call in created} == {partitions}
    assert all("--if-not-exists" in call and _option(call, "--bootstrap-server") == "kafka:9092" for call in created)
    assert environment(services["kafka"])["KAFKA_NUM_PARTITIONS"] == partitions
    custom = _created_topics({**MINIMAL_ENV, "KAFKA_PARTITIONS": "12", "KAFKA_TOPIC_PREFIX": "md."}, tmp_path / "x")
    assert sorted(_option(call, "--topic") for call in custom) == sorted([f"md.{word}" for word in words] + ["md.dlq"])
    assert {_option(call, "--partitions") for call in custom} == {"12"}


def _probe(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"], f"expected a python probe (no curl in the image), got {test}"
    code: str = test[3]
    return code


async def _run_probe(code: str) -> int:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, stderr=asyncio.subprocess.DEVNULL)
    return await asyncio.wait_for(proc.wait(), timeout=30)


@pytest.mark.parametrize("service", sorted(ADMIN_PORTS))
async def test_http_health_probe_follows_readiness(services: dict[str, dict[str, Any]], service: str) -> None:
    svc = services[service]
    port = environment(svc)[ADMIN_PORTS[service]]
    code = _probe(svc)
    assert code.count(f"127.0.0.1:{port}/readyz") == 1, f"{service} must probe /readyz on its own port {port}"
    container_ports = [p.rsplit(":", 1)[-1] for p in svc.get("ports", [])] + svc.get("expose", [])
    assert port in container_ports, f"{service}: port {port} is neither published nor exposed"
    ready = {"ok": True}

    async def is_ready() -> tuple[bool, dict[str, Any]]:
        return ready["ok"], {}

    async def health() -> dict[str, Any]:
        return {}

    from prometheus_client import CollectorRegistry

    server = AdminServer(admin_app("probe", CollectorRegistry(), is_ready, health), "127.0.0.1", 0)
    await server.start()
    try:
        live = code.replace(f":{port}/", f":{server.port}/")
        assert await _run_probe(live) == 0
        ready["ok"] = False
        assert await _run_probe(live) != 0
    finally:
        await server.stop()
    assert await _run_probe(live) != 0


async def test_simulator_probe_needs_a_listener(services: dict[str, dict[str, Any]]) -> None:
    code = _probe(services["simulator"])
    listener = socket.create_server(("127.0.0.1", 0))
    live = code.replace("8765", str(listener.getsockname()[1]))
    try:
        assert await _run_probe(live) == 0
    finally:
        listener.close()
    assert await _run_probe(live) != 0


def test_docker_compose_config_accepts_the_file() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI here: `docker compose config` not run")
    version = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, check=False)
    if version.returncode != 0:
        reason = version.stderr.strip().splitlines()[0] if version.stderr.strip() else f"exit {version.returncode}"
        pytest.skip(f"the docker compose plugin is not installed here ({reason}): `docker compose config` not run")
    env = {**os.environ, **MINIMAL_ENV}
    profiles = ["--profile", "simulator", "--profile", "kafka-ui", "--profile", "observability"]
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE_FILE), *profiles, "config", "--quiet"],
        capture_output=True, text=True, env=env, cwd=ROOT, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


# --- Dockerfile ------------------------------------------------------------------------------------------
def test_dockerfile_builds_a_venv_and_runs_unprivileged() -> None:
    stages = dockerfile_stages(ROOT / "Dockerfile")
    assert len(stages) >= 2, "expected a multi-stage build"
    builder, runtime = stages[0], stages[-1]
    assert runtime.base == "python:3.11-slim"
    runs = " ".join(builder.args("RUN"))
    assert "pip install -c constraints.txt" in runs and "python -m venv /opt/venv" in runs
    users = runtime.args("USER")
    assert users, "the runtime stage must switch to a non-root USER"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert json.loads(runtime.args("ENTRYPOINT")[-1]) == ["tickpipe"]
    copies = runtime.args("COPY")
    assert f"--from={builder.name} /opt/venv /opt/venv" in copies
    assert not runtime.args("HEALTHCHECK"), "compose holds the health checks"


def test_dockerfile_keeps_migrations_next_to_the_package() -> None:
    """tickpipe/db.py finds migrations at <package>/../migrations: the image must keep that layout."""
    from tickpipe import db

    assert db.MIGRATIONS_DIR == ROOT / "migrations"
    builder = dockerfile_stages(ROOT / "Dockerfile")[0]
    workdir = builder.args("WORKDIR")[-1]
    copied = {rest.split()[-2]: rest.split()[-1] for rest in builder.args("COPY") if len(rest.split()) == 2}
    for package in ("tickpipe", "producer", "consumers", "api", "simulator", "migrations"):
        assert copied.get(package) == f"./{package}", f"{package} must be copied to {workdir}/{package}"
    assert any("pip install" in run and "-e ." in run for run in builder.args("RUN")), "install in place (editable)"
    runtime = dockerfile_stages(ROOT / "Dockerfile")[-1]
    assert f"--from={builder.name} {workdir} {workdir}" in runtime.args("COPY")


def test_dockerignore_keeps_secrets_out_and_the_sources_in() -> None:
    patterns = dockerignore_patterns(ROOT / ".dockerignore")
    for secret in (".env", ".env.production", ".venv/bin/python", ".git/config", "tickpipe/__pycache__/x.pyc"):
        assert dockerignored(secret, patterns), f"{secret} would be sent to the Docker daemon"
    builder = dockerfile_stages(ROOT / "Dockerfile")[0]
    sources = [src for rest in builder.args("COPY") if not rest.startswith("--") for src in rest.split()[:-1]]
    assert "README.md" in sources, "pyproject.toml's readme is needed to build"
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not dockerignored(source, patterns), f"COPY {source}: excluded by .dockerignore"
    assert not dockerignored("api/static/index.html", patterns)


# --- observability ---------------------------------------------------------------------------------------
def test_prometheus_scrapes_every_tickpipe_service(services: dict[str, dict[str, Any]]) -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    scraped: dict[str, int] = {}
    for job in config["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            scraped |= {name: sd["port"] for name in sd["names"]}
    expected = (
        {"producer": 8081, "producer-crypto": 8083, "producer-options": 8084, "producer-news": 8085}
        | {"producer-trade_updates": 8086, "api": 8000}
        | {f"consumer-{f}": 8082 for f in CONSUMED}
    )
    assert scraped == expected
    for name, port in scraped.items():
        env = environment(services[name])
        setting = ADMIN_PORTS.get(name, "CONSUMER_ADMIN_PORT")
        assert env[setting] == str(port), f"{name} is scraped on {port}, its admin port is {setting}={env[setting]}"
    mounts = services["prometheus"]["volumes"]
    assert "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts


def _dashboard() -> dict[str, Any]:
    result: dict[str, Any] = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "tickpipe.json").read_text())
    return result


def test_grafana_is_provisioned_with_the_dashboard(services: dict[str, dict[str, Any]]) -> None:
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    provider = yaml.safe_load((provisioning / "dashboards" / "tickpipe.yml").read_text())["providers"][0]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in services["grafana"]["volumes"]}
    assert mounts[provider["options"]["path"]] == "./deploy/grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    assert datasource["url"] == "http://prometheus:9090"
    dashboard = _dashboard()
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]


def _dashboard_metrics() -> set[str]:
    exprs = [t["expr"] for p in _dashboard()["panels"] for t in p.get("targets", [])]
    return {name for expr in exprs for name in re.findall(r"\btickpipe_[a-z0-9_]+", expr)}


@pytest.mark.parametrize(("prefix", "package"), [
    ("tickpipe_producer_", "producer"), ("tickpipe_consumer_", "consumers"), ("tickpipe_api_", "api"),
])  # fmt: skip
def test_dashboard_uses_only_registered_metrics(prefix: str, package: str) -> None:
    used = {name for name in _dashboard_metrics() if name.startswith(prefix)}
    assert used, f"the dashboard shows no {prefix}* metric"
    registered = registered_metric_names(package)
    if registered is None:
        pytest.skip(f"{package}/ registers no metrics yet; names not checked: {', '.join(sorted(used))}")
    unknown = used - registered
    assert not unknown, f"the dashboard uses metrics {package}/ does not register: {sorted(unknown)}"


def test_every_dashboard_metric_belongs_to_a_part() -> None:
    prefixes = ("tickpipe_producer_", "tickpipe_consumer_", "tickpipe_api_")
    assert all(name.startswith(prefixes) for name in _dashboard_metrics())
