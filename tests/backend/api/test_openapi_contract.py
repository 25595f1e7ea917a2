"""The OpenAPI contract agrees with the running service: Schemathesis, every check,
every phase (examples, coverage, fuzzing, stateful), against real gunicorn and a real
Celery worker, with valid keys for two clients. Any finding fails the test.

The fuzzer is an abusive client by design, so this web process lifts the per-IP
rate limit and the blocking after rejected uploads, and its key has the
``unlimited`` tier: otherwise the run would mostly measure the abuse controls
(which have their own tests in tests/security/).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis

from tests.conftest import Worker, migrate_worker_database
from tests.harness import REPO, ephemera_env, manage, running, wait_for_http
from tests.services import free_port

pytestmark = pytest.mark.slow

#: Examples per operation and phase: enough to reach every status, short on two cores.
MAX_EXAMPLES = 25
#: Excluded, with the reason. GET after DELETE answers the job's tombstone,
#: ``status: cancelled`` (DESIGN.md: every job ends succeeded, failed, cancelled or
#: expired, and tests/integration/test_job_flow.py relies on it); the tombstone holds
#: nothing of the photo. Schemathesis wants a 404 there.
EXCLUDED_CHECKS = ["use_after_free"]
#: A result downloads once: a second, well-formed download answers 410 result_gone,
#: as the contract documents. That is the resource's single use being spent, not
#: valid data being rejected, so 410 counts as acceptance for that operation only.
CONFIG = """
[[operations]]
include-path = "/api/v1/results/{token}"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", "401", "403", "404", "409", "410", "429", "5xx",
]
"""


def test_the_service_conforms_to_its_openapi_contract(
    worker: Worker, redis_conn: redis.Redis, tmp_path: Path
) -> None:
    port = free_port()
    env = ephemera_env(
        PORT=str(port),
        WEB_CONCURRENCY="1",
        EPHEMERA_IP_RATE="0",
        EPHEMERA_BLOCK_AFTER="1000000",
        PYTHONPATH=str(REPO),
    )
    migrate_worker_database(env)
    # Alice owns what the fuzzer creates; Bob is the peer the object-level
    # authorization check replays Alice's reads as (he must get 404).
    clients = {name: f"{name}-{uuid.uuid4().hex[:8]}" for name in ("alice", "bob")}
    identities = {
        name: manage(env, "create_api_key", "--name", client, "--tier", "unlimited").strip()
        for name, client in clients.items()
    }
    # A job may carry a webhook: its client needs a signing secret, or it is refused.
    for client in clients.values():
        manage(env, "webhook_secret", "--name", client)
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    auth_file = tmp_path / "auth.json"
    auth_file.write_text(
        json.dumps(
            {
                "auth": [
                    {
                        "name": name,
                        "fixedHeaders": [{"name": "Authorization", "value": f"Bearer {key}"}],
                    }
                    for name, key in identities.items()
                ]
            }
        )
    )

    with running("web", env=env, log_dir=tmp_path) as web:
        assert wait_for_http(web, port, "/healthz").status == 200
        command = [
            sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run",
            f"http://127.0.0.1:{port}/api/schema/?format=json",
            "--checks", "all",
            "--exclude-checks", ",".join(EXCLUDED_CHECKS),
            "--phases", "examples,coverage,fuzzing,stateful",
            "--auth-wfc", str(auth_file),
            "--max-examples", str(MAX_EXAMPLES),
            "--workers", "1",
            "--request-timeout", "90",
            "--no-color",
        ]  # fmt: skip
        run = subprocess.run(
            command,
            cwd=tmp_path,  # its example database stays out of the repository
            env={**env, "SCHEMATHESIS_HOOKS": "tests.backend.api.schemathesis_hooks"},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        web.ensure_running()

    report = run.stdout + run.stderr
    assert run.returncode == 0, report
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert f"✅  {phase}" in report, f"{phase} did not pass:\n{report}"
    assert "Internal Server Error" not in web.log()
