"""A small typed client for the Ephemera API, over one keep-alive connection pool.

    with Client(url="http://127.0.0.1:8000", api_key="ek_...") as ephemera:
        job = ephemera.submit("anonymize", Path("photo.jpg"), {"mode": "pixelate"}, wait=30)
        job = ephemera.wait(job.id)
        Path("out.png").write_bytes(ephemera.download(job).data)

A result downloads once; ``delete`` purges a job's upload and result at once.

When the service publishes workers' keys (``GET /api/v1/keys``), the client
encrypts every upload to them and opens the result with a one-time key that
never leaves this process (docs/e2e.md): the service's web tier sees only
ciphertext. ``Client(e2e=False)`` sends plain uploads.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import httpx

from ephemera_client import envelope
from ephemera_client.envelope import KeyPair, Role
from ephemera_client.errors import ApiError, EphemeraError, JobNotSucceeded, JobTimeout, error_for
from ephemera_client.models import Download, Job, Task

#: The longest ``Prefer: wait=N`` the service honours.
MAX_WAIT = 60
UPLOAD_CHUNK = 64 * 1024
DEFAULT_URL = "http://127.0.0.1:8000"

#: ``callback(done_bytes, total_bytes)``, called as bytes go out or come in.
ProgressCallback = Callable[[int, int], None]
Image = bytes | Path | BinaryIO
#: How long a fetched key list is used before it is fetched again.
KEYS_MAX_AGE = 300.0
#: Refusals after which the key list is fetched again and the submit retried once.
STALE_KEY_CODES = frozenset({"unknown_key", "key_retired"})


@dataclass(frozen=True)
class WorkerKey:
    """The worker key an upload is sealed to, and the name envelopes are bound to."""

    id: str
    public_key: bytes
    service: str


@dataclass(frozen=True)
class _Reply:
    """What opens one end-to-end job's result: held in memory until its download."""

    key: KeyPair
    service: str
    task: str


class Client:
    """One client per API key; safe to share between threads (httpx's pool is)."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        e2e: bool = True,
    ) -> None:
        url = url or os.environ.get("EPHEMERA_URL") or DEFAULT_URL
        api_key = api_key or os.environ.get("EPHEMERA_API_KEY")
        if not api_key:
            raise EphemeraError(
                "no API key: set EPHEMERA_API_KEY (or pass api_key= to Client); "
                "create one with `python manage.py create_api_key --name NAME`"
            )
        self.url = url.rstrip("/")
        self._timeout = timeout
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "ephemera-client/0.1"},
            timeout=timeout,
            transport=transport,
            # Results are never redirected; a redirect would be a misconfigured proxy.
            follow_redirects=False,
        )
        self.e2e = e2e
        self._keys: tuple[float, WorkerKey | None] | None = None
        self._replies: dict[str, _Reply] = {}
        self._lock = threading.Lock()

    # --- lifecycle ---------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- the API -------------------------------------------------------------------

    def tasks(self) -> list[Task]:
        """The catalogue: each task's name, params schema, output and limits."""
        body = self._json(self._http.get("/api/v1/tasks"))
        return [Task.from_json(task) for task in body["tasks"]]

    def worker_key(self, *, refresh: bool = False) -> WorkerKey | None:
        """The workers' active key from ``GET /api/v1/keys``; None when none is published."""
        with self._lock:
            cached = self._keys
        if cached is not None and not refresh and time.monotonic() - cached[0] < KEYS_MAX_AGE:
            return cached[1]
        body = self._json(self._http.get("/api/v1/keys"))
        active = next((key for key in body.get("keys", []) if key.get("active")), None)
        found = (
            None
            if active is None
            else WorkerKey(
                id=str(active["id"]),
                public_key=base64.b64decode(active["public_key"]),
                service=str(body["service"]),
            )
        )
        with self._lock:
            self._keys = (time.monotonic(), found)
        return found

    def submit(
        self,
        task: str,
        image: Image,
        params: Mapping[str, Any] | None = None,
        *,
        wait: int = 0,
        on_upload: ProgressCallback | None = None,
        reference: Image | None = None,
        consent: bool = False,
        webhook: str | None = None,
    ) -> Job:
        """Upload ``image`` (bytes, a path or a binary file) to ``task``.

        ``wait`` (seconds, at most 60) asks the service to answer only once the
        job ended or the wait is over; the job may still be queued or running.
        ``reference`` is the second photo of a two-image task (face_verify),
        ``consent`` states that the people in both photos agreed to it.
        ``webhook``, an https URL, gets one signed POST when the job ends
        (the client's webhook secret must exist: ``manage.py webhook_secret``).
        """
        photos: dict[Role, bytes] = {"image": _read_image(image)}
        if reference is not None:
            photos["reference"] = _read_image(reference)
        fields = {"task": task}
        if params:
            fields["params"] = json.dumps(dict(params))
        if consent:
            fields["consent"] = "true"
        if webhook is not None:
            fields["webhook"] = webhook
        try:
            return self._submit(task, photos, fields, wait=wait, on_upload=on_upload)
        except ApiError as exc:
            if exc.code not in STALE_KEY_CODES:
                raise
            # The workers' keys rotated since the list was fetched: fetch it, retry once.
            self.worker_key(refresh=True)
            return self._submit(task, photos, fields, wait=wait, on_upload=on_upload)

    def _submit(
        self,
        task: str,
        photos: Mapping[Role, bytes],
        fields: Mapping[str, str],
        *,
        wait: int,
        on_upload: ProgressCallback | None,
    ) -> Job:
        worker = self.worker_key() if self.e2e else None
        reply = None
        files: dict[str, tuple[bytes, str]] = {}
        for role, data in photos.items():
            if worker is None:
                files[role] = (data, "application/octet-stream")
                continue
            reply = reply or _Reply(KeyPair.generate(), worker.service, task)
            sealed = envelope.seal_upload(
                data,
                key_id=worker.id,
                public_key=worker.public_key,
                reply_key=reply.key.public,
                service=worker.service,
                task=task,
                role=role,
            )
            files[role] = (sealed, envelope.CONTENT_TYPE)
        body, content_type = _multipart(fields, files)
        headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
        if wait:
            headers["Prefer"] = f"wait={_capped(wait)}"
        response = self._http.post(
            "/api/v1/jobs",
            content=_chunks(body, on_upload),
            headers=headers,
            timeout=self._wait_timeout(wait),
        )
        job = Job.from_json(self._json(response))
        if reply is not None:
            with self._lock:
                self._replies[job.id] = reply
        return self._forget_if_unopenable(job)

    def _forget_if_unopenable(self, job: Job) -> Job:
        """A job that ended without a result has nothing for its reply key to open."""
        if job.terminal and job.result is None:
            with self._lock:
                self._replies.pop(job.id, None)
        return job

    def get(self, job_id: str, *, wait: int = 0) -> Job:
        """The job; with ``wait``, the service answers when it ends or after ``wait`` s."""
        headers = {"Prefer": f"wait={_capped(wait)}"} if wait else {}
        response = self._http.get(
            f"/api/v1/jobs/{job_id}", headers=headers, timeout=self._wait_timeout(wait)
        )
        job = self._forget_if_unopenable(Job.from_json(self._json(response)))
        return replace(job, poll_after=_seconds(response.headers.get("Retry-After")))

    def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        step: int = MAX_WAIT,
        on_update: Callable[[Job], None] | None = None,
    ) -> Job:
        """Long-poll until the job ends; raise ``JobTimeout`` after ``timeout`` seconds.

        Each poll waits up to ``step`` seconds; a short step (1) sees the job go
        from queued to running, a long one makes fewer requests.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = MAX_WAIT if deadline is None else deadline - time.monotonic()
            job = self.get(job_id, wait=max(1, min(step, int(remaining + 0.999), MAX_WAIT)))
            if on_update is not None:
                on_update(job)
            if job.terminal:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise JobTimeout(job_id, timeout or 0)
            if job.poll_after:
                # The service answered at once, too busy to hold the poll.
                time.sleep(job.poll_after)

    def download(self, job: Job | str, *, on_progress: ProgressCallback | None = None) -> Download:
        """The result bytes of a succeeded job (or of a result URL), once.

        A second download raises ``ResultGone``: the service deleted the result
        when it was first downloaded.
        """
        if isinstance(job, Job):
            if job.result is None:
                code, message = (job.error.code, job.error.message) if job.error else (None, None)
                raise JobNotSucceeded(job.id, job.status, code, message)
            url = job.result.url
        else:
            url = job
        download = self._fetch(url, on_progress)
        if download.content_type.split(";")[0].strip() != envelope.CONTENT_TYPE:
            return download
        if not isinstance(job, Job):
            raise EphemeraError("an end-to-end result opens with its Job: pass the Job")
        with self._lock:
            # One download, one use of the reply key: it goes now, opened or not.
            reply = self._replies.pop(job.id, None)
        if reply is None:
            raise EphemeraError(
                f"job {job.id} is end-to-end encrypted to a key this client does not hold"
            )
        data = envelope.open_result(
            download.data,
            reply_private=reply.key.private,
            service=reply.service,
            task=reply.task,
            job_id=job.id,
        )
        assert job.result is not None
        return Download(data=data, content_type=job.result.content_type)

    def _fetch(self, url: str, on_progress: ProgressCallback | None) -> Download:
        with self._http.stream("GET", url) as response:
            if response.status_code != 200:
                response.read()
                self._json(response)
            total = int(response.headers.get("Content-Length") or 0)
            parts: list[bytes] = []
            done = 0
            for chunk in response.iter_bytes():
                parts.append(chunk)
                done += len(chunk)
                if on_progress is not None:
                    on_progress(done, max(total, done))
            content_type = response.headers.get("Content-Type", "application/octet-stream")
        return Download(data=b"".join(parts), content_type=content_type)

    def delete(self, job_id: str) -> None:
        """Purge the job's upload, result and token now; a queued job will not run."""
        response = self._http.delete(f"/api/v1/jobs/{job_id}")
        if response.status_code != 204:
            self._json(response)
        with self._lock:
            self._replies.pop(job_id, None)

    # --- plumbing -----------------------------------------------------------------

    def _wait_timeout(self, wait: int) -> httpx.Timeout:
        # The read may legitimately block for the whole wait.
        return httpx.Timeout(self._timeout, read=self._timeout + _capped(wait))

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        """The JSON body of a success, or the error answer raised as an ``ApiError``."""
        if response.is_success:
            return response.json()
        raise _error(response)


def _error(response: httpx.Response) -> ApiError:
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        # Not our error body: a proxy in between, say. Keep the status.
        code, message = "http_error", f"HTTP {response.status_code} {response.reason_phrase}"
    return error_for(
        response.status_code,
        code,
        message,
        retry_after=_seconds(response.headers.get("Retry-After")),
    )


def _seconds(retry_after: str | None) -> float | None:
    """``Retry-After`` in seconds; None without one, or for an HTTP date."""
    return float(retry_after) if retry_after and retry_after.isdigit() else None


def _capped(wait: int) -> int:
    return max(0, min(int(wait), MAX_WAIT))


def _read_image(image: Image) -> bytes:
    if isinstance(image, bytes):
        return image
    if isinstance(image, Path):
        return image.read_bytes()
    return image.read()


def _multipart(
    fields: Mapping[str, str], files: Mapping[str, tuple[bytes, str]]
) -> tuple[bytes, str]:
    """A multipart/form-data body. A file's name is sent as its field's: the
    service sniffs the type from the bytes, and the user's file name is nobody's
    business."""
    boundary = f"ephemera-{secrets.token_hex(16)}"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    for name, (data, content_type) in files.items():
        parts.append(
            f"--{boundary}\r\nContent-Disposition: form-data; "
            f'name="{name}"; filename="{name}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _chunks(body: bytes, on_upload: ProgressCallback | None) -> Iterator[bytes]:
    """The body in chunks, reporting each as it is handed to the socket."""
    total = len(body)
    for start in range(0, total, UPLOAD_CHUNK):
        chunk = body[start : start + UPLOAD_CHUNK]
        yield chunk
        if on_upload is not None:
            on_upload(start + len(chunk), total)
