"""``tickpipe backfill``: load any window of history from the REST API into Kafka.

The consumers then write it to PostgreSQL as they write the stream, so one
path stores everything and the same keys hold: running a backfill twice puts
the records in Kafka twice and adds no row.

Resumable: after each page, once Kafka has acknowledged its records, the next
page's token is written to a checkpoint file (atomically). Run the same
command again after an interruption and it goes on from there; a finished
run's checkpoint says so, and running it again starts over (``--fresh``
forces that for an unfinished one too).

Progress: a bar on a terminal; otherwise one plain line every few seconds.

``--feed crypto`` loads the crypto feed's history (``/v1beta3/crypto/us/...``, pairs
such as ``BTC/USD``) into its own topics (``tickpipe.crypto.*``); ``--feed options`` the option
trades (``/v1beta1/options/trades``, OCC contracts, 100 a request) into ``tickpipe.options.trades``;
``--feed news`` the stories created in the window (``/v1beta1/news``, 50 a page, in their latest
version) into ``tickpipe.news``, keyed by their ids: every story without ``--symbols`` (those naming
no symbol too), else the stories naming any of them. A feed without REST history is refused with one line.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from producer.backfill import Backfiller
from producer.errors import describe
from producer.gaps import DONE, EVERY, Gap, StateFile, windowed
from producer.history_client import PAGE_LIMIT, Page, kinds
from producer.kafka_backend import AiokafkaBackend, Round
from producer.rounds import Partitioner
from producer.service import history_client
from producer.spool import Record
from tickpipe.backoff import EqualJitterBackoff
from tickpipe.codecs import format_rfc3339_ns, parse_rfc3339_ns
from tickpipe.errors import TickpipeError
from tickpipe.feeds import STOCK, Feed
from tickpipe.logs import setup_logging
from tickpipe.names import topic
from tickpipe.settings import FEED_NAMES, Settings, get_settings, validator_for

log = logging.getLogger("backfill")

#: The stock feed's REST resources (``--types``' choices without ``--feed``).
RESOURCES = tuple(kinds(STOCK))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tickpipe backfill", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--feed", default="stocks",
        help="whose history: stocks (default), crypto (pairs such as BTC/USD), options (OCC contracts) or news",
    )  # fmt: skip
    parser.add_argument(
        "--symbols",
        help="comma list of symbols, e.g. AAPL,MSFT (crypto: BTC/USD; options: AAPL240621C00190000); news: the "
        "stories naming any of them, all stories when left out",
    )  # fmt: skip
    parser.add_argument("--start", required=True, help="RFC 3339 time (2024-06-03T13:30:00Z) or a date (UTC)")
    parser.add_argument("--end", required=True, help="RFC 3339 time or a date (UTC, inclusive)")
    parser.add_argument(
        "--types", help=f"comma subset of {', '.join(RESOURCES)} (default: all but quotes, i.e. trades,bars; "
        "options: trades, their only history)",
    )  # fmt: skip
    parser.add_argument("--checkpoint", type=Path, help="checkpoint file (default DATA_DIR/backfill/<run>.json)")
    parser.add_argument("--fresh", action="store_true", help="ignore an unfinished checkpoint and start over")
    parser.add_argument(
        "--page-limit", type=int, default=PAGE_LIMIT, help=f"items per request, 1 to {PAGE_LIMIT} (smaller: finer "
        "checkpoints, more requests)",
    )  # fmt: skip
    parser.add_argument("--max-pages", type=int, help="stop after this many pages (resume later; for tests)")
    parser.add_argument("--progress", choices=("auto", "bar", "lines", "none"), default="auto")
    return parser


def parse_time(text: str, name: str) -> int:
    """RFC 3339 or a date (its UTC midnight) to nanoseconds."""
    try:
        if len(text) == 10:
            return parse_rfc3339_ns(f"{text}T00:00:00Z")
        return parse_rfc3339_ns(text)
    except ValueError:
        raise TickpipeError(f"--{name}: expected RFC 3339 (2024-06-03T13:30:00Z) or a date, got {text!r}") from None


@dataclass(frozen=True)
class Job:
    symbols: list[str]
    start_ns: int
    end_ns: int
    resources: list[str]
    feed: Feed = STOCK

    @property
    def name(self) -> str:
        """The same arguments name the same checkpoint (the stock feed's names as before ``--feed``)."""
        text = f"{','.join(self.symbols)}|{self.start_ns}|{self.end_ns}|{','.join(self.resources)}"
        if self.feed is not STOCK:
            text = f"{self.feed.name}|{text}"
        return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def feed_from(name: str, feeds: Mapping[str, Feed] = FEED_NAMES) -> Feed:
    """``--feed``'s feed among ``feeds`` (ALPACA_FEEDS' names), if it has REST history; a one-line error otherwise."""
    feed = feeds.get(name.strip().lower())
    if feed is None:
        names = ", ".join(sorted({n for n, f in feeds.items() if f.history_path}))
        raise TickpipeError(f"--feed: expected one of {names}, got {name!r}")
    if not feed.history_path:
        raise TickpipeError(f"--feed: the {feed.name} feed has no REST history to load (yet)")
    return feed


def job_from(args: argparse.Namespace) -> Job:
    feed = feed_from(args.feed)
    validate = validator_for(feed)
    whole = windowed(feed)  # its history serves every item when asked for no symbols (news)
    if args.symbols is None and not whole:
        raise TickpipeError(f"--symbols: expected a comma list of the {feed.name} feed's symbols")
    try:
        given = [] if args.symbols is None else [s.strip() for s in args.symbols.split(",") if s.strip()]
        symbols = [EVERY] if whole and (not given or EVERY in given) else sorted({validate(s) for s in given})
    except ValueError as exc:
        raise TickpipeError(f"--symbols: {exc}") from None
    if not symbols:
        raise TickpipeError("--symbols: expected at least one symbol")
    offered = tuple(kinds(feed))
    if args.types is None:  # every history the feed has but those fetched only when asked for (quotes)
        args.types = ",".join(f.history for f in feed.families if f.history and not f.history_on_request)
    resources = [r.strip() for r in args.types.split(",") if r.strip()]
    unknown = [r for r in resources if r not in offered]
    if unknown or not resources:
        raise TickpipeError(f"--types: expected a comma subset of {', '.join(offered)}, got {args.types!r}")
    start, end = parse_time(args.start, "start"), parse_time(args.end, "end")
    if end < start:
        raise TickpipeError("--end: expected a time after --start")
    return Job(symbols, start, end, [r for r in offered if r in resources], feed)


class KafkaPut:
    """Sends a page's records and returns once Kafka acknowledged every one (then the page may be checkpointed).

    Records go in rounds of whole batches, one per partition (the producer's
    :class:`~producer.kafka_backend.AiokafkaBackend`): appending to a batch costs
    a microsecond, a ``send()`` per record several. Partitions are Kafka's
    default (murmur2 of the symbol), as for the stream's records. A round
    that fails is sent again whole, up to ``attempts`` times (Kafka may then
    hold some records twice, which the keyed rows absorb), then the run stops:
    its checkpoint still names this page.
    """

    def __init__(self, backend: AiokafkaBackend, attempts: int = 5) -> None:
        self.backend = backend
        self.partition = Partitioner()
        self.attempts = attempts
        self.backoff = EqualJitterBackoff(base=0.5, cap=10.0)
        self.sent = 0

    async def put(self, records: list[Record]) -> None:
        i = 0
        while i < len(records):
            round_, end = await self._fill(records, i)
            for attempt in range(1, self.attempts + 1):
                outcome = await round_.send()
                failed = [f"{tp}: {describe(exc)}" for tp, exc in outcome.items() if exc is not None]
                if not failed:
                    break
                if attempt == self.attempts:
                    raise TickpipeError(f"Kafka did not take a round {attempt} times ({failed[0]})")
                log.warning("backfill: Kafka did not take a round (%s); sending it again", failed[0])
                await asyncio.sleep(self.backoff.compute(attempt))
                round_, _ = await self._fill(records, i)
            self.sent += end - i
            i = end

    async def _fill(self, records: list[Record], i: int) -> tuple[Round, int]:
        """A round of ``records`` from ``i``, as many as its batches take; where it stopped."""
        round_ = self.backend.new_round()
        counts = self.partition.counts
        start = i
        while i < len(records):
            topic_name, key, value = records[i]
            if topic_name not in counts:
                self.partition.update({topic_name: await self.backend.partitions(topic_name)})
            if not round_.add(topic_name, self.partition(topic_name, key), key, value):
                break
            i += 1
        if i == start:
            raise TickpipeError(f"a record of {len(records[i][2])} bytes does not fit a Kafka batch")
        return round_, i


class Progress:
    """A bar on a terminal (rich), plain lines otherwise, or nothing."""

    def __init__(self, mode: str, job: Job, out: TextIO) -> None:
        if mode == "auto":
            mode = "bar" if out.isatty() else "lines"
        self.mode = mode
        self.job = job
        self.out = out
        self.events = 0
        self.started = time.monotonic()
        self._last_line = 0.0
        self._bar: object | None = None
        if mode == "bar":
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[events]:,} events"),
                           TimeElapsedColumn(), transient=False)  # fmt: skip
            bar.start()
            self._task = bar.add_task("backfill", total=1000, events=0)
            self._bar = bar

    def fraction(self, gap: Gap, resource: str, page: Page) -> float:
        """How far the run is: resources done, and in this one the symbol reached (pages go symbol by symbol)."""
        done = sum(1 for r in self.job.resources if gap.finished(r))
        symbols = self.job.symbols
        if page.next_token is None or gap.finished(resource):
            return min(1.0, done / len(self.job.resources))
        last = max(page.items, default=symbols[0])
        position = (symbols.index(last) if last in symbols else 0) / len(symbols)
        return min(1.0, (done + position) / len(self.job.resources))

    def page(self, gap: Gap, resource: str, page: Page) -> None:
        self.events += page.count
        fraction = self.fraction(gap, resource, page)
        if self._bar is not None:
            from rich.progress import Progress as Bar

            assert isinstance(self._bar, Bar)
            self._bar.update(self._task, completed=int(fraction * 1000), events=self.events, description=resource)
        elif self.mode == "lines":
            now = time.monotonic()
            if now - self._last_line >= 2.0 or fraction >= 1.0:
                self._last_line = now
                rate = self.events / max(now - self.started, 1e-9)
                print(f"backfill: {fraction:6.1%} {resource} {self.events:,} events ({rate:,.0f}/s)", file=self.out)
                self.out.flush()

    def close(self) -> None:
        if self._bar is not None:
            from rich.progress import Progress as Bar

            assert isinstance(self._bar, Bar)
            self._bar.stop()


async def run(
    settings: Settings,
    job: Job,
    checkpoint: Path,
    *,
    fresh: bool = False,
    max_pages: int | None = None,
    page_limit: int = PAGE_LIMIT,
    progress: str = "auto",
    out: TextIO = sys.stderr,
) -> dict[str, int]:
    """Load the job's window into Kafka, resuming from ``checkpoint``; events sent, by resource."""
    if not settings.kafka_bootstrap_servers:
        raise TickpipeError("tickpipe backfill needs KAFKA_BOOTSTRAP_SERVERS")
    bootstrap = settings.kafka_bootstrap_servers
    prefix = settings.kafka_topic_prefix
    feed = job.feed
    topics = {code: topic(word, prefix) for code, word in feed.word_of.items()}
    resource_codes = kinds(feed)
    state = StateFile(checkpoint)
    saved = None if fresh else state.read()
    gap = Gap(job.start_ns, job.end_ns, job.symbols, "backfill")
    if saved is not None and saved.get("job") == job.name and not saved.get("finished"):
        gap = Gap.from_json(saved["gap"])
        log.info("backfill: resuming from %s", checkpoint)
    wanted = sorted({topics[resource_codes[r]] for r in job.resources})
    backend = AiokafkaBackend(settings, bootstrap, wanted)  # creates missing topics as it starts
    await backend.start()
    client = history_client(settings, feed)
    client.page_limit = page_limit
    sink = KafkaPut(backend)
    filler = Backfiller(client, sink, topics, job.resources, feed=feed)
    bar = Progress(progress, job, out)
    pages = 0

    class Enough(Exception):
        pass

    def on_page(g: Gap, resource: str, page: Page) -> None:
        nonlocal pages
        pages += 1
        state.write({"job": job.name, "gap": g.to_json(), "finished": False})
        bar.page(g, resource, page)
        if max_pages is not None and pages >= max_pages and not all(g.finished(r) for r in job.resources):
            raise Enough

    finished = False
    try:
        await filler.fill(gap, on_page)
        finished = all(v == DONE for v in gap.progress.values())
        state.write({"job": job.name, "gap": gap.to_json(), "finished": finished})
    except Enough:
        log.info("backfill: stopped after %d pages (--max-pages); run again to resume", pages)
    finally:
        bar.close()
        await client.aclose()
        await backend.stop()
    stats = client.stats
    log.info(
        "backfill: %s %s..%s: %s events (%s), %d requests, %d throttled, %.1f s waited for the rate limit",
        ",".join(job.symbols[:5]) + ("..." if len(job.symbols) > 5 else ""), format_rfc3339_ns(job.start_ns),
        format_rfc3339_ns(job.end_ns), f"{sum(filler.events.values()):,}", dict(filler.events), stats.requests,
        stats.throttled, stats.waited_s,
    )  # fmt: skip
    return dict(filler.events)


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    settings = get_settings()
    setup_logging(settings.log_level, settings.log_format)
    job = job_from(args)
    checkpoint = args.checkpoint or settings.data_dir / "backfill" / f"{job.name}.json"
    if not 1 <= args.page_limit <= PAGE_LIMIT:
        raise TickpipeError(f"--page-limit: expected 1 to {PAGE_LIMIT}, got {args.page_limit}")
    loop_main = run(settings, job, checkpoint, fresh=args.fresh, max_pages=args.max_pages,
                    page_limit=args.page_limit, progress=args.progress)  # fmt: skip

    async def guarded() -> dict[str, int]:
        task = asyncio.ensure_future(loop_main)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, task.cancel)
        return await task

    try:
        events = asyncio.run(guarded())
    except asyncio.CancelledError:
        print(f"tickpipe backfill: interrupted; run the same command again to resume ({checkpoint})", file=sys.stderr)
        return 130
    print(f"backfill: {sum(events.values())} events sent to Kafka {events}", file=sys.stdout)
    return 0
