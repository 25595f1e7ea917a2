"""Load from real clients: many jobs, several threads, keep-alive connections.

Used by the fault tests and ``bench/chaos.py``: each thread has its own
``httpx.Client`` (a keep-alive connection pool, as real clients have), submits
jobs, retries refused submits the way a client following ``Retry-After`` would,
and afterwards every job id the service handed out is followed to its end.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

TERMINAL = frozenset({"succeeded", "failed", "cancelled", "expired"})


@dataclass
class LoadReport:
    #: Every job id the service handed out.
    handed_out: list[str] = field(default_factory=list)
    #: Submits the service refused, by error code (after retries ran out, or each try).
    refused: Counter[str] = field(default_factory=Counter)
    #: Final answers by job id: "status" or "status/code".
    ended: dict[str, str] = field(default_factory=dict)
    #: Ids that answered 404, or were not terminal when the patience ran out.
    silently_lost: list[str] = field(default_factory=list)
    #: Requests that got no HTTP answer at all (connection errors), by exception type.
    transport_errors: Counter[str] = field(default_factory=Counter)

    @property
    def outcomes(self) -> Counter[str]:
        return Counter(self.ended.values())

    @property
    def succeeded_share(self) -> float:
        return self.outcomes["succeeded"] / max(1, len(self.handed_out))


def run_load(
    base_url: str,
    key: str,
    *,
    photos: Sequence[bytes],
    jobs: int,
    threads: int,
    task: str = "cartoonize",
    params: str = "{}",
    wait: int = 0,
    download: bool = False,
    on_submitted: Callable[[int], None] | None = None,
    submit_patience: float = 60,
) -> LoadReport:
    """Submit ``jobs`` jobs from ``threads`` clients; ``on_submitted(n)`` after each one.

    With ``wait``, each client asks to wait for its job's end (``Prefer: wait``)
    before it submits the next, so the load follows the service's pace, as
    interactive clients do; a job that ended within the wait is noted at once
    (and, with ``download``, its result downloaded, once).
    """
    report = LoadReport()
    lock = threading.Lock()
    counter = iter(range(jobs))

    def client() -> httpx.Client:
        return httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=wait + 30
        )

    def worker() -> None:
        with client() as http:
            while True:
                with lock:
                    n = next(counter, None)
                if n is None:
                    return
                photo = photos[n % len(photos)]
                job = _submit(http, photo, task, params, wait, report, lock, submit_patience)
                job_id = job["id"] if job else None
                outcome = _ended(http, job, download) if job else None
                with lock:
                    if job_id:
                        report.handed_out.append(job_id)
                    if job_id and outcome:
                        report.ended[job_id] = outcome
                    done = len(report.handed_out)
                if on_submitted and job_id:
                    on_submitted(done)

    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(worker) for _ in range(threads)]:
            future.result()
    return report


def _submit(
    http: httpx.Client,
    photo: bytes,
    task: str,
    params: str,
    wait: int,
    report: LoadReport,
    lock: threading.Lock,
    patience: float,
) -> dict | None:
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        try:
            answer = http.post(
                "/api/v1/jobs",
                files={"image": ("photo.jpg", photo)},
                data={"task": task, "params": params},
                headers={"Prefer": f"wait={wait}"} if wait else {},
            )
        except httpx.HTTPError as exc:
            with lock:
                report.transport_errors[type(exc).__name__] += 1
            time.sleep(0.2)
            continue
        if answer.status_code in (201, 202):
            return dict(answer.json())
        code = answer.json().get("error", {}).get("code", str(answer.status_code))
        with lock:
            report.refused[code] += 1
        if answer.status_code not in (429, 503):
            return None
        time.sleep(min(2.0, float(answer.headers.get("retry-after", "0.5"))))
    return None


def follow_to_the_end(
    base_url: str,
    key: str,
    report: LoadReport,
    *,
    patience: float = 120,
    threads: int = 4,
    download: bool = False,
) -> None:
    """Poll every handed-out id until it is terminal; fill in outcomes and the lost.

    With ``download``, each result is downloaded (once), as its client would.
    """
    deadline = time.monotonic() + patience
    lock = threading.Lock()
    ids = iter([job_id for job_id in report.handed_out if job_id not in report.ended])

    def worker() -> None:
        with httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=70
        ) as http:
            while True:
                with lock:
                    job_id = next(ids, None)
                if job_id is None:
                    return
                outcome = _follow(http, job_id, deadline, report, lock, download)
                with lock:
                    if outcome is None:
                        report.silently_lost.append(job_id)
                    else:
                        report.ended[job_id] = outcome

    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(worker) for _ in range(threads)]:
            future.result()


def _follow(
    http: httpx.Client,
    job_id: str,
    deadline: float,
    report: LoadReport,
    lock: threading.Lock,
    download: bool,
) -> str | None:
    while time.monotonic() < deadline:
        wait = max(1, min(30, int(deadline - time.monotonic())))
        try:
            answer = http.get(f"/api/v1/jobs/{job_id}", headers={"Prefer": f"wait={wait}"})
        except httpx.HTTPError as exc:
            with lock:
                report.transport_errors[type(exc).__name__] += 1
            time.sleep(0.2)
            continue
        if answer.status_code == 404:
            return None
        if answer.status_code != 200:
            time.sleep(0.5)
            continue
        outcome = _ended(http, answer.json(), download)
        if outcome:
            return outcome
    return None


def _ended(http: httpx.Client, job: dict, download: bool) -> str | None:
    """``status`` or ``status/code`` of a job that ended (its result downloaded if asked)."""
    if job["status"] not in TERMINAL:
        return None
    if download and job.get("result"):
        with contextlib.suppress(httpx.HTTPError):
            http.get(job["result"]["url"])
    error = job.get("error") or {}
    return job["status"] + (f"/{error['code']}" if error.get("code") else "")
