"""Render a kustomize tree in Python: ``python infra/tools/kustomize_render.py DIR``.

No kustomize binary is published on the registries this project can reach, and
CI must not need kubectl or a cluster. This renderer implements only the
kustomization features that infra/k8s uses, and refuses any other field rather
than ignoring it, so a new feature cannot be rendered silently wrong:

- ``resources``: YAML files (several documents each) and directories holding a
  kustomization;
- ``components``: directories with ``kind: Component``; applied, as kustomize
  does, to everything accumulated so far (the parent's resources included);
- ``namespace``: set on every namespaced object;
- ``patches``: strategic merge (a mapping; matched by its own kind and name, or
  by ``target``) and JSON 6902 (a list of operations; needs ``target``);
  ``$patch: delete`` on a whole object removes it;
- ``images``: ``name`` with ``newName``, ``newTag`` or ``digest``.

Transformers run in kustomize's order: patches, namespace, images. The tests
compare this renderer with kubectl's embedded kustomize on every overlay.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED_FIELDS = {
    "apiVersion",
    "kind",
    "resources",
    "components",
    "namespace",
    "patches",
    "images",
}
# Kinds without a namespace, among those kustomize knows; any other kind (a
# custom resource included) is namespaced, as kustomize assumes.
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "IngressClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "APIService",
    "Node",
    "RuntimeClass",
}
# Strategic-merge keys of the object lists that our patches touch. A list not
# named here is replaced whole by the patch, as for a list without a merge key.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "envFrom": None,  # replaced whole (no merge key in the API either)
    "volumes": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
}
# Output order for `kubectl apply -f`: what others depend on comes first.
KIND_ORDER = [
    "Namespace",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "Service",
    "Deployment",
    "StatefulSet",
    "Job",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "NetworkPolicy",
    "Ingress",
]


class RenderError(Exception):
    """The kustomize tree cannot be rendered; the message says where and why."""


# --- loading -----------------------------------------------------------------


def _load_yaml_documents(path: Path) -> list[Obj]:
    try:
        docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except yaml.YAMLError as exc:
        raise RenderError(f"{path}: not valid YAML: {exc}") from exc
    objects = []
    for doc in docs:
        if doc is None:
            continue
        if not isinstance(doc, dict) or "kind" not in doc or "metadata" not in doc:
            raise RenderError(f"{path}: every document must be a Kubernetes object")
        objects.append(doc)
    return objects


def _kustomization_file(directory: Path) -> Path:
    for name in KUSTOMIZATION_FILES:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    raise RenderError(f"{directory}: no kustomization.yaml")


def _load_kustomization(directory: Path, *, expect_kind: str) -> Obj:
    path = _kustomization_file(directory)
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    unknown = set(data) - SUPPORTED_FIELDS
    if unknown:
        raise RenderError(
            f"{path}: fields {sorted(unknown)} are not supported by kustomize_render.py; "
            "implement and test them there, or do without"
        )
    kind = data.get("kind", "Kustomization")
    if kind != expect_kind:
        raise RenderError(f"{path}: kind {kind}, expected {expect_kind}")
    return data


# --- identity and selection ------------------------------------------------------


def _group_version(obj: Obj) -> tuple[str, str]:
    api_version = str(obj.get("apiVersion", ""))
    if "/" in api_version:
        group, version = api_version.split("/", 1)
        return group, version
    return "", api_version


def resource_id(obj: Obj) -> tuple[str, str, str, str]:
    group, _ = _group_version(obj)
    meta = obj.get("metadata", {})
    return (group, obj["kind"], meta.get("namespace", ""), meta["name"])


def _matches_target(obj: Obj, target: Obj) -> bool:
    group, version = _group_version(obj)
    meta = obj.get("metadata", {})
    checks = {
        "group": group,
        "version": version,
        "kind": obj.get("kind", ""),
        "name": meta.get("name", ""),
        "namespace": meta.get("namespace", ""),
    }
    for field, actual in checks.items():
        wanted = target.get(field)
        # kustomize matches target names and kinds as anchored regular expressions.
        if wanted is not None and not re.fullmatch(str(wanted), actual):
            return False
    selector = target.get("labelSelector")
    if selector:
        labels = meta.get("labels") or {}
        for term in str(selector).split(","):
            key, _, value = term.partition("=")
            if labels.get(key.strip()) != value.strip():
                return False
    unknown = set(target) - {*checks, "labelSelector"}
    if unknown:
        raise RenderError(f"patch target fields {sorted(unknown)} are not supported")
    return True


# --- strategic merge patch ---------------------------------------------------------


def _merge_list(base: list[Any], patch: list[Any], key: str | None) -> list[Any]:
    if key is None or not all(isinstance(item, dict) for item in [*base, *patch]):
        return [item for item in patch if not (isinstance(item, dict) and "$patch" in item)]
    merged = copy.deepcopy(base)
    for item in patch:
        if key not in item:
            raise RenderError(f"strategic merge: list item without its merge key {key!r}: {item}")
        index = next((i for i, old in enumerate(merged) if old.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                del merged[index]
            continue
        if index is None:
            merged.append(_strip_directives(copy.deepcopy(item)))
        else:
            merged[index] = strategic_merge(merged[index], item)
    return merged


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return value


def strategic_merge(base: Obj, patch: Obj) -> Obj:
    """Merge ``patch`` into a copy of ``base`` as kubectl's strategic merge does."""
    result = copy.deepcopy(base)
    for key, value in patch.items():
        if key.startswith("$"):
            if key == "$patch" and value in ("merge", None):
                continue
            raise RenderError(f"strategic merge directive {key}: {value} is not supported")
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = strategic_merge(result[key], value)
        elif isinstance(value, list) and isinstance(result.get(key), list):
            if key not in MERGE_KEYS and any(isinstance(v, dict) for v in value):
                # A list of objects that we never merged before: refuse to guess.
                raise RenderError(
                    f"strategic merge of list {key!r}: its merge key is unknown to "
                    "kustomize_render.py; add it to MERGE_KEYS (and a test) first"
                )
            result[key] = _merge_list(result[key], value, MERGE_KEYS.get(key))
        else:
            result[key] = _strip_directives(copy.deepcopy(value))
    return result


# --- JSON 6902 -------------------------------------------------------------------


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise RenderError(f"JSON patch path {path!r} must start with /")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _walk(doc: Any, parts: list[str], path: str) -> Any:
    for part in parts:
        try:
            doc = doc[int(part)] if isinstance(doc, list) else doc[part]
        except (KeyError, IndexError, ValueError) as exc:
            raise RenderError(f"JSON patch path {path!r} does not exist") from exc
    return doc


def json6902(obj: Obj, operations: list[Obj]) -> Obj:
    result = copy.deepcopy(obj)
    for op in operations:
        name, path = op.get("op"), str(op.get("path", ""))
        parts = _pointer(path)
        parent = _walk(result, parts[:-1], path)
        last = parts[-1]
        if name in ("add", "replace"):
            value = copy.deepcopy(op["value"])
            if isinstance(parent, list):
                if last == "-":
                    parent.append(value)
                elif name == "add":
                    parent.insert(int(last), value)
                else:
                    parent[int(last)] = value
            else:
                if name == "replace" and last not in parent:
                    raise RenderError(f"JSON patch replace: {path!r} does not exist")
                parent[last] = value
        elif name == "remove":
            _walk(result, parts, path)
            if isinstance(parent, list):
                del parent[int(last)]
            else:
                del parent[last]
        else:
            raise RenderError(f"JSON patch op {name!r} is not supported")
    return result


# --- transformers ------------------------------------------------------------------


def _apply_patches(objects: list[Obj], patches: list[Obj], directory: Path) -> list[Obj]:
    for entry in patches:
        unknown = set(entry) - {"path", "patch", "target"}
        if unknown:
            raise RenderError(f"{directory}: patch fields {sorted(unknown)} are not supported")
        if "path" in entry:
            text = (directory / entry["path"]).read_text(encoding="utf-8")
            where = f"{directory / entry['path']}"
        else:
            text, where = entry["patch"], f"{directory} (inline patch)"
        try:
            bodies = [doc for doc in yaml.safe_load_all(text) if doc is not None]
        except yaml.YAMLError as exc:
            raise RenderError(f"{where}: not valid YAML: {exc}") from exc
        target = entry.get("target")
        if len(bodies) == 1 and isinstance(bodies[0], list):
            if not target:
                raise RenderError(f"{where}: a JSON 6902 patch needs a target")
            hits = [i for i, obj in enumerate(objects) if _matches_target(obj, target)]
            if not hits:
                raise RenderError(f"{where}: the patch matches no object")
            for i in hits:
                objects[i] = json6902(objects[i], bodies[0])
            continue
        # One or more strategic-merge documents, each applied on its own.
        for body in bodies:
            if not isinstance(body, dict):
                raise RenderError(f"{where}: a patch is a mapping or a list of operations")
            objects = _apply_strategic_patch(objects, body, target, where)
    return objects


def _apply_strategic_patch(
    objects: list[Obj], body: Obj, target: Obj | None, where: str
) -> list[Obj]:
    if target:
        hits = [i for i, obj in enumerate(objects) if _matches_target(obj, target)]
    else:
        wanted = {"kind": re.escape(body["kind"]), "name": re.escape(body["metadata"]["name"])}
        if body["metadata"].get("namespace"):
            wanted["namespace"] = re.escape(body["metadata"]["namespace"])
        hits = [i for i, obj in enumerate(objects) if _matches_target(obj, wanted)]
    if not hits:
        raise RenderError(f"{where}: the patch for {body.get('kind')} matches no object")
    if body.get("$patch") == "delete":
        return [obj for i, obj in enumerate(objects) if i not in hits]
    for i in hits:
        objects[i] = strategic_merge(objects[i], body)
    return objects


def _set_namespace(objects: list[Obj], namespace: str) -> None:
    for obj in objects:
        if obj["kind"] not in CLUSTER_SCOPED:
            obj["metadata"]["namespace"] = namespace


def _split_image(image: str) -> tuple[str, str]:
    """``name`` and its ``:tag`` or ``@digest`` suffix (with the separator)."""
    if "@" in image:
        name, digest = image.split("@", 1)
        return name, "@" + digest
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon:]
    return image, ""


def _containers(node: Any) -> Iterable[Obj]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from (c for c in value if isinstance(c, dict))
            else:
                yield from _containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from _containers(item)


def _set_images(objects: list[Obj], images: list[Obj]) -> None:
    for rule in images:
        unknown = set(rule) - {"name", "newName", "newTag", "digest"}
        if unknown:
            raise RenderError(f"images fields {sorted(unknown)} are not supported")
        for obj in objects:
            for container in _containers(obj):
                name, suffix = _split_image(str(container.get("image", "")))
                if name != rule["name"]:
                    continue
                new_name = rule.get("newName", name)
                if rule.get("digest"):
                    suffix = "@" + str(rule["digest"])
                elif rule.get("newTag") is not None:
                    suffix = ":" + str(rule["newTag"])
                container["image"] = new_name + suffix


# --- the build -------------------------------------------------------------------


def _build(directory: Path, *, kind: str, accumulated: list[Obj]) -> list[Obj]:
    spec = _load_kustomization(directory, expect_kind=kind)
    objects = accumulated
    for entry in spec.get("resources") or []:
        path = (directory / entry).resolve()
        if path.is_dir():
            objects = objects + _build(path, kind="Kustomization", accumulated=[])
        elif path.is_file():
            objects = objects + _load_yaml_documents(path)
        else:
            raise RenderError(f"{directory}: resource {entry!r} does not exist")
        _check_unique(objects, directory)
    for entry in spec.get("components") or []:
        objects = _build((directory / entry).resolve(), kind="Component", accumulated=objects)
    objects = _apply_patches(objects, spec.get("patches") or [], directory)
    if spec.get("namespace"):
        _set_namespace(objects, str(spec["namespace"]))
    _set_images(objects, spec.get("images") or [])
    _check_unique(objects, directory)
    return objects


def _check_unique(objects: list[Obj], directory: Path) -> None:
    seen: set[tuple[str, str, str, str]] = set()
    for obj in objects:
        rid = resource_id(obj)
        if rid in seen:
            raise RenderError(f"{directory}: {rid[1]}/{rid[3]} is defined twice")
        seen.add(rid)


def _order(obj: Obj) -> tuple[int, str, str, str]:
    kind = obj["kind"]
    rank = KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)
    meta = obj["metadata"]
    return (rank, kind, meta.get("namespace", ""), meta["name"])


def render(directory: Path | str) -> list[Obj]:
    """All objects of the kustomization in ``directory``, fully transformed."""
    objects = _build(Path(directory).resolve(), kind="Kustomization", accumulated=[])
    return sorted(copy.deepcopy(objects), key=_order)


def dump(objects: list[Obj]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False, default_flow_style=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    args = parser.parse_args(argv)
    try:
        text = dump(render(args.directory))
    except RenderError as exc:
        print(f"kustomize_render: {exc}", file=sys.stderr)
        return 1
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
