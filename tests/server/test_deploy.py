"""The Kubernetes manifests of deploy/kubernetes, checked offline and without a kustomize binary.

The base and the demo overlay are rendered by `build`, the few kustomize features they use
(resources, namespace, images, strategic-merge and JSON 6902 patches; anything else is refused,
so a kustomization cannot silently outgrow it), and where `kubectl` is installed its built-in
kustomize must render the same. Every document is validated strictly against the schemas of
Kubernetes 1.30 (kubernetes-validate), then the properties a deployment relies on are checked:
probes, a non-root read-only container, the spec ConfigMaps mounted read-only at /specs and equal
to tool_specs/, Secret keys, Services, the autoscaler, the disruption budget and the network
policy. Each check returns its problems; `test_each_check_catches_its_fault` breaks the rendered
base once per check to show the check can fail.
"""

from __future__ import annotations

import copy
import importlib.util
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from gateway.settings import Settings
from tests.support import REPO

KUBERNETES = REPO / "deploy" / "kubernetes"
BASE = KUBERNETES / "base"
DEMO = KUBERNETES / "overlays" / "demo"
SECRET_EXAMPLE = BASE / "secret.example.yaml"
SPECS = REPO / "tool_specs"
SERVICES = ("retently", "refiner")
KUBERNETES_VERSION = "1.30"
GATEWAY = "mcp-gateway"
"""The gateway's Deployment, its container image and its Service."""
GATEWAY_PORT = 8080
UPSTREAM_VARIABLES = ("RETENTLY_API_URL", "REFINER_API_URL", "REFINER_AUTH_URL")

Doc = dict[str, Any]


# The subset of kustomize the manifests use.

KUSTOMIZATION_KEYS = frozenset({"apiVersion", "kind", "resources", "namespace", "images",
                                "patches"})
MERGED_BY_NAME = frozenset({"containers", "initContainers", "env", "volumes", "volumeMounts"})
"""Lists a strategic-merge patch merges item by item (by `name`); any other list is replaced."""
CLUSTER_SCOPED = frozenset({"Namespace"})


class Unsupported(Exception):
    """A kustomization uses what `build` does not implement."""


def build(root: Path) -> list[Doc]:
    """The documents `kustomize build root` prints, in resource order."""
    kustomization = yaml.safe_load((root / "kustomization.yaml").read_text(encoding="utf-8"))
    unknown = set(kustomization) - KUSTOMIZATION_KEYS
    if unknown:
        raise Unsupported(f"{root}: {sorted(unknown)}")
    documents: list[Doc] = []
    for entry in kustomization.get("resources", []):
        path = root / entry
        documents.extend(build(path) if path.is_dir() else load(path))
    for entry in kustomization.get("patches", []):
        apply_patch(documents, entry, root)
    if "namespace" in kustomization:
        for document in documents:
            if document["kind"] not in CLUSTER_SCOPED:
                document["metadata"]["namespace"] = kustomization["namespace"]
    for image in kustomization.get("images", []):
        set_image(documents, image)
    return documents


def load(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def apply_patch(documents: list[Doc], entry: Doc, root: Path) -> None:
    if set(entry) - {"path", "patch", "target"}:
        raise Unsupported(f"patch fields {sorted(entry)}")
    text = (root / entry["path"]).read_text(encoding="utf-8") if "path" in entry \
        else entry["patch"]
    patch = yaml.safe_load(text)
    target = entry.get("target") or {"kind": patch["kind"], "name": patch["metadata"]["name"]}
    if set(target) - {"kind", "name"}:
        raise Unsupported(f"patch target fields {sorted(target)}")
    matched = [i for i, d in enumerate(documents)
               if d["kind"] == target["kind"] and d["metadata"]["name"] == target["name"]]
    if not matched:
        raise Unsupported(f"patch target {target} matches nothing")
    for i in matched:
        documents[i] = (json_patch(documents[i], patch) if isinstance(patch, list)
                        else strategic_merge(documents[i], patch))


def strategic_merge(target: Any, patch: Any, key: str = "") -> Any:
    """`patch` merged into `target`: maps key by key (a null deletes), lists of MERGED_BY_NAME
    item by item by name, every other value replaced."""
    if isinstance(target, dict) and isinstance(patch, dict):
        if any(k.startswith("$") for k in patch):
            raise Unsupported(f"strategic-merge directive in {sorted(patch)}")
        merged = dict(target)
        for k, v in patch.items():
            if v is None:
                merged.pop(k, None)
            else:
                merged[k] = strategic_merge(target[k], v, k) if k in target else v
        return merged
    if isinstance(target, list) and isinstance(patch, list) and key in MERGED_BY_NAME:
        merged_list = list(target)
        for item in patch:
            names = [i for i, old in enumerate(merged_list) if old["name"] == item["name"]]
            if names:
                merged_list[names[0]] = strategic_merge(merged_list[names[0]], item)
            else:
                merged_list.append(item)
        return merged_list
    return patch


def json_patch(document: Doc, operations: list[Doc]) -> Doc:
    """RFC 6902 add, replace and remove."""
    patched = copy.deepcopy(document)
    for operation in operations:
        *parents, last = [p.replace("~1", "/").replace("~0", "~")
                          for p in operation["path"].split("/")[1:]]
        node: Any = patched
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        op = operation["op"]
        if op not in ("add", "replace", "remove"):
            raise Unsupported(f"JSON patch op {op!r}")
        if isinstance(node, list):
            index = len(node) if last == "-" else int(last)
            if op == "add":
                node.insert(index, operation["value"])
            elif op == "replace":
                node[index] = operation["value"]
            else:
                del node[index]
        elif op == "remove":
            del node[last]
        else:
            node[last] = operation["value"]
    return patched


def set_image(documents: list[Doc], image: Doc) -> None:
    if set(image) - {"name", "newName", "newTag"}:
        raise Unsupported(f"image fields {sorted(image)}")
    for document in documents:
        for container in containers(document):
            name = container["image"].split("@")[0].rsplit(":", 1)[0] \
                if ":" in container["image"].rsplit("/", 1)[-1] else container["image"]
            if name == image["name"]:
                tag = image.get("newTag") or container["image"][len(name) + 1:] or None
                container["image"] = image.get("newName", name) + (f":{tag}" if tag else "")


# Lookups.

def pod_template(document: Doc) -> Doc | None:
    if document["kind"] in ("Deployment", "StatefulSet"):
        template: Doc = document["spec"]["template"]
        return template
    return None


def containers(document: Doc) -> list[Doc]:
    template = pod_template(document)
    if template is None:
        return []
    spec = template["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def workloads(documents: list[Doc]) -> list[Doc]:
    return [d for d in documents if pod_template(d) is not None]


def find(documents: list[Doc], kind: str, name: str) -> Doc | None:
    return next((d for d in documents
                 if d["kind"] == kind and d["metadata"]["name"] == name), None)


def gateway_of(documents: list[Doc]) -> tuple[Doc, Doc]:
    """The gateway's Deployment and its container."""
    deployment = find(documents, "Deployment", GATEWAY)
    assert deployment is not None, "no Deployment named mcp-gateway"
    container = next(c for c in containers(deployment) if c["image"].split(":")[0] == GATEWAY)
    return deployment, container


def selects(selector: Doc | None, labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels, or a bare map as a Service has) selects labels."""
    if not selector:
        return False
    if set(selector) - {"matchLabels"} and "matchLabels" in selector:
        raise Unsupported(f"selector {selector}")
    wanted = selector.get("matchLabels", selector) if "matchLabels" in selector else selector
    return all(labels.get(k) == v for k, v in wanted.items())


def pod_labels(document: Doc) -> dict[str, str]:
    template = pod_template(document)
    assert template is not None
    labels: dict[str, str] = template["metadata"]["labels"]
    return labels


def environment(documents: list[Doc], container: Doc) -> dict[str, Any]:
    """The container's variables: a text value, or ("secret", name, key) for a secretKeyRef.
    A ConfigMap that does not exist contributes nothing (check_references reports it)."""
    variables: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        config = find(documents, "ConfigMap", source["configMapRef"]["name"])
        variables.update((config or {}).get("data", {}))
    for variable in container.get("env", []):
        if "value" in variable:
            variables[variable["name"]] = variable["value"]
        else:
            ref = variable["valueFrom"]["secretKeyRef"]
            variables[variable["name"]] = ("secret", ref["name"], ref["key"])
    return variables


def port_number(workload: Doc, port: int | str) -> int | None:
    """A container port of the workload, by number or by name."""
    for container in containers(workload):
        for declared in container.get("ports", []):
            if port in (declared["containerPort"], declared.get("name")):
                number: int = declared["containerPort"]
                return number
    return None


def service_backend(documents: list[Doc], host: str, port: int) -> tuple[Doc, int] | None:
    """The workload and container port behind Service `host` (or host.namespace...) on `port`."""
    service = find(documents, "Service", host.split(".")[0])
    if service is None:
        return None
    for declared in service["spec"]["ports"]:
        if declared["port"] == port:
            for workload in workloads(documents):
                if selects(service["spec"]["selector"], pod_labels(workload)):
                    number = port_number(workload, declared.get("targetPort", port))
                    if number is not None:
                        return workload, number
    return None


# Checks: each returns its problems, [] when the documents are fine.

Check = Callable[[list[Doc], list[Doc]], list[str]]
"""(rendered documents, Secrets applied apart from them) -> problems."""


def check_probes(documents: list[Doc], _secrets: list[Doc]) -> list[str]:
    deployment, container = gateway_of(documents)
    problems = []
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container.get(probe, {}).get("httpGet", {})
        if get.get("path") != path or port_number(deployment, get.get("port", 0)) != GATEWAY_PORT:
            problems.append(f"{probe} is not GET {path} on port {GATEWAY_PORT}: {get}")
    if container.get("args") != ["serve"] or "command" in container:
        problems.append(f"the gateway container does not run `serve`: {container.get('args')}")
    return problems


def check_security(documents: list[Doc], _secrets: list[Doc]) -> list[str]:
    """Every pod: non-root, read-only root, no privilege escalation, no capabilities, the
    runtime's seccomp profile; the gateway's image user, 10001."""
    problems = []
    for workload in workloads(documents):
        template = pod_template(workload)
        assert template is not None
        pod = template["spec"].get("securityContext", {})
        name = workload["metadata"]["name"]
        for container in containers(workload):
            own = container.get("securityContext", {})
            merged = {**pod, **own}
            where = f"{name}/{container['name']}"
            if merged.get("runAsNonRoot") is not True:
                problems.append(f"{where}: runAsNonRoot is not true")
            if own.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: readOnlyRootFilesystem is not true")
            if own.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation is not false")
            if own.get("capabilities", {}).get("drop") != ["ALL"] \
                    or own.get("capabilities", {}).get("add"):
                problems.append(f"{where}: capabilities are not drop [ALL]")
            if merged.get("seccompProfile", {}).get("type") != "RuntimeDefault":
                problems.append(f"{where}: seccompProfile is not RuntimeDefault")
            if container["image"].split(":")[0] == GATEWAY and merged.get("runAsUser") != 10001:
                problems.append(f"{where}: runAsUser is not 10001")
            if merged.get("runAsUser", 0) == 0:
                problems.append(f"{where}: runAsUser is not set to a non-root uid")
    return problems


def check_resources(documents: list[Doc], _secrets: list[Doc]) -> list[str]:
    return [f"{w['metadata']['name']}/{c['name']}: no {kind} {resource}"
            for w in workloads(documents) for c in containers(w)
            for kind in ("requests", "limits") for resource in ("cpu", "memory")
            if resource not in c.get("resources", {}).get(kind, {})]


def check_specs(documents: list[Doc], _secrets: list[Doc]) -> list[str]:
    """Each service folder of tool_specs/ is a ConfigMap holding exactly its files, mounted
    whole and read-only at /specs/<service>, and the gateway reads /specs and watches it."""
    deployment, container = gateway_of(documents)
    template = pod_template(deployment)
    assert template is not None
    volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
    mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
    problems = []
    variables = environment(documents, container)
    if variables.get("GATEWAY_SPECS_DIR", "/specs") != "/specs":
        problems.append(f"GATEWAY_SPECS_DIR is {variables['GATEWAY_SPECS_DIR']}, not /specs")
    if variables.get("GATEWAY_SPECS_WATCH") != "true":
        problems.append("GATEWAY_SPECS_WATCH is not true: a ConfigMap update would not reload")
    for service in SERVICES:
        mount = mounts.get(f"/specs/{service}")
        if mount is None:
            problems.append(f"nothing is mounted at /specs/{service}")
            continue
        if mount.get("readOnly") is not True or "subPath" in mount:
            problems.append(f"/specs/{service} is not mounted whole and read-only: {mount}")
        source = volumes.get(mount["name"], {}).get("configMap")
        if source is None or "items" in source:
            problems.append(f"/specs/{service} is not a whole ConfigMap: {source}")
            continue
        config = find(documents, "ConfigMap", source["name"])
        files = {p.name: p.read_text(encoding="utf-8")
                 for p in sorted((SPECS / service).iterdir()) if p.suffix in (".yaml", ".yml")}
        data = (config or {}).get("data", {})
        missing = sorted(set(files) - set(data))
        extra = sorted(set(data) - set(files))
        stale = sorted(k for k in set(files) & set(data) if files[k] != data[k])
        if missing or extra or stale:
            problems.append(f"ConfigMap {source['name']} differs from tool_specs/{service}: "
                            f"missing {missing}, extra {extra}, stale {stale}; run "
                            "deploy/kubernetes/render-specs.py")
    return problems


def check_references(documents: list[Doc], secrets: list[Doc]) -> list[str]:
    """Every ConfigMap and Secret key a pod refers to exists; the keys come from a Secret."""
    available = [*documents, *secrets]
    problems: list[str] = []
    for workload in workloads(documents):
        for container in containers(workload):
            problems.extend(f"no ConfigMap {source['configMapRef']['name']}"
                            for source in container.get("envFrom", [])
                            if find(documents, "ConfigMap", source["configMapRef"]["name"]) is None)
            for name, value in environment(documents, container).items():
                if isinstance(value, tuple):
                    secret = find(available, "Secret", value[1]) or {}
                    keys = {*secret.get("data", {}), *secret.get("stringData", {})}
                    if value[2] not in keys:
                        problems.append(f"{name}: Secret {value[1]} has no key {value[2]}")
    _, gateway = gateway_of(documents)
    variables = environment(documents, gateway)
    return problems + [f"{name} is not read from a Secret"
                       for name in ("GATEWAY_SECRET_KEY", "GATEWAY_AUDIT_KEY")
                       if not isinstance(variables.get(name), tuple)]


def check_settings(documents: list[Doc], _secrets: list[Doc]) -> list[str]:
    """Every GATEWAY_* variable names a setting; the public URL (or loopback-only) that listening
    on every interface needs is there; Redis and the upstreams in the cluster are Services."""
    _, container = gateway_of(documents)
    variables = environment(documents, container)
    known = {f"GATEWAY_{name.upper()}" for name in Settings.model_fields}
    problems = [f"{name} is not a setting" for name in sorted(variables)
                if name.startswith("GATEWAY_") and name not in known]
    public = variables.get("GATEWAY_PUBLIC_URL") or ""
    if not (public.startswith("https://") or variables.get("GATEWAY_LOOPBACK_ONLY") == "true"):
        problems.append("neither an https GATEWAY_PUBLIC_URL nor GATEWAY_LOOPBACK_ONLY=true")
    redis = urlsplit(variables.get("GATEWAY_REDIS_URL") or "")
    backend = service_backend(documents, redis.hostname or "", redis.port or 6379)
    if redis.scheme != "redis" or backend is None or backend[1] != 6379:
        problems.append(f"GATEWAY_REDIS_URL is not a Redis Service: {redis.geturl()}")
    for name in UPSTREAM_VARIABLES:
        url = urlsplit(variables.get(name) or "https://upstream.example")
        if "." not in (url.hostname or "") and service_backend(
                documents, url.hostname or "", url.port or 80) is None:
            problems.append(f"{name}: no Service in front of {url.geturl()}")
    return problems


def check_services(documents: list[Doc], _secrets: list[Doc]) -> list[str]:
    """Each Service selects a workload that has the port it targets; the gateway's reaches
    8080."""
    problems = [f"Service {service['metadata']['name']} port {declared['port']} reaches no "
                "container port"
                for service in documents if service["kind"] == "Service"
                for declared in service["spec"]["ports"]
                if service_backend(documents, service["metadata"]["name"],
                                   declared["port"]) is None]
    backend = service_backend(documents, GATEWAY, GATEWAY_PORT)
    if backend is None or backend[1] != GATEWAY_PORT \
            or backend[0]["metadata"]["name"] != GATEWAY:
        problems.append("Service mcp-gateway does not reach the gateway on 8080")
    return problems


def check_scaling(documents: list[Doc], _secrets: list[Doc]) -> list[str]:
    """The autoscaler scales the gateway's Deployment by CPU (and the Deployment leaves the
    replica count to it); the disruption budget and topology spread select the gateway's pods
    and no other."""
    deployment, _ = gateway_of(documents)
    labels = pod_labels(deployment)
    others = [pod_labels(w) for w in workloads(documents) if w is not deployment]
    problems = []
    hpas = [d for d in documents if d["kind"] == "HorizontalPodAutoscaler"]
    if [(h["apiVersion"], h["spec"]["scaleTargetRef"]) for h in hpas] != [
            ("autoscaling/v2", {"apiVersion": "apps/v1", "kind": "Deployment", "name": GATEWAY})]:
        problems.append("no autoscaling/v2 HorizontalPodAutoscaler targets the gateway alone")
    for hpa in hpas:
        metrics = [m.get("resource", {}).get("name") for m in hpa["spec"].get("metrics", [])]
        if metrics != ["cpu"] or not 1 <= hpa["spec"].get("minReplicas", 1) \
                <= hpa["spec"]["maxReplicas"]:
            problems.append(f"the autoscaler does not scale by CPU within bounds: {hpa['spec']}")
    if "replicas" in deployment["spec"]:
        problems.append("the Deployment sets replicas, which every apply would reset")
    budgets = [d for d in documents if d["kind"] == "PodDisruptionBudget"]
    if not budgets or any(not selects(b["spec"]["selector"], labels)
                          or any(selects(b["spec"]["selector"], o) for o in others)
                          for b in budgets):
        problems.append("no PodDisruptionBudget selects exactly the gateway's pods")
    template = pod_template(deployment)
    assert template is not None
    spreads = template["spec"].get("topologySpreadConstraints", [])
    if not spreads or any(not selects(s["labelSelector"], labels) for s in spreads):
        problems.append("the topology spread constraints do not select the gateway's pods")
    return problems


def check_network(documents: list[Doc], _secrets: list[Doc]) -> list[str]:
    """The gateway's pods take TCP 8080 only, and may reach DNS, Redis, each upstream Service
    in the cluster on its port, and HTTPS outside."""
    deployment, container = gateway_of(documents)
    labels = pod_labels(deployment)
    policies = [d for d in documents if d["kind"] == "NetworkPolicy"
                and selects(d["spec"]["podSelector"], labels)]
    if len(policies) != 1:
        return [f"{len(policies)} NetworkPolicies select the gateway's pods, not 1"]
    spec = policies[0]["spec"]
    problems = []
    if sorted(spec.get("policyTypes", [])) != ["Egress", "Ingress"]:
        problems.append(f"the policy does not govern both directions: {spec.get('policyTypes')}")
    ingress = [(p.get("protocol", "TCP"), p.get("port")) for rule in spec.get("ingress", [])
               for p in rule.get("ports") or [{"port": "any"}]]
    if ingress != [("TCP", GATEWAY_PORT)]:
        problems.append(f"ingress is not TCP {GATEWAY_PORT} only: {ingress}")
    egress = spec.get("egress", [])

    def allowed(port: int, protocol: str, peer: Callable[[Doc], bool]) -> bool:
        return any(any(p.get("port") == port and p.get("protocol", "TCP") == protocol
                       for p in rule.get("ports", []))
                   and (not rule.get("to") or any(peer(to) for to in rule["to"]))
                   for rule in egress)

    if not allowed(53, "UDP", lambda to: True):
        problems.append("egress does not allow DNS (UDP 53)")
    if not allowed(443, "TCP", lambda to: "ipBlock" in to):
        problems.append("egress does not allow HTTPS (TCP 443) to addresses outside")
    variables = environment(documents, container)
    for name in ("GATEWAY_REDIS_URL", *UPSTREAM_VARIABLES):
        url = urlsplit(variables.get(name) or "")
        backend = service_backend(documents, url.hostname or "", url.port or 80)
        if url.scheme == "redis":
            backend = service_backend(documents, url.hostname or "", url.port or 6379)
        if backend is not None and not allowed(
                backend[1], "TCP", lambda to, w=backend[0]: selects(  # type: ignore[misc]
                    to.get("podSelector"), pod_labels(w))):
            problems.append(f"egress does not allow {name} ({backend[0]['metadata']['name']} "
                            f"port {backend[1]})")
    return problems


CHECKS: tuple[Check, ...] = (check_probes, check_security, check_resources, check_specs,
                             check_references, check_settings, check_services, check_scaling,
                             check_network)


def all_problems(documents: list[Doc], secrets: list[Doc]) -> list[str]:
    return [problem for check in CHECKS for problem in check(documents, secrets)]


# Tests.

@pytest.fixture(scope="module")
def base() -> list[Doc]:
    return build(BASE)


@pytest.fixture(scope="module")
def demo() -> list[Doc]:
    return build(DEMO)


def everything() -> Iterator[tuple[str, Doc]]:
    for name, documents in (("base", build(BASE)), ("demo", build(DEMO)),
                            ("secret.example.yaml", load(SECRET_EXAMPLE))):
        for document in documents:
            yield f"{name}:{document['kind']}/{document['metadata']['name']}", document


DOCUMENTS = list(everything())


@pytest.mark.parametrize(("where", "document"), DOCUMENTS, ids=[where for where, _ in DOCUMENTS])
def test_every_document_is_valid_kubernetes(where: str, document: Doc) -> None:
    try:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{where}: {'.'.join(str(p) for p in exc.path)}: {exc.message}")


def test_the_base_has_every_property_with_the_example_secret(base: list[Doc]) -> None:
    assert all_problems(base, load(SECRET_EXAMPLE)) == []


def test_the_base_applies_no_secret_of_its_own(base: list[Doc]) -> None:
    assert [d for d in base if d["kind"] == "Secret"] == []


def test_the_demo_has_every_property_and_its_own_secret(demo: list[Doc]) -> None:
    assert all_problems(demo, []) == []


def test_the_demo_points_the_upstreams_at_the_sandbox(demo: list[Doc]) -> None:
    _, container = gateway_of(demo)
    variables = environment(demo, container)
    sandbox = find(demo, "Deployment", "mcp-gateway-sandbox")

    assert sandbox is not None
    assert containers(sandbox)[0]["args"][0] == "sandbox"
    for name in UPSTREAM_VARIABLES:
        url = urlsplit(variables[name])
        assert service_backend(demo, url.hostname or "", url.port or 80) == (sandbox, 8081)
    assert "GATEWAY_PUBLIC_URL" not in variables
    assert {d["metadata"].get("namespace") for d in demo if d["kind"] != "Namespace"} == {
        "mcp-gateway-demo"}


def test_every_image_of_ours_has_the_same_tag(base: list[Doc], demo: list[Doc]) -> None:
    for documents in (base, demo):
        images = {c["image"] for w in workloads(documents) for c in containers(w)
                  if c["image"].startswith(GATEWAY)}
        assert images == {"mcp-gateway:0.1.0"}


def break_base(base: list[Doc], kind: str, name: str, change: Callable[[Doc], object]
               ) -> list[Doc]:
    broken = copy.deepcopy(base)
    document = find(broken, kind, name)
    assert document is not None
    change(document)
    return broken


def gateway_container(document: Doc) -> Doc:
    return next(c for c in containers(document) if c["name"] == "gateway")


def gateway_env(document: Doc) -> dict[str, Any]:
    data: dict[str, Any] = document["data"]
    return data


FAULTS: dict[str, tuple[str, str, Callable[[Doc], object], str]] = {
    "liveness path": ("Deployment", GATEWAY, lambda d: gateway_container(d)[
        "livenessProbe"]["httpGet"].update(path="/"), "livenessProbe"),
    "readiness port": ("Deployment", GATEWAY, lambda d: gateway_container(d)[
        "readinessProbe"]["httpGet"].update(port=9090), "readinessProbe"),
    "command": ("Deployment", GATEWAY, lambda d: gateway_container(d).update(args=["demo"]),
                "does not run `serve`"),
    "root": ("Deployment", GATEWAY, lambda d: gateway_container(d)["securityContext"].update(
        runAsNonRoot=False), "runAsNonRoot"),
    "uid": ("StatefulSet", "mcp-gateway-redis", lambda d: d["spec"]["template"]["spec"][
        "securityContext"].update(runAsUser=0), "non-root uid"),
    "writable root": ("Deployment", GATEWAY, lambda d: gateway_container(d)[
        "securityContext"].update(readOnlyRootFilesystem=False), "readOnlyRootFilesystem"),
    "escalation": ("Deployment", GATEWAY, lambda d: gateway_container(d)[
        "securityContext"].pop("allowPrivilegeEscalation"), "allowPrivilegeEscalation"),
    "capabilities": ("Deployment", GATEWAY, lambda d: gateway_container(d)[
        "securityContext"]["capabilities"].update(add=["NET_ADMIN"]), "capabilities"),
    "seccomp": ("Deployment", GATEWAY, lambda d: [
        gateway_container(d)["securityContext"].pop("seccompProfile"),
        d["spec"]["template"]["spec"]["securityContext"].pop("seccompProfile")], "seccomp"),
    "limits": ("StatefulSet", "mcp-gateway-redis", lambda d: d["spec"]["template"]["spec"][
        "containers"][0]["resources"].pop("limits"), "no limits"),
    "writable specs": ("Deployment", GATEWAY, lambda d: gateway_container(d)["volumeMounts"][0]
                       .update(readOnly=False), "read-only"),
    "spec file missing": ("ConfigMap", "mcp-gateway-specs-retently",
                          lambda d: d["data"].pop("feedback.yaml"), "missing ['feedback.yaml']"),
    "spec file stale": ("ConfigMap", "mcp-gateway-specs-refiner",
                        lambda d: d["data"].update({"service.yaml": "version: 1\n"}),
                        "stale ['service.yaml']"),
    "no watch": ("ConfigMap", "mcp-gateway-config",
                 lambda d: gateway_env(d).update(GATEWAY_SPECS_WATCH="false"), "WATCH"),
    "secret key": ("Deployment", GATEWAY, lambda d: gateway_container(d)["env"][0][
        "valueFrom"]["secretKeyRef"].update(key="secret_key"), "has no key secret_key"),
    "literal key": ("Deployment", GATEWAY, lambda d: gateway_container(d)["env"].__setitem__(
        1, {"name": "GATEWAY_AUDIT_KEY", "value": "x"}), "GATEWAY_AUDIT_KEY is not read"),
    "typo": ("ConfigMap", "mcp-gateway-config",
             lambda d: gateway_env(d).update(GATEWAY_SPEC_WATCH="true"), "not a setting"),
    "no public url": ("ConfigMap", "mcp-gateway-config",
                      lambda d: gateway_env(d).pop("GATEWAY_PUBLIC_URL"), "GATEWAY_PUBLIC_URL"),
    "redis host": ("ConfigMap", "mcp-gateway-config", lambda d: gateway_env(d).update(
        GATEWAY_REDIS_URL="redis://redis:6379/0"), "not a Redis Service"),
    "service selector": ("Service", GATEWAY, lambda d: d["spec"]["selector"].update(
        {"app.kubernetes.io/component": "web"}), "reaches no container port"),
    "hpa target": ("HorizontalPodAutoscaler", GATEWAY, lambda d: d["spec"][
        "scaleTargetRef"].update(name="gateway"), "targets the gateway"),
    "replicas": ("Deployment", GATEWAY, lambda d: d["spec"].update(replicas=3), "replicas"),
    "pdb selector": ("PodDisruptionBudget", GATEWAY, lambda d: d["spec"]["selector"][
        "matchLabels"].pop("app.kubernetes.io/component"), "PodDisruptionBudget"),
    "spread selector": ("Deployment", GATEWAY, lambda d: d["spec"]["template"]["spec"][
        "topologySpreadConstraints"][0]["labelSelector"]["matchLabels"].update(
        {"app.kubernetes.io/component": "redis"}), "topology spread"),
    "ingress port": ("NetworkPolicy", GATEWAY, lambda d: d["spec"]["ingress"][0][
        "ports"][0].update(port=8000), "ingress is not TCP 8080"),
    "ingress any port": ("NetworkPolicy", GATEWAY, lambda d: d["spec"]["ingress"].append({}),
                         "ingress is not TCP 8080"),
    "no dns": ("NetworkPolicy", GATEWAY, lambda d: d["spec"]["egress"].pop(0), "DNS"),
    "no redis": ("NetworkPolicy", GATEWAY, lambda d: d["spec"]["egress"].pop(1),
                 "GATEWAY_REDIS_URL"),
    "no https": ("NetworkPolicy", GATEWAY, lambda d: d["spec"]["egress"].pop(2), "HTTPS"),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_each_check_catches_its_fault(base: list[Doc], fault: str) -> None:
    kind, name, change, expected = FAULTS[fault]

    problems = all_problems(break_base(base, kind, name, change), load(SECRET_EXAMPLE))

    assert any(expected in problem for problem in problems), problems


def test_the_demo_gateway_must_be_allowed_to_reach_the_sandbox(demo: list[Doc]) -> None:
    broken = copy.deepcopy(demo)
    policy = find(broken, "NetworkPolicy", GATEWAY)
    assert policy is not None
    policy["spec"]["egress"].pop()

    assert check_network(broken, []) == [
        "egress does not allow RETENTLY_API_URL (mcp-gateway-sandbox port 8081)",
        "egress does not allow REFINER_API_URL (mcp-gateway-sandbox port 8081)",
        "egress does not allow REFINER_AUTH_URL (mcp-gateway-sandbox port 8081)"]


def render_specs_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render_specs",
                                                  KUBERNETES / "render-specs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_specs_yaml_is_what_render_specs_makes_of_tool_specs() -> None:
    render = render_specs_module()

    assert render.main(["--check"]) == 0, "run deploy/kubernetes/render-specs.py"


def test_render_specs_check_fails_on_a_stale_file(tmp_path: Path) -> None:
    render = render_specs_module()
    stale = tmp_path / "specs.yaml"
    stale.write_text((BASE / "specs.yaml").read_text(encoding="utf-8").replace(
        "get_plan_usage", "get_plan_used", 1), encoding="utf-8")

    assert render.main(["--check", "--out", str(stale)]) == 1
    assert render.main(["--out", str(stale)]) == 0
    assert stale.read_text(encoding="utf-8") == (BASE / "specs.yaml").read_text(encoding="utf-8")


def test_the_helper_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text(
        "resources: []\nconfigMapGenerator:\n  - name: x\n    literals: [a=b]\n",
        encoding="utf-8")

    with pytest.raises(Unsupported, match="configMapGenerator"):
        build(tmp_path)


def kubectl_kustomize(root: Path) -> list[Doc]:
    finished = subprocess.run(["kubectl", "kustomize", str(root)],  # noqa: S603, S607 - on PATH
                              capture_output=True, text=True, timeout=120, check=False)
    assert finished.returncode == 0, finished.stderr
    return [d for d in yaml.safe_load_all(finished.stdout) if d is not None]


def by_identity(documents: list[Doc]) -> dict[tuple[str, str, str], Doc]:
    return {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d
            for d in documents}


@pytest.mark.skipif(shutil.which("kubectl") is None,
                    reason="kubectl (with its built-in kustomize) is not installed")
@pytest.mark.parametrize("root", [BASE, DEMO], ids=["base", "demo"])
def test_the_helper_renders_what_kubectl_kustomize_renders(root: Path) -> None:
    assert by_identity(build(root)) == by_identity(kubectl_kustomize(root))
