"""Prometheus metrics kept in Redis, so web and workers count into one place.

Workers cannot be scraped per job (their children are replaced after every
job), and a pushgateway would be one more service; instead every process adds
to counters in one Redis hash, and the web's ``/metrics`` exports them. Labels
take values from closed sets only (task names, statuses, error codes, scopes):
never an id, a key or anything of the user's.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from redis.client import Pipeline

from backend.ephemeral import scripts
from backend.ephemeral.connection import client
from backend.ephemeral.keys import GAUGES_KEY, METRICS_KEY, WORKER_PATTERN
from backend.jobs.queue import QUEUES

logger = logging.getLogger(__name__)

#: Long enough to outlive any scrape gap; refreshed on every write.
METRICS_TTL = 30 * 24 * 3600
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "ephemera_jobs_submitted_total": ("Jobs accepted", ("task",)),
    "ephemera_jobs_finished_total": ("Jobs ended", ("task", "status", "error_code")),
    "ephemera_throttled_total": ("Requests refused by a rate limit", ("scope",)),
    "ephemera_blocked_total": ("Requests refused by a temporary block", ()),
    "ephemera_sweeper_removed_total": ("Things the sweeper ended or deleted", ("kind",)),
}
HISTOGRAMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "ephemera_job_queue_seconds": ("Time from submit to a worker taking the job", ("task",)),
    "ephemera_job_run_seconds": ("Worker time on a job", ("task",)),
}


def _field(name: str, labels: dict[str, str]) -> str:
    return name + "|" + "|".join(f"{key}={labels[key]}" for key in sorted(labels))


#: Counter and histogram fields and what to add to each: one metric event.
Additions = dict[str, float]

# KEYS: marker hash, metrics. ARGV: marker field, metrics ttl, then field/amount pairs.
# Adds once per marker: the marker and the counts change in one step, so a
# process killed at any point has either counted (and marked) or not at all.
# -1 when the marker hash does not exist (nothing is marked or counted then).
ADD_ONCE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HSETNX', KEYS[1], ARGV[1], '1') == 0 then return 0 end
for i = 3, #ARGV, 2 do redis.call('HINCRBYFLOAT', KEYS[2], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 1
"""


def _write(key: str, commands: Callable[[Pipeline], object]) -> None:
    """Queue ``commands`` on one pipeline, refresh the key's TTL, send.

    Never raises: a metric must not fail a job or a request.
    """
    try:
        pipe = client().pipeline(transaction=False)
        commands(pipe)
        pipe.expire(key, METRICS_TTL)
        pipe.execute()
    except Exception as exc:
        logger.warning("metric_write_failed", extra={"error_type": type(exc).__name__})


def counted(name: str, amount: float = 1, **labels: str) -> Additions:
    """What adding ``amount`` to a counter adds."""
    return {_field(name, labels): amount}


def observed(name: str, seconds: float, **labels: str) -> Additions:
    """What one observation adds to a histogram (cumulative buckets, sum, count)."""
    additions = {
        _field(name + "_bucket", {**labels, "le": bound}): 1.0
        for bound in (*[str(bound) for bound in BUCKETS if seconds <= bound], "+Inf")
    }
    additions[_field(name + "_sum", labels)] = seconds
    additions[_field(name + "_count", labels)] = 1.0
    return additions


def add(additions: Additions) -> None:
    """Add to the shared counters."""

    def commands(pipe: Pipeline) -> None:
        for field, amount in additions.items():
            pipe.hincrbyfloat(METRICS_KEY, field, amount)

    _write(METRICS_KEY, commands)


def add_once(additions: Additions, *, marker: str, flag: str) -> bool | None:
    """Add to the counters unless the hash ``marker`` has ``flag`` set, and set it.

    True when this call added, False when an earlier one had, None when the
    marker hash is gone or Redis could not be asked (nothing added). Never raises.
    """
    pairs = [item for field, amount in additions.items() for item in (field, amount)]
    try:
        added = scripts.run(ADD_ONCE, keys=[marker, METRICS_KEY], args=[flag, METRICS_TTL, *pairs])
    except Exception as exc:
        logger.warning("metric_write_failed", extra={"error_type": type(exc).__name__})
        return None
    return None if added < 0 else bool(added)


def inc(name: str, amount: float = 1, **labels: str) -> None:
    """Add to a counter."""
    add(counted(name, amount, **labels))


def observe(name: str, seconds: float, **labels: str) -> None:
    """Record one observation into a histogram."""
    add(observed(name, seconds, **labels))


def set_gauge(name: str, value: float, **labels: str) -> None:
    """A gauge written by a periodic job (e.g. the privacy audit's findings)."""
    _write(GAUGES_KEY, lambda pipe: pipe.hset(GAUGES_KEY, _field(name, labels), value))


def _parse(field: bytes) -> tuple[str, dict[str, str]]:
    name, *pairs = field.decode().split("|")
    return name, dict(pair.split("=", 1) for pair in pairs if pair)


class RedisCollector:
    """Exports the shared counters plus gauges measured at scrape time."""

    def collect(self) -> Iterator[Metric]:
        conn = client()
        values = {field: float(value) for field, value in conn.hgetall(METRICS_KEY).items()}
        parsed = [(*_parse(field), value) for field, value in values.items()]

        for name, (help_text, label_names) in COUNTERS.items():
            counter = CounterMetricFamily(
                name.removesuffix("_total"), help_text, labels=label_names
            )
            for metric, labels, value in parsed:
                if metric == name:
                    counter.add_metric([labels.get(label, "") for label in label_names], value)
            yield counter

        for name, (help_text, label_names) in HISTOGRAMS.items():
            yield _histogram(name, help_text, label_names, parsed)

        gauges: dict[str, GaugeMetricFamily] = {}
        for field, value in conn.hgetall(GAUGES_KEY).items():
            metric, labels = _parse(field)
            family = gauges.setdefault(
                metric,
                GaugeMetricFamily(metric, "Measured by a periodic job", labels=sorted(labels)),
            )
            family.add_metric([labels[key] for key in sorted(labels)], float(value))
        yield from gauges.values()

        queue = GaugeMetricFamily("ephemera_queue_length", "Messages waiting", labels=["queue"])
        for name in QUEUES:
            queue.add_metric([name], float(conn.llen(name)))
        yield queue
        workers = sum(1 for _ in conn.scan_iter(match=WORKER_PATTERN, count=100))
        yield GaugeMetricFamily(
            "ephemera_workers_up", "Workers with a fresh heartbeat", value=workers
        )


def _histogram(
    name: str,
    help_text: str,
    label_names: tuple[str, ...],
    parsed: list[tuple[str, dict[str, str], float]],
) -> HistogramMetricFamily:
    series: dict[tuple[str, ...], dict[str, float]] = defaultdict(dict)
    sums: dict[tuple[str, ...], float] = defaultdict(float)
    for metric, labels, value in parsed:
        key = tuple(labels.get(label, "") for label in label_names)
        if metric == name + "_bucket":
            series[key][labels["le"]] = value
        elif metric == name + "_sum":
            sums[key] = value
    family = HistogramMetricFamily(name, help_text, labels=label_names)
    for key, buckets in series.items():
        ordered = [(str(bound), buckets.get(str(bound), 0.0)) for bound in BUCKETS]
        ordered.append(("+Inf", buckets.get("+Inf", 0.0)))
        family.add_metric(list(key), ordered, sums[key])
    return family
