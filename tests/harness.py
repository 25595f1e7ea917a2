"""The one process harness of tests and benchmarks: real Ephemera processes.

Start one through ``bin/ephemera``, wait for it, talk HTTP to it, and always
stop it; or start a whole ``Stack`` (its own Redis database and SQL database,
a web under gunicorn, workers) for end-to-end tests and benchmarks.

Each process runs in a session of its own, so stopping it also reaches the
children it forked (gunicorn workers, Celery pool children) and nothing else.
"""

from __future__ import annotations

import base64
import http.client
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tests.services import free_port
from workers.process_names import FORK_SERVER_NAME, JOB_PROCESS_NAME

REPO = Path(__file__).resolve().parents[1]
ENTRYPOINT = REPO / "bin" / "ephemera"
VENV_BIN = REPO / ".venv" / "bin"

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T], *, timeout: float, message: str, interval: float = 0.05
) -> T:
    """Poll ``condition`` until it returns something truthy; fail with ``message`` after
    ``timeout`` seconds. Polling is the only way to see another process's state change."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} (waited {timeout:g}s)")
        time.sleep(interval)


def ephemera_env(**overrides: str) -> dict[str, str]:
    """This session's environment (Redis, secrets, model dir), with the venv's tools on PATH."""
    env = {**os.environ, **overrides}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


@dataclass
class Process:
    """One process started from ``bin/ephemera``, with its combined output in a file."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    #: A worker node's Celery name (``WORKER_HOSTNAME``), for remote control.
    hostname: str = ""

    def children(self) -> list[int]:
        """The pids of this process's direct children (gunicorn workers, pool processes).

        A worker node's fork server, also its parent's child, is not among them.
        """
        return [pid for pid in Process._children_of(self.pid) if not _named(pid, FORK_SERVER_NAME)]

    def job_processes(self, *, busy: bool) -> list[int]:
        """A worker node's job processes (forked by its fork servers).

        With ``busy``, only those running a job: a spare sleeps in a pipe read,
        waiting for its job id.
        """
        return [
            pid
            for server in self.fork_servers()
            for pid in Process._children_of(server)
            if _named(pid, JOB_PROCESS_NAME) and (not busy or not _waits_on_a_pipe(pid))
        ]

    def fork_servers(self) -> list[int]:
        """The processes that fork a worker node's job processes: the node's, and
        those of pool processes that outlived it."""
        return [
            pid
            for parent in (self.pid, *self.children())
            for pid in Process._children_of(parent)
            if _named(pid, FORK_SERVER_NAME)
        ]

    @staticmethod
    def _children_of(pid: int) -> list[int]:
        path = Path(f"/proc/{pid}/task/{pid}/children")
        try:
            return [int(child) for child in path.read_text().split()]
        except FileNotFoundError:
            return []

    @classmethod
    def start(cls, command: str, *, env: Mapping[str, str], log_dir: Path) -> Process:
        log_path = log_dir / f"{command}-{uuid.uuid4().hex[:6]}.log"
        with log_path.open("wb") as handle:
            proc = subprocess.Popen(
                [str(ENTRYPOINT), command],
                cwd=REPO,
                env=dict(env),
                stdout=handle,
                stderr=subprocess.STDOUT,
                # Its own process group: cleanup reaches its children and only them.
                start_new_session=True,
            )
        return cls(name=command, proc=proc, log_path=log_path)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def running(self) -> bool:
        return self.proc.poll() is None

    def ensure_running(self) -> None:
        if not self.running():
            raise AssertionError(
                f"{self.name} exited with {self.proc.returncode}; its log:\n{self.log()}"
            )

    def terminate(self) -> None:
        """SIGTERM to the process itself (not its group), as a container runtime sends it."""
        self.proc.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} did not exit within {timeout:g}s of SIGTERM; its log:\n{self.log()}"
            ) from None

    def stop(self, timeout: float = 15) -> None:
        """Cleanup that cannot be skipped: SIGTERM, then SIGKILL to the whole group."""
        if self.running():
            self.terminate()
            with suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=timeout)
        # Whatever is left of its group (an orphaned pool child) goes too.
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


@contextmanager
def running(command: str, *, env: Mapping[str, str], log_dir: Path) -> Iterator[Process]:
    process = Process.start(command, env=env, log_dir=log_dir)
    try:
        yield process
    finally:
        process.stop()


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def text(self) -> str:
        return self.body.decode(errors="replace")


def http_request(
    port: int,
    path: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 10,
) -> HttpResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        response = conn.getresponse()
        return HttpResponse(
            status=response.status,
            headers={key.lower(): value for key, value in response.getheaders()},
            body=response.read(),
        )
    finally:
        conn.close()


def wait_for_http(process: Process, port: int, path: str, *, timeout: float = 60) -> HttpResponse:
    """The first answer on ``path``: whatever its status, the server is up."""

    def answer() -> HttpResponse | None:
        process.ensure_running()
        try:
            return http_request(port, path, timeout=2)
        except OSError:
            return None

    return wait_until(
        answer, timeout=timeout, message=f"{process.name} never answered on port {port}"
    )


def basic_auth(credentials: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}


def multipart(
    fields: Mapping[str, str], files: Mapping[str, tuple[str, bytes]]
) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body and its content type, built by hand (stdlib only)."""
    boundary = f"ephemera-{uuid.uuid4().hex}"
    parts: list[bytes] = []
    for name, value in fields.items():
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        parts.append(f"{head}{value}\r\n".encode())
    for name, (filename, data) in files.items():
        head = (
            f"--{boundary}\r\nContent-Disposition: form-data; "
            f'name="{name}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        parts.append(head.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _run_python(argv: list[str], env: Mapping[str, str], *, timeout: float, what: str) -> str:
    """The project's Python with ``argv``, from the repository, with ``env``; its
    standard output. A non-zero exit fails with ``what`` and its standard error."""
    result = subprocess.run(
        [str(VENV_BIN / "python"), *argv],
        cwd=REPO,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"{what} failed:\n{result.stderr}")
    return result.stdout


def manage(env: Mapping[str, str], *args: str, timeout: float = 120) -> str:
    """``python manage.py ARGS`` in a subprocess with ``env``; its standard output."""
    return _run_python(
        ["manage.py", *args], env, timeout=timeout, what=f"manage.py {' '.join(args)}"
    )


def python_probe(code: str, *args: str, env: Mapping[str, str]) -> str:
    """Run ``code`` in a fresh Python interpreter with ``env``; its standard output.

    For what a process does from its start (imports, module-level set-up),
    which this process has done already.
    """
    return _run_python(["-c", code, *args], env, timeout=60, what="the probe")


def web_probe(code: str, *args: str, database: Path) -> str:
    """``python_probe`` with the web's settings and a SQLite database at ``database``."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "backend.settings",
        "DATABASE_URL": f"sqlite:///{database}",
    }
    return python_probe(code, *args, env=env)


def send_request(
    port: int, path: str, *, headers: Mapping[str, str], timeout: float
) -> http.client.HTTPConnection:
    """Send a GET and return its connection: the caller reads the answer later, with
    ``getresponse()``, so it can act while the request is in flight."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("GET", path, headers=dict(headers))
    return conn


def memory_holds(pid: int, needles: Iterable[bytes]) -> set[bytes]:
    """Which of ``needles`` are anywhere in the readable memory of process ``pid``.

    Reads ``/proc/<pid>/mem`` region by region, as a debugger or a memory dump
    of the process would see it (the test runner is the process's ancestor, so
    ptrace access is allowed).
    """
    wanted = set(needles)
    found: set[bytes] = set()
    longest = max(len(needle) for needle in wanted)
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for line in maps:
            fields = line.split()
            if not fields[1].startswith("r") or (len(fields) > 5 and fields[5] == "[vvar]"):
                continue
            start, end = (int(part, 16) for part in fields[0].split("-"))
            tail = b""
            for offset in range(start, end, 1 << 22):
                try:
                    mem.seek(offset)
                    chunk = tail + mem.read(min(1 << 22, end - offset))
                except OSError:
                    break
                found |= {needle for needle in wanted - found if needle in chunk}
                tail = chunk[-longest:]
    return found


@dataclass(frozen=True)
class ProcessStatus:
    """What ``/proc/<pid>/stat`` says of a process."""

    command: str
    state: str
    parent: int
    #: CPU time in clock ticks: its own user and system time, and those of
    #: the children it has reaped.
    user_ticks: int
    system_ticks: int
    children_user_ticks: int
    children_system_ticks: int

    @property
    def alive(self) -> bool:
        """Running or sleeping: not a zombie, which its parent has yet to reap."""
        return self.state != "Z"


def process_status(pid: int) -> ProcessStatus | None:
    """None once the process is gone (reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command sits in parentheses and may itself hold spaces or ")".
    head, _, tail = stat.rpartition(")")
    fields = tail.split()
    # After the command: state, parent, ...; utime, stime, cutime, cstime are fields 11-14.
    user, system, children_user, children_system = (int(field) for field in fields[11:15])
    return ProcessStatus(
        command=head.split("(", 1)[1],
        state=fields[0],
        parent=int(fields[1]),
        user_ticks=user,
        system_ticks=system,
        children_user_ticks=children_user,
        children_system_ticks=children_system,
    )


def smaps_rollup_kb(pid: int) -> dict[str, int]:
    """A process's memory totals (``Rss``, ``Pss``, ``Anonymous``, ...), in KiB."""
    lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
    return {name: int(value.split()[0]) for name, value in (line.split(":", 1) for line in lines)}


def _named(pid: int, name: str) -> bool:
    """A live process of that name."""
    status = process_status(pid)
    return status is not None and status.alive and status.command == name


def _waits_on_a_pipe(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/wchan").read_text().endswith("pipe_read")
    except (FileNotFoundError, ProcessLookupError):
        return True


def start_worker(
    env: Mapping[str, str], *, log_dir: Path, timeout: float = 120, role: str = "worker"
) -> Process:
    """A Celery worker through ``bin/ephemera {role}``, returned once it can work: a job
    worker (``worker``) once its models are loaded and its pool is up, the webhook
    sender (``webhooks``) once it consumes."""
    ready = Path(env["EPHEMERA_HEALTH_DIR"]) / f"{role}.ready"
    ready.unlink(missing_ok=True)
    worker = Process.start(role, env=env, log_dir=log_dir)
    worker.hostname = env.get("WEBHOOK_HOSTNAME" if role == "webhooks" else "WORKER_HOSTNAME", "")
    pool = int(env.get("WORKER_CONCURRENCY", 1)) if role == "worker" else 0

    def started() -> bool:
        worker.ensure_running()
        return ready.exists() and len(worker.children()) >= pool

    try:
        wait_until(started, timeout=timeout, message=f"the {role} process did not start")
    except AssertionError:
        worker.stop()
        raise
    return worker


@dataclass
class Stack:
    """A whole Ephemera on this machine: a Redis URL, a migrated SQL database, processes.

    ``env`` is what every process of the stack reads; ``key`` an API key of the
    ``unlimited`` tier for the stack's own clients.
    """

    env: dict[str, str]
    workdir: Path
    key: str
    processes: list[Process]

    @classmethod
    def create(
        cls, *, redis_url: str, workdir: Path, database_url: str | None = None, **overrides: str
    ) -> Stack:
        workdir.mkdir(parents=True, exist_ok=True)
        env = ephemera_env(
            REDIS_URL=redis_url,
            DATABASE_URL=database_url or f"sqlite:///{workdir / 'db.sqlite3'}",
            EPHEMERA_VAR_DIR=str(workdir / "var"),
            EPHEMERA_HEALTH_DIR=str(workdir / "health"),
            EPHEMERA_MODEL_DIR=os.environ.get("EPHEMERA_MODEL_DIR", str(REPO / "var" / "models")),
            EPHEMERA_IP_RATE="0",
            **overrides,
        )
        manage(env, "migrate", "--noinput")
        key = manage(env, "create_api_key", "--name", "stack", "--tier", "unlimited").strip()
        return cls(env=env, workdir=workdir, key=key, processes=[])

    def web(self, **env: str) -> tuple[Process, int]:
        port = int(env.pop("PORT", 0)) or free_port()
        web = Process.start("web", env={**self.env, "PORT": str(port), **env}, log_dir=self.workdir)
        self.processes.append(web)
        wait_for_http(web, port, "/healthz")
        return web, port

    def worker(self, **env: str) -> Process:
        worker = start_worker({**self.env, **env}, log_dir=self.workdir)
        self.processes.append(worker)
        return worker

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
