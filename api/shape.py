"""Rows as Alpaca's REST API shows them: short field names, RFC 3339 ``t`` to the nanosecond.

A page is built straight from asyncpg records into dicts and dumped once by
orjson; this is the hot path of every history request (about 1.4 µs a row),
so it avoids the event structs and ``datetime.strftime`` (3.5 µs a stamp; this takes 0.6).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, timedelta
from typing import Any, Final

import orjson

_EPOCH_DAY: Final = date(1970, 1, 1)
_DAY_PREFIX: dict[int, str] = {}
#: "HH:MM:SS." of every second of a day (86,400 short strings, made once): formatting them is half the cost.
_CLOCK: Final = tuple(f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}." for s in range(86_400))

Row = Sequence[Any]


def rfc3339_ns(ns: int) -> str:
    """``2024-03-04T13:30:00.004680000Z``: what :func:`tickpipe.codecs.format_rfc3339_ns` gives, faster."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    day, rest = divmod(seconds, 86_400)
    prefix = _DAY_PREFIX.get(day)
    if prefix is None:
        prefix = (_EPOCH_DAY + timedelta(days=day)).isoformat() + "T"
        if len(_DAY_PREFIX) < 100_000:
            _DAY_PREFIX[day] = prefix
    return "%s%s%09dZ" % (prefix, _CLOCK[rest], nanos)  # noqa: UP031 - the fastest form, on the hottest line


# Each takes a row of queries.SELECT[table] (key columns first) and gives Alpaca's object.


def quote(r: Row) -> dict[str, Any]:
    return {
        "t": rfc3339_ns(r[0]),
        "ax": r[5],
        "ap": r[6],
        "as": r[7],
        "bx": r[2],
        "bp": r[3],
        "bs": r[4],
        "c": r[8],
        "z": r[9],
    }


def trade(r: Row) -> dict[str, Any]:
    return {"t": rfc3339_ns(r[0]), "x": r[1], "p": r[3], "s": r[4], "c": r[5], "i": r[2], "z": r[6]}


def bar(r: Row) -> dict[str, Any]:
    return {"t": rfc3339_ns(r[0]), "o": r[1], "h": r[2], "l": r[3], "c": r[4], "v": r[5], "n": r[7], "vw": r[6]}


SHAPES: Final[dict[str, Callable[[Row], dict[str, Any]]]] = {"quotes": quote, "trades": trade, "bars": bar}


def latest_object(payload: bytes | str, family: str) -> dict[str, Any] | None:
    """A Redis snapshot (an encode_live JSON) as the REST latest shape: without ``T`` and ``S``.

    None when the snapshot is not the kind the route serves (``latest:bars``
    may hold a daily bar; ``/bars/latest`` serves minute bars).
    """
    data = orjson.loads(payload)
    if not isinstance(data, dict):
        return None
    kind = data.pop("T", None)
    data.pop("S", None)
    if family == "bars" and kind not in ("b", "u"):
        return None
    return data
