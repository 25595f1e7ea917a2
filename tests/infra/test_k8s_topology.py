"""What each workload is for: probes, replicas, Redis, networks, Ingress, scaling, secrets."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.infra.conftest import (
    K8S,
    OVERLAYS,
    find,
    pod_labels,
    pod_spec,
    render,
    workloads,
)

Obj = dict[str, Any]
PUBLIC_OVERLAYS = ("dev", "prod")


@pytest.fixture(scope="module", params=OVERLAYS)
def objects(request: pytest.FixtureRequest) -> list[Obj]:
    return list(render(K8S / "overlays" / request.param))


def _container(objects: list[Obj], kind: str, name: str) -> Obj:
    return dict(pod_spec(find(objects, kind, name))["containers"][0])


# --- namespace ---------------------------------------------------------------


def test_the_namespace_enforces_the_restricted_pod_security_level(objects: list[Obj]) -> None:
    labels = find(objects, "Namespace", "ephemera")["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"


def test_every_namespaced_object_is_in_the_ephemera_namespace(objects: list[Obj]) -> None:
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == "ephemera", obj["metadata"]["name"]


# --- labels ------------------------------------------------------------------


def test_every_object_and_pod_carries_the_app_labels(objects: list[Obj]) -> None:
    # From each kustomization's `labels:`: an overlay that forgets them fails here.
    app = {"app.kubernetes.io/name": "ephemera", "app.kubernetes.io/part-of": "ephemera"}
    for obj in objects:
        labels = obj["metadata"].get("labels") or {}
        assert app.items() <= labels.items(), f"{obj['kind']}/{obj['metadata']['name']}"
    for obj in workloads(objects):
        assert app.items() <= pod_labels(obj).items(), obj["metadata"]["name"]


def test_the_workload_selectors_never_change(objects: list[Obj]) -> None:
    # A Deployment's or StatefulSet's selector is immutable in a live cluster:
    # changing it means deleting the workload first.
    for obj in workloads(objects):
        if obj["kind"] in ("Deployment", "StatefulSet"):
            assert obj["spec"]["selector"] == {
                "matchLabels": {
                    "app.kubernetes.io/name": "ephemera",
                    "app.kubernetes.io/component": obj["metadata"]["name"],
                }
            }


# --- processes and probes -------------------------------------------------------------


def test_each_role_runs_through_the_one_entrypoint(objects: list[Obj]) -> None:
    for name in ("web", "worker", "webhooks", "beat", "flower"):
        container = _container(objects, "Deployment", name)
        assert "command" not in container, "the image's ENTRYPOINT is bin/ephemera"
        assert container["args"] == [name]


def test_web_probes_liveness_and_readiness_on_their_endpoints(objects: list[Obj]) -> None:
    web = _container(objects, "Deployment", "web")
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        headers = {h["name"]: h["value"] for h in web[probe]["httpGet"].get("httpHeaders", [])}
        allowed = find(objects, "ConfigMap", "ephemera-config")["data"]["DJANGO_ALLOWED_HOSTS"]
        assert headers.get("Host") in allowed.split(","), "Django would answer 400 to the probe"


def test_worker_startup_covers_model_loading_and_liveness_skips_the_broker(
    objects: list[Obj],
) -> None:
    worker = _container(objects, "Deployment", "worker")
    startup = worker["startupProbe"]
    assert startup["exec"]["command"] == ["python", "-m", "workers.healthcheck", "--ready"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    assert worker["livenessProbe"]["exec"]["command"] == [
        "python",
        "-m",
        "workers.healthcheck",
        "--alive",
    ]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert "celery" not in " ".join(worker[probe]["exec"]["command"])


def test_the_webhook_sender_probes_its_own_files(objects: list[Obj]) -> None:
    sender = _container(objects, "Deployment", "webhooks")
    for probe, state in (("livenessProbe", "--alive"), ("readinessProbe", "--ready")):
        command = sender[probe]["exec"]["command"]
        assert command == ["python", "-m", "workers.healthcheck", state, "--role", "webhooks"]


def test_beat_runs_exactly_once_and_is_recreated(objects: list[Obj]) -> None:
    beat = find(objects, "Deployment", "beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    assert not [
        o
        for o in objects
        if o["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")
        and o["spec"]["scaleTargetRef"]["name"] == "beat"
    ]


# --- Redis ---------------------------------------------------------------------


def _redis_pods(objects: list[Obj]) -> list[Obj]:
    return [
        o for o in workloads(objects) if pod_labels(o).get("app.kubernetes.io/component") == "redis"
    ]


def test_redis_keeps_nothing_and_never_evicts(objects: list[Obj]) -> None:
    (redis,) = _redis_pods(objects)
    container = next(c for c in pod_spec(redis)["containers"] if c["name"] == "redis")
    command = " ".join(container.get("command", []) + container.get("args", []))
    if redis["kind"] == "StatefulSet":
        scripts = find(objects, "ConfigMap", "redis-sentinel-scripts")["data"]
        command = scripts["redis.sh"]
    assert "--save ''" in command
    assert "--appendonly no" in command
    assert "--maxmemory-policy noeviction" in command
    assert re.search(r"--maxmemory \d+[mg]b", command)
    assert "requirepass" in command
    assert "/run/secrets/redis/password" in command or "common.sh" in command


def test_redis_maxmemory_stays_below_the_memory_limit(objects: list[Obj]) -> None:
    (redis,) = _redis_pods(objects)
    container = next(c for c in pod_spec(redis)["containers"] if c["name"] == "redis")
    text = " ".join(container.get("command", []) + container.get("args", []))
    if redis["kind"] == "StatefulSet":
        text = find(objects, "ConfigMap", "redis-sentinel-scripts")["data"]["redis.sh"]
    match = re.search(r"--maxmemory (\d+)([mg])b", text)
    assert match
    maxmemory = int(match[1]) * (1024 if match[2] == "g" else 1)
    limit = container["resources"]["limits"]["memory"]
    limit_mib = int(limit[:-2]) * (1024 if limit.endswith("Gi") else 1)
    assert maxmemory <= 0.8 * limit_mib, "Redis needs headroom above maxmemory"


# --- NetworkPolicies -------------------------------------------------------------


def _policies(objects: list[Obj]) -> list[Obj]:
    return [o for o in objects if o["kind"] == "NetworkPolicy"]


def _selects(selector: Obj, labels: dict[str, str]) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        present = expression["key"] in labels
        value = labels.get(expression["key"])
        operator = expression["operator"]
        if operator == "In" and value not in expression["values"]:
            return False
        if operator == "NotIn" and value in expression["values"]:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def _pods_by_component(objects: list[Obj]) -> dict[str, dict[str, str]]:
    return {pod_labels(o)["app.kubernetes.io/component"]: pod_labels(o) for o in workloads(objects)}


def _ingress_sources(objects: list[Obj], target: dict[str, str], port: int) -> list[Obj]:
    """The `from` peers of every policy that lets traffic into `target` on `port`."""
    peers = []
    for policy in _policies(objects):
        spec = policy["spec"]
        if "Ingress" not in spec["policyTypes"] or not _selects(spec["podSelector"], target):
            continue
        for rule in spec.get("ingress", []):
            ports = [p["port"] for p in rule.get("ports", [])]
            if not ports or port in ports:
                peers.extend(rule.get("from", [{}]))
    return peers


def test_everything_is_denied_in_both_directions_by_default(objects: list[Obj]) -> None:
    deny = find(objects, "NetworkPolicy", "default-deny-all")["spec"]
    assert deny["podSelector"] == {}
    assert sorted(deny["policyTypes"]) == ["Egress", "Ingress"]
    assert "ingress" not in deny
    assert "egress" not in deny


def test_no_policy_opens_a_port_to_everyone(objects: list[Obj]) -> None:
    for policy in _policies(objects):
        for rule in policy["spec"].get("ingress", []):
            assert rule.get("from"), f"{policy['metadata']['name']}: ingress from anywhere"
            assert rule.get("ports"), f"{policy['metadata']['name']}: every port"
        for rule in policy["spec"].get("egress", []):
            assert rule.get("ports"), f"{policy['metadata']['name']}: egress on every port"


def test_only_the_app_processes_reach_redis(objects: list[Obj]) -> None:
    pods = _pods_by_component(objects)
    peers = _ingress_sources(objects, pods["redis"], 6379)
    in_namespace = [p["podSelector"] for p in peers if "namespaceSelector" not in p]
    allowed = {
        component
        for component, labels in pods.items()
        if any(_selects(selector, labels) for selector in in_namespace)
    } - {"redis"}
    assert allowed == {"web", "worker", "webhooks", "beat", "flower"}


def test_only_the_ingress_controller_reaches_the_web_and_nothing_reaches_flower(
    objects: list[Obj],
) -> None:
    pods = _pods_by_component(objects)
    web_peers = _ingress_sources(objects, pods["web"], 8000)
    namespaces = {
        p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for p in web_peers
    }
    assert "ingress-nginx" in namespaces
    assert all("namespaceSelector" in p for p in web_peers), "no pod of ours talks to the web"
    assert _ingress_sources(objects, pods["flower"], 5555) == []


def test_clients_may_resolve_names_and_connect_to_redis(objects: list[Obj]) -> None:
    pods = _pods_by_component(objects)
    for component in ("web", "worker", "webhooks", "beat", "flower"):
        egress_ports = set()
        for policy in _policies(objects):
            spec = policy["spec"]
            if "Egress" in spec["policyTypes"] and _selects(spec["podSelector"], pods[component]):
                for rule in spec.get("egress", []):
                    egress_ports |= {p["port"] for p in rule.get("ports", [])}
        assert {53, 6379} <= egress_ports, component


def _egress_rules(objects: list[Obj], labels: dict[str, str]) -> list[Obj]:
    return [
        rule
        for policy in _policies(objects)
        if "Egress" in policy["spec"]["policyTypes"]
        and _selects(policy["spec"]["podSelector"], labels)
        for rule in policy["spec"].get("egress", [])
    ]


def test_only_the_webhook_sender_may_leave_the_cluster(objects: list[Obj]) -> None:
    # The workers hold decrypted photos: no way out but the database's port, so a
    # bug (or an exploit) in a model's code has nowhere to send one.
    def outward_ports(labels: dict[str, str]) -> set[int]:
        return {
            port["port"]
            for rule in _egress_rules(objects, labels)
            if not rule.get("to") or any("ipBlock" in peer for peer in rule["to"])
            for port in rule["ports"]
        } - {5432}

    outward = {
        component: ports
        for component, labels in _pods_by_component(objects).items()
        if (ports := outward_ports(labels))
    }
    assert outward == {"webhooks": {443}}


# --- Ingress -----------------------------------------------------------------------


def _size_bytes(value: str) -> int:
    match = re.fullmatch(r"(\d+)([kmg]?)", value.lower())
    assert match, value
    return int(match[1]) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[match[2]]


@pytest.mark.parametrize("overlay", PUBLIC_OVERLAYS)
def test_the_ingress_has_tls_and_a_body_limit_that_matches_uploads(overlay: str) -> None:
    objects = render(K8S / "overlays" / overlay)
    ingress = find(objects, "Ingress", "web")
    annotations = ingress["metadata"]["annotations"]
    upload = int(find(objects, "ConfigMap", "ephemera-config")["data"]["EPHEMERA_MAX_UPLOAD_BYTES"])
    body = _size_bytes(annotations["nginx.ingress.kubernetes.io/proxy-body-size"])
    # Larger than an upload at the limit with its multipart envelope, and not much more.
    assert upload < body <= upload + 1024**2
    assert annotations["nginx.ingress.kubernetes.io/force-ssl-redirect"] == "true"
    assert annotations["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "off"
    hosts = {h for rule in ingress["spec"]["rules"] for h in [rule["host"]]}
    tls_hosts = {h for tls in ingress["spec"]["tls"] for h in tls["hosts"]}
    assert hosts <= tls_hosts
    config = find(objects, "ConfigMap", "ephemera-config")["data"]
    assert hosts <= set(config["DJANGO_ALLOWED_HOSTS"].split(","))
    # HSTS: Django sends it on requests that came over TLS (X-Forwarded-Proto).
    assert config["EPHEMERA_BEHIND_TLS_PROXY"] == "true"
    assert int(config["EPHEMERA_HSTS_SECONDS"]) >= 31536000
    # Behind the controller every request comes from its pod: without trusted
    # proxies, per-IP limits would throttle all clients as one.
    assert config["EPHEMERA_TRUSTED_PROXIES"]


@pytest.mark.parametrize("overlay", PUBLIC_OVERLAYS)
def test_the_ingress_routes_only_the_api_to_the_web(overlay: str) -> None:
    objects = render(K8S / "overlays" / overlay)
    for ingress in [o for o in objects if o["kind"] == "Ingress"]:
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert path["backend"]["service"]["name"] == "web"
                assert path["path"] == "/api", "/metrics and the probes stay internal"
    flower = find(objects, "Service", "flower")
    assert flower["spec"]["type"] == "ClusterIP"


# --- scaling and disruption ----------------------------------------------------------


def test_the_base_renders_with_every_workload() -> None:
    objects = render(K8S / "base")
    for name in ("web", "worker", "webhooks", "beat", "flower", "redis"):
        find(objects, "Deployment", name)
    find(objects, "Job", "migrate")


def test_base_scales_workers_on_cpu() -> None:
    objects = render(K8S / "base")
    hpa = find(objects, "HorizontalPodAutoscaler", "worker")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "worker"
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"


def test_keda_replaces_the_cpu_hpa_and_watches_the_jobs_list() -> None:
    objects = render(K8S / "overlays" / "prod")
    assert not [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]
    scaled = find(objects, "ScaledObject", "worker")
    triggers = {t["type"]: t for t in scaled["spec"]["triggers"]}
    assert triggers["redis"]["metadata"]["listName"] == "jobs"
    assert triggers["redis"]["authenticationRef"]["name"] == "worker-redis"
    # In-flight (reserved) jobs are not in the list: CPU keeps busy workers.
    assert "cpu" in triggers
    window = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    hard_limit = int(
        find(objects, "ConfigMap", "ephemera-config")["data"]["EPHEMERA_TASK_HARD_LIMIT"]
    )
    assert window["stabilizationWindowSeconds"] > hard_limit
    text = (K8S / "components" / "keda" / "scaledobject.yaml").read_text(encoding="utf-8")
    assert "unacked" in text, "the kombu reserved-message caveat is documented"
    auth = find(objects, "TriggerAuthentication", "worker-redis")
    assert auth["spec"]["secretTargetRef"][0]["name"] == "ephemera-redis"


def test_web_and_worker_have_disruption_budgets(objects: list[Obj]) -> None:
    for name in ("web", "worker"):
        budget = find(objects, "PodDisruptionBudget", name)
        selector = budget["spec"]["selector"]["matchLabels"]
        assert _selects({"matchLabels": selector}, pod_labels(find(objects, "Deployment", name)))


def test_the_sentinel_overlay_replaces_redis_and_configures_the_master() -> None:
    objects = render(K8S / "overlays" / "prod-sentinel")
    assert not [
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "redis"
    ]
    redis = find(objects, "StatefulSet", "redis")
    assert redis["spec"]["replicas"] == 3
    assert find(objects, "Service", "redis-sentinel")["spec"]["ports"][0]["port"] == 26379
    config = find(objects, "ConfigMap", "ephemera-config")["data"]
    assert config["REDIS_SENTINEL_MASTER"] == "ephemera"
    scripts = find(objects, "ConfigMap", "redis-sentinel-scripts")["data"]
    assert "sentinel monitor ephemera" in scripts["sentinel.sh"]


# --- secrets -------------------------------------------------------------------------


def _referenced_secret_keys(objects: list[Obj]) -> set[tuple[str, str]]:
    refs: set[tuple[str, str]] = set()
    for obj in workloads(objects):
        spec = pod_spec(obj)
        for volume in spec.get("volumes", []):
            sources = []
            if "secret" in volume:
                sources.append(
                    {"secret": {"name": volume["secret"]["secretName"], **volume["secret"]}}
                )
            sources += volume.get("projected", {}).get("sources", [])
            for source in sources:
                if "secret" in source:
                    for item in source["secret"].get("items", []):
                        refs.add((source["secret"]["name"], item["key"]))
        for container in spec["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.add((ref["name"], ref["key"]))
    for obj in objects:
        if obj["kind"] == "TriggerAuthentication":
            for ref in obj["spec"]["secretTargetRef"]:
                refs.add((ref["name"], ref["key"]))
    return refs


def test_no_secret_is_committed_in_the_manifests(objects: list[Obj]) -> None:
    assert not [o for o in objects if o["kind"] == "Secret"]


def test_the_secret_templates_hold_every_referenced_key_and_only_placeholders(
    objects: list[Obj],
) -> None:
    path = K8S / "secrets" / "secrets.example.yaml"
    templates = {
        doc["metadata"]["name"]: doc
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8"))
        if doc
    }
    for name, key in _referenced_secret_keys(objects):
        assert key in templates[name]["stringData"], f"{name}.{key} missing from the template"
    for template in templates.values():
        assert "data" not in template, "templates use stringData with placeholders"
        for value in template["stringData"].values():
            assert "CHANGE_ME" in value, value


# --- End-to-end keys: the private halves reach worker pods only -----------------------


def _e2e_private_exposure(obj: Obj) -> list[str]:
    """Where a workload gets the workers' private end-to-end keys: env, envFrom or volumes."""
    spec = pod_spec(obj)
    found = []
    for container in [*spec.get("initContainers", []), *spec["containers"]]:
        for env in container.get("env", []):
            if env["name"].startswith("EPHEMERA_E2E_PRIVATE_KEYS"):
                found.append(f"env {env['name']}")
            if env.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == "ephemera-e2e":
                found.append(f"env from secret ({env['name']})")
        for source in container.get("envFrom", []):
            if source.get("secretRef", {}).get("name") == "ephemera-e2e":
                found.append("envFrom secret")
    for volume in spec.get("volumes", []):
        sources = [volume.get("secret", {})]
        sources += [
            item.get("secret", {}) for item in volume.get("projected", {}).get("sources", [])
        ]
        if any(
            source.get("secretName", source.get("name")) == "ephemera-e2e" for source in sources
        ):
            found.append(f"volume {volume['name']}")
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_worker_pods_get_the_private_end_to_end_keys(overlay: str) -> None:
    exposure = {
        obj["metadata"]["name"]: _e2e_private_exposure(obj)
        for obj in workloads(render(K8S / "overlays" / overlay))
    }
    assert exposure.pop("worker") == [
        "env EPHEMERA_E2E_PRIVATE_KEYS_FILE",
        "volume secrets",
    ]
    assert all(found == [] for found in exposure.values()), exposure


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_web_and_workers_read_the_public_keys_from_the_shared_config(overlay: str) -> None:
    objects = render(K8S / "overlays" / overlay)
    assert "EPHEMERA_E2E_PUBLIC_KEYS" in find(objects, "ConfigMap", "ephemera-config")["data"]
    for name in ("web", "worker"):
        containers = pod_spec(find(objects, "Deployment", name))["containers"]
        sources = [
            source.get("configMapRef", {}).get("name") for source in containers[0]["envFrom"]
        ]
        assert "ephemera-config" in sources
