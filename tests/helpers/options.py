"""The options feed's simulator and producer set-up shared by the producer, backfill and system tests:
a small chain every contract of which is subscribed, the simulator serving it, and the settings of a
``tickpipe producer --feed options`` reading it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simulator import DEFAULT_START_NS, Simulator, SimulatorConfig
from simulator.config import OPTION_FEEDS
from simulator.options import chain
from tests.helpers.producer import producer_settings
from tests.helpers.simulator import nanos
from tickpipe.settings import Settings

FEED = OPTION_FEEDS[0]  # "options/opra"
#: Two chains of one expiry: 2 underlyings x 6 strikes x C/P = 24 contracts, every one subscribed.
CONTRACTS = tuple(chain(["SPY", "TSLA"], DEFAULT_START_NS, expiries=1, strikes=6))
FAMILIES = ("trades", "quotes")


def option_config(**overrides: Any) -> SimulatorConfig:
    values: dict[str, Any] = {
        "rate": 2000,
        "start_ns": DEFAULT_START_NS,
        "record": True,
        "option_symbols": CONTRACTS,
        "feed": FEED,
    }
    values.update(overrides)
    return SimulatorConfig(**values)


def option_settings(
    kafka: str, redis_url: str, prefix: str, spool: Path, upstream: Simulator | str, **overrides: Any
) -> Settings:
    """A producer of the options feed: ALPACA_STREAM_URL is the simulator's stock URL (or ``upstream``, e.g.
    a proxy's rewrite of it), the options URL derived from its host (ALPACA_OPTIONS_FEED picks opra)."""
    values: dict[str, Any] = {
        "option_symbols": ",".join(CONTRACTS),
        "alpaca_options_feed": "opra",
        "options_producer_admin_port": 0,
    }
    values.update(overrides)
    url = upstream.url_for("iex") if isinstance(upstream, Simulator) else upstream
    return producer_settings(kafka, redis_url, prefix, spool, url, **values)


def option_topics(prefix: str) -> list[str]:
    return [f"{prefix}options.{family}" for family in FAMILIES]


def sent_on(sim: Simulator, feed: str = FEED) -> list[dict[str, Any]]:
    """Every data message the simulator sent on its option connections of ``feed``, in order (``t`` in ns)."""
    return [
        {**m, "t": nanos(m["t"])} for session in sim.sessions if session.feed == feed for m in session.sent_events()
    ]
