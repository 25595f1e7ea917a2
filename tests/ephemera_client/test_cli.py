"""The ``ephemera`` console script against the real stack, as a user runs it:
through a pipe (quiet, ``--json``) and on a terminal (a pty: progress, Ctrl-C).

After ``make`` installs the package, the installed ``ephemera`` script next to
this Python is what runs; before that (a fresh worktree), ``python -m ephemera_client``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import pytest
import redis

from backend.ephemeral import store
from tests.conftest import Worker
from tests.harness import REPO, manage, wait_until
from tests.integration.helpers import pause_consumers, resume_consumers
from tests.integration.live_stack import LiveStack, photo_file

pytestmark = pytest.mark.slow


def ephemera_command() -> list[str]:
    installed = Path(sys.executable).parent / "ephemera"
    if installed.is_file() and os.access(installed, os.X_OK):
        return [str(installed)]
    return [sys.executable, "-m", "ephemera_client"]


def cli_env(stack: LiveStack, **extra: str) -> dict[str, str]:
    return {
        **stack.env,
        "EPHEMERA_URL": stack.url,
        "EPHEMERA_API_KEY": stack.key,
        "PYTHONPATH": str(REPO),
        **extra,
    }


def ephemera(stack: LiveStack, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the console script with pipes for its output: not a terminal."""
    return subprocess.run(
        [*ephemera_command(), *args],
        cwd=cwd,
        env=cli_env(stack),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def stack(live_stack: LiveStack, redis_conn: redis.Redis) -> LiveStack:
    return live_stack


# --- without a terminal --------------------------------------------------------------


def test_run_writes_the_result_and_prints_only_its_path(stack: LiveStack, tmp_path: Path) -> None:
    photo = photo_file(tmp_path)

    done = ephemera(
        stack, "run", "anonymize", "photo.jpg", "-o", "out.jpg", "--param", "mode=pixelate",
        cwd=tmp_path,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("out.jpg\n", "")
    result = cv2.imread(str(tmp_path / "out.jpg"))
    assert result is not None and result.shape == cv2.imread(str(photo)).shape
    assert (tmp_path / "out.jpg").stat().st_mode & 0o077 == 0, "the result is readable by others"


def test_many_files_as_json_lines(stack: LiveStack, tmp_path: Path) -> None:
    names = [photo_file(tmp_path, f"p{i}.jpg", (256 + 64 * i, 256 + 64 * i)).name for i in range(3)]

    done = ephemera(stack, "run", "detect", *names, "--json", "-j", "2", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["file"] for line in lines] == names
    for line in lines:
        assert line["status"] == "succeeded", line
        assert len(line["result"]["faces"]) >= 1
        assert line["output"] is None  # a JSON result is printed, not saved


def test_submits_over_the_keys_in_flight_limit_wait_their_turn(
    stack: LiveStack, tmp_path: Path
) -> None:
    # A free key may have 4 jobs in flight: the fifth and sixth submit of six
    # at once answer 429 with Retry-After, and are sent again after it.
    names = [photo_file(tmp_path, f"p{i}.jpg").name for i in range(6)]
    key = manage(stack.env, "create_api_key", "--name", "free-cli", "--tier", "free").strip()

    done = subprocess.run(
        [*ephemera_command(), "run", "detect", *names, "--json", "-j", "6"],
        cwd=tmp_path,
        env=cli_env(stack, EPHEMERA_API_KEY=key),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["status"] for line in done.stdout.splitlines()] == ["succeeded"] * 6


def test_two_inputs_for_one_result_file_are_refused_before_any_upload(
    stack: LiveStack, tmp_path: Path, redis_conn: redis.Redis
) -> None:
    # Both would be written to out/photo.detect.json: the second result would
    # overwrite the first, which cannot be downloaded again.
    for folder in ("a", "b", "out"):
        (tmp_path / folder).mkdir()
    photo_file(tmp_path / "a")
    photo_file(tmp_path / "b")

    done = ephemera(stack, "run", "detect", "a/photo.jpg", "b/photo.jpg", "-o", "out", cwd=tmp_path)

    assert done.returncode == 2
    assert "a/photo.jpg and b/photo.jpg would write the same result file" in done.stderr
    assert not list(redis_conn.scan_iter("eph:job:*"))


def test_a_photo_the_service_would_refuse_is_never_uploaded(
    stack: LiveStack, tmp_path: Path, redis_conn: redis.Redis
) -> None:
    # A phone's HEIC photos, refused one after another, used to block the key
    # and the IP for an hour (three rejected uploads in a row).
    for index in range(3):
        heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 512
        (tmp_path / f"IMG_{index}.HEIC").write_bytes(heic)
    (tmp_path / "big.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 16 * 1024 * 1024)
    photo_file(tmp_path)
    refused = ["IMG_0.HEIC", "IMG_1.HEIC", "IMG_2.HEIC", "big.jpg"]

    done = ephemera(stack, "run", "detect", *refused, "photo.jpg", "--json", cwd=tmp_path)

    lines = {Path(line["file"]).name: line for line in map(json.loads, done.stdout.splitlines())}
    assert done.returncode == 1
    for name in refused:
        assert lines[name]["job"] is None
        assert lines[name]["error"].endswith("not uploaded")
    assert lines["IMG_0.HEIC"]["error"].startswith("unsupported_media_type: IMG_0.HEIC")
    assert lines["big.jpg"]["error"].startswith("payload_too_large: big.jpg")
    assert lines["photo.jpg"]["status"] == "succeeded"
    assert len(list(redis_conn.scan_iter("eph:job:*"))) == 1
    assert not list(redis_conn.scan_iter("ephops:*block*"))


def test_a_block_ends_the_run_at_once_instead_of_waiting_an_hour(
    stack: LiveStack, tmp_path: Path, redis_conn: redis.Redis, worker: Worker
) -> None:
    # The block starts while the first of two photos waits in the queue: the
    # second's submit answers 429 with Retry-After near 3600, which the command
    # slept through (five times) before giving up.
    from backend.ephemeral import keys
    from backend.pseudonyms import client_subject

    names = [photo_file(tmp_path, f"p{i}.jpg").name for i in range(2)]
    key = manage(stack.env, "create_api_key", "--name", "blocked-cli", "--tier", "free").strip()
    pause_consumers(worker)
    try:
        command = subprocess.Popen(
            [*ephemera_command(), "run", "detect", *names, "--json", "-j", "1"],
            cwd=tmp_path,
            env=cli_env(stack, EPHEMERA_API_KEY=key),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        (job_key,) = wait_until(
            lambda: list(redis_conn.scan_iter("eph:job:*")), timeout=30, message="no job"
        )
        owner = redis_conn.hget(job_key, "owner").decode()  # type: ignore[union-attr]
        redis_conn.set(keys.block_key(client_subject(owner)), b"1", ex=3600)
    finally:
        resume_consumers(worker)
    try:
        out, _ = command.communicate(timeout=60)
    finally:
        command.kill()

    assert command.returncode == 1
    errors = [json.loads(line)["error"] for line in out.splitlines()]
    assert len(errors) == 2
    assert all(error.startswith("temporarily_blocked") for error in errors), errors


def test_a_failure_is_reported_with_its_code_and_exit_status(
    stack: LiveStack, tmp_path: Path
) -> None:
    photo_file(tmp_path)

    done = ephemera(stack, "run", "anonymize", "photo.jpg", "--param", "mode=smudge", cwd=tmp_path)

    assert done.returncode == 1
    assert "invalid_params" in done.stderr and "mode" in done.stderr


def test_a_job_it_gives_up_on_is_deleted(
    stack: LiveStack, tmp_path: Path, redis_conn: redis.Redis, worker: Worker
) -> None:
    photo_file(tmp_path)
    pause_consumers(worker)
    try:
        done = ephemera(stack, "run", "anonymize", "photo.jpg", "--timeout", "1", cwd=tmp_path)
    finally:
        resume_consumers(worker)

    assert done.returncode == 1
    assert "did not end within 1s; deleted it" in done.stderr
    (job_key,) = redis_conn.scan_iter("eph:job:*")
    assert redis_conn.hget(job_key, "status") == b"cancelled"
    assert not list(redis_conn.scan_iter("eph:in:*"))


def test_tasks_and_delete(stack: LiveStack, tmp_path: Path) -> None:
    listed = ephemera(stack, "tasks", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "anonymize" in [task["name"] for task in json.loads(listed.stdout)["tasks"]]

    photo_file(tmp_path)
    ran = ephemera(stack, "run", "detect", "photo.jpg", "--json", cwd=tmp_path)
    job_id = json.loads(ran.stdout)["job"]
    deleted = ephemera(stack, "delete", job_id, cwd=tmp_path)
    assert (deleted.returncode, deleted.stdout) == (0, f"deleted {job_id}\n")
    # The job had ended: it keeps its end, and nothing else.
    tombstone = store.get_job(job_id)
    assert tombstone is not None
    assert (tombstone.status, tombstone.result_token_sealed) == ("succeeded", None)

    unknown = ephemera(stack, "delete", "00000000-0000-4000-8000-000000000000", cwd=tmp_path)
    assert unknown.returncode == 1 and "job_not_found" in unknown.stderr


def test_without_a_key_it_says_how_to_get_one(stack: LiveStack, tmp_path: Path) -> None:
    done = subprocess.run(
        [*ephemera_command(), "tasks"],
        env={**cli_env(stack), "EPHEMERA_API_KEY": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 1
    assert "EPHEMERA_API_KEY" in done.stderr and "create_api_key" in done.stderr


# --- on a terminal ---------------------------------------------------------------------


@dataclass
class Terminal:
    """A process on a pseudo-terminal of its own: its controlling tty, so the ^C
    typed into it reaches the process as SIGINT, exactly as in a real terminal."""

    pid: int
    fd: int
    screen: bytearray

    @classmethod
    def spawn(cls, argv: list[str], *, env: dict[str, str], cwd: Path) -> Terminal:
        pid, fd = pty.fork()
        if pid == 0:  # the child: exec at once
            # As a shell starts a job in the foreground: Ctrl-C interrupts it,
            # even when these tests run in a background job, which ignores
            # SIGINT (an ignored signal stays ignored across exec).
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.chdir(cwd)
            os.execve(argv[0], argv, env)
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
        return cls(pid=pid, fd=fd, screen=bytearray())

    def read(self, timeout: float = 0.2) -> None:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if ready:
            # EIO once the child closed the terminal.
            with contextlib.suppress(OSError):
                self.screen.extend(os.read(self.fd, 65536))

    def text(self) -> str:
        return self.screen.decode(errors="replace")

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.read()
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.read(0)
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        raise AssertionError(f"the CLI did not exit within {timeout}s:\n{self.text()}")


@pytest.fixture
def terminal_env(stack: LiveStack) -> dict[str, str]:
    return cli_env(stack, TERM="xterm-256color", COLUMNS="160", LINES="40")


@contextlib.contextmanager
def half_speed_jobs(worker: Worker) -> Iterator[None]:
    """The worker's busy job processes paused for 50 ms of every 100, as on a loaded node."""
    done = threading.Event()

    def send(pids: list[int], signum: signal.Signals) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def throttle() -> None:
        while not done.is_set():
            pids = worker.job_processes(busy=True)
            send(pids, signal.SIGSTOP)
            try:
                done.wait(0.05)
            finally:
                send(pids, signal.SIGCONT)
            done.wait(0.05)

    thread = threading.Thread(target=throttle, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def test_a_terminal_shows_upload_queue_run_and_download(
    stack: LiveStack, terminal_env: dict[str, str], tmp_path: Path
) -> None:
    # The largest side the worker takes (EPHEMERA_MAX_SIDE). The CLI polls each
    # second; a fast machine runs such a job in less, between two polls, and the
    # display rightly never shows it running. At half speed each job outlasts a
    # poll, so the display must catch it running.
    names = [photo_file(tmp_path, f"big{i}.jpg", (2048, 2048)).name for i in range(2)]
    term = Terminal.spawn(
        [
            *ephemera_command(),
            "run",
            "cartoonize",
            *names,
            "--param",
            "smoothing=5",
            "-o",
            str(tmp_path),
        ],
        env=terminal_env,
        cwd=tmp_path,
    )
    with half_speed_jobs(stack.worker):
        status = term.wait(timeout=120)

    screen = term.text()
    assert status == 0, screen
    for phase in ("upload", "queued", "running", "download", "all files", "2/2 files"):
        assert phase in screen, f"{phase!r} never shown:\n{screen}"
    assert re.search(r"big\d\.jpg: running \d+s", screen), "no time shown while running"
    assert "big0.jpg → " in screen and "big1.jpg → " in screen
    for name in names:
        assert cv2.imread(str(tmp_path / name.replace(".jpg", ".cartoonize.jpg"))) is not None


def test_ctrl_c_deletes_the_job_it_started(
    stack: LiveStack,
    terminal_env: dict[str, str],
    tmp_path: Path,
    redis_conn: redis.Redis,
    worker: Worker,
) -> None:
    photo_file(tmp_path)
    pause_consumers(worker)  # the job stays queued: Ctrl-C lands mid-job, for sure
    try:
        term = Terminal.spawn(
            [*ephemera_command(), "run", "anonymize", "photo.jpg"],
            env=terminal_env,
            cwd=tmp_path,
        )

        def queued_job() -> str | None:
            term.read(0.05)
            for key in redis_conn.scan_iter("eph:job:*"):
                return key.decode().removeprefix("eph:job:")
            return None

        job_id = wait_until(queued_job, timeout=30, message="the CLI never submitted the job")
        assert redis_conn.exists(f"eph:in:{job_id}"), "the upload is not stored"
        wait_until(
            lambda: (term.read(0.05), "queued" in term.text())[1],
            timeout=10,
            message="the display never showed the job queued",
        )
        os.write(term.fd, b"\x03")  # Ctrl-C, typed into the terminal
        status = term.wait(timeout=30)
    finally:
        resume_consumers(worker)

    assert status == 130, term.text()
    assert f"interrupted: deleted job {job_id}" in term.text()
    assert not redis_conn.exists(f"eph:in:{job_id}"), "the upload survived Ctrl-C"
    assert store.get_job(job_id).status == "cancelled"  # type: ignore[union-attr]


def test_photos_are_end_to_end_encrypted_unless_told_otherwise(
    stack: LiveStack, tmp_path: Path
) -> None:
    photo_file(tmp_path)
    for flags, expected in (((), True), (("--no-e2e",), False)):
        done = ephemera(stack, *flags, "run", "cartoonize", "photo.jpg", "--json", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        (line,) = [json.loads(text) for text in done.stdout.splitlines()]
        assert (line["status"], line["e2e"]) == ("succeeded", expected), line
        # Either way the file written is the plain result, opened on this side.
        assert cv2.imread(str(tmp_path / line["output"])) is not None
