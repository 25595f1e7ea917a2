"""The web's half of end-to-end encryption: its public keyring and the envelope checks."""

from __future__ import annotations

import base64

import pytest
from django.test import override_settings

from backend import e2e
from backend.env import ConfigError
from backend.errors import CodedError
from ephemera_client import envelope
from ephemera_client.envelope import KeyPair

ACTIVE, OLD = KeyPair.generate(), KeyPair.generate()


def _line(kid: str, key: bytes, until: str = "") -> str:
    return f"{kid}:{base64.b64encode(key).decode()}{'@' + until if until else ''}"


KEYS = f"{_line('w2', ACTIVE.public)},{_line('w1', OLD.public, '2030-01-01T00:00:00+00:00')}"


@pytest.fixture
def keyring() -> object:
    e2e.public_keys.cache_clear()
    with override_settings(EPHEMERA_E2E_PUBLIC_KEYS=KEYS, EPHEMERA_E2E_SERVICE="ephemera"):
        yield
    e2e.public_keys.cache_clear()


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ("w1", "kid:base64"),
        ("w 1:AAAA", "kid:base64"),
        ("w1:not base64!", "not valid base64"),
        (f"w1:{base64.b64encode(bytes(16)).decode()}", "must be 32 bytes"),
        (f"{_line('w1', ACTIVE.public)},{_line('w1', OLD.public)}", "twice"),
        (_line("w1", ACTIVE.public, "next tuesday"), "ISO-8601"),
    ],
)
def test_a_keyring_setting_that_cannot_work_names_its_fault(text: str, fault: str) -> None:
    with pytest.raises(ConfigError, match=fault):
        e2e.parse_keys(text, setting="EPHEMERA_E2E_PUBLIC_KEYS")


def test_entries_keep_their_order_and_retire_at_their_not_after() -> None:
    entries = e2e.parse_keys(KEYS + ",", setting="X")
    assert [entry.id for entry in entries] == ["w2", "w1"]
    assert entries[1].not_after == 1893456000.0
    assert not entries[1].retired(1893455999.0) and entries[1].retired(1893456000.0)
    # A date without a zone is UTC.
    (dated,) = e2e.parse_keys(_line("w3", bytes(32), "2030-01-01"), setting="X")
    assert dated.not_after == 1893456000.0


def test_the_published_list_marks_the_newest_active_and_drops_retired_keys(keyring: object) -> None:
    before = e2e.published(now=1893455000.0)
    assert [(key["id"], key["active"], key["not_after"]) for key in before["keys"]] == [
        ("w2", True, None),
        ("w1", False, "2030-01-01T00:00:00Z"),
    ]
    assert before["keys"][0]["public_key"] == base64.b64encode(ACTIVE.public).decode()
    after = e2e.published(now=1893456000.0)
    assert [key["id"] for key in after["keys"]] == ["w2"]
    assert after["suite"] == envelope.SUITE_IDS and after["service"] == "ephemera"


def _sealed(kid: str = "w2", reply: bytes | None = None, role: envelope.Role = "image") -> bytes:
    return envelope.seal_upload(
        b"photo", key_id=kid, public_key=ACTIVE.public, reply_key=reply or ACTIVE.public,
        service="ephemera", task="cartoonize", role=role,
    )  # fmt: skip


def _code(image: bytes, reference: bytes | None = None) -> str:
    with pytest.raises(CodedError) as caught:
        e2e.checked_envelopes(image, reference)
    return caught.value.code


def test_the_checks_that_ciphertext_allows(keyring: object) -> None:
    assert [part.key_id for part in e2e.checked_envelopes(_sealed(), None)] == ["w2"]
    assert _code(_sealed()[:50]) == "invalid_envelope"
    assert _code(_sealed(), b"\xff\xd8\xff plain") == "invalid_envelope"
    assert _code(_sealed(reply=ACTIVE.public), _sealed(reply=OLD.public)) == "invalid_envelope"
    assert _code(_sealed(kid="w9")) == "unknown_key"
    assert len(e2e.checked_envelopes(_sealed(), _sealed(role="reference"))) == 2


def test_a_retired_key_is_refused_as_retired(keyring: object) -> None:
    with override_settings(EPHEMERA_E2E_PUBLIC_KEYS=_line("w1", OLD.public, "2020-01-01")):
        e2e.public_keys.cache_clear()
        assert _code(_sealed(kid="w1")) == "key_retired"
