"""The news feed: Alpaca's news stream ``/v1beta1/news`` (Benzinga stories about symbols such as ``AAPL``).

One channel, ``news``, one message type, ``n``: a story with its id, headline, summary, author,
``created_at`` and ``updated_at`` (msgpack Timestamps, or RFC 3339 over JSON), URL, content, source
and the symbols it names (none, one or many). No ``S`` and no ``t``: a story is keyed by its ``id``
(``Family.key``: the Kafka record key, so every version of a story stays in one partition, in order)
and published live once on the channel of each symbol it names (``Family.channels``: ``news:AAPL``,
``news:TSLA``; a story naming none on ``news:``, which only ``*`` subscribers get). Its event time is
``created_at`` (the daily partition of its row). A story may be sent again later with the same id and
a newer ``updated_at``: it replaces the stored row (``Conflict.newer``); a redelivery changes nothing.

No snapshot hash (Alpaca sends no last story on subscribe). Stored in ``news`` (migration 0007), served
by ``GET /news?symbols=`` and Alpaca's own ``GET /v1beta1/news`` (a story names many symbols, so its
history is searched by any of them, not paged per symbol), and streamed by the API at ``/v1beta1/news``,
where alpaca-py's ``NewsDataStream`` connects (and its ``NewsClient`` reads the REST route).

Gaps in its stream are filled from Alpaca's news history, ``GET /v1beta1/news?start=&end=&sort=asc
&include_content=true`` (``history_path``, ``history``; alpaca-py's ``NewsClient.get_news``), 50 stories
a page (Alpaca's bound, ``history_limit``), each item the story the stream would have sent (its latest
version: the table's newer-``updated_at`` rule keeps whichever is newest). A story is not a symbol's
(``Family.by_symbol``), so a gap is a window of the feed: with ``NEWS_SYMBOLS=*`` it is asked for no
symbols (every story, those naming none too), with a list for the stories naming any of them. The window
is of ``created_at``, the story's event time, as the simulator's REST history (:mod:`simulator.news`) and
``GET /news`` bound it; Alpaca documents its news API's ``start``/``end`` and ``sort`` by the update
time, so there the same window also brings the stories updated in it. With the simulator, a story
created before the window and updated during it keeps its older version until it is sent again.

An update's upstream lag counts from the story's creation (``created_at`` is its event time).
"""

from __future__ import annotations

from typing import Final

from tickpipe.feeds.spec import Conflict, EventType, Family, Feed
from tickpipe.feeds.stock import STOCK

NEWS_FAMILY: Final = Family(
    "news",
    # A tick: created_at is the moment the story was published, so it moves the gap code's stream position.
    (EventType("n", "news", "news story", tick=True),),
    table="news",
    key="news_id",
    channels="symbols",
    snapshot=False,
    # A re-sent story (same id, newer updated_at) replaces the stored one; an older or equal one is a no-op.
    conflict=Conflict(replace=True, newer="updated_at"),
    stage_columns="news_id bigint, created_ns bigint, updated_ns bigint, received_ns bigint, headline text, "
    "summary text, author text, url text, content text, symbols text, source text",
    stage_row="consumers.news_staging:news_row",
    # Searched by any of its symbols at GET /news (api.routes.news), not paged per symbol.
    served=False,
    history="news",
    # As the stream sends it (Alpaca's REST leaves it out unless asked); 50 a page is Alpaca's bound.
    history_params=(("include_content", "true"),),
    history_limit=50,
)

NEWS: Final = Feed(
    name="news",
    path="/v1beta1/{variant}",
    variants=("news",),
    dialect="alpaca-v2",
    # A story names tickers as the stock feed writes them (and crypto as BTCUSD, which is one too).
    symbol_pattern=STOCK.symbol_pattern,
    families=(NEWS_FAMILY,),
    listed=("news",),
    stream_path="/v1beta1/news",
    qualifier="news",
    events="tickpipe.news_events:NEWS_EVENT_TYPES",
    example="AAPL",
    history_path="/v1beta1/{history}",
)
