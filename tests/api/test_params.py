"""Query parameters: times as RFC 3339 or whole days, CSV by content negotiation."""

from __future__ import annotations

import pytest
from fastapi.exceptions import RequestValidationError

from api.params import parse_time, wants_csv
from tests.helpers.events import NS
from tickpipe.codecs import parse_rfc3339_ns


def test_times_are_rfc3339_to_the_nanosecond_or_whole_days() -> None:
    assert parse_time("2024-03-04T14:30:00.123456789Z", "start", end=False) == parse_rfc3339_ns(
        "2024-03-04T14:30:00.123456789Z"
    )
    assert parse_time("2024-03-04T09:30:00-05:00", "start", end=False) == parse_rfc3339_ns("2024-03-04T14:30:00Z")
    day = parse_rfc3339_ns("2024-03-04T00:00:00Z")
    assert parse_time("2024-03-04", "start", end=False) == day
    assert parse_time("2024-03-04", "end", end=True) == day + 86_400 * NS - 1
    for bad in ("2024-03-04\n", "٢٠٢٤-03-04", "2024-3-4", "2024-03-04T10:00Z", "now"):
        with pytest.raises(RequestValidationError):
            parse_time(bad, "start", end=False)


@pytest.mark.parametrize(
    ("accept", "csv"),
    [
        (None, False),
        ("*/*", False),
        ("application/json", False),
        ("text/csv", True),
        ("text/csv;q=0.9, application/json", False),
        ("application/json;q=0.5, text/csv", True),
        ("text/html, text/csv;q=0.1", True),
        ("text/csv;q=0", False),
    ],
)
def test_csv_only_when_preferred(accept: str | None, csv: bool) -> None:
    assert wants_csv(accept) is csv
