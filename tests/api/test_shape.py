"""Row shaping: the fast RFC 3339 formatter agrees with the codec's."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from api.shape import rfc3339_ns
from tickpipe.codecs import format_rfc3339_ns


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_fast_timestamps_match_the_codec(ns: int) -> None:
    assert rfc3339_ns(ns) == format_rfc3339_ns(ns)
