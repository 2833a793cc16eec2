"""Page tokens for keyset pagination: the sort key of the last row of a page, in lower-case hex.

A token is the key of the page's last row (for quotes ``(time_ns,
event_key)``, for trades ``(time_ns, exchange, trade_id)``, for bars
``(time_ns,)``), each field at a fixed width: the time as 16 hex digits
(0 to 2**63 - 1), another integer as 16 (its 64 bits, two's complement),
a text as two digits per character (printable ASCII, at most 16). The next
page is "rows after this key" in the order asked, so rows inserted meanwhile
never shift a page (no gap, no repeat), unlike an offset.

Why this form: every string the OpenAPI pattern of a route admits (:data:`PATTERNS`)
is a key that route accepts, and nothing else is, so the document says exactly
what the server takes (a default ``schemathesis run`` holds it to that). The
token names no sort and no timeframe: another sort continues from the same row
the other way, another timeframe from the bucket the row falls in.

A token is checked completely before a response starts: anything else is a 422
naming ``page_token``, never a 5xx and never a CSV body cut short. The values
then travel as bind parameters, never as SQL text.
"""

from __future__ import annotations

import re
from typing import Final

from api.params import invalid
from api.queries import KEY, SERVED
from tickpipe.feeds.tables import table_of

#: The key layout of each served table's rows: int or str, in order (the Python types of the key's columns).
KEY_SHAPES: Final[dict[str, tuple[type, ...]]] = {
    table: tuple(table_of(family).columns[column].type.python_type for column in KEY[table])
    for table, (_, family) in SERVED.items()
}

Key = tuple[int | str, ...]

_TIME = "[0-7][0-9a-f]{15}"  # 0 ..= 2**63 - 1, the range of time_ns
_INT64 = "[0-9a-f]{16}"
_TEXT_LENGTH = 16
_TEXT = f"(?:[2-6][0-9a-f]|7[0-9a-e]){{0,{_TEXT_LENGTH}}}"  # printable ASCII, 0x20 ..= 0x7e


def _pattern(shape: tuple[type, ...]) -> str:
    fields = [_TIME, *(_TEXT if kind is str else _INT64 for kind in shape[1:])]  # the first is always time_ns
    return "^" + "".join(f"({field})" for field in fields) + "$"


#: The OpenAPI pattern of each table's page tokens: exactly the strings its routes accept.
PATTERNS: Final[dict[str, str]] = {table: _pattern(shape) for table, shape in KEY_SHAPES.items()}
_COMPILED: Final = {table: re.compile(pattern, re.ASCII) for table, pattern in PATTERNS.items()}
#: The longest token of any table.
MAX_LENGTH: Final = max(16 * len(shape) + (2 * _TEXT_LENGTH - 16) * shape.count(str) for shape in KEY_SHAPES.values())


def encode_token(table: str, key: Key) -> str:
    """The token after a row of ``table`` with this key."""
    parts = []
    for value in key:
        if isinstance(value, str):
            parts.append(value.encode("ascii").hex())
        else:
            parts.append(f"{value & (2**64 - 1):016x}")
    return "".join(parts)


def decode_token(token: str, table: str) -> Key:
    """The key inside ``token``; a 422 naming ``page_token`` if it is not a key of ``table``'s rows."""
    match = _COMPILED[table].fullmatch(token) if len(token) <= MAX_LENGTH else None
    if match is None:
        shown = token if len(token) <= 64 else f"{token[:64]}..."  # any length may come: repeat only a prefix
        invalid(
            "query",
            "page_token",
            f"expected the next_page_token of a previous page ({table}: lower-case hex, {PATTERNS[table]})",
            shown,
        )
    key: list[int | str] = []
    for field, kind in zip(match.groups(), KEY_SHAPES[table], strict=True):
        if kind is str:
            key.append(bytes.fromhex(field).decode("ascii"))
        else:
            number = int(field, 16)
            key.append(number - 2**64 if number >= 2**63 else number)
    return tuple(key)
