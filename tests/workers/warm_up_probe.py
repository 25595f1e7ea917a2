"""Run by ``test_warm_up.py`` in a fresh interpreter: what ``warm_up.rehearse`` leaves behind.

Prints JSON: per function a job runs, how many of its instructions CPython has
specialised, before and after the rehearsal; and the process's sockets and
threads before and after.
"""

from __future__ import annotations

import dis
import json
import os
from collections.abc import Callable
from typing import Any


def specialised(function: Callable[..., Any]) -> int:
    """Instructions of ``function`` that CPython has replaced with specialised forms."""
    plain = [instruction.opname for instruction in dis.get_instructions(function)]
    adaptive = [instruction.opname for instruction in dis.get_instructions(function, adaptive=True)]
    return sum(a != p for a, p in zip(adaptive, plain, strict=True))


def sockets() -> int:
    fds = os.listdir("/proc/self/fd")
    links = []
    for fd in fds:
        try:
            links.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:  # the listing's own descriptor, closed by now
            continue
    return sum(link.startswith("socket:") for link in links)


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")
    import django

    django.setup()
    from backend.jobs import lifecycle
    from workers import imaging, pipeline, registry, warm_up

    registry.load_all()
    functions = {
        "pipeline.transform": pipeline.transform,
        "imaging.decode": imaging.decode,
        "imaging.encode": imaging.encode,
        "lifecycle.claim": lifecycle.claim,
        "lifecycle.publish": lifecycle.publish,
    }
    before = {name: specialised(function) for name, function in functions.items()}
    sockets_before, threads_before = sockets(), len(os.listdir("/proc/self/task"))
    warm_up.rehearse()
    print(
        json.dumps(
            {
                "before": before,
                "after": {name: specialised(function) for name, function in functions.items()},
                "sockets": [sockets_before, sockets()],
                "threads": [threads_before, len(os.listdir("/proc/self/task"))],
            }
        )
    )


if __name__ == "__main__":
    main()
