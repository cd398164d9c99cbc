"""Which metrics a PromQL expression reads, and which series a worker's /metrics exports: the
dashboard's and the alert rules' queries must read only series a worker really exports."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"

#: The series a metric family of each type exposes (text format 0.0.4, as prometheus_client
#: serves it; the family's name is without the suffix). A counter has no bare name, a
#: histogram no bare name and no _total: queries must say which series they read.
SERIES_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}

#: Operators and modifiers written as words; they are not metrics.
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
            "group_right", "bool", "offset", "inf", "nan", "atan2"}
#: Parts of an expression that name no metric, removed before identifiers are read.
NOT_METRICS = [
    re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`'),  # strings
    re.compile(r"\{[^{}]*\}"),  # label matchers
    re.compile(r"\[[^\[\]]*\]"),  # ranges and subqueries: [5m], [$__rate_interval], [1h:1m]
    re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)"),
    re.compile(r"\boffset\s+-?\w+"),
    re.compile(r"\$\{?\w+\}?"),  # Grafana variables outside matchers and ranges
    re.compile(r"(?<![\w:])(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)"),  # numbers
]
IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads: identifiers that are not functions, keywords,
    labels (in matchers and grouping) or inside strings.

    >>> sorted(metric_names('histogram_quantile(0.99, sum by (le) '
    ...                     '(rate(a_bucket{x=~"$v", y="b{c}"}[$__rate_interval])))'))
    ['a_bucket']
    >>> sorted(metric_names('x > 0 and on () (time() - max(y offset 5m)) > 1e3 or z'))
    ['x', 'y', 'z']
    """
    text = expr
    for pattern in NOT_METRICS:
        text = pattern.sub(" ", text)
    names = set()
    for match in IDENTIFIER.finditer(text):
        followed_by = text[match.end():].lstrip()[:1]
        name = match.group()
        if followed_by != "(" and name.lower() not in KEYWORDS:
            names.add(name)
    return names


def exported_series(metrics_text: str) -> set[str]:
    """Every series name the /metrics text exports, also for families that have no sample yet
    (a labelled metric before its first observation)."""
    names = set()
    for family in text_string_to_metric_families(metrics_text):
        names.update(family.name + suffix for suffix in SERIES_SUFFIXES[family.type])
        names.update(sample.name for sample in family.samples)
    return names


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, expr) of every panel target and query variable, rows' panels included."""
    queries = []
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            queries.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            queries.append((f"variable {variable['name']}", variable_expr(text)))
    return queries


def variable_expr(query: str) -> str:
    """The PromQL inside a Grafana variable query: label_values(metric, label) reads metric."""
    values = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", query)
    if values:
        return values.group(1)
    return re.sub(r"^\s*query_result\((.*)\)\s*$", r"\1", query)


def panels(dashboard: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def alert_queries() -> list[tuple[str, str]]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [(f"alert {rule['alert']}", rule["expr"])
            for group in rules["groups"] for rule in group["rules"]]


def unexported(queries: list[tuple[str, str]], exported: set[str]) -> list[str]:
    """Where a query reads a series the worker does not export, and which."""
    return [f"{where}: {name}" for where, expr in queries
            for name in sorted(metric_names(expr) - exported)]
