"""schemathesis against the OpenAPI document of a live API: no 5xx, and responses as documented.

The API runs under uvicorn on a thread of its own (schemathesis calls it
synchronously, over real HTTP), on the session's PostgreSQL and Redis.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.main import create_app
from tests.helpers.api import api_settings, serving_in_thread


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
    # Every check but "schema-valid data is accepted": the schema cannot say that 2024-02-30 is no
    # date, that start must not follow end, or which page tokens this API issued.
    case.call_and_validate(base_url=live_api, excluded_checks=[positive_data_acceptance])


HISTORY = schema.include(tag="history")


@HISTORY.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_history_as_csv_with_any_page_token(case: schemathesis.Case, live_api: str) -> None:
    """Every history route asked for CSV, with the page tokens schemathesis draws from the documented
    pattern: no 5xx, responses as documented, and (the client reads the body to its end) never a CSV
    body cut short. Well-formed tokens at the edges of time: tests/api/test_tokens_forged.py."""
    case.headers["Accept"] = "text/csv"
    response = case.call_and_validate(base_url=live_api, excluded_checks=[positive_data_acceptance])
    if response.status_code == 200:
        assert response.headers["content-type"][0].startswith("text/csv"), response.headers


def test_page_token_pattern_admits_every_issued_token_and_no_undecodable_one() -> None:
    """The documented pattern is what api/tokens.py issues: every scope and sort matches it, while
    strings the server can never decode (``0``, a 1-character tail, another version) do not."""
    import re

    from api.params import TOKEN_PATTERN
    from api.tokens import encode_token

    issued = [
        encode_token(scope, sort, key)
        for scope, key in [
            ("quotes", (0, 0)),
            ("quotes", (2**63 - 1, 2**63 - 1)),
            ("trades", (1_700_000_000_000_000_000, "V", 42)),
            ("trades", (5, "", -1)),
            ("bars:1Min", (7,)),
            ("bars:1Day", (10**18,)),
        ]
        for sort in ("asc", "desc")
    ]
    assert all(re.fullmatch(TOKEN_PATTERN, token) for token in issued), issued
    for refused in ("0", "WzEsInF1b3RlcyIsA", "WzIsInF1b3RlcyIsImFzYyIsMCwwXQ", "WzEsInF1b3RlcyIsImFzYyIsM"):
        assert not re.fullmatch(TOKEN_PATTERN, refused), refused
    (page_token,) = [p for p in DOCUMENT["paths"]["/quotes/{symbol}"]["get"]["parameters"] if p["name"] == "page_token"]
    assert TOKEN_PATTERN in str(page_token["schema"])
