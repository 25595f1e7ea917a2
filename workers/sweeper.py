"""The sweeper: nothing about a job outlives its purpose, whatever went wrong.

Runs every minute from beat. It ends jobs stuck in ``running`` past their
deadline (``failed``/``worker_lost``), ends jobs whose upload or result expired
unused (``expired``), accounts for ends nobody accounted for (a worker node
died whole, or a web process in the middle of a DELETE), ends jobs whose trace
is active in SQL but whose record Redis lost (``failed``/``lost``), deletes
payload keys whose job record is gone, deletes any key of ours without a TTL,
and deletes job traces past their life. Every end goes through
``backend.jobs.lifecycle``, so it is counted and audited like any other. It
reports counts only.
"""

from __future__ import annotations

import time

from backend import metrics
from backend.ephemeral import keys, store
from backend.ephemeral.connection import client
from backend.ephemeral.records import JobRecord
from backend.errors import job_error
from backend.jobs import lifecycle, traces

#: A trace younger than this may belong to a submit whose Redis write is still
#: on its way; only older ones are reconciled.
TRACE_SETTLE_SECONDS = 30
#: An end younger than this may still be on its way to the pool process that
#: accounts for it; an older one that nobody accounted for is accounted here.
ACCOUNTING_SETTLE_SECONDS = 30


def sweep(*, now: float | None = None) -> dict[str, int]:
    now = time.time() if now is None else now
    counts = {
        "stuck": 0,
        "expired": 0,
        "unaccounted": 0,
        "orphaned": 0,
        "no_ttl": 0,
        "lost": 0,
        "traces": 0,
    }
    counts["no_ttl"] = _delete_keys_without_ttl()

    # Payload candidates are listed before the job records are read: a payload
    # written after this point is not a candidate, so a job created or finished
    # while the sweep runs can never lose its payload to it.
    candidates = {ns: list(store.scan_keys(f"{ns.prefix}*")) for ns in keys.PAYLOADS}

    live_jobs: set[str] = set()
    live_results: set[str] = set()
    for key in store.scan_keys(f"{keys.JOB.prefix}*"):
        record = store.get_job(keys.job_id_of(key))
        if record is None:
            continue
        live_jobs.add(record.id)
        if record.result_token_hash:
            live_results.add(record.result_token_hash)
        if _unaccounted(record, now):
            lifecycle.account_late(record)
            counts["unaccounted"] += 1
        kind = _settle(record, now)
        if kind:
            counts[kind] += 1

    conn = client()
    for namespace, found in candidates.items():
        alive = live_results if namespace is keys.RESULT else live_jobs
        counts["orphaned"] += sum(
            1 for key in found if keys.job_id_of(key) not in alive and conn.delete(key)
        )
    counts["lost"] = _reconcile_traces(live_jobs, now)
    counts["traces"] = traces.traces_purge()

    for kind, count in counts.items():
        if count:
            metrics.inc("ephemera_sweeper_removed_total", count, kind=kind)
    return counts


def _delete_keys_without_ttl() -> int:
    conn = client()
    return sum(
        1
        for tree in (keys.JOB_TREE, keys.OPS_TREE)
        for key in store.scan_keys(f"{tree}*")
        if conn.ttl(key) == -1 and conn.delete(key)
    )


def _reconcile_traces(live_jobs: set[str], now: float) -> int:
    """End the jobs whose trace is active but whose record Redis no longer has."""
    lost = 0
    for job_id in traces.traces_active_before(now - TRACE_SETTLE_SECONDS):
        if job_id not in live_jobs and not client().exists(keys.job_key(job_id)):
            lifecycle.reconcile(job_id)
            lost += 1
    return lost


def _unaccounted(record: JobRecord, now: float) -> bool:
    """An end nobody accounted for: its worker node died whole, and with it the
    message's redelivery, or the web process died in the middle of a DELETE."""
    return (
        record.terminal
        and not record.accounted
        and (record.finished_at or 0) < now - ACCOUNTING_SETTLE_SECONDS
    )


def _settle(record: JobRecord, now: float) -> str | None:
    """End a job that can no longer end by itself; the kind of removal, if any."""
    if record.status == "running" and record.deadline is not None and now > record.deadline:
        lifecycle.fail(record.id, job_error("worker_lost"))
        return "stuck"
    if record.status == "queued" and now > record.expires_at:
        lifecycle.expire(record.id, expected=("queued",), code="input_expired")
        return "expired"
    if (
        record.status == "succeeded"
        and record.result_taken_at is None
        and record.result_expires_at is not None
        and now > record.result_expires_at
    ):
        lifecycle.expire(
            record.id,
            expected=("succeeded",),
            code="expired",
            result_token_hash=record.result_token_hash,
        )
        return "expired"
    return None
