"""The cost of end-to-end encryption on a 1 MP photo, per side, against the plain path.

Each step runs the code the product runs, in this process, interleaved with its
plain counterpart on the same photo; medians in milliseconds:

- client: sealing the upload (HPKE to the worker's key) / nothing (plain sends the bytes);
- web: the envelope checks / the plain upload's sniff plus its AES-256-GCM seal for Redis;
- worker: opening the envelope plus the sniff the web no longer does / opening the sealed
  upload; then sealing the result to the client's key (on top of the store's seal);
- client: opening the result.

    .venv/bin/python bench/e2e.py [--runs 50]
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")

import cv2
import django
import numpy as np

django.setup()

from django.conf import settings  # noqa: E402

from backend import e2e  # noqa: E402
from backend.ephemeral import crypto  # noqa: E402
from backend.imaging import sniff  # noqa: E402
from ephemera_client import envelope  # noqa: E402
from ephemera_client.envelope import KeyPair  # noqa: E402

WORKER, REPLY = KeyPair.generate(), KeyPair.generate()
BOUND = {"service": "ephemera", "task": "cartoonize"}


def photo() -> bytes:
    """A 1 MP JPEG of a real photo (scikit-image's astronaut, upscaled)."""
    from skimage import data

    image = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (1155, 866))
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    return bytes(encoded)


def timed(step: Callable[[], object], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        step()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()

    settings.EPHEMERA_E2E_PUBLIC_KEYS = f"w1:{base64.b64encode(WORKER.public).decode()}"
    e2e.public_keys.cache_clear()
    ring = crypto.keyring()
    image = photo()
    result = np.random.default_rng(0).integers(0, 255, len(image), dtype=np.uint8).tobytes()
    sealed_upload = envelope.seal_upload(
        image, key_id="w1", public_key=WORKER.public, reply_key=REPLY.public, **BOUND
    )
    stored = crypto.seal(image, keyring=ring, purpose="in", subject="job")
    result_envelope = envelope.seal_result(result, reply_key=REPLY.public, job_id="job", **BOUND)
    parsed = envelope.parse_upload(sealed_upload)

    steps: dict[str, tuple[Callable[[], object], Callable[[], object] | None]] = {
        "client: seal the upload": (
            lambda: envelope.seal_upload(
                image, key_id="w1", public_key=WORKER.public, reply_key=REPLY.public, **BOUND
            ),
            None,
        ),
        "web: check the upload": (
            lambda: e2e.checked_envelopes(sealed_upload, None),
            lambda: (
                sniff(image, max_pixels=settings.EPHEMERA_MAX_PIXELS),
                crypto.seal(image, keyring=ring, purpose="in", subject="job"),
            ),
        ),
        "worker: open and check the upload": (
            lambda: sniff(
                envelope.open_upload(parsed, private_key=WORKER.private, role="image", **BOUND),
                max_pixels=settings.EPHEMERA_MAX_PIXELS,
            ),
            lambda: crypto.open_sealed(stored, keyring=ring, purpose="in", subject="job"),
        ),
        "worker: seal the result to the client": (
            lambda: envelope.seal_result(result, reply_key=REPLY.public, job_id="job", **BOUND),
            None,
        ),
        "client: open the result": (
            lambda: envelope.open_result(
                result_envelope, reply_private=REPLY.private, job_id="job", **BOUND
            ),
            None,
        ),
    }
    print(f"1 MP JPEG, {len(image) / 1e6:.2f} MB; medians of {args.runs} runs, interleaved")
    print(f"{'step':42} {'e2e ms':>8} {'plain ms':>9} {'extra ms':>9}")
    for name, (with_e2e, plain) in steps.items():
        ours: list[float] = []
        theirs: list[float] = []
        for _ in range(args.runs):
            ours += timed(with_e2e, 1)
            if plain is not None:
                theirs += timed(plain, 1)
        mine = statistics.median(ours)
        base = statistics.median(theirs) if theirs else 0.0
        print(f"{name:42} {mine:8.2f} {base:9.2f} {mine - base:9.2f}")


if __name__ == "__main__":
    main()
