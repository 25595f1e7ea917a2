"""``ephemera``: run tasks on photos, list the tasks, delete jobs, from a terminal.

    export EPHEMERA_URL=http://127.0.0.1:8000 EPHEMERA_API_KEY=ek_...
    ephemera run anonymize photo.jpg -o out.jpg --param mode=pixelate
    ephemera run detect *.jpg --json
    ephemera tasks
    ephemera delete JOB_ID

On a terminal it shows progress (upload, queued / running with the time spent,
download; an overall bar for many files) on standard error. Otherwise it is
quiet: one line per output file, or one JSON object per file with ``--json``.
Ctrl-C deletes every job it started and has not finished.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
)
from rich.progress import Task as ProgressRow
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ephemera_client import checks
from ephemera_client.client import Client
from ephemera_client.errors import (
    ApiError,
    EphemeraError,
    JobTimeout,
    RateLimited,
    ServiceUnavailable,
)
from ephemera_client.models import Job, Task

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXTENSIONS = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "application/json": ".json",
}
#: Submits refused with 429 (rate, jobs in flight) or 503 (a backend restarting;
#: no job was made) are retried after ``Retry-After``, this many times.
SUBMIT_RETRIES = 5
#: The longest ``Retry-After`` a submit waits out. A longer one (a temporary
#: block, an exhausted hourly allowance) ends the file with its error at once,
#: instead of a command that sleeps for an hour and says nothing.
MAX_RETRY_WAIT = 60


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # soft_wrap: a message is one line, whatever the width (logs and pipes grep lines).
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        with Client(url=args.url, e2e=not args.no_e2e) as client:
            command: Callable[[Client, argparse.Namespace, Console], int] = args.command
            return command(client, args, err)
    except EphemeraError as exc:
        err.print(f"ephemera: {exc}", markup=False)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`ephemera tasks | head`): not an error of ours.
        sys.stderr.close()
        return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ephemera",
        description="Run Ephemera tasks on photos. The API key comes from EPHEMERA_API_KEY "
        "(never from the command line, where other users could read it).",
    )
    parser.add_argument(
        "--url", help="the service's base URL (default: EPHEMERA_URL or http://127.0.0.1:8000)"
    )
    parser.add_argument(
        "--no-e2e",
        action="store_true",
        help="send plain uploads even when the service publishes workers' keys "
        "(by default photos are end-to-end encrypted to the workers; see docs/e2e.md)",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run a task on one or more photos")
    run.add_argument("task", help="a task name (see `ephemera tasks`)")
    run.add_argument("files", nargs="+", type=Path, metavar="FILE", help="JPEG, PNG or WebP")
    run.add_argument(
        "-o",
        "--output",
        type=Path,
        help="output file (one input) or directory (several); default: next to each input, "
        "as NAME.TASK.EXT",
    )
    run.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a task param; VALUE is read as JSON when it parses, else as a string",
    )
    run.add_argument("--params", help="all params as one JSON object")
    run.add_argument(
        "--reference",
        type=Path,
        metavar="FILE",
        help="the second photo of a two-image task (face_verify), compared with each FILE",
    )
    run.add_argument(
        "--consent",
        action="store_true",
        help="state that the people in the photos agreed to a face comparison (face_verify)",
    )
    run.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per file; JSON results (detect) are included, not saved, "
        "unless -o is given",
    )
    run.add_argument(
        "-j", "--concurrency", type=int, default=4, help="files in flight at once (default 4)"
    )
    run.add_argument(
        "--timeout", type=float, default=300, help="seconds to wait for each job (default 300)"
    )
    run.set_defaults(command=_run)

    tasks = commands.add_parser("tasks", help="list the tasks and their params")
    tasks.add_argument("--json", action="store_true", help="print the catalogue as JSON")
    tasks.set_defaults(command=_tasks)

    delete = commands.add_parser("delete", help="delete jobs now (upload, result and token)")
    delete.add_argument("job_ids", nargs="+", metavar="ID")
    delete.set_defaults(command=_delete)
    return parser


# --- tasks and delete -----------------------------------------------------------------


def _tasks(client: Client, args: argparse.Namespace, err: Console) -> int:
    tasks = client.tasks()
    if args.json or not sys.stdout.isatty():
        print(json.dumps({"tasks": [_task_json(task) for task in tasks]}, indent=2))
        return EXIT_OK
    table = Table(title="Ephemera tasks", show_lines=True)
    table.add_column("task", style="bold")
    table.add_column("output")
    table.add_column("description")
    table.add_column("params (default)")
    for task in tasks:
        params = "\n".join(
            f"{name} ({json.dumps(prop.get('default'))})"
            for name, prop in task.params_schema.get("properties", {}).items()
        )
        table.add_row(task.name, task.output, task.description, params)
    Console().print(table)
    return EXIT_OK


def _task_json(task: Any) -> dict[str, Any]:
    return {
        "name": task.name,
        "description": task.description,
        "output": task.output,
        "params_schema": task.params_schema,
    }


def _delete(client: Client, args: argparse.Namespace, err: Console) -> int:
    status = EXIT_OK
    for job_id in args.job_ids:
        try:
            client.delete(job_id)
        except ApiError as exc:
            err.print(f"ephemera: {job_id}: {exc.code}: {exc.message}", markup=False)
            status = EXIT_FAILED
        else:
            print(f"deleted {job_id}")
    return status


# --- run ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    file: Path
    job: Job | None = None
    output: Path | None = None
    result: Any = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        job = self.job
        body: dict[str, Any] = {
            "file": str(self.file),
            "job": job.id if job else None,
            "status": job.status if job else "not_submitted",
            "e2e": bool(job and job.e2e),
            "output": str(self.output) if self.output else None,
            "error": self.error or (job.error.code if job and job.error else None),
        }
        if job is not None:
            body["metrics"] = {"queued_ms": job.queued_ms, "run_ms": job.run_ms}
        if self.result is not None:
            body["result"] = self.result
        return body

    @property
    def ok(self) -> bool:
        return self.error is None and self.job is not None and self.job.status == "succeeded"


@dataclass
class Jobs:
    """The jobs this run started and has not finished with, for Ctrl-C to delete."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    open: set[str] = field(default_factory=set)
    interrupted: threading.Event = field(default_factory=threading.Event)

    def started(self, client: Client, job_id: str) -> bool:
        """Remember a new job; False (and the job deleted) when Ctrl-C came first."""
        with self.lock:
            if not self.interrupted.is_set():
                self.open.add(job_id)
                return True
        client.delete(job_id)
        return False

    def finished(self, job_id: str) -> None:
        with self.lock:
            self.open.discard(job_id)

    def interrupt(self) -> list[str]:
        with self.lock:
            self.interrupted.set()
            left = sorted(self.open)
            self.open.clear()
        return left


class PhaseBar(BarColumn):
    """A bar that pulses while the job waits in the queue or runs: no bytes move then."""

    def render(self, task: ProgressRow) -> ProgressBar:
        if not task.fields.get("waiting"):
            return super().render(task)
        return ProgressBar(
            total=None,
            width=None if self.bar_width is None else max(1, self.bar_width),
            pulse=True,
            animation_time=task.get_time(),
            style=self.style,
            pulse_style=self.pulse_style,
        )


class CountColumn(ProgressColumn):
    """Bytes for a file's row (none while its job waits), files for the overall row."""

    def __init__(self) -> None:
        super().__init__()
        self.files = MofNCompleteColumn()
        self.bytes = DownloadColumn()

    def render(self, task: ProgressRow) -> Text:
        if task.fields.get("overall"):
            return Text(f"{self.files.render(task)} files")
        if task.fields.get("waiting"):
            return Text("")
        return self.bytes.render(task)


class ClockColumn(ProgressColumn):
    """Time since the row's file started (or the whole run began), frozen when it ends."""

    def render(self, task: ProgressRow) -> Text:
        started = task.fields.get("t0")
        if started is None:
            return Text("-:--:--", style="progress.elapsed")
        ended = task.fields.get("t1") or time.monotonic()
        return Text(str(timedelta(seconds=int(ended - started))), style="progress.elapsed")


class Display:
    """Progress on a terminal; nothing otherwise."""

    def __init__(self, err: Console, *, enabled: bool, count: int) -> None:
        self.enabled = enabled
        self.progress = Progress(
            TextColumn("{task.description}"),
            PhaseBar(),
            CountColumn(),
            ClockColumn(),
            console=err,
            transient=False,
            disable=not enabled,
        )
        self.overall: TaskID | None = None
        if enabled and count > 1:
            self.overall = self.progress.add_task(
                "[bold]all files", total=count, overall=True, t0=time.monotonic()
            )

    def __enter__(self) -> Display:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def add(self, name: str) -> TaskID:
        return self.progress.add_task(f"{escape(name)}: waiting", total=None, waiting=True, t0=None)

    def update(self, row: TaskID, **fields: Any) -> None:
        self.progress.update(row, **fields)
        if self.enabled and "description" in fields:
            # Draw each phase at least once, however short (a download can take 1 ms).
            self.progress.refresh()

    def done(self) -> None:
        if self.overall is not None:
            self.progress.advance(self.overall)
            if self.progress.tasks[self.overall].finished:
                self.progress.update(self.overall, t1=time.monotonic())


def _run(client: Client, args: argparse.Namespace, err: Console) -> int:
    try:
        params = _params(args.params, args.param)
    except ValueError as exc:
        err.print(f"ephemera: {exc}", markup=False)
        return EXIT_USAGE
    missing = [str(path) for path in [*args.files, args.reference] if path and not path.is_file()]
    if missing:
        err.print(f"ephemera: no such file: {', '.join(missing)}", markup=False)
        return EXIT_USAGE
    if len(args.files) > 1 and args.output is not None and not args.output.is_dir():
        err.print("ephemera: with several files, -o must be an existing directory", markup=False)
        return EXIT_USAGE
    clash = _same_target(args.files, args.output)
    if clash is not None:
        first, second = clash
        err.print(
            f"ephemera: {first} and {second} would write the same result file; "
            "rename one or run them apart (a result downloads only once)",
            markup=False,
        )
        return EXIT_USAGE
    task = next((task for task in client.tasks() if task.name == args.task), None)
    if task is None:
        err.print(f"ephemera: there is no task {args.task!r}; `ephemera tasks` lists them")
        return EXIT_USAGE
    interactive = err.is_terminal and not args.json
    jobs = Jobs()
    outcomes: list[Outcome] = []
    with (
        Display(err, enabled=interactive, count=len(args.files)) as display,
        ThreadPoolExecutor(max_workers=max(1, args.concurrency)) as pool,
    ):
        # On a terminal, poll each second to show queued -> running; else long-poll.
        step = 1 if interactive else 60
        futures: list[Future[Outcome]] = [
            pool.submit(
                _run_one,
                client,
                args,
                params,
                path,
                task=task,
                jobs=jobs,
                display=display,
                row=row,
                step=step,
            )
            # Every file has its row from the start, waiting for a free slot.
            for path, row in [(path, display.add(path.name)) for path in args.files]
        ]
        try:
            for future in futures:
                outcomes.append(future.result())
                if not interactive:
                    _report(outcomes[-1], args, sys.stdout)
        except KeyboardInterrupt:
            _interrupted(client, jobs, err)
            pool.shutdown(wait=False, cancel_futures=True)
            return EXIT_INTERRUPTED
    if interactive:
        for outcome in outcomes:
            if outcome.error:
                err.print(f"[red]✗[/red] {escape(str(outcome.file))}: {escape(outcome.error)}")
    return EXIT_OK if all(outcome.ok for outcome in outcomes) else EXIT_FAILED


def _interrupted(client: Client, jobs: Jobs, err: Console) -> None:
    for job_id in jobs.interrupt():
        try:
            client.delete(job_id)
        except EphemeraError as exc:
            err.print(f"ephemera: could not delete job {job_id}: {exc}", markup=False)
        else:
            err.print(f"interrupted: deleted job {job_id}", markup=False)


def _report(outcome: Outcome, args: argparse.Namespace, out: TextIO) -> None:
    if args.json:
        out.write(json.dumps(outcome.as_json()) + "\n")
    elif outcome.output is not None:
        out.write(f"{outcome.output}\n")
    if outcome.error and not args.json:
        sys.stderr.write(f"ephemera: {outcome.file}: {outcome.error}\n")
    out.flush()


def _run_one(
    client: Client,
    args: argparse.Namespace,
    params: dict[str, Any],
    path: Path,
    *,
    task: Task,
    jobs: Jobs,
    display: Display,
    row: TaskID,
    step: int,
) -> Outcome:
    outcome = Outcome(file=path)
    if jobs.interrupted.is_set():
        outcome.error = "interrupted"
        return outcome
    # File names are shown as text, never read as rich markup ("[red]x.jpg").
    label = escape(path.name)
    display.update(row, description=f"{label}: upload", waiting=False, t0=time.monotonic())
    try:
        image = path.read_bytes()
        reference = args.reference.read_bytes() if args.reference else None
        refused = _refused_here(task, [(path, image), (args.reference, reference)])
        if refused is not None:
            outcome.error = refused
            return outcome
        job = _submit(
            client, args, path, params, image=image, reference=reference, display=display, row=row
        )
        if not jobs.started(client, job.id):
            outcome.error = "interrupted"
            return outcome
        outcome.job = job
        job = _wait(
            client,
            job,
            name=label,
            timeout=args.timeout,
            step=step,
            display=display,
            row=row,
            interrupted=jobs.interrupted,
        )
        outcome.job = job
        if job.status != "succeeded":
            error = f": {job.error.code}: {job.error.message}" if job.error else ""
            outcome.error = f"job {job.status}{error}"
        else:
            _fetch(client, job, args, outcome, display=display, row=row)
        jobs.finished(job.id)
    except JobTimeout as exc:
        # Given up on: nothing of it should wait on the server for a reader who left.
        client.delete(exc.job_id)
        jobs.finished(exc.job_id)
        outcome.error = f"{exc}; deleted it"
    except (EphemeraError, OSError) as exc:
        outcome.error = f"{exc.code}: {exc.message}" if isinstance(exc, ApiError) else str(exc)
    finally:
        mark = "[green]✓[/green]" if outcome.ok else "[red]✗[/red]"
        where = f" → {escape(str(outcome.output))}" if outcome.output else ""
        display.update(
            row, description=f"{mark} {label}{where}", waiting=False, t1=time.monotonic()
        )
        display.done()
    return outcome


def _refused_here(task: Task, photos: Sequence[tuple[Path | None, bytes | None]]) -> str | None:
    """What the service would refuse of these photos, said without uploading them."""
    for path, data in photos:
        if path is not None and data is not None and (refused := checks.refusal(data, task)):
            code, message = refused
            return f"{code}: {path.name}: {message}; not uploaded"
    return None


def _submit(
    client: Client,
    args: argparse.Namespace,
    path: Path,
    params: dict[str, Any],
    *,
    image: bytes,
    reference: bytes | None,
    display: Display,
    row: TaskID,
) -> Job:
    for attempt in range(SUBMIT_RETRIES + 1):
        try:
            return client.submit(
                args.task,
                image,
                params,
                on_upload=lambda done, total: display.update(row, completed=done, total=total),
                reference=reference,
                consent=args.consent,
            )
        except (RateLimited, ServiceUnavailable) as exc:
            delay = exc.retry_after or 1
            if attempt == SUBMIT_RETRIES or delay > MAX_RETRY_WAIT:
                raise
            why = "rate limited" if isinstance(exc, RateLimited) else "service busy"
            display.update(row, description=f"{escape(path.name)}: {why}, retry in {delay:g}s")
            time.sleep(delay)
    raise AssertionError("unreachable")


def _wait(
    client: Client,
    job: Job,
    *,
    name: str,
    timeout: float,
    step: int,
    display: Display,
    row: TaskID,
    interrupted: threading.Event,
) -> Job:
    phase_start: dict[str, Any] = {"status": job.status, "at": time.monotonic()}

    def on_update(current: Job) -> None:
        if interrupted.is_set():
            # Ctrl-C: the main thread deletes the job; stop following it.
            raise EphemeraError("interrupted")
        if current.status != phase_start["status"]:
            phase_start.update(status=current.status, at=time.monotonic())
        spent = time.monotonic() - float(phase_start["at"])
        display.update(row, description=f"{name}: {current.status} {spent:.0f}s", waiting=True)

    on_update(job)
    return client.wait(job.id, timeout=timeout, step=step, on_update=on_update)


def _fetch(
    client: Client,
    job: Job,
    args: argparse.Namespace,
    outcome: Outcome,
    *,
    display: Display,
    row: TaskID,
) -> None:
    display.update(
        row, description=f"{escape(outcome.file.name)}: download", completed=0, waiting=False
    )
    download = client.download(
        job, on_progress=lambda done, total: display.update(row, completed=done, total=total)
    )
    content_type = download.content_type.split(";")[0].strip()
    if content_type == "application/json" and args.json and args.output is None:
        outcome.result = json.loads(download.data)
        return
    target = _target(outcome.file, args, content_type)
    # The result is someone's photo: readable by its owner only.
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(download.data)
    outcome.output = target


def _same_target(files: list[Path], output: Path | None) -> tuple[Path, Path] | None:
    """Two inputs whose results would land in one file (``_target``), the second
    overwriting the first; None when every input has a file of its own."""
    seen: dict[tuple[Path, str], Path] = {}
    for source in files:
        where = ((output or source.parent).resolve(), source.stem)
        if where in seen:
            return seen[where], source
        seen[where] = source
    return None


def _target(source: Path, args: argparse.Namespace, content_type: str) -> Path:
    suffix = EXTENSIONS.get(content_type, ".bin")
    name = f"{source.stem}.{args.task}{suffix}"
    if args.output is None:
        return source.with_name(name)
    if args.output.is_dir():
        return args.output / name
    return args.output


def _params(text: str | None, pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if text:
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--params is not JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise ValueError('--params must be a JSON object, such as \'{"mode": "blur"}\'')
        params.update(loaded)
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"--param {pair!r}: write NAME=VALUE, such as mode=pixelate")
        try:
            params[name] = json.loads(value)
        except json.JSONDecodeError:
            params[name] = value
    return params


if __name__ == "__main__":
    sys.exit(main())
