"""The static checkers: kubernetes-validate (1.30), checkov, hadolint, PromQL syntax."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.infra.conftest import (
    CUSTOM_KINDS,
    DOCKER,
    K8S,
    OVERLAYS,
    ROOT,
    Tools,
    find,
    render,
)

KUBERNETES_VERSION = "1.30.0"
# Every metric the web exports (issue 5); alerts may only use these.
KNOWN_METRICS = {
    "ephemera_jobs_submitted_total",
    "ephemera_jobs_finished_total",
    "ephemera_job_queue_seconds",
    "ephemera_job_run_seconds",
    "ephemera_throttled_total",
    "ephemera_blocked_total",
    "ephemera_sweeper_removed_total",
    "ephemera_audit_findings",
    "ephemera_queue_length",
    "ephemera_workers_up",
}


def _run(argv: list[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, check=False, timeout=600, **kwargs
    )


# --- kubernetes-validate ---------------------------------------------------------


def _split(objects: list[dict[str, Any]], directory: Path) -> list[Path]:
    paths = []
    for i, obj in enumerate(objects):
        path = directory / f"{i:03d}-{obj['kind']}-{obj['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(obj), encoding="utf-8")
        paths.append(path)
    return paths


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_object_is_valid_for_kubernetes_1_30(
    tools: Tools, overlay: str, tmp_path: Path
) -> None:
    objects = render(K8S / "overlays" / overlay)
    builtin = [o for o in objects if o["kind"] not in CUSTOM_KINDS]
    paths = _split(builtin, tmp_path)
    done = _run([tools.kubernetes_validate, "--strict", "-k", KUBERNETES_VERSION, *paths])
    assert done.returncode == 0, done.stdout + done.stderr
    # An object without a schema is only a warning there: here it is a failure.
    passed = done.stdout.count(" passed for resource ")
    assert passed == len(builtin), done.stdout + done.stderr


def test_the_secret_templates_are_valid_for_kubernetes_1_30(tools: Tools, tmp_path: Path) -> None:
    docs = [
        d for d in yaml.safe_load_all((K8S / "secrets" / "secrets.example.yaml").read_text()) if d
    ]
    paths = _split(docs, tmp_path)
    done = _run([tools.kubernetes_validate, "--strict", "-k", KUBERNETES_VERSION, *paths])
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(" passed for resource ") == len(docs)


def test_kubernetes_validate_catches_a_broken_object(tools: Tools, tmp_path: Path) -> None:
    # Guards the check above: a typo in a field must fail, not pass quietly.
    objects = render(K8S / "overlays" / "dev")
    web = find(objects, "Deployment", "web")
    web["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFileSystem"] = True
    done = _run(
        [tools.kubernetes_validate, "--strict", "-k", KUBERNETES_VERSION, *_split([web], tmp_path)]
    )
    assert done.returncode != 0


# --- checkov ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def checkov_report(tools: Tools, rendered_dir: Path) -> dict[str, Any]:
    """One checkov run over every rendered overlay and the Dockerfile (it is slow)."""
    (rendered_dir / "Dockerfile").write_text((DOCKER / "Dockerfile").read_text(), encoding="utf-8")
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "LOG_LEVEL": "ERROR"}
    done = _run(
        [
            tools.checkov,
            "--directory",
            rendered_dir,
            "--framework",
            "kubernetes",
            "dockerfile",
            "--skip-download",
            "--output",
            "json",
        ],
        env=env,
    )
    assert done.returncode in (0, 1), done.stderr
    report = json.loads(done.stdout)
    reports = report if isinstance(report, list) else [report]
    return {r["check_type"]: r for r in reports}


def test_checkov_scanned_manifests_and_dockerfile(checkov_report: dict[str, Any]) -> None:
    assert set(checkov_report) == {"kubernetes", "dockerfile"}
    for report in checkov_report.values():
        assert report["summary"]["passed"] > 0
        assert report["summary"]["parsing_errors"] == 0


def test_checkov_finds_no_failed_check(checkov_report: dict[str, Any]) -> None:
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']})"
        for report in checkov_report.values()
        for c in report["results"]["failed_checks"]
    ]
    assert failed == []


def test_every_checkov_skip_states_its_reason(checkov_report: dict[str, Any]) -> None:
    skipped = [c for r in checkov_report.values() for c in r["results"]["skipped_checks"]]
    # Only these checks are skipped; each annotation carries its reason.
    assert {c["check_id"] for c in skipped} <= {"CKV_K8S_43", "CKV_K8S_35"}
    for check in skipped:
        reason = check["check_result"].get("suppress_comment") or ""
        assert len(reason) > 30, f"{check['check_id']} on {check['resource']}: no reason given"


# --- hadolint ---------------------------------------------------------------------


def test_hadolint_is_clean_at_warning_level(tools: Tools) -> None:
    done = _run(
        [tools.hadolint, "--failure-threshold", "warning", "--no-color", DOCKER / "Dockerfile"]
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_catches_a_bad_dockerfile(tools: Tools, tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install -y gcc\n", encoding="utf-8")
    done = _run([tools.hadolint, "--failure-threshold", "warning", "--no-color", bad])
    assert done.returncode != 0


# --- PromQL -------------------------------------------------------------------------


def _alert_rules() -> list[dict[str, Any]]:
    rule = yaml.safe_load((K8S / "components" / "monitoring" / "prometheusrule.yaml").read_text())
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def test_the_alerts_cover_what_issue_5_asks_for() -> None:
    expressions = {r["alert"]: r["expr"] for r in _alert_rules()}
    assert 'queue="jobs"' in expressions["EphemeraQueueBacklogGrowing"]
    assert 'queue="webhooks"' in expressions["EphemeraWebhookBacklogGrowing"]
    assert 'status="failed"' in expressions["EphemeraJobFailureRatioHigh"]
    assert 'kind="no_ttl"' in expressions["EphemeraKeysWithoutTTL"]
    assert "ephemera_workers_up" in expressions["EphemeraWorkersDown"]
    for rule in _alert_rules():
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]


def test_every_alert_parses_and_uses_only_exported_metrics(tools: Tools) -> None:
    script = (
        "import json, sys, promql_parser\n"
        "errors = {}\n"
        "for name, expr in json.load(sys.stdin).items():\n"
        "    try:\n"
        "        promql_parser.parse(expr)\n"
        "    except Exception as exc:\n"
        "        errors[name] = str(exc)\n"
        "print(json.dumps(errors))\n"
    )
    expressions = {r["alert"]: r["expr"] for r in _alert_rules()}
    expressions["_broken_on_purpose"] = "sum(rate(ephemera_workers_up[5m])"
    done = _run([tools.python, "-c", script], input=json.dumps(expressions))
    assert done.returncode == 0, done.stderr
    errors = json.loads(done.stdout)
    assert list(errors) == ["_broken_on_purpose"], errors
    for name, expr in expressions.items():
        for metric in re.findall(r"\bephemera_[a-z_]+", expr):
            base = re.sub(r"_(bucket|sum|count)$", "", metric)
            assert base in KNOWN_METRICS, f"{name}: unknown metric {metric}"


def test_the_tools_venv_is_outside_the_app_venv() -> None:
    # checkov's pins must never reach the application's environment.
    assert not (ROOT / ".venv" / "bin" / "checkov").exists()
