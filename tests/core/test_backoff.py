"""tickpipe.backoff: one capped exponential curve with equal jitter."""

from __future__ import annotations

import pytest

from tickpipe.backoff import EqualJitterBackoff


def test_doubles_from_base_up_to_cap() -> None:
    backoff = EqualJitterBackoff(base=0.1, cap=1.0)
    assert [backoff.ceiling(n) for n in range(1, 7)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_waits_between_half_and_all_of_the_ceiling() -> None:
    lowest = EqualJitterBackoff(base=0.1, cap=1.0, uniform=lambda lo, hi: lo)
    highest = EqualJitterBackoff(base=0.1, cap=1.0, uniform=lambda lo, hi: hi)
    for failures in range(1, 10):
        ceiling = lowest.ceiling(failures)
        assert lowest.compute(failures) == pytest.approx(ceiling / 2)
        assert highest.compute(failures) == pytest.approx(ceiling)


def test_real_jitter_stays_in_range() -> None:
    backoff = EqualJitterBackoff(base=0.05, cap=2.0)
    draws = [backoff.compute(3) for _ in range(1_000)]
    assert all(0.1 <= d <= 0.2 for d in draws)
    assert len(set(draws)) > 1, "expected random waits, got one value"


def test_no_failure_yet_and_many_failures() -> None:
    backoff = EqualJitterBackoff(base=0.5, cap=30.0)
    assert backoff.ceiling(0) == backoff.ceiling(1) == 0.5
    assert backoff.ceiling(10_000) == 30.0  # no OverflowError from 2**10000


@pytest.mark.parametrize(("base", "cap"), [(0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_refuses_a_curve_that_cannot_be(base: float, cap: float) -> None:
    with pytest.raises(ValueError, match="expected 0 < base <= cap"):
        EqualJitterBackoff(base=base, cap=cap)


def test_a_cap_below_the_usual_base_starts_the_curve_at_the_cap() -> None:
    assert EqualJitterBackoff.up_to(0.1, base=0.5).ceiling(1) == 0.1
    assert EqualJitterBackoff.up_to(10.0, base=0.5).ceiling(1) == 0.5
