// HPKE (RFC 9180) base mode for the one suite of docs/e2e.md, DHKEM(X25519,
// HKDF-SHA256), HKDF-SHA256, AES-256-GCM, and the Ephemera envelopes built on it.
//
// Every primitive is the browser's own WebCrypto: this file only composes them
// the way RFC 9180 says, so there is no hand-written cryptography to audit.
// A classic script (the page allows no inline script and no modules are needed):
// it defines the one global `EphemeraHPKE`, loaded before app.js.
"use strict";

const EphemeraHPKE = (function () {
  const subtle = crypto.subtle;
  const utf8 = new TextEncoder();

  const KEM_ID = 0x0020; // DHKEM(X25519, HKDF-SHA256)
  const KDF_ID = 0x0001; // HKDF-SHA256
  const N_SECRET = 32; // DHKEM(X25519)'s shared secret, and X25519 key sizes
  const N_NONCE = 12;
  const N_TAG = 16;
  // AES-256-GCM is the suite. AES-128-GCM (aead 1) differs only in its key size and
  // id; it is here so the RFC's own appendix A.1 vector can be checked too.
  const AEADS = { 1: { nk: 16 }, 2: { nk: 32 } };
  const DEFAULT_AEAD = 2;
  const MODE_BASE = 0x00;

  // A raw 32-byte X25519 private key wrapped in PKCS#8: WebCrypto imports no "raw"
  // private keys, and this DER prefix (RFC 8410) is constant for X25519.
  const PKCS8_X25519_PREFIX = hex("302e020100300506032b656e04220420");

  function hex(text) {
    return Uint8Array.from(text.match(/../g) || [], (pair) => parseInt(pair, 16));
  }

  function concat(...parts) {
    const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
    let offset = 0;
    for (const part of parts) {
      out.set(part, offset);
      offset += part.length;
    }
    return out;
  }

  function i2osp(value, length) {
    const out = new Uint8Array(length);
    for (let i = length - 1; i >= 0 && value > 0; i--) {
      out[i] = value % 256;
      value = Math.floor(value / 256);
    }
    return out;
  }

  function bytes(buffer) {
    return new Uint8Array(buffer);
  }

  function equal(a, b) {
    return a.length === b.length && a.every((value, i) => value === b[i]);
  }

  // --- labeled HKDF (RFC 9180 section 4) --------------------------------------------

  function labeledIkm(suiteId, label, ikm) {
    return concat(utf8.encode("HPKE-v1"), suiteId, utf8.encode(label), ikm);
  }

  function labeledInfo(suiteId, label, info, length) {
    return concat(i2osp(length, 2), utf8.encode("HPKE-v1"), suiteId, utf8.encode(label), info);
  }

  /** LabeledExtract alone (psk_id_hash, info_hash): HKDF-Extract is HMAC keyed by
   * the salt, and WebCrypto's HKDF never hands out the PRK, so it is HMAC here.
   * The empty salt is HashLen zero bytes (RFC 5869). */
  async function labeledExtract(suiteId, salt, label, ikm) {
    const key = await subtle.importKey(
      "raw", salt.length ? salt : new Uint8Array(32), { name: "HMAC", hash: "SHA-256" }, false, ["sign"],
    );
    return bytes(await subtle.sign("HMAC", key, labeledIkm(suiteId, label, ikm)));
  }

  /** LabeledExpand(LabeledExtract(salt, extractLabel, ikm), expandLabel, info, length):
   * the pair RFC 9180 always runs back to back is exactly one WebCrypto HKDF. */
  async function labeledExtractAndExpand(suiteId, salt, extractLabel, ikm, expandLabel, info, length) {
    const key = await subtle.importKey("raw", labeledIkm(suiteId, extractLabel, ikm), "HKDF", false, ["deriveBits"]);
    const params = { name: "HKDF", hash: "SHA-256", salt: salt, info: labeledInfo(suiteId, expandLabel, info, length) };
    return bytes(await subtle.deriveBits(params, key, length * 8));
  }

  // --- DHKEM(X25519, HKDF-SHA256) (RFC 9180 section 4.1) ---------------------------------

  const KEM_SUITE_ID = concat(utf8.encode("KEM"), i2osp(KEM_ID, 2));

  function importPublicKey(raw) {
    return subtle.importKey("raw", raw, { name: "X25519" }, true, []);
  }

  /** A raw private key, for the test vectors and tests only: real keys are generated
   * here (generateKeyPair) or never leave the server. */
  function importPrivateKey(raw) {
    return subtle.importKey("pkcs8", concat(PKCS8_X25519_PREFIX, raw), { name: "X25519" }, false, ["deriveBits"]);
  }

  /** A fresh X25519 pair: the private half cannot be exported, the public half can
   * (WebCrypto makes every public key extractable). */
  function generateKeyPair() {
    return subtle.generateKey({ name: "X25519" }, false, ["deriveBits"]);
  }

  async function dh(privateKey, publicKey) {
    // deriveBits rejects an all-zero result (a small-order public key), as RFC 9180
    // section 7.1.4 asks of the KEM.
    return bytes(await subtle.deriveBits({ name: "X25519", public: publicKey }, privateKey, 256));
  }

  function extractAndExpand(dhBytes, kemContext) {
    return labeledExtractAndExpand(KEM_SUITE_ID, new Uint8Array(0), "eae_prk", dhBytes, "shared_secret", kemContext, N_SECRET);
  }

  async function encap(pkRRaw, ephemeral) {
    const pair = ephemeral || (await generateKeyPair());
    const enc = bytes(await subtle.exportKey("raw", pair.publicKey));
    const sharedSecret = await extractAndExpand(await dh(pair.privateKey, await importPublicKey(pkRRaw)), concat(enc, pkRRaw));
    return { sharedSecret, enc };
  }

  async function decap(enc, recipient) {
    const dhBytes = await dh(recipient.privateKey, await importPublicKey(enc));
    return extractAndExpand(dhBytes, concat(enc, recipient.publicKey));
  }

  // --- key schedule and context (RFC 9180 sections 5.1 and 5.2) ----------------------------------

  function hpkeSuiteId(aeadId) {
    return concat(utf8.encode("HPKE"), i2osp(KEM_ID, 2), i2osp(KDF_ID, 2), i2osp(aeadId, 2));
  }

  async function keySchedule(sharedSecret, info, options) {
    const aeadId = options.aead || DEFAULT_AEAD;
    const aead = AEADS[aeadId];
    if (!aead) throw new Error("HPKE: unsupported aead id " + aeadId + ".");
    const suiteId = hpkeSuiteId(aeadId);
    const empty = new Uint8Array(0); // base mode: no psk, no psk_id
    const context = concat(
      Uint8Array.of(MODE_BASE),
      await labeledExtract(suiteId, empty, "psk_id_hash", empty),
      await labeledExtract(suiteId, empty, "info_hash", info),
    );
    const derive = (label, length) => labeledExtractAndExpand(suiteId, sharedSecret, "secret", empty, label, context, length);
    const keyBytes = await derive("key", aead.nk);
    const baseNonce = await derive("base_nonce", N_NONCE);
    const key = await subtle.importKey("raw", keyBytes, "AES-GCM", false, ["encrypt", "decrypt"]);
    const ctx = new Context(key, baseNonce);
    // Only a test asks to see the secrets, to compare them with the RFC's vectors.
    if (options.reveal) ctx.derived = { sharedSecret, key: keyBytes, baseNonce };
    return ctx;
  }

  /** One direction of an HPKE context: seals (sender) or opens (recipient) messages
   * in order; the sequence number makes every nonce unique under the one key. */
  class Context {
    constructor(key, baseNonce) {
      this.key = key;
      this.baseNonce = baseNonce;
      this.seq = 0;
    }

    nonce() {
      const seq = i2osp(this.seq, N_NONCE);
      return this.baseNonce.map((value, i) => value ^ seq[i]);
    }

    async seal(aad, plaintext) {
      const params = { name: "AES-GCM", iv: this.nonce(), additionalData: aad, tagLength: N_TAG * 8 };
      const ciphertext = bytes(await subtle.encrypt(params, this.key, plaintext));
      this.seq += 1;
      return ciphertext;
    }

    async open(aad, ciphertext) {
      const params = { name: "AES-GCM", iv: this.nonce(), additionalData: aad, tagLength: N_TAG * 8 };
      let plaintext;
      try {
        plaintext = bytes(await subtle.decrypt(params, this.key, ciphertext));
      } catch (_) {
        // WebCrypto says only "OperationError"; say what it means.
        throw new Error("HPKE: the message does not open: it was changed, or sealed for another key or purpose.");
      }
      this.seq += 1;
      return plaintext;
    }
  }

  /** SetupBaseS: `options.ephemeral` (a key pair) and `options.reveal` are for the
   * test vectors; `options.aead` is 2 (AES-256-GCM) unless a vector says 1. */
  async function setupBaseS(pkRRaw, info, options = {}) {
    const { sharedSecret, enc } = await encap(pkRRaw, options.ephemeral);
    return { enc, context: await keySchedule(sharedSecret, info, options) };
  }

  /** SetupBaseR: `recipient` is {privateKey, publicKey: raw bytes}. DHKEM binds the
   * recipient's public key into the secret, and a non-extractable private key cannot
   * tell it, so the recipient keeps both. */
  async function setupBaseR(enc, recipient, info, options = {}) {
    return keySchedule(await decap(enc, recipient), info, options);
  }

  /** Single-shot seal (sequence number 0): what every Ephemera message uses. */
  async function seal(pkRRaw, info, aad, plaintext) {
    const { enc, context } = await setupBaseS(pkRRaw, info);
    return { enc, ciphertext: await context.seal(aad, plaintext) };
  }

  async function open(recipient, enc, info, aad, ciphertext) {
    return (await setupBaseR(enc, recipient, info)).open(aad, ciphertext);
  }

  // --- the Ephemera envelopes (docs/e2e.md) ---------------------------------------------------

  const UPLOAD_MAGIC = utf8.encode("EPHK");
  const RESULT_MAGIC = utf8.encode("EPHR");
  const VERSION = 1;
  const KEY_ID = /^[A-Za-z0-9_.-]{1,32}$/;
  const RESULT_HEADER = RESULT_MAGIC.length + 1;

  /** The client's one-time reply key: {privateKey (non-extractable), publicKey (raw)}.
   * Keep it in memory for the one download, then drop it. */
  async function newReplyKey() {
    const pair = await generateKeyPair();
    return { privateKey: pair.privateKey, publicKey: bytes(await subtle.exportKey("raw", pair.publicKey)) };
  }

  /** The upload envelope of one part (`role` "image" or "reference") for the worker
   * key `keyId`/`publicKey` (raw), answered to `replyKey`. The header is the aad, so
   * the reply key cannot be swapped; the info names service, task and part, so the
   * envelope opens for nothing else. */
  async function sealUpload({ keyId, publicKey, service, task, role, replyKey, plaintext }) {
    if (!KEY_ID.test(keyId)) throw new Error("HPKE: the key id " + JSON.stringify(keyId) + " is not 1 to 32 of [A-Za-z0-9_.-].");
    if (publicKey.length !== N_SECRET) throw new Error("HPKE: the worker's public key is not 32 bytes.");
    const header = concat(UPLOAD_MAGIC, Uint8Array.of(VERSION, keyId.length), utf8.encode(keyId), replyKey.publicKey);
    const info = utf8.encode(["ephemera/v1/upload", service, task, role].join("|"));
    const { enc, ciphertext } = await seal(publicKey, info, header, plaintext);
    return concat(header, enc, ciphertext);
  }

  /** The plaintext of a result envelope of job `jobId`, with the reply key it was
   * sealed to. */
  async function openResult({ replyKey, service, task, jobId, envelope }) {
    if (envelope.length < RESULT_HEADER + N_SECRET + N_TAG || !equal(envelope.subarray(0, RESULT_MAGIC.length), RESULT_MAGIC)) {
      throw new Error("HPKE: the result is not an encrypted result (EPHR) envelope.");
    }
    if (envelope[RESULT_MAGIC.length] !== VERSION) throw new Error("HPKE: the result envelope's version is not " + VERSION + ".");
    const info = utf8.encode(["ephemera/v1/result", service, task, jobId].join("|"));
    const enc = envelope.subarray(RESULT_HEADER, RESULT_HEADER + N_SECRET);
    return open(replyKey, enc, info, envelope.subarray(0, RESULT_HEADER), envelope.subarray(RESULT_HEADER + N_SECRET));
  }

  return Object.freeze({
    setupBaseS, setupBaseR, seal, open,
    generateKeyPair, importPublicKey, importPrivateKey,
    newReplyKey, sealUpload, openResult,
  });
})();
