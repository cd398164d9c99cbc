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
        "shop.clicks": "click", "shop.carts": "cart", "shop.orders": "order",
        "shop.profiles": "profile"}


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
     "no segment covers r=1, f=1, m=1"),
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


def test_kafka_security_is_passed_to_the_clients_and_the_password_never_shown() -> None:
    from streams.runtime.kafka_options import client_options, faust_credentials

    env = {"SEGMENTER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
           "SEGMENTER_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
           "SEGMENTER_KAFKA_SASL_USERNAME": "segmenter",
           "SEGMENTER_KAFKA_SASL_PASSWORD": "s3cret-pw"}
    settings = load_settings(environ=env)
    options = client_options(settings.kafka)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-256"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "segmenter", "s3cret-pw")
    assert options["ssl_context"] is not None
    credentials = faust_credentials(settings.kafka)
    assert (credentials.username, credentials.mechanism.value) == ("segmenter", "SCRAM-SHA-256")
    assert "s3cret-pw" not in repr(settings) and "s3cret-pw" not in str(settings.kafka)
    # A bad setting elsewhere in the section: the error does not echo the password.
    with pytest.raises(SettingsError) as error:
        load_settings(environ={**env, "SEGMENTER_KAFKA_SECURITY_PROTOCOL": "SASL_TLS"})
    assert "kafka.security.protocol" in str(error.value)
    assert "s3cret-pw" not in str(error.value)
    with pytest.raises(SettingsError, match="needs sasl_username and sasl_password"):
        load_settings(environ={"SEGMENTER_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"})
    assert client_options(load_settings().kafka) == {"bootstrap_servers": "localhost:9092",
                                                      "security_protocol": "PLAINTEXT"}


def test_metrics_listen_on_loopback_unless_configured_and_urls_are_redacted() -> None:
    from segmenter.settings import redact

    assert load_settings().metrics.host == "127.0.0.1"
    assert load_settings(environ={"SEGMENTER_METRICS_HOST": "0.0.0.0"}).metrics.host == (
        "0.0.0.0")
    assert redact("rediss://app:pw@r:6380/0") == "rediss://app:***@r:6380/0"
    with pytest.raises(SettingsError) as error:
        load_settings(environ={"SEGMENTER_REDIS_URL": "http://app:pw@r:6380/0"})
    assert "pw@" not in str(error.value) and "app:***@" in str(error.value)
