"""Page tokens: they round-trip, each route's pattern admits exactly what it decodes, and nothing else."""

from __future__ import annotations

import re

import pytest
from fastapi.exceptions import RequestValidationError
from hypothesis import given
from hypothesis import strategies as st

from api.tokens import MAX_LENGTH, PATTERNS, decode_token, encode_token

INT64 = st.integers(-(2**63), 2**63 - 1)
TIME = st.integers(0, 2**63 - 1)
EXCHANGE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=16)
KEYS = {
    "quotes": st.tuples(TIME, INT64),
    "trades": st.tuples(TIME, EXCHANGE, INT64),
    "bars": st.tuples(TIME),
    "crypto_quotes": st.tuples(TIME, INT64),
    "crypto_trades": st.tuples(TIME, INT64),
    "crypto_bars": st.tuples(TIME),
}


@pytest.mark.parametrize("table", sorted(KEYS))
@given(data=st.data())
def test_every_key_round_trips_through_a_token_its_pattern_admits(table: str, data: st.DataObject) -> None:
    key = data.draw(KEYS[table])
    token = encode_token(table, key)
    assert re.fullmatch(PATTERNS[table], token) and len(token) <= MAX_LENGTH
    assert decode_token(token, table) == key


@pytest.mark.parametrize("table", sorted(KEYS))
@given(data=st.data())
def test_every_string_the_pattern_admits_decodes(table: str, data: st.DataObject) -> None:
    """What the OpenAPI document promises: a string matching the route's pattern is a token it accepts."""
    token = data.draw(st.from_regex(PATTERNS[table], fullmatch=True))
    assert encode_token(table, decode_token(token, table)) == token


@pytest.mark.parametrize(
    ("token", "table"),
    [
        ("0", "quotes"),
        ("8000000000000000", "bars"),  # past int64: no time_ns
        ("17B992DA55927001", "bars"),  # upper case
        ("17b992da55927001" + "0" * 16, "bars"),  # a quotes token on bars
        ("17b992da55927001", "quotes"),
        ("17b992da55927001" + "00" + "0" * 16, "trades"),  # a NUL in the exchange
        ("17b992da55927001" + "56" * 17 + "0" * 16, "trades"),  # an exchange of 17 characters
        ("x" * 600, "trades"),
    ],
)
def test_anything_else_is_a_422_naming_page_token(token: str, table: str) -> None:
    assert not re.fullmatch(PATTERNS[table], token)
    with pytest.raises(RequestValidationError) as refused:
        decode_token(token, table)
    assert refused.value.errors()[0]["loc"] == ("query", "page_token")
