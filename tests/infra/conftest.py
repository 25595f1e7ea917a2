"""Fixtures for the infra checks: the checkers' venv and the rendered manifests.

The checkers live in .venv-tools (infra/tools/install.sh). A missing tool is a
failure that says how to install it, never a skip: a check that silently does
not run is worse than none. kubectl's embedded kustomize renders the manifests
(no cluster involved), exactly as `kubectl apply -k` would.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "infra" / "k8s"
DOCKER = ROOT / "infra" / "docker"
TOOLS_VENV = ROOT / ".venv-tools"
KUBECTL = TOOLS_VENV / "bin" / "kubectl"
OVERLAYS = ("dev", "prod", "prod-sentinel")
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}
# Custom resources: no schema in kubernetes-validate; tests/infra checks them.
CUSTOM_KINDS = {"PrometheusRule", "ServiceMonitor", "ScaledObject", "TriggerAuthentication"}

Obj = dict[str, Any]


def _load_module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


healthcheck = _load_module("ephemera_healthcheck", DOCKER / "healthcheck.py")


@dataclass(frozen=True)
class Tools:
    checkov: Path
    hadolint: Path
    kubectl: Path
    kubernetes_validate: Path
    python: Path


def _require(*paths: Path) -> None:
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        pytest.fail(
            f"infra checkers are missing ({', '.join(missing)}): run infra/tools/install.sh "
            "(make test does it first)",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def tools() -> Tools:
    found = Tools(
        checkov=TOOLS_VENV / "bin" / "checkov",
        hadolint=TOOLS_VENV / "bin" / "hadolint",
        kubectl=KUBECTL,
        kubernetes_validate=TOOLS_VENV / "bin" / "kubernetes-validate",
        python=TOOLS_VENV / "bin" / "python",
    )
    _require(*vars(found).values())
    return found


@functools.cache
def kustomize(directory: Path) -> str:
    """`kubectl kustomize directory`: the YAML that `kubectl apply -k` would send."""
    _require(KUBECTL)
    done = subprocess.run(
        [str(KUBECTL), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        # No cluster: an empty kubeconfig keeps kubectl from reading a real one.
        env={**os.environ, "KUBECONFIG": os.devnull},
    )
    if done.returncode != 0:
        pytest.fail(f"kubectl kustomize {directory} failed: {done.stderr}", pytrace=False)
    return done.stdout


@functools.cache
def _objects(directory: Path) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(kustomize(directory)) if doc]


def render(directory: Path) -> list[Obj]:
    """The rendered objects, a copy per call: a test may change what it gets."""
    return copy.deepcopy(_objects(directory))


def pod_spec(obj: Obj) -> Obj:
    spec = obj["spec"]
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return dict(spec["template"]["spec"])


def pod_labels(obj: Obj) -> dict[str, str]:
    spec = obj["spec"]
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return dict(spec["template"]["metadata"].get("labels") or {})


def workloads(objects: list[Obj]) -> list[Obj]:
    return [obj for obj in objects if obj["kind"] in WORKLOAD_KINDS]


def find(objects: list[Obj], kind: str, name: str) -> Obj:
    hits = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(hits) == 1, f"expected one {kind}/{name}, found {len(hits)}"
    return hits[0]


@pytest.fixture(scope="session")
def rendered_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One YAML file per overlay, for the command-line checkers."""
    directory = tmp_path_factory.mktemp("rendered")
    for name in OVERLAYS:
        text = kustomize(K8S / "overlays" / name)
        (directory / f"{name}.yaml").write_text(text, encoding="utf-8")
    return directory
