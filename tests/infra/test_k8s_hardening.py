"""Every workload in every overlay carries every hardening setting of issue 5.

The cases are generated from the rendered manifests, so a workload added later
is checked by the same rules without anyone writing a test for it.
"""

from __future__ import annotations

from typing import Any

import pytest

from backend.webhooks.http import TOTAL_TIMEOUT
from tests.infra.conftest import K8S, OVERLAYS, find, pod_labels, pod_spec, render, workloads

Obj = dict[str, Any]

APP_UID = 10001
REDIS_UID = 10002


def _cases() -> list[Any]:
    cases = []
    for overlay in OVERLAYS:
        for obj in workloads(render(K8S / "overlays" / overlay)):
            name = f"{overlay}:{obj['kind']}/{obj['metadata']['name']}"
            cases.append(pytest.param(overlay, obj, id=name))
    return cases


CASES = _cases()
# Run-to-completion pods get no probes: activeDeadlineSeconds bounds them.
LONG_RUNNING = [case for case in CASES if case.values[1]["kind"] not in ("Job", "CronJob")]


def _containers(obj: Obj) -> list[Obj]:
    spec = pod_spec(obj)
    return [*spec.get("initContainers", []), *spec["containers"]]


def _hard_limit(objects: list[Obj]) -> int:
    return int(find(objects, "ConfigMap", "ephemera-config")["data"]["EPHEMERA_TASK_HARD_LIMIT"])


def test_there_are_workloads_to_check() -> None:
    names = {case.values[1]["metadata"]["name"] for case in CASES}
    assert {"web", "worker", "beat", "flower", "redis", "migrate"} <= names


@pytest.mark.parametrize(("overlay", "obj"), CASES)
def test_the_pod_runs_as_a_fixed_non_root_uid_with_seccomp(overlay: str, obj: Obj) -> None:
    context = pod_spec(obj)["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] in (APP_UID, REDIS_UID)
    assert context["runAsGroup"] == context["runAsUser"]
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}


@pytest.mark.parametrize(("overlay", "obj"), CASES)
def test_every_container_is_locked_down(overlay: str, obj: Obj) -> None:
    pod_uid = pod_spec(obj)["securityContext"]["runAsUser"]
    for container in _containers(obj):
        context = container.get("securityContext") or {}
        where = f"{obj['metadata']['name']}/{container['name']}"
        assert context.get("runAsNonRoot") is True, where
        assert context.get("runAsUser", pod_uid) == pod_uid, where
        assert context.get("readOnlyRootFilesystem") is True, where
        assert context.get("allowPrivilegeEscalation") is False, where
        assert context.get("privileged", False) is False, where
        assert context.get("capabilities", {}).get("drop") == ["ALL"], where
        assert not context.get("capabilities", {}).get("add"), where
        assert context.get("seccompProfile", {"type": "RuntimeDefault"}) == {
            "type": "RuntimeDefault"
        }, where


@pytest.mark.parametrize(("overlay", "obj"), CASES)
def test_no_service_account_token_is_mounted(overlay: str, obj: Obj) -> None:
    spec = pod_spec(obj)
    assert spec["automountServiceAccountToken"] is False
    account = spec.get("serviceAccountName")
    assert account, "each workload has its own ServiceAccount, never `default`"
    objects = render(K8S / "overlays" / overlay)
    assert find(objects, "ServiceAccount", account)["automountServiceAccountToken"] is False


@pytest.mark.parametrize(("overlay", "obj"), CASES)
def test_no_host_namespaces_and_no_host_paths(overlay: str, obj: Obj) -> None:
    spec = pod_spec(obj)
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(field), field
    for volume in spec.get("volumes", []):
        assert "hostPath" not in volume
        assert "persistentVolumeClaim" not in volume, "nothing of Ephemera is kept on a disk"
    assert "volumeClaimTemplates" not in obj["spec"]


@pytest.mark.parametrize(("overlay", "obj"), CASES)
def test_every_container_has_requests_and_limits(overlay: str, obj: Obj) -> None:
    for container in _containers(obj):
        resources = container.get("resources") or {}
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                assert resources.get(kind, {}).get(resource), (
                    f"{container['name']}: {kind}.{resource}"
                )


@pytest.mark.parametrize(("overlay", "obj"), CASES)
def test_tmp_is_a_memory_backed_empty_dir(overlay: str, obj: Obj) -> None:
    spec = pod_spec(obj)
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for container in _containers(obj):
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        assert "/tmp" in mounts, f"{container['name']} has no /tmp"
        volume = volumes[mounts["/tmp"]]
        assert volume.get("emptyDir", {}).get("medium") == "Memory", volume
        assert volume["emptyDir"].get("sizeLimit"), "a bound on what /tmp can take from memory"


@pytest.mark.parametrize(("overlay", "obj"), CASES)
def test_grace_period_outlasts_the_work_in_flight(overlay: str, obj: Obj) -> None:
    objects = render(K8S / "overlays" / overlay)
    grace = pod_spec(obj).get("terminationGracePeriodSeconds", 30)
    if pod_labels(obj)["app.kubernetes.io/component"] == "webhooks":
        assert grace > TOTAL_TIMEOUT, "a delivery in flight ends before SIGKILL"
    else:
        assert grace > _hard_limit(objects)


@pytest.mark.parametrize(("overlay", "obj"), LONG_RUNNING)
def test_long_running_containers_have_probes(overlay: str, obj: Obj) -> None:
    for container in pod_spec(obj)["containers"]:
        assert container.get("livenessProbe"), container["name"]
        assert container.get("readinessProbe"), container["name"]


@pytest.mark.parametrize(("overlay", "obj"), CASES)
def test_images_have_a_fixed_tag(overlay: str, obj: Obj) -> None:
    for container in _containers(obj):
        image = container["image"]
        name, _, tag = image.rpartition(":")
        assert "@sha256:" in image or (name and tag and tag != "latest"), image


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_jobs_are_bounded(overlay: str) -> None:
    job = find(render(K8S / "overlays" / overlay), "Job", "migrate")
    assert job["spec"]["activeDeadlineSeconds"] > 0
    assert job["spec"]["backoffLimit"] <= 3
    assert pod_spec(job)["restartPolicy"] == "Never"
    assert pod_spec(job)["containers"][0]["args"] == ["migrate"]
