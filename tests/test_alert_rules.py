"""The Prometheus alert rules (deploy/prometheus/alerts.yml), checked and unit-tested by
promtool (Debian's prometheus package, unpacked into .venv by `make install`), and the
Prometheus configuration that loads them, laid out as docker-compose.yml mounts it."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from promql import ALERTS, ROOT, metric_names

RULE_TESTS = ALERTS.parent / "alerts_test.yml"
RULES = yaml.safe_load(ALERTS.read_text())
ALERT_NAMES = [rule["alert"] for group in RULES["groups"] for rule in group["rules"]]
TESTS = yaml.safe_load(RULE_TESTS.read_text())
#: (test group, case) of every expectation in alerts_test.yml.
CASES = [(g, c) for g, group in enumerate(TESTS["tests"])
         for c, _ in enumerate(group["alert_rule_test"])]


@pytest.fixture(scope="module")
def promtool() -> str:
    beside_python = Path(sys.executable).parent / "promtool"
    found = str(beside_python) if beside_python.exists() else shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: run `make install` (as root, or with apt's package "
                    "lists present), or install Debian's prometheus package")
    return found


def run(*argv: str, cwd: Path = ALERTS.parent) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_rules_pass_promtool_check(promtool: str) -> None:
    done = run(promtool, "check", "rules", str(ALERTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(ALERT_NAMES)} rules found" in done.stdout


def test_rule_unit_tests_pass(promtool: str) -> None:
    done = run(promtool, "test", "rules", RULE_TESTS.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_issue_alerts_are_there() -> None:
    assert sorted(ALERT_NAMES) == sorted([
        "SegmenterInputLagGrowing", "SegmenterWorkerNotConsuming", "SegmenterDeadLettersHigh",
        "SegmenterLatencyP99High", "SegmenterRedisWriteErrors", "SegmenterNoModelVersion"])
    for group in RULES["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
            anchor = rule["alert"].lower()
            assert f"docs/operations.md#{anchor}" in rule["annotations"]["description"]
            assert f"### {rule['alert']}" in (ROOT / "docs" / "operations.md").read_text()


def test_each_alert_is_tested_firing_and_silent() -> None:
    firing = {case["alertname"] for group in TESTS["tests"] for case in group["alert_rule_test"]
              if case["exp_alerts"]}
    silent = {case["alertname"] for group in TESTS["tests"] for case in group["alert_rule_test"]
              if not case["exp_alerts"]}
    assert firing == silent == set(ALERT_NAMES)


def test_test_series_are_the_series_the_rules_read() -> None:
    """A misspelt input series would leave a rule silent for the wrong reason."""
    read = set().union(*(metric_names(rule["expr"])
                         for group in RULES["groups"] for rule in group["rules"]))
    for group in TESTS["tests"]:
        for series in group["input_series"]:
            name = series["series"].split("{", 1)[0]
            assert name in read, name


@pytest.mark.parametrize(("group", "case"), CASES)
def test_a_wrong_expectation_fails(promtool: str, tmp_path: Path, group: int,
                                   case: int) -> None:
    """Each expectation is checked: turned around (firing <-> silent), promtool fails."""
    tests = copy.deepcopy(TESTS)
    tests["rule_files"] = [str(ALERTS)]
    tests["tests"] = [tests["tests"][group]]
    expectation = tests["tests"][0]["alert_rule_test"][case]
    expectation["exp_alerts"] = [] if expectation["exp_alerts"] else [
        {"exp_labels": {"severity": rule_of(expectation["alertname"])["labels"]["severity"]}}]
    wrong = tmp_path / "wrong_test.yml"
    wrong.write_text(yaml.safe_dump(tests))
    done = run(promtool, "test", "rules", str(wrong), cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"alertname: {expectation['alertname']}" in done.stdout + done.stderr


def rule_of(alert: str) -> dict[str, Any]:
    return next(rule for group in RULES["groups"] for rule in group["rules"]
                if rule["alert"] == alert)


def test_prometheus_loads_the_rules_as_compose_mounts_them(promtool: str,
                                                           tmp_path: Path) -> None:
    """The Prometheus container's files, where docker-compose.yml mounts them: its config
    finds the rule file (promtool fails when a rule file is missing) and is valid."""
    prometheus = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"][
        "prometheus"]
    config = next(PurePosixPath(arg.split("=", 1)[1]) for arg in prometheus["command"]
                  if arg.startswith("--config.file="))
    for volume in prometheus["volumes"]:
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            placed = tmp_path / PurePosixPath(target).relative_to("/")
            placed.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / source, placed)
    loaded = tmp_path / config.relative_to("/")
    rule_files = yaml.safe_load(loaded.read_text())["rule_files"]
    assert [(loaded.parent / name).read_text() for name in rule_files] == [ALERTS.read_text()]
    done = run(promtool, "check", "config", str(loaded), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(ALERT_NAMES)} rules found" in done.stdout
