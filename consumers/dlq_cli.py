"""``tickpipe dlq list|replay``: look at dead letters, and send them back to their topics after a fix.

``list`` prints one line per dead letter (``--json``: one JSON object per
line), oldest first per partition. ``replay`` sends the original bytes of each
consumer dead letter back to its source topic, then records how far it got
under the replay group, so the next ``replay`` sends only newer letters
(``--from-start`` sends all of them again; the tables are idempotent, so that
is harmless). A letter that is still bad lands in the dead-letter topic again.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import deque
from typing import Any

import orjson

from consumers.dlq import StoredLetter, replay_dead_letters, stream_dead_letters
from tickpipe.codecs import format_rfc3339_ns
from tickpipe.errors import SettingsError
from tickpipe.kafka import dlq_topic, make_producer
from tickpipe.logs import setup_logging
from tickpipe.settings import Settings, get_settings


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tickpipe dlq", description=__doc__.split("\n\n")[0])
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    show = commands.add_parser("list", help="show dead letters")
    show.add_argument("--topic", default=None, help="only letters from this source topic")
    show.add_argument("--limit", type=int, default=None, help="at most this many (the newest)")
    show.add_argument("--json", action="store_true", help="one JSON object per line")
    again = commands.add_parser("replay", help="send dead letters back to their source topics")
    again.add_argument("--topic", default=None, help="only letters from this source topic")
    again.add_argument("--from-start", action="store_true", help="replay every letter, not only new ones")
    again.add_argument("--dry-run", action="store_true", help="count what would be sent; send nothing")
    again.add_argument(
        "--group", default=None, help="group that remembers replay progress (default <KAFKA_TOPIC_PREFIX>dlq-replay)"
    )
    return p


def as_dict(item: StoredLetter) -> dict[str, Any]:
    letter = item.letter
    if letter is None:
        return {"partition": item.partition, "offset": item.offset, "error": item.error, "raw": item.raw.hex()}
    return {
        "partition": item.partition, "offset": item.offset, "at": format_rfc3339_ns(letter.at),
        "stage": letter.stage, "source_topic": letter.source_topic, "source_partition": letter.source_partition,
        "source_offset": letter.source_offset, "key": letter.key.decode(errors="replace") if letter.key else None,
        "field": letter.field, "reason": letter.reason, "original": letter.original.hex(),
    }  # fmt: skip


def as_line(item: StoredLetter) -> str:
    letter = item.letter
    where = f"{item.partition}:{item.offset}"
    if letter is None:
        return f"{where}  (unreadable) {item.error}"
    key = letter.key.decode(errors="replace") if letter.key else "-"
    source = f"{letter.source_topic}[{letter.source_partition}]@{letter.source_offset}"
    return (
        f"{where}  {format_rfc3339_ns(letter.at)}  {letter.stage}  {source}  key={key}  "
        f"field={letter.field}  {len(letter.original)} bytes  {letter.reason}"
    )


def _bootstrap(settings: Settings) -> str:
    if not settings.kafka_bootstrap_servers:
        raise SettingsError("KAFKA_BOOTSTRAP_SERVERS is not set: tickpipe dlq needs the Kafka holding the letters")
    return settings.kafka_bootstrap_servers


async def list_letters(settings: Settings, args: argparse.Namespace) -> int:
    """Print letters as they are read; ``--limit N`` keeps only the last N in memory (the topic may be large)."""
    letters = stream_dead_letters(_bootstrap(settings), dlq_topic(settings))
    kept: deque[StoredLetter] | None = None if args.limit is None else deque(maxlen=max(args.limit, 0))
    shown = 0

    def show(item: StoredLetter) -> None:
        print(orjson.dumps(as_dict(item)).decode() if args.json else as_line(item))

    async for item in letters:
        if args.topic and (item.letter is None or item.letter.source_topic != args.topic):
            continue
        if kept is None:
            show(item)
            shown += 1
        else:
            kept.append(item)
    for item in kept or ():
        show(item)
        shown += 1
    if not args.json:
        print(f"{shown} dead letters in {dlq_topic(settings)}", file=sys.stderr)
    return 0


async def replay(settings: Settings, args: argparse.Namespace) -> int:
    bootstrap = _bootstrap(settings)
    group = args.group or f"{settings.kafka_topic_prefix}dlq-replay" + (f".{args.topic}" if args.topic else "")
    producer = make_producer(settings, bootstrap, client_id="tickpipe-dlq-replay")
    await producer.start()
    try:
        result = await replay_dead_letters(
            bootstrap, dlq_topic(settings), producer, group_id=group, source_topic=args.topic,
            from_start=args.from_start, dry_run=args.dry_run,
        )  # fmt: skip
    finally:
        await producer.stop()
    verb = "would replay" if args.dry_run else "replayed"
    topics = ", ".join(f"{name}: {count}" for name, count in sorted(result.by_topic.items())) or "none"
    skipped = ", ".join(f"{why}: {count}" for why, count in sorted(result.skipped.items())) or "none"
    print(f"{verb} {result.sent} dead letters ({topics}); skipped {skipped}")
    return 0


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    settings = get_settings()
    setup_logging(settings.log_level, settings.log_format)
    return asyncio.run(list_letters(settings, args) if args.command == "list" else replay(settings, args))
