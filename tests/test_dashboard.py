"""The Grafana dashboard (deploy/grafana): its queries read only series a real worker exports,
every panel uses the provisioned data source, and the issue's views are all there."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from promql import (
    DASHBOARDS,
    ROOT,
    alert_queries,
    dashboard_queries,
    exported_series,
    metric_names,
    panels,
    scrape,
    unexported,
)
from support import event_message, produce, wait_for, worker_env

from segmenter.settings import load_settings
from streams.runtime import metrics
from streams.tools.local.services import WorkerProcess

DASHBOARD = DASHBOARDS / "segmenter.json"
DATASOURCES = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
TOPICS = load_settings(environ={}).kafka.topics
#: What a worker consumes: the shop's events, identity handoffs and erasure requests.
INPUTS = (*TOPICS.inputs, TOPICS.identity, TOPICS.forget)


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def all_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return dashboard_queries(dashboard) + alert_queries()


@pytest.mark.integration
async def test_queries_read_only_what_a_running_worker_exports(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path, dashboard: dict[str, Any]
) -> None:
    """Scraped from a worker that has processed events and a dead letter: every series the
    dashboard and the alert rules read is one it exports (also its process' RSS), and the lag
    is labelled by its input partitions."""
    now = time.time()
    orders = [event_message("shop.orders", {
        "event_id": f"o{i}", "ts": now - 60, "user_id": f"u{i}", "order_id": f"o{i}",
        "total": 10.0, "currency": "EUR",
        "items": [{"product_id": "p1", "category": "shoes", "price": 10.0, "quantity": 1}]})
        for i in range(8)]
    with WorkerProcess(worker_env(kafka_bootstrap, redis_url, tmp_path),
                       tmp_path / "worker.log") as worker:
        await produce(kafka_bootstrap, [*orders, ("shop.clicks", b"u-bad", b"{not json")])

        async def lag_and_events_reported() -> bool:
            got = await asyncio.to_thread(worker.metrics, "segmenter_events_total",
                                          "segmenter_invalid_events_total")
            if not all(got.values()):
                return False
            text = await asyncio.to_thread(scrape, worker.metrics_url)
            return "shop.orders" in lagging_topics(text)

        await wait_for(lag_and_events_reported, what=lambda: f"metrics\n{worker.log()}")
        text = await asyncio.to_thread(scrape, worker.metrics_url)
    assert unexported(all_queries(dashboard), exported_series(text)) == []
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert families["process_resident_memory_bytes"].samples[0].value > 10_000_000
    lags = families["segmenter_input_partition_lag_messages"].samples
    assert "shop.orders" in lagging_topics(text) <= set(INPUTS)
    assert {int(sample.labels["partition"]) for sample in lags} <= set(range(4))
    assert all(sample.value == 0 for sample in lags)  # all read


def lagging_topics(metrics_text: str) -> set[str]:
    """The topics of the partitions whose lag the worker reports."""
    return {sample.labels["topic"] for family in text_string_to_metric_families(metrics_text)
            if family.name == "segmenter_input_partition_lag_messages"
            for sample in family.samples}


def test_a_query_naming_an_unexported_series_is_caught() -> None:
    """The check above can fail: wrong suffixes for a family's type and unknown names."""
    assert metrics.EVENTS is not None  # imported: the worker's metrics are in REGISTRY
    exported = exported_series(generate_latest(REGISTRY).decode())
    assert {"segmenter_events_total", "segmenter_processing_latency_seconds_bucket",
            "segmenter_segment_size", "process_resident_memory_bytes"} <= exported
    wrong = [("counter, bare", "rate(segmenter_events[5m])"),
             ("counter as a histogram", "segmenter_events_bucket"),
             ("histogram, bare", "segmenter_processing_latency_seconds > 1"),
             ("gauge with _total", 'sum(segmenter_segment_size_total{segment="vip"})'),
             ("unknown", "max(segmenter_no_such_metric) or vector(0)")]
    assert unexported(wrong, exported) == [
        "counter, bare: segmenter_events", "counter as a histogram: segmenter_events_bucket",
        "histogram, bare: segmenter_processing_latency_seconds",
        "gauge with _total: segmenter_segment_size_total",
        "unknown: segmenter_no_such_metric"]


def test_every_panel_queries_the_provisioned_datasource(dashboard: dict[str, Any]) -> None:
    provisioned = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    uid = next(source["uid"] for source in provisioned if source["type"] == "prometheus")
    graphs = [panel for panel in panels(dashboard) if panel["type"] != "row"]
    assert len(graphs) >= 12
    for panel in graphs:
        assert panel["targets"], panel["title"]
        sources = [panel["datasource"], *(target["datasource"] for target in panel["targets"])]
        assert all(source == {"type": "prometheus", "uid": uid} for source in sources), (
            panel["title"])
        assert panel["title"] and panel.get("description"), panel["id"]
    for variable in dashboard["templating"]["list"]:
        assert variable["datasource"]["uid"] == uid


def test_panels_tile_the_grid_without_overlapping(dashboard: dict[str, Any]) -> None:
    everything = list(panels(dashboard))
    assert len({panel["id"] for panel in everything}) == len(everything)
    cells: dict[tuple[int, int], str] = {}
    for panel in everything:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, (panel["title"], cells.get((x, y)))
                cells[x, y] = panel["title"]


#: What issue 14 asks the dashboard to show: a series read, and how it must be broken down.
WANTED = {
    "throughput per topic": ("segmenter_events_total", r"by \(topic\)"),
    "consumer lag per partition": ("segmenter_input_partition_lag_messages", r"\bpartition\b"),
    "latency p99": ("segmenter_processing_latency_seconds_bucket", r"histogram_quantile\(0\.99"),
    "latency p50": ("segmenter_processing_latency_seconds_bucket", r"histogram_quantile\(0\.5"),
    "loop lag": ("segmenter_loop_lag_seconds", ""),
    "dead letters by reason": ("segmenter_invalid_events_total", r"by \(reason\)"),
    "segment sizes": ("segmenter_segment_size", r"segmentation, segment"),
    "changes per segmentation": ("segmenter_segment_changes_total", r"by \(segmentation"),
    "model version": ("segmenter_behavior_model_version", ""),
    "drift": ("segmenter_behavior_drift_distance", ""),
    "drifts detected": ("segmenter_behavior_drifts_total", ""),
    "redis errors": ("segmenter_redis_errors_total", ""),
    "worker rss": ("process_resident_memory_bytes", ""),
}


@pytest.mark.parametrize("view", sorted(WANTED))
def test_the_dashboard_shows(view: str, dashboard: dict[str, Any]) -> None:
    series, breakdown = WANTED[view]
    assert any(series in metric_names(expr) and re.search(breakdown, expr)
               for _, expr in dashboard_queries(dashboard)), view
