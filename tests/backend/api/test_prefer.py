"""``Prefer: wait=N``: how long a request waits, and how many wait at once."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import cv2
import httpx
import pytest
from rest_framework.test import APIRequestFactory

from backend.api import prefer
from ephemera_client import Client, JobTimeout
from tests.backend.gunicorn_web import web
from tests.conftest import portrait
from tests.harness import Process, Stack, wait_until

__all__ = ["web"]

PHOTO = cv2.imencode(".jpg", portrait((96, 96)))[1].tobytes()


@pytest.mark.parametrize(
    ("header", "wait"),
    [
        ("wait=30", 30),
        ("respond-async, wait=5", 5),
        ("wait=5; handling=lenient", 5),
        ('wait="7"', 7),
        ("WAIT = 3", 3),
        ("wait=99999", 60),
        ("wait=" + "9" * 5000, 60),
        ("wait=abc", 0),
        ("wait=1e9", 0),
        ("wait=2.5", 0),
        ('wait="4', 0),
        ("nowait=5", 0),
        ("", 0),
    ],
)
def test_the_wait_asked_for_is_read_and_capped(header: str, wait: int) -> None:
    request = APIRequestFactory().get("/", HTTP_PREFER=header)
    assert prefer.requested_wait(request) == wait


@pytest.fixture
def four_threads() -> Iterator[None]:
    """This process's slots as a web process of four threads has them."""
    prefer.share_threads(4)
    yield
    prefer._slots.semaphore = None


@pytest.mark.usefixtures("four_threads")
def test_all_threads_but_two_may_wait_at_once() -> None:
    with (
        prefer.granted_wait(30) as first,
        prefer.granted_wait(30) as second,
        prefer.granted_wait(30) as third,
    ):
        assert (first, second, third) == (30, 30, 0)
    with prefer.granted_wait(30) as again:
        assert again == 30


def test_a_process_of_two_threads_lets_no_request_wait() -> None:
    prefer.share_threads(2)
    try:
        with prefer.granted_wait(30) as granted:
            assert granted == 0
    finally:
        prefer._slots.semaphore = None


@pytest.fixture(scope="module")
def web_of_four_threads(web: tuple[Stack, int]) -> tuple[Stack, Process, str]:
    """A web process of the gunicorn stack with four threads; no worker ends its jobs."""
    stack, _ = web
    process, port = stack.web(WEB_THREADS="4")
    return stack, process, f"http://127.0.0.1:{port}"


def queued_jobs(url: str, key: str, count: int) -> list[str]:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as http:
        return [
            http.post(
                "/api/v1/jobs", files={"image": ("p.jpg", PHOTO)}, data={"task": "detect"}
            ).json()["id"]
            for _ in range(count)
        ]


def long_poll(url: str, key: str, job_id: str, seconds: int) -> httpx.Response:
    with httpx.Client(base_url=url, timeout=seconds + 30) as http:
        return http.get(
            f"/api/v1/jobs/{job_id}",
            headers={"Authorization": f"Bearer {key}", "Prefer": f"wait={seconds}"},
        )


@pytest.mark.slow
def test_long_polls_leave_threads_for_everyone_else(
    web_of_four_threads: tuple[Stack, Process, str],
) -> None:
    # All eight waiting held all four threads: /healthz got no answer for
    # 30 s, and a liveness probe would have restarted the pod.
    stack, _, url = web_of_four_threads
    jobs = queued_jobs(url, stack.key, 8)
    with ThreadPoolExecutor(len(jobs)) as pool:
        polls = [pool.submit(long_poll, url, stack.key, job_id, 10) for job_id in jobs]
        wait_until(
            lambda: sum(poll.done() for poll in polls) >= 6,
            timeout=8,
            message="the polls beyond the slots were not answered at once",
        )
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        answers = [poll.result() for poll in polls]
    granted = [a for a in answers if a.headers.get("preference-applied") == "wait=10"]
    declined = [a for a in answers if "preference-applied" not in a.headers]
    assert (len(granted), len(declined)) == (2, 6)
    for answer in declined:
        assert answer.status_code == 200 and answer.json()["status"] == "queued"
        assert answer.headers["retry-after"] == str(prefer.DECLINED_RETRY_AFTER)


@pytest.mark.slow
def test_the_client_polls_again_only_after_retry_after(
    web_of_four_threads: tuple[Stack, Process, str],
) -> None:
    stack, web_process, url = web_of_four_threads
    holders = queued_jobs(url, stack.key, 2)
    [job_id] = queued_jobs(url, stack.key, 1)
    with ThreadPoolExecutor(2) as pool:
        held: list[Future[httpx.Response]] = [
            pool.submit(long_poll, url, stack.key, holder, 8) for holder in holders
        ]
        threading.Event().wait(1)  # both slots taken
        before = gets(web_process)
        with Client(url, stack.key, e2e=False) as client, pytest.raises(JobTimeout):
            client.wait(job_id, timeout=3)
        polled = gets(web_process) - before
        assert all(h.result().headers.get("preference-applied") for h in held)
    # Declined at once each time, it waited a second between polls instead
    # of asking again at once, hundreds of times.
    assert 2 <= polled <= 5


def gets(web_process: Process) -> int:
    """The GETs the web process has answered so far, from its access log."""
    lines = web_process.log_path.read_text().splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    return sum(e.get("event") == "http_access" and e.get("method") == "GET" for e in events)
