"""The end-to-end envelope: RFC 9180's vectors, then every way an envelope must not open."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pyhpke import AEADId, CipherSuite, KDFId, KEMId
from pyhpke.kem_key import KEMKeyPair

from ephemera_client import envelope
from ephemera_client.envelope import EnvelopeMalformed, EnvelopeRejected, KeyPair

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "hpke_x25519_sha256_aes256gcm.json"
AEADS = {1: AEADId.AES128_GCM, 2: AEADId.AES256_GCM}


def _vectors() -> list[dict[str, Any]]:
    return list(json.loads(VECTORS.read_text())["vectors"])


def test_the_vectors_cover_our_suite_and_rfc_appendix_a1() -> None:
    suites = {(v["mode"], v["kem_id"], v["kdf_id"], v["aead_id"]) for v in _vectors()}
    assert suites == {(0, 0x20, 1, 1), (0, 0x20, 1, 2)}
    ours = next(v for v in _vectors() if v["aead_id"] == 2)
    assert (ours["kem_id"], ours["kdf_id"], ours["aead_id"]) == (
        envelope.SUITE_IDS["kem_id"],
        envelope.SUITE_IDS["kdf_id"],
        envelope.SUITE_IDS["aead_id"],
    )


@pytest.mark.parametrize("vector", _vectors(), ids=lambda v: f"aead{v['aead_id']}")
def test_rfc_9180_vectors_seal_and_open(vector: dict[str, Any]) -> None:
    """The HPKE the envelope uses reproduces every encryption of the official vectors."""
    suite = (
        envelope.SUITE
        if vector["aead_id"] == 2
        else CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADS[1])
    )
    hexed = {key: bytes.fromhex(value) for key, value in vector.items() if isinstance(value, str)}
    recipient = suite.kem.deserialize_public_key(hexed["pkRm"])
    ephemeral = KEMKeyPair(
        suite.kem.deserialize_private_key(hexed["skEm"]),
        suite.kem.deserialize_public_key(hexed["pkEm"]),
    )
    enc, sender = suite.create_sender_context(recipient, info=hexed["info"], eks=ephemeral)
    assert enc == hexed["enc"]
    receiver = suite.create_recipient_context(
        enc, suite.kem.deserialize_private_key(hexed["skRm"]), info=hexed["info"]
    )
    for step in vector["encryptions"]:
        aad, plaintext = bytes.fromhex(step["aad"]), bytes.fromhex(step["pt"])
        assert sender.seal(plaintext, aad=aad) == bytes.fromhex(step["ct"])
        assert receiver.open(bytes.fromhex(step["ct"]), aad=aad) == plaintext
    # The key pair derivation too: the worker's and the reply keys are X25519 pairs.
    derived = suite.kem.derive_key_pair(hexed["ikmR"])
    assert derived.public_key.to_public_bytes() == hexed["pkRm"]
    assert KeyPair.from_private(hexed["skRm"]).public == hexed["pkRm"]


WORKER = KeyPair.generate()
REPLY = KeyPair.generate()
BOUND = {"service": "ephemera", "task": "anonymize"}


def _sealed(data: bytes = b"photo bytes", **overrides: Any) -> bytes:
    options: dict[str, Any] = {
        "key_id": "w1",
        "public_key": WORKER.public,
        "reply_key": REPLY.public,
        **BOUND,
        **overrides,
    }
    return envelope.seal_upload(data, **options)


def _open(data: bytes, **overrides: Any) -> bytes:
    options: dict[str, Any] = {"private_key": WORKER.private, **BOUND, "role": "image"}
    options.update(overrides)
    return envelope.open_upload(envelope.parse_upload(data), **options)


def test_an_upload_opens_for_its_task_and_carries_the_reply_key() -> None:
    sealed = _sealed()
    parsed = envelope.parse_upload(sealed)
    assert (parsed.key_id, parsed.reply_key) == ("w1", REPLY.public)
    assert len(sealed) == 6 + 2 + 32 + 32 + len(b"photo bytes") + 16
    assert _open(sealed) == b"photo bytes"


@pytest.mark.parametrize(
    "other",
    [{"task": "face_crop"}, {"service": "elsewhere"}, {"role": "reference"}],
    ids=["another task", "another service", "another part"],
)
def test_an_upload_does_not_open_as_anything_else(other: dict[str, str]) -> None:
    with pytest.raises(EnvelopeRejected):
        _open(_sealed(), **other)


def test_an_upload_does_not_open_with_another_key() -> None:
    with pytest.raises(EnvelopeRejected):
        _open(_sealed(), private_key=KeyPair.generate().private)


@pytest.mark.parametrize(
    "offset",
    [6, 7, 8 + 5, 8 + 32 + 3, -20, -1],
    ids=["key id", "key id end", "reply key", "enc", "ciphertext", "tag"],
)
def test_a_changed_byte_anywhere_after_the_framing_fails_to_open(offset: int) -> None:
    """A web tier that swaps the reply key for its own gets no result: the upload fails."""
    sealed = bytearray(_sealed())
    sealed[offset] ^= 0x01
    with pytest.raises((EnvelopeRejected, EnvelopeMalformed)):
        _open(bytes(sealed))


@pytest.mark.parametrize(
    "data",
    [
        b"EPHK",
        b"EPHK\x02\x02w1" + bytes(100),
        b"EPHK\x01\x00" + bytes(100),
        b"EPHK\x01\x02w1" + bytes(60),
        b"EPHK\x01\x02w!" + bytes(100),
        b"\xff\xd8\xff" + bytes(100),
    ],
    ids=["magic only", "version 2", "empty key id", "truncated", "bad key id", "a jpeg"],
)
def test_malformed_framing_is_refused_without_any_cryptography(data: bytes) -> None:
    with pytest.raises(EnvelopeMalformed):
        envelope.parse_upload(data)


def test_a_result_opens_with_the_reply_key_for_its_job_only() -> None:
    sealed = envelope.seal_result(b"result", reply_key=REPLY.public, job_id="j1", **BOUND)
    assert sealed[:5] == b"EPHR\x01"
    opened = envelope.open_result(sealed, reply_private=REPLY.private, job_id="j1", **BOUND)
    assert opened == b"result"
    with pytest.raises(EnvelopeRejected):
        envelope.open_result(sealed, reply_private=REPLY.private, job_id="j2", **BOUND)
    with pytest.raises(EnvelopeRejected):
        envelope.open_result(sealed, reply_private=WORKER.private, job_id="j1", **BOUND)
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    with pytest.raises(EnvelopeRejected):
        envelope.open_result(bytes(tampered), reply_private=REPLY.private, job_id="j1", **BOUND)


def test_a_reply_key_that_is_no_x25519_point_is_refused_not_crashed_on() -> None:
    with pytest.raises(EnvelopeRejected):
        envelope.seal_result(b"result", reply_key=bytes(32), job_id="j1", **BOUND)
