"""Every task rehearsed on a synthetic photo in the worker's parent, before any job.

A job process runs one job and exits, so whatever a job's code does only the
first time it runs would be paid by every job and kept by none: CPython 3.11
specialises a function's bytecode only after its first few calls, and torch
and OpenCV choose their CPU kernels and build their decoders' tables on first
use. Done here, in the process whose memory every job process inherits, it is
paid once per node. The photo is synthetic (shapes on a grey card), so no
user's data reaches the parent.

Everything runs on one thread (``registry.load_all`` set torch and OpenCV to
one), so no thread pool is started in a process that later forks.
"""

from __future__ import annotations

import contextlib
import logging
import time

import numpy as np
from redis.exceptions import RedisError

from backend.catalogue import CATALOGUE
from backend.ephemeral.connection import client
from backend.ephemeral.records import JobRecord
from backend.errors import CodedError
from backend.jobs import lifecycle
from workers import imaging, pipeline

logger = logging.getLogger(__name__)

#: More than the calls after which CPython 3.11 specialises a function (8).
ROUNDS = 10
#: Small, so the rehearsal takes under a second; the code paths are the same.
SIDE = 128
#: The id the job lifecycle is rehearsed on: no job has it (``uuid4`` never makes the nil UUID).
NO_JOB = "00000000-0000-0000-0000-000000000000"


def synthetic_photo(side: int = SIDE) -> bytes:
    """A JPEG of shapes on a grey card: edges and flat areas for every model."""
    card = np.full((side, side, 3), 128, dtype=np.uint8)
    card[side // 4 : side // 2, side // 8 : side // 2] = (40, 90, 200)
    card[side // 2 :, side // 2 :] = 230
    return imaging.encode(card, "jpeg")[0]


def rehearse(rounds: int = ROUNDS) -> None:
    """Run every task's transform, and the claim and publish of a job, ``rounds`` times.

    A task's refusal (no face on the card) is expected. The lifecycle's
    rehearsal needs Redis; without Redis, the tasks are still rehearsed. Its
    connections are closed after, so no forked process inherits a socket.
    """
    started = time.perf_counter()
    photo = synthetic_photo()
    for name, spec in CATALOGUE.items():
        record = JobRecord(
            id=NO_JOB,
            owner="",
            task=name,
            status="running",
            params={},
            format="jpeg",
            created_at=0.0,
            expires_at=0.0,
            width=SIDE,
            height=SIDE,
        )
        reference = photo if "reference" in spec.inputs else None
        for _ in range(rounds):
            with contextlib.suppress(CodedError):
                pipeline.transform(photo, record, reference=reference)
    try:
        for _ in range(rounds):
            rehearse_lifecycle()
    except RedisError as exc:
        logger.warning("lifecycle_not_rehearsed", extra={"error_type": type(exc).__name__})
    finally:
        client().connection_pool.disconnect()
    logger.info("tasks_rehearsed", extra={"ms": round((time.perf_counter() - started) * 1000)})


def rehearse_lifecycle() -> None:
    """A job's claim and publish, on an id no job has: both scripts find no
    record and write nothing."""
    lifecycle.claim(NO_JOB)
    lifecycle.publish(NO_JOB, data=b"", content_type="", run_ms=0)
