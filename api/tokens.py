"""Opaque page tokens for keyset pagination, as Alpaca's REST API hands them out.

A token is the sort key of the last row of a page (for quotes
``(time_ns, event_key)``, for trades ``(time_ns, exchange, trade_id)``, for
bars ``(time_ns,)``), with the route and sort it belongs to, as URL-safe
base64 of a small JSON array. The next page is "rows after this key", so rows
inserted meanwhile never shift a page (no gap, no repeat), unlike an offset.

A token is checked field by field on the way in, completely, before a
response starts: a forged one is a 422 naming ``page_token``, never a 5xx and
never a CSV body cut short. The values then travel as bind parameters, never
as SQL text, so each must be one PostgreSQL takes: the time within
``MIN_NS..MAX_NS`` (what ``time_ns`` can hold, and what the bounds of a page
are computed from), other integers within int64, text printable ASCII (no
NUL, which PostgreSQL's text refuses).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Final

import orjson

from api.params import MAX_NS, MIN_NS, invalid
from api.queries import KEY
from tickpipe.feeds import STOCK
from tickpipe.feeds.tables import table_of

VERSION: Final = 1
_INT64 = (-(2**63), 2**63 - 1)
_ALPHABET = re.compile(r"[A-Za-z0-9_-]{1,512}", re.ASCII)
_TEXT = re.compile(r"[\x20-\x7e]{0,16}", re.ASCII)

#: The key layout of each scope's rows: int or str, in order (the Python types of the key's columns).
KEY_SHAPES: Final[dict[str, tuple[type, ...]]] = {
    family.name: tuple(table_of(family).columns[column].type.python_type for column in KEY[family.name])
    for family in STOCK.stored
}

Key = tuple[int | str, ...]


def encode_token(scope: str, sort: str, key: Key) -> str:
    """The token after a row with this key, for this scope (``quotes``, ``bars:5Min`` ...) and sort."""
    raw = orjson.dumps([VERSION, scope, sort, *key])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_token(token: str, scope: str, sort: str) -> Key:
    """The key inside ``token``; a 422 naming ``page_token`` if it is not one this route issued."""
    shape = KEY_SHAPES[scope.split(":", 1)[0]]
    if not _ALPHABET.fullmatch(token):
        shown = token if len(token) <= 64 else f"{token[:64]}..."  # any length may come: repeat only a prefix
        invalid("query", "page_token", "expected the next_page_token of a previous page (URL-safe base64)", shown)
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = orjson.loads(raw)
    except (binascii.Error, ValueError):
        invalid("query", "page_token", "expected the next_page_token of a previous page (not decodable)", token)
    if not (isinstance(data, list) and len(data) >= 3 and data[0] == VERSION):
        invalid("query", "page_token", "expected the next_page_token of a previous page", token)
    if data[1] != scope or data[2] != sort:
        invalid(
            "query",
            "page_token",
            f"this token continues a {data[1]!s} page sorted {data[2]!s}; "
            f"ask again with the same path, timeframe and sort ({scope}, {sort})",
            token,
        )
    key = tuple(data[3:])
    if len(key) != len(shape):
        invalid("query", "page_token", "expected the next_page_token of a previous page (bad key)", token)
    for n, (value, kind) in enumerate(zip(key, shape, strict=True)):
        low, high = (MIN_NS, MAX_NS) if n == 0 else _INT64  # the first is always the row's time_ns
        if kind is int and not (type(value) is int and low <= value <= high):
            invalid("query", "page_token", "expected the next_page_token of a previous page (bad key)", token)
        if kind is str and not (isinstance(value, str) and _TEXT.fullmatch(value)):
            invalid("query", "page_token", "expected the next_page_token of a previous page (bad key)", token)
    return key
