"""Pages: a token narrows the time bounds; day buckets follow New York's clock."""

from __future__ import annotations

from datetime import date

from api.pages import PageRequest, next_bucket
from tests.helpers.events import NS
from tickpipe.codecs import parse_rfc3339_ns


def test_a_token_narrows_the_time_bounds() -> None:
    at = 1_709_559_000_000_000_000
    asc = PageRequest("quotes", "AAPL", token=(at, 7))
    desc = PageRequest("quotes", "AAPL", sort="desc", token=(at, 7), start_ns=5)
    assert asc.bounds() == (at, 2**63 - 1)
    assert desc.bounds() == (5, at)
    hour = at - 1800 * NS  # 13:00, a bucket start
    hourly = PageRequest("bars", "AAPL", timeframe="1Hour", token=(hour,))
    assert hourly.bounds()[0] == hour + 3600 * NS
    # A token inside a bucket (a minute bar's, 13:30): the next page starts at the next bucket, or ends
    # before its own, never inside one.
    assert PageRequest("bars", "AAPL", timeframe="1Hour", token=(at,)).bounds()[0] == hour + 3600 * NS
    assert PageRequest("bars", "AAPL", timeframe="1Hour", sort="desc", token=(at,)).bounds()[1] == hour - 1


def test_new_york_days_follow_daylight_saving() -> None:
    before = parse_rfc3339_ns("2024-03-10T05:00:00Z")  # midnight EST, the day clocks go forward
    assert next_bucket("1Day", before) == parse_rfc3339_ns("2024-03-11T04:00:00Z")  # midnight EDT
    autumn = parse_rfc3339_ns("2024-11-03T04:00:00Z")
    assert next_bucket("1Day", autumn) == parse_rfc3339_ns("2024-11-04T05:00:00Z")
    assert date(2024, 3, 10)  # (the dates above)
