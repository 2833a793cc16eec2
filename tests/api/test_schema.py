"""schemathesis against the OpenAPI document of a live API: no 5xx, responses as documented, and what
the document admits is what the server accepts (the CLI run as anyone would type it, too).

The API runs under uvicorn on a thread of its own (schemathesis calls it
synchronously, over real HTTP), on the session's PostgreSQL and Redis.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from api.main import create_app
from tests.helpers.api import api_settings, insert_events, serving_in_thread
from tests.helpers.events import bar, day_ns, quote, trade
from tests.helpers.keys import add_key, key_headers
from tests.helpers.services import database_of_its_own, run_sync
from tickpipe.events import Event


@pytest.fixture(scope="module")
def live_api(migrated_db: str, redis_url: str) -> Iterator[str]:
    with serving_in_thread(api_settings(migrated_db, redis_url)) as url:
        yield url


#: The document the app serves (it needs no running services to be built).
DOCUMENT = create_app(api_settings("postgresql://unused", "redis://unused")).openapi()
schema = schemathesis.openapi.from_dict(DOCUMENT)


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_responses_as_documented(case: schemathesis.Case, live_api: str) -> None:
    # Every check, "schema-valid data is accepted" too: the patterns of times and page tokens admit
    # exactly what the server takes, and a start after the end is an empty page.
    case.call_and_validate(base_url=live_api)


HISTORY = schema.include(tag="history")


@HISTORY.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_history_as_csv_with_any_page_token(case: schemathesis.Case, live_api: str) -> None:
    """Every history route asked for CSV, with the page tokens schemathesis draws from the documented
    pattern: no 5xx, responses as documented, and (the client reads the body to its end) never a CSV
    body cut short. Well-formed tokens at the edges of time: tests/api/test_tokens_forged.py."""
    case.headers["Accept"] = "text/csv"
    response = case.call_and_validate(base_url=live_api)
    if response.status_code == 200:
        assert response.headers["content-type"][0].startswith("text/csv"), response.headers


def test_each_history_route_documents_the_pattern_of_its_own_tokens() -> None:
    """The page_token pattern of each route is its table's (tests/api/test_tokens.py: the pattern admits
    exactly the tokens the route decodes), and ``0`` matches none."""
    import re

    from api.queries import SERVED
    from api.tokens import PATTERNS

    for table, pattern in PATTERNS.items():
        feed, family = SERVED[table]
        parameters = DOCUMENT["paths"][f"{feed.route(family.name)}/{{symbol}}"]["get"]["parameters"]
        (page_token,) = [p for p in parameters if p["name"] == "page_token"]
        assert page_token["schema"]["pattern"] == pattern
        assert not re.fullmatch(pattern, "0")


@pytest.fixture(scope="module")
def api_with_data(postgres_server_url: str, redis_url: str) -> Iterator[tuple[str, dict[str, str]]]:
    """The API on a database of its own at head, with a day of quotes, trades and bars of AAPL and MSFT
    (the symbols the document's examples name), so that pages and tokens are real; and the headers of a
    key allowed every route (the order updates too), with room for schemathesis' thousands of requests."""
    with database_of_its_own(postgres_server_url, "tickpipe_st") as url:
        day = date(2024, 3, 4)
        events: list[Event] = [
            event
            for symbol in ("AAPL", "MSFT")
            for n in range(30)
            for event in (
                quote(symbol, day_ns(day, 14, 30, n), bid=100 + n),
                trade(symbol, day_ns(day, 14, 30, n), n + 1, price=100 + n),
                bar(symbol, day_ns(day, 14, n), 100, 101),
            )
        ]
        run_sync(insert_events(url, events))
        key = run_sync(add_key(url, "schemathesis", requests_per_minute=1_000_000, trade_updates=True))
        with serving_in_thread(api_settings(url, redis_url)) as base:
            yield base, key_headers(*key)


def test_a_plain_schemathesis_run_passes(api_with_data: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    """``schemathesis run URL/openapi.json -H ...`` as a user with a key would type it, default checks and
    phases (schema-valid data accepted, invalid data refused, responses as documented): what the document
    says is what the server does. With the key, as the order updates are never served without one (a run
    without refuses only ``GET /trade_updates``, and schemathesis reports that as failed authentication).
    Some 26 operations and ~3,000 cases."""
    base, headers = api_with_data
    command = [str(Path(sys.executable).parent / "schemathesis"), "run", f"{base}/openapi.json"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "No issues found" in done.stdout, done.stdout[-3000:]
