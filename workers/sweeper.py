"""The sweeper: nothing about a job outlives its purpose, whatever went wrong.

Runs every minute from beat. It ends jobs stuck in ``running`` past their
deadline (``failed``/``worker_lost``), ends jobs whose input or result expired
unused (``expired``), deletes payload keys whose job record is gone, and deletes
any key of ours without a TTL. It reports counts only.
"""

from __future__ import annotations

import time

from backend.ephemeral import store

PAYLOAD_PATTERNS = {"in": "eph:in:*", "res": "eph:res:*", "evt": "eph:evt:*"}


def sweep(*, now: float | None = None) -> dict[str, int]:
    now = time.time() if now is None else now
    conn = store.client()
    counts = {"stuck": 0, "expired": 0, "orphaned": 0, "no_ttl": 0, "live": 0}

    for pattern in ("eph:*", "ephops:*"):
        for key in store.scan_keys(pattern):
            if conn.ttl(key) == -1 and conn.delete(key):
                counts["no_ttl"] += 1

    # Payload candidates are listed before the job records are read: a payload
    # written after this point is not a candidate, so a job created or finished
    # while the sweep runs can never lose its payload to it.
    candidates = {
        kind: list(store.scan_keys(pattern)) for kind, pattern in PAYLOAD_PATTERNS.items()
    }

    live_jobs: set[str] = set()
    live_results: set[str] = set()
    for key in store.scan_keys("eph:job:*"):
        job_id = key.decode().removeprefix("eph:job:")
        record = store.get_job(job_id)
        if record is None:
            continue
        live_jobs.add(job_id)
        if record.result_token_hash:
            live_results.add(record.result_token_hash)
        counts[_settle(record, now)] += 1

    for kind, keys in candidates.items():
        for key in keys:
            suffix = key.decode().split(":", 2)[2]
            alive = suffix in live_results if kind == "res" else suffix in live_jobs
            if not alive and conn.delete(key):
                counts["orphaned"] += 1
    return counts


def _settle(record: store.JobRecord, now: float) -> str:
    """End a job that can no longer end by itself; return the kind of removal."""
    conn = store.client()
    if record.status == "running" and record.deadline is not None and now > record.deadline:
        conn.delete(store.input_key(record.id))
        store.fail_job(
            record.id,
            code="worker_lost",
            message="The worker processing this job stopped; submit it again.",
        )
        return "stuck"
    if record.status == "queued" and now > record.expires_at:
        conn.delete(store.input_key(record.id))
        store.expire_job(record.id, expected="queued")
        return "expired"
    if (
        record.status == "succeeded"
        and record.result_taken_at is None
        and record.result_expires_at is not None
        and now > record.result_expires_at
    ):
        if record.result_token_hash:
            conn.delete(store.result_key(record.result_token_hash))
        store.expire_job(record.id, expected="succeeded")
        return "expired"
    return "live"
