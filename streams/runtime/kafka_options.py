"""The Kafka clients' connection options from ``kafka`` settings: one home for the bootstrap
servers and the security (TLS, SASL) that every aiokafka client and the Faust app are given."""

from __future__ import annotations

import ssl
from typing import Any

import faust

from segmenter.settings import KafkaSettings


def client_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for ``AIOKafkaConsumer``, ``AIOKafkaProducer`` and the admin client.

    >>> from segmenter.settings import load_settings
    >>> client_options(load_settings().kafka)
    {'bootstrap_servers': 'localhost:9092', 'security_protocol': 'PLAINTEXT'}
    """
    security = kafka.security
    options: dict[str, Any] = {"bootstrap_servers": kafka.bootstrap,
                               "security_protocol": security.protocol}
    if security.protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = _ssl_context(kafka)
    if security.protocol.startswith("SASL"):
        options.update(sasl_mechanism=security.sasl_mechanism,
                       sasl_plain_username=security.sasl_username,
                       sasl_plain_password=security.sasl_password.get_secret_value())
    return options


def request_timeout_s(kafka: KafkaSettings) -> float:
    """How long a consumer waits for the broker's answer to one request before it drops the
    connection and asks again. The embedded broker (Tansu) has been seen to leave a fetch
    unanswered after a restart of the worker; Faust's default of 90 s held the worker's input
    that long. A join of the group may take the rebalance timeout (the session timeout here),
    so the timeout stays above it.

    >>> from segmenter.settings import load_settings
    >>> request_timeout_s(load_settings(environ={}).kafka)
    15.0
    """
    return max(15.0, kafka.session_timeout_s + 5.0)


def as_options(kafka: str | dict[str, Any]) -> dict[str, Any]:
    """Client options from options, or from a bare bootstrap address (plaintext)."""
    return kafka if isinstance(kafka, dict) else {"bootstrap_servers": kafka}


def faust_credentials(kafka: KafkaSettings) -> Any:
    """Faust's ``broker_credentials`` (None: plaintext)."""
    security = kafka.security
    if security.protocol == "PLAINTEXT":
        return None
    context = _ssl_context(kafka) if security.protocol in ("SSL", "SASL_SSL") else None
    if security.protocol == "SSL":
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(username=security.sasl_username,
                                 password=security.sasl_password.get_secret_value(),
                                 mechanism=security.sasl_mechanism, ssl_context=context)


def _ssl_context(kafka: KafkaSettings) -> ssl.SSLContext:
    security = kafka.security
    context = ssl.create_default_context(cafile=security.ssl_cafile or None)
    if security.ssl_certfile:
        context.load_cert_chain(security.ssl_certfile, security.ssl_keyfile or None)
    return context
