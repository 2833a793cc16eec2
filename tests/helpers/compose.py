"""Readers for the deployment files, for tests/system/test_compose.py (no Docker engine needed).

Compose's variable interpolation, a Dockerfile's stages, ``.dockerignore``
matching, ``.env.example``'s two sections and the metric names the code
registers (read from its source: the producer's counters are collected at
scrape time, so no registry holds them until a service runs), each
reimplemented just far enough to check our own files.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
COMPOSE_MARKER = "# --- docker compose only"

_REFERENCE = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?", re.DOTALL)


class MissingVariable(Exception):
    """A ``${VAR:?message}`` whose variable is unset or empty, as ``docker compose`` reports it."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"required variable {name} is missing a value: {message}")
        self.name = name


def interpolate(text: str, env: Mapping[str, str], used: set[str] | None = None) -> str:
    """Compose's interpolation: ``$$``, ``$VAR``, ``${VAR}`` and ``${VAR<op>arg}``, op one of :- - :? ? :+ +."""

    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        braced = match.group("braced")
        parsed = _BRACED.fullmatch(braced if braced is not None else match.group("named"))
        if parsed is None or "${" in (parsed.group("arg") or ""):
            raise ValueError(f"expected ${{NAME}} or ${{NAME<op>value}} (no nesting), got {match.group(0)!r}")
        name, op, arg = parsed.group("name"), parsed.group("op"), parsed.group("arg") or ""
        if used is not None:
            used.add(name)
        value = env.get(name)
        is_set, non_empty = value is not None, bool(value)
        if op is None:
            return value or ""
        if op in (":?", "?") and not (non_empty if op == ":?" else is_set):
            raise MissingVariable(name, arg)
        if op in (":-", "-"):
            return value if (non_empty if op == ":-" else is_set) and value is not None else arg
        if op in (":+", "+"):
            return arg if (non_empty if op == ":+" else is_set) else ""
        return value or ""

    return _REFERENCE.sub(replace, text)


def interpolate_tree(node: Any, env: Mapping[str, str], used: set[str] | None = None) -> Any:
    """Interpolate every string value of a parsed YAML document (keys are left as they are, like compose)."""
    if isinstance(node, str):
        return interpolate(node, env, used)
    if isinstance(node, list):
        return [interpolate_tree(item, env, used) for item in node]
    if isinstance(node, dict):
        return {key: interpolate_tree(value, env, used) for key, value in node.items()}
    return node


def load_compose(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """docker-compose.yml, parsed (YAML anchors and merge keys resolved) and interpolated with ``env``."""
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(raw, dict), f"expected a mapping at the top of {COMPOSE_FILE}, got {type(raw).__name__}"
    if env is None:
        return raw
    result: dict[str, Any] = interpolate_tree(raw, env)
    return result


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's ``environment`` as a dict, whether written as a mapping or as a list of ``K=V``."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def env_example_sections() -> tuple[set[str], set[str]]:
    """Variables of .env.example: (the settings part, the ``docker compose only`` part)."""
    text = ENV_EXAMPLE.read_text()
    head, _, tail = text.partition(COMPOSE_MARKER)
    names = re.compile(r"^([A-Z][A-Z0-9_]*)=", re.MULTILINE)
    return set(names.findall(head)), set(names.findall(tail))


@dataclass
class Stage:
    """One ``FROM`` stage of a Dockerfile: its base, name and instructions (continuations joined)."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [rest for kw, rest in self.instructions if kw == keyword]


def dockerfile_stages(path: Path) -> list[Stage]:
    lines: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        if raw.lstrip().startswith("#") and not pending:
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        if raw.lstrip().startswith("#"):
            continue
        lines.append(pending + raw)
        pending = ""
    stages: list[Stage] = []
    for line in filter(str.strip, lines):
        keyword, _, rest = line.strip().partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            parts = rest.split()
            stages.append(Stage(parts[0], parts[2] if len(parts) > 2 and parts[1].upper() == "AS" else None))
        elif stages:
            stages[-1].instructions.append((keyword, rest))
    return stages


def _glob_regex(glob: str) -> re.Pattern[str]:
    """A .dockerignore glob as a regex: ``**`` spans folders, ``*`` and ``?`` stay within one."""
    out, i = "", 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif glob.startswith("**", i):
            out, i = out + ".*", i + 2
        elif glob[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif glob[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(glob[i]), i + 1
    return re.compile(out)


def dockerignored(relpath: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path (or a folder above it) decides; ``!`` re-includes."""
    parts = relpath.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _glob_regex(pattern.removeprefix("!").strip("/"))
        if any(regex.fullmatch(candidate) for candidate in candidates):
            ignored = not negate
    return ignored


def dockerignore_patterns(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


#: prometheus_client's constructors, by the kind of series they produce.
METRIC_KINDS = {
    "Counter": "counter", "CounterMetricFamily": "counter",
    "Gauge": "gauge", "GaugeMetricFamily": "gauge",
    "Histogram": "histogram", "HistogramMetricFamily": "histogram",
    "Summary": "summary", "SummaryMetricFamily": "summary",
    "Info": "info", "InfoMetricFamily": "info",
    "Enum": "stateset", "StateSetMetricFamily": "stateset",
    "GaugeHistogramMetricFamily": "gaugehistogram",
}  # fmt: skip


def _series(family_name: str, kind: str) -> set[str]:
    """Names Prometheus stores for one metric family (what PromQL can refer to)."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "info": ("_info",),
        "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    }.get(kind, ("",))
    if kind == "counter":
        family_name = family_name.removesuffix("_total")
    return {family_name + suffix for suffix in suffixes}


def _string(node: ast.expr | None, constants: dict[str, str]) -> str | None:
    """A string literal, a module constant, or an f-string of those; None for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    if isinstance(node, ast.JoinedStr):
        parts = [_string(v.value if isinstance(v, ast.FormattedValue) else v, constants) for v in node.values]
        return None if None in parts else "".join(p for p in parts if p is not None)
    return None


def _module_values(tree: ast.Module) -> dict[str, ast.expr]:
    """Module-level ``NAME = value`` and ``NAME: T = value`` assignments."""
    values: dict[str, ast.expr] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            values[node.targets[0].id] = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            values[node.target.id] = node.value
    return values


def _loop_names(tree: ast.Module, values: dict[str, ast.expr]) -> dict[str, list[str]]:
    """Names a ``for ..., (name, help) in DECLARED.items()`` loop binds, with the first string of each tuple.

    So a module that declares its metrics as a dict of (name, help) and constructs them in a loop
    is read as well as one that spells each name at its constructor.
    """
    bound: dict[str, list[str]] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.For | ast.comprehension) and isinstance(node.iter, ast.Call)):
            continue
        call = node.iter.func
        if not (isinstance(call, ast.Attribute) and call.attr == "items" and isinstance(call.value, ast.Name)):
            continue
        declared = values.get(call.value.id)
        target = node.target
        if not (isinstance(declared, ast.Dict) and isinstance(target, ast.Tuple) and len(target.elts) == 2):
            continue
        value_target = target.elts[1]
        if not (isinstance(value_target, ast.Tuple) and value_target.elts):
            continue
        if not isinstance(value_target.elts[0], ast.Name):
            continue
        firsts = [
            v.elts[0].value
            for v in declared.values
            if isinstance(v, ast.Tuple) and v.elts and isinstance(v.elts[0], ast.Constant)
            and isinstance(v.elts[0].value, str)
        ]  # fmt: skip
        bound.setdefault(value_target.elts[0].id, []).extend(firsts)
    return bound


def _metrics_in(path: Path) -> Iterator[tuple[str, str]]:
    """(full name, kind) of every metric a source file constructs; an unreadable name fails loudly."""
    tree = ast.parse(path.read_text(), str(path))
    values = _module_values(tree)
    constants = {
        name: value.value
        for name, value in values.items()
        if isinstance(value, ast.Constant) and isinstance(value.value, str)
    }
    loop_names = _loop_names(tree, values)
    # Only prometheus_client's constructors count (collections.Counter is no metric).
    imported: dict[str, str] = {}
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("prometheus_client"):
            imported |= {alias.asname or alias.name: alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            modules |= {a.asname or a.name for a in node.names if a.name.startswith("prometheus_client")}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name):
            called = imported.get(func.id, "")
        elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in modules:
            called = func.attr
        else:
            continue
        if called not in METRIC_KINDS:
            continue
        keywords = {kw.arg: kw.value for kw in node.keywords if kw.arg}
        first = node.args[0] if node.args else keywords.get("name")
        if isinstance(first, ast.Starred) and isinstance(first.value, ast.Name):
            # Counter(*DECLARED, ...) with DECLARED a module-level (name, help) tuple.
            declared = values.get(first.value.id)
            first = declared.elts[0] if isinstance(declared, ast.Tuple) and declared.elts else None
        names = [_string(first, constants)]
        if names == [None] and isinstance(first, ast.Name) and first.id in loop_names:
            names = list(loop_names[first.id])
        if not names or None in names:
            raise AssertionError(f"{path}:{node.lineno}: cannot read the name of this {called}")
        prefix = [_string(keywords.get(part), constants) for part in ("namespace", "subsystem")]
        for name in names:
            assert name is not None
            yield "_".join([p for p in prefix if p] + [name]), METRIC_KINDS[called]


def registered_metric_names(package: str) -> set[str] | None:
    """Every series name the package's code registers (read from its source); None when it has no metrics yet."""
    folder = ROOT / package
    names: set[str] = set()
    for path in sorted(folder.rglob("*.py")) if folder.is_dir() else []:
        for name, kind in _metrics_in(path):
            names |= _series(name, kind)
    return names or None
