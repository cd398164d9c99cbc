"""Settings load from config/, take environment overrides, and reject bad values by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from segmenter.settings import SettingsError, load_settings


def test_defaults_and_environment_overrides() -> None:
    settings = load_settings(environ={
        "SEGMENTER_KAFKA_BOOTSTRAP": "k1:9092,k2:9092",
        "SEGMENTER_REDIS_URL": "redis://cache:6380/2",
        "SEGMENTER_METRICS_PORT": "9200",
    })
    assert settings.kafka.bootstrap == "k1:9092,k2:9092"
    assert settings.redis.url == "redis://cache:6380/2"
    assert settings.metrics.port == 9200
    assert settings.kafka.topics.inputs == {
        "shop.clicks": "click", "shop.carts": "cart", "shop.orders": "order"}


def test_config_file_is_merged_over_defaults(tmp_path: Path) -> None:
    extra = tmp_path / "extra.yaml"
    extra.write_text("kafka:\n  topics:\n    changes: audiences.changes\n")
    settings = load_settings(environ={"SEGMENTER_CONFIG": str(extra)})
    assert settings.kafka.topics.changes == "audiences.changes"
    assert settings.kafka.topics.clicks == "shop.clicks"


@pytest.mark.parametrize(("environ", "message"), [
    ({"SEGMENTER_METRICS_PORT": "70000"}, "metrics.port (from SEGMENTER_METRICS_PORT)"),
    ({"SEGMENTER_KAFKA_BOOTSTRAP": "no port"}, "kafka.bootstrap (from SEGMENTER_KAFKA_BOOTSTRAP)"),
    ({"SEGMENTER_REDIS_URL": "localhost:6379"}, "redis.url (from SEGMENTER_REDIS_URL)"),
    ({"SEGMENTER_CONFIG": "/nonexistent/x.yaml"}, "config file not found: /nonexistent/x.yaml"),
])
def test_bad_environment_values_are_named(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ=environ)
    assert message in str(caught.value)


@pytest.mark.parametrize(("yaml_text", "message"), [
    ("worker:\n  batch_size: 0\n", "worker.batch_size: Input should be greater than or equal to 1"),
    ("kafka:\n  partitions: many\n", "kafka.partitions"),
    ("redis:\n  colour: blue\n", "redis.colour: Extra inputs are not permitted"),
    ("segmentations:\n  lifecycle:\n    churned_after_days: 10\n",
     "churned_after_days must be greater than lapsing_after_days"),
    ("segmentations:\n  rfm:\n    recency_days: [30, 14, 60, 120]\n",
     "segmentations.rfm.recency_days: must be 4 strictly ascending edges"),
    ("segmentations:\n  rfm:\n    segments:\n      - {name: all_good, r: [1, 5], fm: [2, 5]}\n",
     "no segment covers r=1, fm=1"),
    ("kafka: [1, 2]\n", "kafka: Input should be a valid dictionary"),
    ("{{{", "is not valid YAML"),
])
def test_bad_config_values_are_named(tmp_path: Path, yaml_text: str, message: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml_text)
    with pytest.raises(SettingsError) as caught:
        load_settings(bad, environ={})
    assert message in str(caught.value)


def test_cli_reports_a_bad_setting_and_exits_2(capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.cli import main

    monkeypatch.setenv("SEGMENTER_METRICS_PORT", "-1")
    assert main(["segments"]) == 2
    assert "bad setting: metrics.port (from SEGMENTER_METRICS_PORT)" in capsys.readouterr().err
