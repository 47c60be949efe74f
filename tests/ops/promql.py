"""Enough of PromQL to check expressions against the metrics contract: which series an
expression reads, which labels it names, and which functions it applies to what."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ops.metrics_contract import SERIES, Kind, family_of

#: Labels Prometheus adds to every scraped series.
TARGET_LABELS = frozenset({"job", "instance"})
#: Series Prometheus makes itself.
BUILTIN_SERIES = {"up": ("job", "instance")}
#: Functions over counters (and a histogram's parts), and over gauges.
COUNTER_FUNCTIONS = frozenset({"rate", "irate", "increase"})
GAUGE_FUNCTIONS = frozenset({"deriv", "delta", "idelta", "predict_linear"})

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_NAME = re.compile(r"(?<![\w:$.])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_APPLIED = re.compile(r"\b([a-z_]+)\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[\[{]")
_KEYWORDS = frozenset(
    {
        "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
        "bool", "offset", "sum", "min", "max", "avg", "count", "topk", "bottomk", "quantile",
        "stddev", "stdvar", "group", "count_values", "inf", "nan",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Expression:
    """What one PromQL expression reads."""

    text: str
    series: frozenset[str]
    labels: frozenset[str]
    applied: tuple[tuple[str, str], ...]  # (function, series) where a function takes a selector


def parse(expr: str, recorded: dict[str, tuple[str, ...]] | None = None) -> Expression:
    """The series, label names and function applications of ``expr``."""
    recorded = recorded or {}
    # Grafana's variables ($topic, $__rate_interval) stand in for values and durations.
    text = re.sub(r"\$\{?\w+\}?", "1m", expr)
    bare = _STRING.sub('""', text)
    series, labels = set(), set()
    for match in _NAME.finditer(bare):
        name, matchers = match.group(1), match.group(2)
        following = bare[match.end() :].lstrip()
        if name in _KEYWORDS or (following.startswith("(") and not matchers):
            continue  # a function, an aggregation or a keyword
        if re.fullmatch(r"\d+[smhdwy]?", name) or _inside_grouping(bare, match.start()):
            continue
        series.add(name)
        if matchers:
            labels.update(_MATCHER.findall(matchers))
    for group in _GROUPING.findall(bare):
        labels.update(label.strip() for label in group.split(",") if label.strip())
    applied = tuple(_APPLIED.findall(bare))
    return Expression(expr, frozenset(series), frozenset(labels), applied)


def _inside_grouping(text: str, position: int) -> bool:
    """Whether ``position`` is inside the parentheses of a ``by (...)`` clause."""
    return any(m.start(1) <= position < m.end(1) for m in _GROUPING.finditer(text))


def problems(expr: str, recorded: dict[str, tuple[str, ...]] | None = None) -> list[str]:
    """What in ``expr`` is not in the contract, or misuses a metric's type; empty when fine."""
    recorded = recorded or {}
    found = parse(expr, recorded)
    out = []
    if expr.count("(") != expr.count(")") or expr.count("{") != expr.count("}"):
        out.append("unbalanced brackets")
    known = {**SERIES, **BUILTIN_SERIES, **recorded}
    allowed = set(TARGET_LABELS)
    for name in found.series:
        if name not in known:
            out.append(f"{name}: not in ops/metrics_contract.py")
        else:
            allowed.update(known[name])
    for label in sorted(found.labels - allowed):
        out.append(f"label {label!r}: none of {sorted(found.series)} has it")
    for function, name in found.applied:
        family = family_of(name)
        if family is None:
            continue  # recorded or built in
        if function in COUNTER_FUNCTIONS and family.kind is Kind.GAUGE:
            out.append(f"{function}({name}): {name} is a gauge")
        if function in GAUGE_FUNCTIONS and family.kind is not Kind.GAUGE:
            out.append(f"{function}({name}): {name} is a {family.kind}")
    for quantile in re.findall(r"histogram_quantile\(([^,]+),", expr):
        if not 0 < float(quantile) < 1:
            out.append(f"histogram_quantile({quantile}): not a quantile")
    if "histogram_quantile" in expr:
        buckets = [s for s in found.series if s.endswith("_bucket")]
        if not buckets or "le" not in found.labels:
            out.append("histogram_quantile needs _bucket series aggregated by le")
    return out


def grouping_labels(expr: str) -> tuple[str, ...]:
    """The labels an aggregation keeps: those of its outermost ``by (...)``."""
    groups = _GROUPING.findall(expr)
    return tuple(label.strip() for label in groups[0].split(",")) if groups else ()
