"""The page's HPKE (backend/web/assets/hpke.js), run in real Chromium on the real page.

It reproduces the RFC 9180 test vectors of our suite byte for byte, and its envelopes
interoperate with pyhpke, the Python side's library: a result sealed in Python opens
in the browser, an upload sealed in the browser opens in Python.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from pyhpke import AEADId, CipherSuite, KDFId, KEMId, OpenError
from selenium.webdriver.remote.webdriver import WebDriver

from tests.harness import REPO
from tests.integration.live_stack import LiveStack

pytestmark = pytest.mark.slow

VECTORS = json.loads((REPO / "tests/vectors/hpke_x25519_sha256_aes256gcm.json").read_text())[
    "vectors"
]
SUITE = CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.AES256_GCM)

# Hex in and out of the page: WebDriver carries JSON, not bytes.
JS_HEX = """
const hex = (text) => Uint8Array.from(text.match(/../g) || [], (pair) => parseInt(pair, 16));
const toHex = (data) => Array.from(data, (b) => b.toString(16).padStart(2, "0")).join("");
"""


def run_async(browser: WebDriver, body: str, *args: Any) -> Any:
    """Run ``body`` (an async function body with ``args`` as ``args``) in the page; a
    rejection comes back as {"error": message}."""
    return browser.execute_async_script(
        f"""
        const done = arguments[arguments.length - 1];
        const args = Array.from(arguments).slice(0, -1);
        {JS_HEX}
        (async () => {{ {body} }})().then(done, (error) => done({{error: String(error)}}));
        """,
        *args,
    )


@pytest.fixture
def page(live_stack: LiveStack, browser: WebDriver) -> WebDriver:
    browser.get(live_stack.url + "/")
    browser.set_script_timeout(120)
    return browser


@pytest.mark.parametrize("vector", VECTORS, ids=lambda vector: f"aead{vector['aead_id']}")
def test_it_reproduces_the_rfc_9180_test_vectors(page: WebDriver, vector: dict[str, Any]) -> None:
    got = run_async(
        page,
        """
        const [vector] = args;
        const H = EphemeraHPKE;
        const info = hex(vector.info);
        // The vector's ephemeral pair replaces the fresh one, so enc is predictable.
        const ephemeral = {
          privateKey: await H.importPrivateKey(hex(vector.skEm)),
          publicKey: await H.importPublicKey(hex(vector.pkEm)),
        };
        const options = { ephemeral, reveal: true, aead: vector.aead_id };
        const { enc, context: sender } = await H.setupBaseS(hex(vector.pkRm), info, options);
        const recipient = {
          privateKey: await H.importPrivateKey(hex(vector.skRm)), publicKey: hex(vector.pkRm),
        };
        const receiver = await H.setupBaseR(hex(vector.enc), recipient, info, options);
        const derived = (context) => Object.fromEntries(
          Object.entries(context.derived).map(([name, value]) => [name, toHex(value)]));
        const out = { enc: toHex(enc), sender: derived(sender), receiver: derived(receiver),
                      nonces: [], ciphertexts: [], plaintexts: [] };
        for (const encryption of vector.encryptions) {
          out.nonces.push(toHex(sender.nonce()));
          out.ciphertexts.push(toHex(await sender.seal(hex(encryption.aad), hex(encryption.pt))));
          // A failure is kept as text, so that a wrong key shows as a wrong key first.
          const opened = receiver.open(hex(encryption.aad), hex(encryption.ct));
          out.plaintexts.push(await opened.then(toHex, String));
        }
        return out;
        """,
        vector,
    )

    assert "error" not in got, got
    assert got["enc"] == vector["enc"]
    expected = {
        "sharedSecret": vector["shared_secret"],
        "key": vector["key"],
        "baseNonce": vector["base_nonce"],
    }
    assert got["sender"] == expected
    assert got["receiver"] == expected
    encryptions = vector["encryptions"]
    assert len(encryptions) == 257  # sequence numbers 0 to 256: the nonce's second byte too
    assert got["nonces"] == [encryption["nonce"] for encryption in encryptions]
    assert got["ciphertexts"] == [encryption["ct"] for encryption in encryptions]
    assert got["plaintexts"] == [encryption["pt"] for encryption in encryptions]


def test_a_result_envelope_sealed_in_python_opens_in_the_browser(page: WebDriver) -> None:
    reply_public = run_async(
        page,
        """
        // The reply key stays in the page, as the page keeps it until its download.
        window.replyKey = await EphemeraHPKE.newReplyKey();
        return toHex(window.replyKey.publicKey);
        """,
    )
    result = os.urandom(5000)
    header = b"EPHR\x01"
    enc, sender = SUITE.create_sender_context(
        SUITE.kem.deserialize_public_key(bytes.fromhex(reply_public)),
        info=b"ephemera/v1/result|ephemera|anonymize|job-1",
    )
    envelope = header + enc + sender.seal(result, aad=header)

    def open_in_browser(job_id: str, data: bytes) -> Any:
        return run_async(
            page,
            """
            const [jobId, envelope] = args;
            const plaintext = await EphemeraHPKE.openResult({
              replyKey: window.replyKey, service: "ephemera", task: "anonymize", jobId,
              envelope: hex(envelope),
            });
            return toHex(plaintext);
            """,
            job_id,
            data.hex(),
        )

    assert open_in_browser("job-1", envelope) == result.hex()
    # Sealed for another job, or changed on the way: it does not open.
    assert "does not open" in open_in_browser("job-2", envelope)["error"]
    tampered = envelope[:-1] + bytes([envelope[-1] ^ 1])
    assert "does not open" in open_in_browser("job-1", tampered)["error"]
    assert "not an encrypted result" in open_in_browser("job-1", b"EPHK" + envelope[4:])["error"]


def test_an_upload_envelope_sealed_in_the_browser_opens_in_python(page: WebDriver) -> None:
    worker = SUITE.kem.derive_key_pair(os.urandom(32))
    photo = os.urandom(20_000)
    got = run_async(
        page,
        """
        const [publicKey, photo] = args;
        const replyKey = await EphemeraHPKE.newReplyKey();
        const envelope = await EphemeraHPKE.sealUpload({
          keyId: "w2", publicKey: hex(publicKey), service: "ephemera", task: "anonymize",
          role: "image", replyKey, plaintext: hex(photo),
        });
        return { envelope: toHex(envelope), reply: toHex(replyKey.publicKey) };
        """,
        worker.public_key.to_public_bytes().hex(),
        photo.hex(),
    )
    assert "error" not in got, got
    envelope = bytes.fromhex(got["envelope"])

    # The layout of docs/e2e.md: magic, version, key id, reply key, enc, ciphertext.
    assert envelope[:6] == b"EPHK\x01\x02"
    assert envelope[6:8] == b"w2"
    assert envelope[8:40].hex() == got["reply"]
    header, enc, ciphertext = envelope[:40], envelope[40:72], envelope[72:]
    assert len(ciphertext) == len(photo) + 16

    def open_in_python(info: bytes, aad: bytes) -> bytes:
        recipient = SUITE.create_recipient_context(enc, worker.private_key, info=info)
        return recipient.open(ciphertext, aad=aad)

    assert open_in_python(b"ephemera/v1/upload|ephemera|anonymize|image", header) == photo
    # Another part or task, or a swapped reply key, and the envelope does not open.
    with pytest.raises(OpenError):
        open_in_python(b"ephemera/v1/upload|ephemera|anonymize|reference", header)
    with pytest.raises(OpenError):
        open_in_python(b"ephemera/v1/upload|ephemera|face_blur|image", header)
    with pytest.raises(OpenError):
        open_in_python(b"ephemera/v1/upload|ephemera|anonymize|image", header[:8] + bytes(32))


def test_it_refuses_a_small_order_public_key(page: WebDriver) -> None:
    # X25519 with such a point gives an all-zero secret whatever the private key: an
    # attacker's "worker key" would make the upload readable to everyone (RFC 9180 7.1.4).
    got = run_async(
        page,
        """
        const replyKey = await EphemeraHPKE.newReplyKey();
        return await EphemeraHPKE.sealUpload({
          keyId: "w2", publicKey: new Uint8Array(32), service: "ephemera", task: "anonymize",
          role: "image", replyKey, plaintext: new Uint8Array(10),
        });
        """,
    )
    assert "OperationError" in got["error"]
