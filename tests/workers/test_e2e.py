"""The worker's half of end-to-end encryption: its private keys, opening and replying."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from django.test import override_settings

from backend import e2e as web_e2e
from backend.env import ConfigError
from backend.ephemeral.records import JobRecord
from backend.errors import CodedError
from ephemera_client import envelope
from ephemera_client.envelope import KeyPair
from workers import e2e

WORKER, OTHER, REPLY = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
RECORD = JobRecord(
    id="0b5e1a3c-1111-4222-8333-944455556666", owner="o" * 64, task="cartoonize",
    status="running", params={}, format="", created_at=0.0, expires_at=0.0, e2e=True,
)  # fmt: skip


def _line(kid: str, key: bytes) -> str:
    return f"{kid}:{base64.b64encode(key).decode()}"


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("EPHEMERA_E2E_PRIVATE_KEYS", _line("w1", WORKER.private))
    e2e.private_keys.cache_clear()
    web_e2e.public_keys.cache_clear()
    with override_settings(EPHEMERA_E2E_PUBLIC_KEYS=_line("w1", WORKER.public)):
        yield
    e2e.private_keys.cache_clear()
    web_e2e.public_keys.cache_clear()


def _sealed(data: bytes, *, task: str = "cartoonize", role: envelope.Role = "image") -> bytes:
    return envelope.seal_upload(
        data, key_id="w1", public_key=WORKER.public, reply_key=REPLY.public,
        service="ephemera", task=task, role=role,
    )  # fmt: skip


def test_a_job_process_opens_both_parts_and_replies_to_the_client_only(keys: None) -> None:
    opened = e2e.open_uploads(RECORD, _sealed(b"one"), _sealed(b"two", role="reference"))
    assert (opened.image, opened.reference, opened.reply_key) == (b"one", b"two", REPLY.public)
    sealed = e2e.seal_result(b"result", RECORD, reply_key=opened.reply_key)
    assert b"result" not in sealed
    assert envelope.open_result(
        sealed, reply_private=REPLY.private, service="ephemera", task="cartoonize",
        job_id=RECORD.id,
    ) == b"result"  # fmt: skip


@pytest.mark.parametrize(
    "upload",
    [
        lambda: _sealed(b"one", task="anonymize"),
        lambda: _sealed(b"one", role="reference"),
        lambda: _sealed(b"one")[:-1],
        lambda: b"EPHK\x01\x02w9" + bytes(100),
    ],
    ids=["other task", "other part", "truncated", "unknown key id"],
)
def test_an_envelope_that_does_not_open_ends_the_job_with_its_code(
    keys: None, upload: object
) -> None:
    with pytest.raises(CodedError) as caught:
        e2e.open_uploads(RECORD, upload(), None)  # type: ignore[operator]
    assert caught.value.code == "envelope_rejected"


@pytest.mark.parametrize(
    ("line", "refusal"),
    [
        (_line("w0", WORKER.private), "lacks its private half"),
        (_line("w1", OTHER.private), "not the private half"),
    ],
    ids=["without the active key's private half", "a private key not the published one's half"],
)
def test_a_worker_refuses_to_start_with_private_keys_that_do_not_match(
    monkeypatch: pytest.MonkeyPatch, keys: None, line: str, refusal: str
) -> None:
    monkeypatch.setenv("EPHEMERA_E2E_PRIVATE_KEYS", line)
    e2e.private_keys.cache_clear()
    with pytest.raises(ConfigError, match=refusal):
        e2e.private_keys()
