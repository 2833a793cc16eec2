"""Page tokens: they round-trip, and a route refuses what it did not issue."""

from __future__ import annotations

import pytest
from fastapi.exceptions import RequestValidationError

from api.tokens import decode_token, encode_token


def test_tokens_round_trip_and_refuse_what_this_route_did_not_issue() -> None:
    token = encode_token("trades", "desc", (1_709_559_000_000_000_001, "V", 42))
    assert decode_token(token, "trades", "desc") == (1_709_559_000_000_000_001, "V", 42)
    for scope, sort in (("quotes", "desc"), ("trades", "asc"), ("bars:5Min", "desc")):
        with pytest.raises(RequestValidationError):
            decode_token(token, scope, sort)
    for forged in (token + "!", token[:-3], encode_token("trades", "desc", (2**63, "V", 1)), "x" * 600):
        with pytest.raises(RequestValidationError):
            decode_token(forged, "trades", "desc")
