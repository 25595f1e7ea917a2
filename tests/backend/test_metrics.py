"""Counters, histograms and gauges shared through Redis, and what ``/metrics`` exports."""

from __future__ import annotations

import logging

import pytest
import redis
from prometheus_client.metrics_core import Metric
from pytest_django.fixtures import Settings

from backend import metrics
from backend.ephemeral import connection, keys
from backend.jobs.queue import JOBS_QUEUE
from tests.conftest import redis_out_of_reach


def exported(name: str) -> Metric:
    """The family ``name`` as a scrape of ``/metrics`` would see it now."""
    families = {family.name: family for family in metrics.RedisCollector().collect()}
    return families[name]


def samples(name: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for sample in exported(name).samples
    }


def test_counters_add_up_per_label_set(redis_conn: redis.Redis) -> None:
    metrics.inc("ephemera_jobs_submitted_total", task="cartoonize")
    metrics.inc("ephemera_jobs_submitted_total", task="cartoonize")
    metrics.inc("ephemera_jobs_submitted_total", task="detect")
    assert samples("ephemera_jobs_submitted") == {
        ("ephemera_jobs_submitted_total", (("task", "cartoonize"),)): 2.0,
        ("ephemera_jobs_submitted_total", (("task", "detect"),)): 1.0,
    }


def test_a_histogram_observation_fills_every_bucket_it_fits(redis_conn: redis.Redis) -> None:
    metrics.observe("ephemera_job_run_seconds", 0.3, task="detect")
    found = samples("ephemera_job_run_seconds")
    bucket = "ephemera_job_run_seconds_bucket"
    assert found[(bucket, (("le", "0.25"), ("task", "detect")))] == 0.0
    assert found[(bucket, (("le", "0.5"), ("task", "detect")))] == 1.0
    assert found[(bucket, (("le", "+Inf"), ("task", "detect")))] == 1.0
    assert found[("ephemera_job_run_seconds_sum", (("task", "detect"),))] == pytest.approx(0.3)
    assert found[("ephemera_job_run_seconds_count", (("task", "detect"),))] == 1.0


def test_additions_once_per_marker_count_once_and_never_without_their_marker(
    redis_conn: redis.Redis,
) -> None:
    additions = metrics.counted("ephemera_jobs_submitted_total", task="detect")
    redis_conn.hset("eph:test:marker", "other", "1")

    assert metrics.add_once(additions, marker="eph:test:marker", flag="counted") is True
    assert metrics.add_once(additions, marker="eph:test:marker", flag="counted") is False
    assert metrics.add_once(additions, marker="eph:test:gone", flag="counted") is None

    assert samples("ephemera_jobs_submitted") == {
        ("ephemera_jobs_submitted_total", (("task", "detect"),)): 1.0
    }
    assert not redis_conn.exists("eph:test:gone")


def test_a_gauge_holds_the_last_value_written(redis_conn: redis.Redis) -> None:
    metrics.set_gauge("ephemera_privacy_findings", 3, check="debug_on")
    metrics.set_gauge("ephemera_privacy_findings", 0, check="debug_on")
    assert samples("ephemera_privacy_findings") == {
        ("ephemera_privacy_findings", (("check", "debug_on"),)): 0.0
    }


def test_the_queue_length_and_live_workers_are_measured_at_scrape_time(
    redis_conn: redis.Redis, settings: object
) -> None:
    # A Redis database no worker consumes from: a live worker would take (and
    # choke on) messages pushed onto its queue.
    live_url = settings.REDIS_URL  # type: ignore[attr-defined]
    settings.REDIS_URL = live_url.rsplit("/", 1)[0] + "/15"  # type: ignore[attr-defined]
    connection.forget()
    scratch = connection.client()
    try:
        scratch.flushdb()
        scratch.set(keys.worker_key("w1@host"), "1", ex=60)
        scratch.rpush(JOBS_QUEUE, "m1", "m2")
        queue = samples("ephemera_queue_length")
        workers_up = exported("ephemera_workers_up").samples[0].value
    finally:
        scratch.flushdb()
        settings.REDIS_URL = live_url  # type: ignore[attr-defined]
        connection.forget()
    assert queue[("ephemera_queue_length", (("queue", JOBS_QUEUE),))] == 2.0
    assert workers_up == 1.0


def test_every_write_refreshes_the_ttl_of_the_hash(redis_conn: redis.Redis) -> None:
    metrics.inc("ephemera_blocked_total")
    metrics.set_gauge("ephemera_privacy_findings", 1, check="debug_on")
    for key in (keys.METRICS_KEY, keys.GAUGES_KEY):
        assert metrics.METRICS_TTL - 5 < redis_conn.ttl(key) <= metrics.METRICS_TTL


def test_a_write_never_raises_when_redis_is_down(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        redis_out_of_reach(settings),
        caplog.at_level(logging.WARNING, logger="backend.metrics"),
    ):
        metrics.inc("ephemera_blocked_total")
    assert [record.message for record in caplog.records] == ["metric_write_failed"]
