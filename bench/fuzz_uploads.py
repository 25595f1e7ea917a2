"""A long fuzz campaign against the upload path: sniff, then decode what sniff accepts.

The pytest properties run a few hundred cases; this runs as many as you like
and prints how often each outcome happened, so a change in the parsers shows up
as a change in the mix. The contract it checks is the one the API relies on:

* ``sniff`` returns a header within the limits or raises an ``ImageRejected``;
* ``decode`` returns a BGR ``uint8`` array of the header's size (or its
  transpose, after EXIF orientation) or raises ``UndecodableImage``;
* no single case takes longer than ``--slow`` seconds.

Anything else is counted as ``unexpected`` and makes the exit status 1; the
case's seed and generator are printed so it can be replayed with ``--replay``.

    python bench/fuzz_uploads.py --cases 100000
    python bench/fuzz_uploads.py --atheris -- -runs=200000   # coverage-guided, if installed
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2
import numpy as np
import skimage.data

from backend.imaging import ImageRejected, UndecodableImage, sniff
from workers.imaging import decode

MAX_PIXELS = 4_000_000
MAX_SIDE = 4000

MAGICS = (
    b"\xff\xd8\xff",
    b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
    b"\x89PNG\r\n\x1a\n",
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR",
    b"RIFF\x00\x10\x00\x00WEBPVP8 ",
    b"RIFF\x00\x10\x00\x00WEBPVP8L",
    b"RIFF\x00\x10\x00\x00WEBPVP8X\x0a\x00\x00\x00",
)
INTERESTING = (0x00, 0x01, 0x7F, 0x80, 0xFF, 0xD8, 0xD9, 0xDA, 0xC0, 0xC2, 0xC4, 0xFE, 0x2F)


def seeds() -> list[bytes]:
    """Small real files in every flavour the service accepts."""
    photo = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    small = cv2.resize(photo, (48, 64), interpolation=cv2.INTER_AREA)
    alpha = np.dstack([small, np.tile(np.arange(48, dtype=np.uint8) * 5, (64, 1))])
    grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    variants: list[tuple[str, np.ndarray, list[int]]] = [
        (".jpg", small, []),
        (".jpg", small, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
        (".jpg", small, [cv2.IMWRITE_JPEG_RST_INTERVAL, 1]),
        (".jpg", grey, []),
        (".png", small, []),
        (".png", grey, []),
        (".png", alpha, []),
        (".png", small.astype(np.uint16) * 257, []),
        (".webp", small, [cv2.IMWRITE_WEBP_QUALITY, 80]),
        (".webp", small, [cv2.IMWRITE_WEBP_QUALITY, 101]),
        (".webp", alpha, [cv2.IMWRITE_WEBP_QUALITY, 80]),
        (".webp", alpha, [cv2.IMWRITE_WEBP_QUALITY, 101]),
    ]
    out = []
    for ext, image, params in variants:
        ok, buffer = cv2.imencode(ext, image, params)
        assert ok, ext
        out.append(buffer.tobytes())
    return out


def random_bytes(rng: random.Random, _seeds: list[bytes]) -> bytes:
    return rng.randbytes(rng.randrange(0, 512))


def after_magic(rng: random.Random, _seeds: list[bytes]) -> bytes:
    return rng.choice(MAGICS) + rng.randbytes(rng.randrange(0, 256))


def mutate(rng: random.Random, pool: list[bytes], *, header_bias: bool) -> bytes:
    """Apply 1-8 structural mutations to a seed; with header_bias, mostly in the first 96 bytes."""
    data = bytearray(rng.choice(pool))
    for _ in range(rng.randint(1, 8)):
        if not data:
            break
        limit = min(len(data), 96) if header_bias and rng.random() < 0.8 else len(data)
        at = rng.randrange(limit)
        kind = rng.randrange(7)
        if kind == 0:
            data[at] ^= 1 << rng.randrange(8)
        elif kind == 1:
            data[at] = rng.choice(INTERESTING)
        elif kind == 2:
            data[at:at] = rng.randbytes(rng.randint(1, 16))
        elif kind == 3:
            del data[at : at + rng.randint(1, 64)]
        elif kind == 4:
            del data[at:]
        elif kind == 5:  # splice a piece of another seed in
            other = rng.choice(pool)
            start = rng.randrange(len(other))
            data[at:at] = other[start : start + rng.randint(1, 64)]
        else:  # a 16- or 32-bit field set to an extreme
            width = rng.choice((2, 4))
            value = rng.choice((0, 1, 2**15, 2**16 - 1, 2**31 - 1, 2**32 - 1)) % (256**width)
            order = rng.choice(("big", "little"))
            data[at : at + width] = value.to_bytes(width, order)
    return bytes(data)


GENERATORS: dict[str, Callable[[random.Random, list[bytes]], bytes]] = {
    "random": random_bytes,
    "magic+random": after_magic,
    "mutate_header": lambda rng, pool: mutate(rng, pool, header_bias=True),
    "mutate_anywhere": lambda rng, pool: mutate(rng, pool, header_bias=False),
}
WEIGHTS = (1, 2, 4, 3)


def run_one(data: bytes) -> str:
    """Run one input through sniff and decode; return the outcome's name."""
    try:
        header = sniff(data, max_pixels=MAX_PIXELS, max_side=MAX_SIDE)
    except ImageRejected as rejected:
        return f"sniff:{rejected.code}"
    if not (
        0 < header.width <= MAX_SIDE
        and 0 < header.height <= MAX_SIDE
        and header.width * header.height <= MAX_PIXELS
    ):
        return "unexpected:header_out_of_bounds"
    try:
        image = decode(data, header)
    except UndecodableImage:
        return "decode:undecodable_image"
    shape_ok = sorted(image.shape[:2]) == sorted((header.height, header.width))
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or not shape_ok:
        return "unexpected:bad_array"
    return "decode:ok"


def campaign(cases: int, seed: int, slow: float) -> int:
    pool = seeds()
    names = list(GENERATORS)
    outcomes: Counter[str] = Counter()
    by_generator: dict[str, Counter[str]] = {name: Counter() for name in names}
    failures: list[str] = []
    slowest = (0.0, "")
    started = time.perf_counter()
    for case in range(cases):
        rng = random.Random(f"{seed}:{case}")
        name = rng.choices(names, WEIGHTS)[0]
        data = GENERATORS[name](rng, pool)
        t0 = time.perf_counter()
        try:
            outcome = run_one(data)
        except Exception as exc:  # counting the unexpected is the point
            outcome = f"unexpected:{type(exc).__name__}"
        elapsed = time.perf_counter() - t0
        if elapsed > slowest[0]:
            slowest = (elapsed, f"--seed {seed} --replay {case}")
        if elapsed > slow:
            outcome = "unexpected:slow"
        outcomes[outcome] += 1
        by_generator[name][outcome] += 1
        if outcome.startswith("unexpected") and len(failures) < 20:
            failures.append(f"{outcome} ({name}, {len(data)} bytes): --seed {seed} --replay {case}")
    total = time.perf_counter() - started

    print(f"cases {cases}  seed {seed}  {total:.1f} s  ({cases / total:,.0f} cases/s)")
    print(f"slowest case {slowest[0] * 1000:.1f} ms  ({slowest[1]})")
    for outcome, count in sorted(outcomes.items()):
        print(f"  {outcome:32s} {count:8d}  {count / cases:7.2%}")
    for name in names:
        mix = ", ".join(f"{k}={v}" for k, v in sorted(by_generator[name].items()))
        print(f"  [{name}] {mix}")
    for failure in failures:
        print("FAIL", failure)
    return 1 if any(k.startswith("unexpected") for k in outcomes) else 0


def replay(seed: int, case: int) -> int:
    rng = random.Random(f"{seed}:{case}")
    name = rng.choices(list(GENERATORS), WEIGHTS)[0]
    data = GENERATORS[name](rng, seeds())
    print(f"{name}, {len(data)} bytes, head {data[:48].hex()}")
    print(run_one(data))
    return 0


def with_atheris(argv: list[str]) -> int:
    """Coverage-guided fuzzing of the same contract; atheris stops at the first violation.

    The parsers are instrumented after import (``instrument_all``) and the
    campaign starts from a temporary corpus of the real seed files, so libFuzzer
    begins from valid structure instead of an empty input.
    """
    import tempfile

    import atheris

    def target(data: bytes) -> None:
        outcome = run_one(data)
        if outcome.startswith("unexpected"):
            raise AssertionError(outcome)

    atheris.instrument_all()
    with tempfile.TemporaryDirectory(prefix="fuzz-uploads-") as corpus:
        for index, seed_file in enumerate(seeds()):
            Path(corpus, f"seed{index}").write_bytes(seed_file)
        atheris.Setup([sys.argv[0], *argv, corpus], target)
        atheris.Fuzz()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--slow", type=float, default=1.0, help="seconds one case may take")
    parser.add_argument("--replay", type=int, metavar="CASE", help="re-run one case and say why")
    parser.add_argument("--atheris", action="store_true", help="coverage-guided, libFuzzer args")
    args, rest = parser.parse_known_args()
    cv2.utils.logging.setLogLevel(
        cv2.utils.logging.LOG_LEVEL_ERROR
    )  # errors only: libjpeg/libpng warnings would flood the report
    if args.atheris:
        return with_atheris([arg for arg in rest if arg != "--"])
    if args.replay is not None:
        return replay(args.seed, args.replay)
    return campaign(args.cases, args.seed, args.slow)


if __name__ == "__main__":
    sys.exit(main())
