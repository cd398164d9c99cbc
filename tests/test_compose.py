"""docker-compose.yml, config/prometheus.yml and deploy/ agree with config/ (no Docker needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from segmenter.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


@pytest.fixture(scope="module")
def worker_settings(services: dict[str, Any]) -> Settings:
    """The settings a worker container starts with: defaults plus its environment."""
    return load_settings(environ={k: str(v) for k, v in services["worker"]["environment"].items()})


def _listener_ports(value: str) -> dict[str, int]:
    return {name: int(port) for name, port in re.findall(r"(\w+)://[^:,]*:(\d+)", value)}


def test_kafka_runs_in_kraft_mode(services: dict[str, Any]) -> None:
    env = services["kafka"]["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node, voter = str(env["KAFKA_NODE_ID"]), env["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    assert voter.startswith(f"{node}@kafka:")
    listeners = _listener_ports(env["KAFKA_LISTENERS"])
    assert voter.endswith(f":{listeners[env['KAFKA_CONTROLLER_LISTENER_NAMES']]}")
    protocol_map = env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    assert set(listeners) <= {pair.split(":")[0] for pair in protocol_map}
    assert "zookeeper" not in yaml.safe_dump(services).lower()


def test_topics_created_match_config(services: dict[str, Any]) -> None:
    settings = load_settings(environ={})
    script = "\n".join(services["kafka-init"]["command"])
    loop = re.search(r"for topic in ([^;]+);", script)
    assert loop is not None
    topics = settings.kafka.topics
    assert loop.group(1).split() == [*topics.inputs, topics.deadletter, topics.changes,
                                     topics.identity, topics.forget]
    for single in (topics.behavior_model, topics.behavior_stats):
        assert re.search(rf"--topic {re.escape(single)} --partitions 1 ", script), single
    assert re.search(rf"--topic {re.escape(topics.behavior_model)} .*\n.*cleanup.policy=compact",
                     script)
    assert f"--partitions {settings.kafka.partitions}" in script
    assert f"--replication-factor {settings.kafka.replication_factor}" in script
    assert services["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_worker_reaches_kafka_and_redis_as_declared(
    services: dict[str, Any], worker_settings: Settings
) -> None:
    host, port = worker_settings.kafka.bootstrap.split(":")
    kafka_env = services["kafka"]["environment"]
    advertised = kafka_env["KAFKA_ADVERTISED_LISTENERS"]
    assert f"//{host}:{port}" in advertised and host == "kafka"
    assert int(port) in _listener_ports(kafka_env["KAFKA_LISTENERS"]).values()
    redis = urlparse(worker_settings.redis.url)
    assert redis.hostname == "redis" and redis.port == 6379
    assert "--appendonly" in services["redis"]["command"]
    depends = services["worker"]["depends_on"]
    assert depends["kafka-init"]["condition"] == "service_completed_successfully"
    assert depends["kafka"]["condition"] == depends["redis"]["condition"] == "service_healthy"


def test_prometheus_scrapes_the_worker_metrics_port(
    services: dict[str, Any], worker_settings: Settings
) -> None:
    port = worker_settings.metrics.port
    assert worker_settings.metrics.host == "0.0.0.0"  # reachable from the prometheus container
    assert str(port) in [str(p) for p in services["worker"]["expose"]]
    mounted = services["prometheus"]["volumes"][0].split(":")
    assert mounted[0] == "./config/prometheus.yml"
    config = yaml.safe_load((ROOT / "config" / "prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "segmenter")
    sd = job["dns_sd_configs"][0]
    assert sd["names"] == ["worker"] and sd["port"] == port
    assert mounted[1] in services["prometheus"]["command"][0]


def test_references_resolve(compose: dict[str, Any], services: dict[str, Any]) -> None:
    declared_volumes = set(compose.get("volumes", {}))
    for name, service in services.items():
        for dependency in service.get("depends_on", []):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith(".") or source in declared_volumes, (name, source)
            if source.startswith("."):
                assert (ROOT / source).exists(), source
    assert "ports" not in services["worker"] and "container_name" not in services["worker"]


def test_dockerfile_runs_the_worker() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["segmenter"]' in dockerfile and 'CMD ["worker"]' in dockerfile
    for needed in ("features", "segmenter", "streams", "config"):
        assert f"COPY {needed} ./{needed}" in dockerfile
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.MULTILINE)


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path of a service's files from this repository."""
    return {target: source for source, target in (v.split(":")[:2] for v in service["volumes"])
            if source.startswith("./")}


def test_prometheus_loads_the_alert_rules(services: dict[str, Any]) -> None:
    prometheus = services["prometheus"]
    config_path = prometheus["command"][0].removeprefix("--config.file=")
    mounts = _mounts(prometheus)
    config = yaml.safe_load((ROOT / mounts[config_path]).read_text())
    # Prometheus reads rule_files relative to its config file's directory.
    in_container = [str(PurePosixPath(config_path).parent / name) for name in config["rule_files"]]
    assert [mounts.get(path) for path in in_container] == ["./deploy/prometheus/alerts.yml"]


def test_grafana_is_provisioned_with_prometheus_and_the_dashboards(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    grafana = services["grafana"]
    image, tag = grafana["image"].split(":")
    assert image == "grafana/grafana" and re.fullmatch(r"\d+\.\d+\.\d+", tag)  # pinned
    assert "3000:3000" in grafana["ports"] and grafana["depends_on"] == ["prometheus"]
    assert "grafana-data" in compose["volumes"]
    mounts = _mounts(grafana)
    provisioning = ROOT / mounts["/etc/grafana/provisioning"]
    datasource, = yaml.safe_load(
        (provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    url = urlparse(datasource["url"])
    assert url.hostname == "prometheus"
    assert f"{url.port}:{url.port}" in services["prometheus"]["ports"]
    provider, = yaml.safe_load(
        (provisioning / "dashboards" / "dashboards.yml").read_text())["providers"]
    dashboards = ROOT / mounts[provider["options"]["path"]]
    files = sorted(dashboards.glob("*.json"))
    assert [path.name for path in files] == ["segmenter.json"]
    for path in files:
        assert json.loads(path.read_text())["uid"]
