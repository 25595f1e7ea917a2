"""The key schema: two trees, one prefix per namespace, statuses split once."""

from __future__ import annotations

import uuid

from backend.ephemeral import keys


def test_every_job_namespace_has_its_own_prefix_under_the_job_tree() -> None:
    prefixes = [namespace.prefix for namespace in keys.NAMESPACES.values()]
    assert len(set(prefixes)) == len(prefixes)
    assert all(prefix.startswith(keys.JOB_TREE) for prefix in prefixes)


def test_operational_keys_stay_out_of_the_job_tree() -> None:
    for key in (
        keys.rate_key("ip", "s"),
        keys.rejections_key("s"),
        keys.block_key("s"),
        keys.active_key("o"),
        keys.worker_key("w@h"),
        keys.METRICS_KEY,
        keys.GAUGES_KEY,
    ):
        assert key.startswith(keys.OPS_TREE) and not key.startswith(keys.JOB_TREE)


def test_the_statuses_split_into_active_and_terminal() -> None:
    assert {"queued", "running"} == keys.ACTIVE
    assert set(keys.STATUSES) == keys.ACTIVE | keys.TERMINAL
    assert not keys.ACTIVE & keys.TERMINAL


def test_the_payloads_are_every_namespace_but_the_record() -> None:
    # Webhook events are keyed by their own id and live past their job: not a payload.
    assert set(keys.PAYLOADS) == set(keys.NAMESPACES.values()) - {keys.JOB, keys.WEBHOOK}
    assert {ns.name for ns in keys.PAYLOADS if ns.sealed} == {"in", "ref", "res"}


def test_a_key_gives_back_its_job_id_as_bytes_or_text() -> None:
    job_id = str(uuid.uuid4())
    assert keys.job_id_of(keys.input_key(job_id)) == job_id
    assert keys.job_id_of(keys.events_key(job_id).encode()) == job_id
    assert keys.JOB.suffix.match(job_id)
    assert not keys.JOB.suffix.match(job_id.upper())
