"""How long to wait before trying again: one curve for every reconnect and retry loop.

Capped exponential with equal jitter, in the style of redis-py's ``backoff.py``:
failure ``n`` (1, 2, ...) draws from ``[d/2, d]`` where ``d = min(cap, base * 2**(n-1))``.
The random half keeps many clients from hitting a recovering service in step;
the fixed half keeps the wait from collapsing to zero. Each loop holds one
:class:`EqualJitterBackoff` with its own ``base`` and ``cap`` and counts its
failures since the last success::

    backoff = EqualJitterBackoff(base=0.05, cap=2.0)
    failures = 0
    while True:
        try:
            await connect()
            failures = 0
        except OSError:
            failures += 1
            await asyncio.sleep(backoff.compute(failures))
"""

from __future__ import annotations

import random
from collections.abc import Callable

#: Exponents beyond this change nothing (any cap is reached) and would overflow a float.
_MAX_EXPONENT = 64


class EqualJitterBackoff:
    """``compute(failures)``: seconds to wait after the ``failures``-th failure in a row."""

    __slots__ = ("_uniform", "base", "cap")

    def __init__(self, base: float, cap: float, *, uniform: Callable[[float, float], float] = random.uniform) -> None:
        if not 0 < base <= cap:
            raise ValueError(f"expected 0 < base <= cap, got base={base!r}, cap={cap!r}")
        self.base = base
        self.cap = cap
        self._uniform = uniform

    @classmethod
    def up_to(cls, cap: float, base: float) -> EqualJitterBackoff:
        """From ``base`` up to ``cap``, where ``cap`` is a setting that may be below the usual ``base``
        (a test's 0.1 s reconnect cap): the curve then starts at the cap rather than refusing it."""
        return cls(base=min(base, cap), cap=cap)

    def ceiling(self, failures: int) -> float:
        """The longest wait after ``failures`` failures (the shortest is half of it)."""
        exponent = min(max(failures, 1) - 1, _MAX_EXPONENT)
        return min(self.cap, self.base * 2**exponent)

    def compute(self, failures: int) -> float:
        half = self.ceiling(failures) / 2
        return half + self._uniform(0, half)

    def __repr__(self) -> str:
        return f"EqualJitterBackoff(base={self.base!r}, cap={self.cap!r})"
