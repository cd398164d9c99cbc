"""Create the engine's topics when missing, and refuse input topics partitioned differently."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from features.errors import BadConfig, Unavailable
from segmenter.settings import Settings
from streams.runtime.kafka_options import client_options

TOPIC_ALREADY_EXISTS = 36


class TopicSetupError(BadConfig):
    """The broker is unreachable or a topic cannot be used as configured."""


class TopicUnreachableError(TopicSetupError, Unavailable):
    """The broker cannot be reached (yet)."""


async def ensure_topics(settings: Settings) -> None:
    kafka = settings.kafka
    topics = kafka.topics
    names = [*topics.inputs, topics.deadletter, topics.changes, topics.identity, topics.forget]
    admin = AIOKafkaAdminClient(**client_options(kafka), request_timeout_ms=10_000)
    try:
        await admin.start()
    except KafkaError as exc:
        raise TopicUnreachableError(f"cannot reach Kafka at {kafka.bootstrap}: {exc}") from None
    try:
        # The model's versions: one partition, compacted (the latest version per key stays).
        # The workers' statistics: one partition, so that one worker at a time trains.
        single = [
            NewTopic(topics.behavior_model, 1, kafka.replication_factor,
                     topic_configs={"cleanup.policy": "compact"}),
            NewTopic(topics.behavior_stats, 1, kafka.replication_factor,
                     topic_configs={"retention.ms": str(7 * 24 * 3600 * 1000)}),
        ]
        response = await admin.create_topics(
            [NewTopic(name, kafka.partitions, kafka.replication_factor) for name in names]
            + single
        )
        for name, code, message in response.topic_errors:
            if code not in (0, TOPIC_ALREADY_EXISTS):
                raise TopicSetupError(f"cannot create topic {name}: {message} (error {code})")
        described = await admin.describe_topics([*topics.inputs, topics.identity,
                                                 topics.forget])
        for topic in described:
            count = len(topic["partitions"])
            if count != kafka.partitions:
                raise TopicSetupError(
                    f"topic {topic['topic']} has {count} partitions but kafka.partitions is "
                    f"{kafka.partitions}; the state tables are partitioned like the inputs, "
                    "so set kafka.partitions to the topic's partition count"
                )
    finally:
        await admin.close()
