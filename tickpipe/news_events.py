"""The news feed's event: one immutable struct per story of Alpaca's news stream.

In the style of :mod:`tickpipe.events` (long attribute names, Alpaca's own names on every wire,
times in integer nanoseconds), with a registry of its own, :data:`NEWS_EVENT_TYPES`. A story has no
``S`` and no ``t``: it names any number of symbols (``symbols``) and two times, ``created_at`` (its
event time: :attr:`NewsStory.timestamp`) and ``updated_at`` (a story re-sent with a newer one is an
update of the stored story). Over msgpack both times are Timestamps (alpaca-py calls
``to_datetime()`` on them), over JSON RFC 3339 text; :data:`time_fields` names them for the codecs.
Fields as alpaca-py's ``alpaca.data.models.news.News`` reads them (``url`` may be null).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Final

import msgspec

from tickpipe.events import SCHEMA_VERSION
from tickpipe.feeds.news import NEWS


class NewsStory(msgspec.Struct, frozen=True, kw_only=True, tag_field="T", tag="n"):
    """One story, as Alpaca's news stream sends it (``T`` = ``n``)."""

    type_code: ClassVar[str] = "n"
    family_of: ClassVar[Mapping[str, str]] = NEWS.family_of
    #: The wire names holding times (msgpack Timestamps or RFC 3339 upstream, nanoseconds here).
    time_fields: ClassVar[tuple[str, ...]] = ("created_at", "updated_at")

    #: Alpaca's story id: the Kafka record key and, with ``created_at``, the row's key.
    news_id: int = msgspec.field(name="id")
    headline: str
    summary: str = ""
    author: str = ""
    #: When the story was first published (ns since the epoch): its event time and daily partition.
    created_at: int
    #: When it was last changed (ns): a story re-sent with a newer one replaces the stored version.
    updated_at: int
    url: str | None = None
    content: str = ""
    #: The symbols it is about (may be none: a story about the market).
    symbols: tuple[str, ...] = ()
    source: str = ""
    #: When the producer read it from the upstream socket (ns since epoch); 0 if unknown.
    received_at: int = msgspec.field(name="_r", default=0)
    schema_version: int = msgspec.field(name="_v", default=SCHEMA_VERSION)

    @property
    def timestamp(self) -> int:
        """The event time the generic parts read (partitions, lag): ``created_at``."""
        return self.created_at

    @property
    def family(self) -> str:
        return self.family_of[self.type_code]


#: The news feed's structs by ``T`` code.
NEWS_EVENT_TYPES: Final[dict[str, type[NewsStory]]] = {NewsStory.type_code: NewsStory}
