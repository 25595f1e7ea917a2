from __future__ import annotations

import base64
import secrets

import pytest

from backend.ephemeral.crypto import (
    DecryptionError,
    Keyring,
    KeyringError,
    open_sealed,
    parse,
    seal,
)


def keyring_text(*kids: str) -> str:
    return ",".join(f"{kid}:{base64.b64encode(secrets.token_bytes(32)).decode()}" for kid in kids)


@pytest.fixture
def keyring() -> Keyring:
    return Keyring.parse(keyring_text("k1"))


def test_it_round_trips(keyring: Keyring) -> None:
    blob = seal(b"portrait bytes", keyring=keyring, purpose="in", subject="job-1")
    assert open_sealed(blob, keyring=keyring, purpose="in", subject="job-1") == b"portrait bytes"
    assert b"portrait bytes" not in blob


def test_a_tampered_ciphertext_does_not_open(keyring: Keyring) -> None:
    blob = bytearray(seal(b"portrait bytes", keyring=keyring, purpose="in", subject="job-1"))
    blob[-1] ^= 0x01
    with pytest.raises(DecryptionError):
        open_sealed(bytes(blob), keyring=keyring, purpose="in", subject="job-1")


def test_a_tampered_wrapped_key_does_not_open(keyring: Keyring) -> None:
    blob = bytearray(seal(b"portrait bytes", keyring=keyring, purpose="in", subject="job-1"))
    blob[len(b"EPH1") + 1 + 2 + 12] ^= 0x80  # first byte of the wrapped data key
    with pytest.raises(DecryptionError):
        open_sealed(bytes(blob), keyring=keyring, purpose="in", subject="job-1")


def test_a_blob_does_not_open_for_another_job(keyring: Keyring) -> None:
    blob = seal(b"portrait bytes", keyring=keyring, purpose="in", subject="job-1")
    with pytest.raises(DecryptionError):
        open_sealed(blob, keyring=keyring, purpose="in", subject="job-2")


def test_a_blob_does_not_open_for_another_purpose(keyring: Keyring) -> None:
    blob = seal(b"portrait bytes", keyring=keyring, purpose="in", subject="job-1")
    with pytest.raises(DecryptionError):
        open_sealed(blob, keyring=keyring, purpose="res", subject="job-1")


def test_a_blob_does_not_open_under_a_wrong_key(keyring: Keyring) -> None:
    blob = seal(b"portrait bytes", keyring=keyring, purpose="in", subject="job-1")
    impostor = Keyring.parse(keyring_text("k1"))  # same id, different key
    with pytest.raises(DecryptionError):
        open_sealed(blob, keyring=impostor, purpose="in", subject="job-1")


def test_a_blob_under_a_retired_key_opens_after_rotation() -> None:
    old = keyring_text("old")
    before = Keyring.parse(old)
    blob = seal(b"in flight", keyring=before, purpose="in", subject="job-1")
    after = Keyring.parse(f"{keyring_text('new')},{old}")
    assert after.active == "new"
    assert open_sealed(blob, keyring=after, purpose="in", subject="job-1") == b"in flight"
    assert parse(seal(b"x", keyring=after, purpose="in", subject="job-1")).kid == "new"


def test_a_blob_under_a_dropped_key_does_not_open() -> None:
    blob = seal(b"in flight", keyring=Keyring.parse(keyring_text("old")), purpose="in", subject="j")
    with pytest.raises(DecryptionError, match="unknown key id"):
        open_sealed(blob, keyring=Keyring.parse(keyring_text("new")), purpose="in", subject="j")


def test_no_two_payloads_share_a_data_key_or_nonce(keyring: Keyring) -> None:
    data_keys, nonces = set(), set()
    for _ in range(200):
        blob = seal(b"same plaintext", keyring=keyring, purpose="in", subject="job-1")
        parts = parse(blob)
        data_keys.add(keyring.unwrap(parts, context=b"ephemera/v1|in:job-1"))
        nonces.update({parts.nonce, parts.wrap_nonce})
    assert len(data_keys) == 200
    assert len(nonces) == 400


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "holds no key"),
        ("k1", "kid:base64"),
        ("k1:not-base64!", "not valid base64"),
        (f"k1:{base64.b64encode(b'short').decode()}", "must be 32 bytes"),
        (f"{keyring_text('k1')},{keyring_text('k1')}", "twice"),
    ],
)
def test_it_refuses_a_broken_keyring(text: str, complaint: str) -> None:
    with pytest.raises(KeyringError, match=complaint):
        Keyring.parse(text)


def test_it_refuses_junk_that_is_not_a_blob(keyring: Keyring) -> None:
    for junk in (b"", b"EPH1", b"\xff\xd8\xff" + b"\x00" * 100):
        with pytest.raises(DecryptionError):
            open_sealed(junk, keyring=keyring, purpose="in", subject="job-1")
