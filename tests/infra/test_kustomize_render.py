"""infra/tools/kustomize_render.py: the kustomize features we use, and kustomize's verdict."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.infra.conftest import K8S, OVERLAYS, Tools, find, kustomize_render

RenderError = kustomize_render.RenderError


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
spec:
  replicas: 2
  template:
    spec:
      containers:
        - name: app
          image: example/app:1.0
          env:
            - name: A
              value: "1"
            - name: B
              value: "2"
        - name: sidecar
          image: example/sidecar@sha256:abc
"""


def _base(tmp_path: Path, kustomization: str) -> Path:
    _write(tmp_path / "deployment.yaml", DEPLOYMENT)
    _write(tmp_path / "kustomization.yaml", kustomization)
    return tmp_path


def test_it_merges_a_strategic_patch_by_merge_key(tmp_path: Path) -> None:
    _write(
        tmp_path / "patch.yaml",
        """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
spec:
  replicas: 1
  template:
    spec:
      containers:
        - name: app
          env:
            - name: B
              value: "20"
            - name: C
              value: "3"
""",
    )
    _base(tmp_path, "resources: [deployment.yaml]\npatches: [{path: patch.yaml}]\n")
    (app,) = kustomize_render.render(tmp_path)
    assert app["spec"]["replicas"] == 1
    container = app["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "example/app:1.0"
    assert container["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "20"},
        {"name": "C", "value": "3"},
    ]
    assert len(app["spec"]["template"]["spec"]["containers"]) == 2


def test_it_deletes_an_object_with_a_delete_patch(tmp_path: Path) -> None:
    _write(
        tmp_path / "gone.yaml",
        "$patch: delete\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app\n",
    )
    _base(tmp_path, "resources: [deployment.yaml]\npatches: [{path: gone.yaml}]\n")
    assert kustomize_render.render(tmp_path) == []


def test_it_applies_json6902_to_its_target(tmp_path: Path) -> None:
    patch = (
        "patches:\n"
        "  - target: {kind: Deployment, name: app}\n"
        "    patch: |-\n"
        "      - op: replace\n"
        "        path: /spec/replicas\n"
        "        value: 5\n"
        "      - op: add\n"
        "        path: /spec/template/spec/containers/0/args\n"
        "        value: [web]\n"
        "      - op: remove\n"
        "        path: /spec/template/spec/containers/1\n"
    )
    _base(tmp_path, "resources: [deployment.yaml]\n" + patch)
    (app,) = kustomize_render.render(tmp_path)
    assert app["spec"]["replicas"] == 5
    assert app["spec"]["template"]["spec"]["containers"][0]["args"] == ["web"]
    assert len(app["spec"]["template"]["spec"]["containers"]) == 1


def test_it_sets_images_and_namespace(tmp_path: Path) -> None:
    _base(
        tmp_path,
        "namespace: ns\nresources: [deployment.yaml]\nimages:\n"
        "  - {name: example/app, newName: reg.example/app, newTag: '2.0'}\n"
        "  - {name: example/sidecar, digest: 'sha256:def'}\n",
    )
    (app,) = kustomize_render.render(tmp_path)
    assert app["metadata"]["namespace"] == "ns"
    images = [c["image"] for c in app["spec"]["template"]["spec"]["containers"]]
    assert images == ["reg.example/app:2.0", "example/sidecar@sha256:def"]


def test_components_see_the_parents_resources(tmp_path: Path) -> None:
    _write(
        tmp_path / "component" / "kustomization.yaml",
        "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\n"
        "patches:\n  - patch: |-\n      apiVersion: apps/v1\n      kind: Deployment\n"
        "      metadata: {name: app}\n      spec: {replicas: 9}\n",
    )
    _base(tmp_path, "resources: [deployment.yaml]\ncomponents: [component]\n")
    (app,) = kustomize_render.render(tmp_path)
    assert app["spec"]["replicas"] == 9


@pytest.mark.parametrize(
    ("kustomization", "message"),
    [
        ("resources: [deployment.yaml]\nnamePrefix: x-\n", "not supported"),
        ("resources: [deployment.yaml, deployment.yaml]\n", "defined twice"),
        ("resources: [missing.yaml]\n", "does not exist"),
        (
            "resources: [deployment.yaml]\npatches:\n  - patch: |-\n      apiVersion: v1\n"
            "      kind: Service\n      metadata: {name: nothing}\n",
            "matches no object",
        ),
        (
            "resources: [deployment.yaml]\npatches:\n  - patch: |-\n      apiVersion: apps/v1\n"
            "      kind: Deployment\n      metadata: {name: app}\n      spec:\n"
            "        template: {spec: {tolerations: [{key: a}]}}\n",
            None,
        ),
    ],
)
def test_it_refuses_what_it_cannot_render_exactly(
    tmp_path: Path, kustomization: str, message: str | None
) -> None:
    _base(tmp_path, kustomization)
    if message is None:
        # A list of objects in a field that is absent from the base is simply set.
        kustomize_render.render(tmp_path)
        return
    with pytest.raises(RenderError, match=message):
        kustomize_render.render(tmp_path)


def test_it_refuses_to_guess_an_unknown_merge_key(tmp_path: Path) -> None:
    _write(
        tmp_path / "deployment.yaml",
        DEPLOYMENT + "      tolerations:\n        - key: a\n",
    )
    _write(
        tmp_path / "kustomization.yaml",
        "resources: [deployment.yaml]\npatches:\n  - patch: |-\n      apiVersion: apps/v1\n"
        "      kind: Deployment\n      metadata: {name: app}\n      spec:\n"
        "        template: {spec: {tolerations: [{key: b}]}}\n",
    )
    with pytest.raises(RenderError, match="merge key"):
        kustomize_render.render(tmp_path)


def _by_id(objects: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {
        (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in objects
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_it_renders_each_overlay_exactly_as_kustomize_does(tools: Tools, overlay: str) -> None:
    # kubectl here is only kustomize's reference implementation: no cluster.
    done = subprocess.run(
        [str(tools.kubectl), "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "KUBECONFIG": os.devnull},
    )
    assert done.returncode == 0, done.stderr
    theirs = _by_id([d for d in yaml.safe_load_all(done.stdout) if d])
    ours = _by_id(kustomize_render.render(K8S / "overlays" / overlay))
    assert sorted(ours) == sorted(theirs)
    for key, obj in ours.items():
        assert obj == theirs[key], f"{overlay}: {key} differs from kustomize's rendering"


def test_the_base_renders_with_every_workload(tools: Tools) -> None:
    objects = kustomize_render.render(K8S / "base")
    for name in ("web", "worker", "beat", "flower", "redis"):
        find(objects, "Deployment", name)
    find(objects, "Job", "migrate")
