"""A deterministic news wire that speaks Alpaca's news stream (``/v1beta1/news``) and its REST history.

Stories come at the market's pace (``SimulatorConfig.news_rate`` a second), each about none, one or
several of the simulator's symbols (a market story names none; about a third name two or three), and
some are updates of an earlier story: the same ``id`` and ``created_at``, a newer ``updated_at`` and
a changed headline, as Benzinga re-sends a story it corrected. Times are whole seconds, as Alpaca's
news times are. Events are dicts with Alpaca's names in Alpaca's order (``T`` = ``n``), times ints of
nanoseconds (:func:`simulator.wire.encode_events` writes them as Timestamps or RFC 3339).

:class:`NewsMarket` keeps every story's latest version (at most ``history_max_events``) for
:func:`answer`, the REST route ``GET /v1beta1/news?symbols=&start=&end=&limit=&sort=&page_token=
&include_content=`` (Alpaca's, as alpaca-py's ``NewsClient`` calls it): ``{"news": [...],
"next_page_token": ...}``, the stories whose ``created_at`` falls in [start, end] and that name any
of ``symbols`` (none given: every story), newest first unless ``sort=asc``; ``limit`` 1 to 50
(default 10); ``content`` only with ``include_content=true``, as Alpaca.
"""

from __future__ import annotations

import base64
import random
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, Final

from simulator.bars import NS
from simulator.pages import parse_limit

Event = dict[str, Any]

FIRST_ID: Final = 24_918_784
MAX_LIMIT: Final = 50
#: An update is of one of the last this many stories made: an older story is never changed again.
RECENT: Final = 50
DEFAULT_LIMIT: Final = 10
PARAMS: Final = frozenset(
    {"symbols", "start", "end", "limit", "sort", "page_token", "include_content", "exclude_contentless"}
)
_AUTHORS: Final = ("Benzinga Newsdesk", "Benzinga Insights", "Happy Mohamed", "Vandana Singh", "Akanksha Bakshi")
_ABOUT: Final = (
    "{s} Shares Trading Higher After Earnings Beat", "{s} Announces New Buyback Program",
    "Analyst Upgrades {s} To Buy", "{s} Shares Fall As Guidance Disappoints", "{s} Files 10-Q",
    "Options Traders Bet On {s} Ahead Of Earnings", "{s} CEO Buys Shares In Open-Market Purchase",
)  # fmt: skip
_MARKET: Final = (
    "Stocks Open Mixed As Traders Await Fed Minutes", "Treasury Yields Edge Lower",
    "Oil Rises On Supply Concerns", "Futures Point To Higher Open",
)  # fmt: skip


class NewsMarket:
    """Stories over ``symbols``, made by :meth:`advance`, kept (latest version per id) for the REST route."""

    def __init__(
        self,
        symbols: Sequence[str],
        seed: int = 0,
        *,
        start_ns: int,
        update_ratio: float = 0.15,
        history_max_events: int = 100_000,
    ) -> None:
        self._symbols = list(symbols)
        self._rng = random.Random(f"news-{seed}")
        self.clock_ns = start_ns
        self.update_ratio = update_ratio
        self.history_max_events = history_max_events
        self._next_id = FIRST_ID
        #: id -> the story's latest version, oldest story first.
        self.stories: OrderedDict[int, Event] = OrderedDict()

    @property
    def symbols(self) -> list[str]:
        return list(self._symbols)

    def advance(self, n: int, until_ns: int) -> list[Event]:
        """``n`` stories (new ones and updates) over (clock, until_ns], in time order."""
        out: list[Event] = []
        span = until_ns - self.clock_ns
        if span <= 0:
            return out
        for t in sorted(self.clock_ns + 1 + int(self._rng.random() * span) for _ in range(n)):
            story = self._update(t) if self.stories and self._rng.random() < self.update_ratio else self._new(t)
            self.stories[story["id"]] = story  # an update keeps its story's place: stories stay in created order
            while len(self.stories) > self.history_max_events:
                self.stories.popitem(last=False)
            out.append(story)
        self.clock_ns = max(self.clock_ns, until_ns)
        return out

    def _new(self, t: int) -> Event:
        rng = self._rng
        roll = rng.random()
        count = 0 if roll < 0.1 else 1 if roll < 0.65 else rng.choice((2, 3))
        named = rng.sample(self._symbols, min(count, len(self._symbols)))
        headline = rng.choice(_ABOUT).format(s=named[0]) if named else rng.choice(_MARKET)
        story_id, self._next_id = self._next_id, self._next_id + rng.randint(1, 40)
        created = t // NS * NS  # Alpaca's news times are whole seconds
        return {
            "T": "n", "id": story_id, "headline": headline,
            "summary": f"{headline}; more in the story.", "author": rng.choice(_AUTHORS),
            "created_at": created, "updated_at": created,
            "url": f"https://www.benzinga.com/news/{story_id}", "content": f"<p>{headline}.</p>",
            "symbols": named, "source": "benzinga",
        }  # fmt: skip

    def _update(self, t: int) -> Event:
        """A newer version of a recent story: its id and creation time, a later ``updated_at``."""
        recent = list(self.stories.values())[-RECENT:]
        old = self._rng.choice(recent)
        updated = max(t // NS * NS, old["updated_at"] + NS)
        headline = old["headline"].removesuffix(" (updated)") + " (updated)"
        return {**old, "headline": headline, "updated_at": updated, "content": f"<p>{headline}.</p>"}


class NewsQueryError(ValueError):
    """A REST request Alpaca would refuse: its status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def encode_token(created: int, story_id: int) -> str:
    return base64.urlsafe_b64encode(f"{created}:{story_id}".encode()).decode()


def decode_token(token: str) -> tuple[int, int]:
    try:
        created, story_id = base64.urlsafe_b64decode(token.encode()).decode().split(":")
        return int(created), int(story_id)
    except (ValueError, UnicodeDecodeError):
        raise NewsQueryError(400, f"invalid page_token: {token!r}") from None


def answer(
    stories: Mapping[int, Event],
    params: Mapping[str, str],
    start: int | None,
    end: int,
    rfc3339: Any,
) -> dict[str, Any]:
    """The REST answer to one query (its ``start``/``end`` read by the caller); NewsQueryError for a bad one."""
    unexpected = sorted(set(params) - PARAMS)
    if unexpected:
        raise NewsQueryError(400, f"unexpected query parameter(s): {', '.join(unexpected)}")
    symbols = {s for s in params.get("symbols", "").split(",") if s}
    sort = params.get("sort", "desc")
    if sort not in ("asc", "desc"):
        raise NewsQueryError(400, f"invalid sort: {sort!r}, expected asc or desc")
    limit = _limit(params.get("limit"))
    content = params.get("include_content", "false").lower() == "true"
    contentless = params.get("exclude_contentless", "false").lower() == "true"
    found = [
        s for s in stories.values()
        if (start is None or s["created_at"] >= start) and s["created_at"] <= end
        and (not symbols or symbols.intersection(s["symbols"])) and not (contentless and not s["content"])
    ]  # fmt: skip
    desc = sort == "desc"
    found.sort(key=lambda s: (s["created_at"], s["id"]), reverse=desc)
    token = params.get("page_token")
    if token:
        after = decode_token(token)
        found = [
            s for s in found if ((s["created_at"], s["id"]) < after if desc else (s["created_at"], s["id"]) > after)
        ]
    page, more = found[:limit], len(found) > limit
    items = []
    for story in page:
        item = {k: v for k, v in story.items() if k != "T"}
        item["created_at"], item["updated_at"] = rfc3339(story["created_at"]), rfc3339(story["updated_at"])
        item["content"] = story["content"] if content else ""
        item["images"] = []
        items.append(item)
    last = page[-1] if page else None
    next_token = encode_token(last["created_at"], last["id"]) if more and last is not None else None
    return {"news": items, "next_page_token": next_token}


def _limit(text: str | None) -> int:
    return parse_limit(text, DEFAULT_LIMIT, MAX_LIMIT, NewsQueryError)
