"""The Apache Kafka jars the embedded broker runs from, resolved once by Maven into a cache folder.

Why jars and not a Kafka download: the machines that build tickpipe reach Maven
Central but no other download site, and a KRaft node needs nothing but the
``kafka_2.13`` artifact and its runtime dependencies. ``jars/kafka-pom.xml``
names them; ``mvn dependency:copy-dependencies`` copies them into
``<cache>/kafka-<version>/libs`` and a ``complete`` marker is written last, so
a half-finished copy is never mistaken for a usable one. After that the broker
starts offline.

The cache folder is ``TICKPIPE_KAFKA_HOME`` if set, else
``$XDG_CACHE_HOME/tickpipe`` (``~/.cache/tickpipe``): shared by every clone on
the machine, since the jars are the same for all of them.

``python -m tickpipe.dev.kafka_jars`` resolves them (``make run`` and ``make test``
call it when they are missing); ``--check`` only says whether they are there.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tickpipe.errors import MissingExtraError

POM = Path(__file__).with_name("jars") / "kafka-pom.xml"
KAFKA_VERSION = re.search(r"<kafka.version>([^<]+)</kafka.version>", POM.read_text()).group(1)  # type: ignore[union-attr]
FETCH_HINT = "make kafka-jars  (or: python -m tickpipe.dev.kafka_jars)"


def cache_root() -> Path:
    """Where resolved jars live; see the module docstring."""
    if home := os.environ.get("TICKPIPE_KAFKA_HOME"):
        return Path(home).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser().resolve() / "tickpipe"


def libs_dir(version: str = KAFKA_VERSION) -> Path:
    return cache_root() / f"kafka-{version}" / "libs"


def _marker(version: str = KAFKA_VERSION) -> Path:
    return cache_root() / f"kafka-{version}" / "complete"


def jars_present(version: str = KAFKA_VERSION) -> bool:
    return _marker(version).is_file() and any(libs_dir(version).glob("kafka_2.13-*.jar"))


@dataclass(frozen=True)
class Java:
    """The ``java`` binary and its feature version (Kafka 4 brokers need 17 or later)."""

    path: str
    version: int


def find_java() -> Java | None:
    """``$JAVA_HOME/bin/java`` if set, else ``java`` on PATH, with a version of at least 17; else None."""
    candidates = []
    if home := os.environ.get("JAVA_HOME"):
        candidates.append(str(Path(home) / "bin" / "java"))
    if on_path := shutil.which("java"):
        candidates.append(on_path)
    for path in candidates:
        version = _java_version(path)
        if version is not None and version >= 17:
            return Java(path, version)
    return None


def _java_version(path: str) -> int | None:
    try:
        out = subprocess.run([path, "-version"], capture_output=True, text=True, timeout=30, check=False).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def runtime(version: str = KAFKA_VERSION) -> tuple[Java, str]:
    """The ``java`` to run the broker with and its class path.

    ``MissingExtraError`` (saying what to run) when Java or the jars are missing. One call, one
    ``java -version``: looking Java up costs a JVM start.
    """
    java = find_java()
    if java is None:
        raise MissingExtraError(
            "embedded Apache Kafka needs Java 17 or later (`java` on PATH or JAVA_HOME); "
            "install it (apt-get install openjdk-17-jre-headless), set KAFKA_EMBEDDED=tansu, "
            "or set KAFKA_BOOTSTRAP_SERVERS to use a running Kafka"
        )
    if not jars_present(version):
        raise MissingExtraError(
            f"embedded Apache Kafka {version}: its jars are not in {libs_dir(version).parent}; "
            f"run `{FETCH_HINT}` once (needs Maven and Maven Central), "
            "or set KAFKA_EMBEDDED=tansu, or set KAFKA_BOOTSTRAP_SERVERS"
        )
    return java, str(libs_dir(version) / "*")


def resolve(version: str = KAFKA_VERSION, *, quiet: bool = False) -> Path:
    """Copy the broker's jars into the cache with Maven (no-op when they are there); the libs folder."""
    if jars_present(version):
        return libs_dir(version)
    mvn = shutil.which("mvn")
    if mvn is None:
        raise MissingExtraError(
            "resolving the Apache Kafka jars needs Maven (`mvn`); install it (apt-get install maven), "
            "or set KAFKA_EMBEDDED=tansu"
        )
    target = libs_dir(version)
    staging = target.with_name("libs.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    command = [
        mvn,
        "-B",
        "-q",
        "-f",
        str(POM),
        f"-Dkafka.version={version}",
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={staging}",
    ]
    if not quiet:
        print(f"resolving Apache Kafka {version} jars into {target} (Maven, once)", file=sys.stderr, flush=True)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-6:])
        raise MissingExtraError(
            f"Maven could not resolve the Apache Kafka {version} jars (exit {done.returncode}): {tail}"
        )
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    _marker(version).write_text(f"{version}\n")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tickpipe.dev.kafka_jars",
        description="Resolve the Apache Kafka jars of the embedded broker into the cache folder (once).",
    )
    parser.add_argument("--check", action="store_true", help="only say whether Java and the jars are there")
    parser.add_argument(
        "--if-java",
        action="store_true",
        help="do nothing (exit 0) when Java 17+ or Maven is missing: the development stack then uses Tansu",
    )
    args = parser.parse_args(argv)
    java = find_java()
    if args.check:
        present = jars_present()
        found = f"{java.path} ({java.version})" if java else "missing"
        print(f"java: {found}; jars: {libs_dir() if present else 'missing'}")
        return 0 if java and present else 1
    if args.if_java and (java is None or (shutil.which("mvn") is None and not jars_present())):
        if not jars_present():
            what = "Java 17+" if java is None else "Maven"
            print(f"tickpipe: no {what} here, so no embedded Apache Kafka; the embedded Kafka will be Tansu")
        return 0
    try:
        path = resolve()
    except MissingExtraError as exc:
        print(f"tickpipe: {exc}", file=sys.stderr)
        return 1
    if not args.if_java:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
