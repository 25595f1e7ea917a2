"""Publishing a job: the id on the broker's list, a hashed id for display, 503 when down."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator

import pytest
import redis
from kombu.exceptions import OperationalError
from pytest_django.fixtures import Settings

from backend.jobs import queue
from backend.pseudonyms import hashed_id


@pytest.fixture
def jobs_list(settings: Settings) -> Iterator[redis.Redis]:
    """A broker on a Redis database no worker consumes from, so the message stays put."""
    settings.REDIS_URL = settings.REDIS_URL.rsplit("/", 1)[0] + "/15"
    queue.producer.cache_clear()
    scratch = redis.Redis.from_url(settings.REDIS_URL)
    scratch.flushdb()
    yield scratch
    scratch.flushdb()
    queue.producer.cache_clear()


def test_a_published_job_is_its_id_and_nothing_more(jobs_list: redis.Redis) -> None:
    job_id = str(uuid.uuid4())
    queue.enqueue_job(job_id)

    [raw] = jobs_list.lrange(queue.JOBS_QUEUE, 0, -1)
    message = json.loads(raw)
    args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
    assert (args, kwargs) == ([job_id], {})
    assert message["headers"]["task"] == queue.RUN_JOB
    assert message["headers"]["argsrepr"] == f"(job:{hashed_id(job_id)})"
    assert job_id not in json.dumps(message["headers"])


def test_a_dead_broker_raises_so_the_web_can_answer_503(settings: Settings) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    queue.producer.cache_clear()
    try:
        with pytest.raises(OperationalError):
            queue.enqueue_job(str(uuid.uuid4()))
    finally:
        queue.producer.cache_clear()


def test_a_message_outlives_the_hard_time_limit_before_redelivery(settings: Settings) -> None:
    settings.EPHEMERA_TASK_HARD_LIMIT = 300
    options = queue.broker_settings()["broker_transport_options"]
    assert options["visibility_timeout"] > 300


def test_sentinel_brokers_get_the_master_name_and_password(settings: Settings) -> None:
    settings.REDIS_URL = "sentinel://:s3cret@h1:26379;sentinel://:s3cret@h2:26379/0"
    settings.REDIS_SENTINEL_MASTER = "ephemera"
    options = queue.broker_settings()["broker_transport_options"]
    assert options["master_name"] == "ephemera"
    assert options["sentinel_kwargs"] == {"password": "s3cret"}
