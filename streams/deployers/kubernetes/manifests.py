"""A release's manifest as Kubernetes objects: per app a workload, a ConfigMap, a Secret, a PodDisruptionBudget, for
`http` sources and StatefulSets a Service, for `deployer.<app>.autoscale` a HorizontalPodAutoscaler, and on request
(TUNEFLOW_KUBERNETES_SERVICE_MONITOR) a ServiceMonitor. Pure data: nothing here talks to a cluster.

Every object of one app shares one name, `<stream>-<label>`, cut to fit with a hash of the whole (so two long names
that share a prefix stay apart). Apps with more than one instance are StatefulSets: each instance needs a stable
index (`--instance`, the `instance` label of its metrics, its Kafka client id, TUNEFLOW_INSTANCE_INDEX), which a
Deployment's interchangeable pods cannot give. One instance is a Deployment (index 0, surge-first rollouts).
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from streams.masking import is_secret_option, mask_secrets
from streams.platform.properties import memory_mb

NAME_MAX = 63
# A StatefulSet stamps `controller-revision-hash: <name>-<10 chars>` on its pods: that label value must fit in 63.
STATEFULSET_NAME_MAX = NAME_MAX - 11
LABEL_MAX = 63
PREFIX = "tuneflow.io"
STREAM_LABEL = f"{PREFIX}/stream"
APP_LABEL = f"{PREFIX}/app"
RELEASE_LABEL = f"{PREFIX}/release"
INSTANCE_LABEL = "app.kubernetes.io/instance"
MANAGED_BY = {"app.kubernetes.io/managed-by": "tuneflow"}
CHECKSUM_ANNOTATION = f"{PREFIX}/config-checksum"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"  # set on StatefulSet pods since Kubernetes 1.28
HEALTH_PORT = 8081
MASK = "***"
_NOT_LABEL_CHAR = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class KubernetesSettings:
    """Cluster-wide choices, the same for every app (TUNEFLOW_KUBERNETES_* in the environment)."""

    namespace: str = "tuneflow"
    image: str = "tuneflow:0.1.0"
    kafka_bootstrap: str = "kafka:9092"
    run_as_user: int = 10001  # the image's user; Pod Security "restricted" refuses 0
    service_account: str | None = None
    service_monitor: bool = False  # a Prometheus Operator ServiceMonitor per app (its CRD must be installed)


# -- names -----------------------------------------------------------------------------------------------------------

def fit(text: str, limit: int = NAME_MAX, original: str | None = None) -> str:
    """`text` if it fits in `limit` characters and stands for itself, else its head and a hash of `original`
    (of `text` itself when None), so two names that differ only past the cut, or before cleaning, stay apart."""
    original = text if original is None else original
    if len(text) <= limit and text == original:
        return text
    digest = hashlib.sha256(original.encode()).hexdigest()[:10]
    head = text[:limit - len(digest) - 1].rstrip("-_.")
    return f"{head}-{digest}"


def object_name(stream: str, label: str, count: int = 1) -> str:
    """The name every object of one app shares: lower case, '-' for '_', at most 63 characters (52 for a
    StatefulSet's), unique per stream and label.

    `<stream>-<label>` reads back unambiguously only when the stream name holds no '-' or '_' (stream `a-b` with
    app `c` and stream `a` with app `b-c` would both be `a-b-c`): other names always carry the hash."""
    whole = f"{stream}-{label}"
    original = whole if not set("-_") & set(stream) else f"{stream}/{label}"
    return fit(whole.lower().replace("_", "-"), STATEFULSET_NAME_MAX if count > 1 else NAME_MAX, original)


def label_value(text: str) -> str:
    """A label value (≤ 63 characters, alphanumerics and -_. inside) that stands for `text`, hashed when cut."""
    return fit(_NOT_LABEL_CHAR.sub("-", text).strip("-_."), LABEL_MAX, text)


def stream_selector(stream: str, labels: Iterable[str] | None = None) -> str:
    """The label selector of a stream's objects (of some of its apps, when `labels` are given)."""
    selector = f"{STREAM_LABEL}={label_value(stream)},app.kubernetes.io/managed-by=tuneflow"
    if labels is not None:
        selector += f",{APP_LABEL} in ({','.join(sorted(label_value(label) for label in labels))})"
    return selector


def env_name(option: str) -> str:
    return "TUNEFLOW_OPT_" + re.sub(r"[^A-Za-z0-9]", "_", option).upper()


# -- objects ---------------------------------------------------------------------------------------------------------

def build_objects(manifest: dict[str, Any], release: int, settings: KubernetesSettings,
                  labels: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Every object of the apps `labels` (all when None), in apply order: configuration before workloads."""
    wanted = set(labels) if labels is not None else None
    objects: list[dict[str, Any]] = []
    for app in manifest["apps"]:
        if wanted is None or app["label"] in wanted:
            objects += app_objects(manifest["stream"], app, release, settings)
    return objects


def app_objects(stream: str, app: dict[str, Any], release: int, settings: KubernetesSettings) -> list[dict[str, Any]]:
    autoscale = app.get("autoscale")
    # An autoscaled app's instance count moves: it is a StatefulSet from the start, so each keeps a stable index.
    stateful = app["count"] > 1 or bool(autoscale)
    name = object_name(stream, app["label"], 2 if stateful else 1)
    selector = {INSTANCE_LABEL: label_value(name), STREAM_LABEL: label_value(stream)}
    pod_labels = {**selector, **MANAGED_BY, "app.kubernetes.io/name": label_value(app["app"]),
                  "app.kubernetes.io/component": app["kind"], "app.kubernetes.io/part-of": "tuneflow",
                  "app.kubernetes.io/version": label_value(str(app["version"])), APP_LABEL: label_value(app["label"])}
    labels = {**pod_labels, RELEASE_LABEL: str(release)}

    def meta(kind: str, api_version: str) -> dict[str, Any]:
        return {"apiVersion": api_version, "kind": kind,
                "metadata": {"name": name, "namespace": settings.namespace, "labels": dict(labels),
                             "annotations": {f"{PREFIX}/stream-name": stream, f"{PREFIX}/app-label": app["label"]}}}

    options = dict(app["options"])
    http_port = _http_port(app, options)
    secret = {key: value for key, value in options.items() if is_secret_option(key, value)}
    config = {key: value for key, value in options.items() if key not in secret}
    config_map = {**meta("ConfigMap", "v1"), "data": {"TUNEFLOW_KAFKA_BOOTSTRAP": settings.kafka_bootstrap, **config}}
    secret_object = {**meta("Secret", "v1"), "type": "Opaque", "stringData": secret}
    checksum = hashlib.sha256(orjson.dumps([config_map["data"], secret], option=orjson.OPT_SORT_KEYS)).hexdigest()

    annotations = {CHECKSUM_ANNOTATION: checksum, f"{PREFIX}/app-label": app["label"],
                   # the common scrape convention; deploy/kubernetes/README.md has the Prometheus job that reads it
                   "prometheus.io/scrape": "true", "prometheus.io/port": str(HEALTH_PORT),
                   "prometheus.io/path": "/metrics"}
    template = {"metadata": {"labels": pod_labels, "annotations": annotations},
                "spec": _pod_spec(stream, app, name, options, secret, http_port, settings)}
    workload = meta("StatefulSet" if stateful else "Deployment", "apps/v1")
    workload["spec"] = {"replicas": app["count"], "selector": {"matchLabels": selector}, "template": template,
                        "revisionHistoryLimit": 10}
    if stateful:
        workload["spec"].update(serviceName=name, podManagementPolicy="Parallel",
                                updateStrategy={"type": "RollingUpdate"})
    else:
        workload["spec"]["strategy"] = {"type": "RollingUpdate",
                                        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    budget = {**meta("PodDisruptionBudget", "policy/v1"),
              "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}}}

    objects = [config_map, secret_object] if secret else [config_map]
    metrics_port = {"name": "metrics", "port": HEALTH_PORT, "targetPort": "metrics"}
    if http_port is not None or stateful or settings.service_monitor:
        service = meta("Service", "v1")
        ports = [{"name": "http", "port": http_port, "targetPort": "http"}] if http_port is not None else [metrics_port]
        if http_port is not None and settings.service_monitor:
            ports.append(metrics_port)
        service["spec"] = {"selector": selector, "ports": ports}
        if http_port is None:
            service["spec"]["clusterIP"] = "None"  # headless: a DNS name per instance, scraped one by one
        objects.append(service)
    scaler = [_autoscaler(meta("HorizontalPodAutoscaler", "autoscaling/v2"), workload, stream, app["label"],
                          autoscale)] if autoscale else []
    monitor = []
    if settings.service_monitor:
        monitor = [meta("ServiceMonitor", "monitoring.coreos.com/v1")]
        monitor[0]["spec"] = {"selector": {"matchLabels": selector}, "namespaceSelector": {"matchNames": [
            settings.namespace]}, "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s"}]}
    return [*objects, workload, budget, *scaler, *monitor]


def _autoscaler(hpa: dict[str, Any], workload: dict[str, Any], stream: str, label: str,
                policy: dict[str, Any]) -> dict[str, Any]:
    """`deployer.<app>.autoscale=MIN..MAX` on Kubernetes: a HorizontalPodAutoscaler on the app's consumer lag, an
    external metric (`tuneflow_consumer_lag` summed over the app's partitions, e.g. served from Prometheus by
    prometheus-adapter: deploy/kubernetes/README.md), `autoscale-lag` records per instance, scaling down only after
    the lag stayed low for `autoscale-cooldown`."""
    hpa["spec"] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": workload["kind"], "name": workload["metadata"]["name"]},
        "minReplicas": policy["min"], "maxReplicas": policy["max"],
        "metrics": [{"type": "External", "external": {
            "metric": {"name": "tuneflow_consumer_lag",
                       "selector": {"matchLabels": {"stream": label_value(stream), "app": label_value(label)}}},
            "target": {"type": "AverageValue", "averageValue": str(policy["lag"])}}}],
        "behavior": {"scaleUp": {"stabilizationWindowSeconds": 0},
                     "scaleDown": {"stabilizationWindowSeconds": int(policy["cooldown_s"])}},
    }
    return hpa


def _http_port(app: dict[str, Any], options: dict[str, str]) -> int | None:
    """An `http` source listens on every interface of its pod, on its `port` option (8080 by default)."""
    if app["app"] != "http" or app["kind"] != "source":
        return None
    options.setdefault("host", "0.0.0.0")
    port = int(options.setdefault("port", "8080"))
    return port or None


def _pod_spec(stream: str, app: dict[str, Any], name: str, options: dict[str, str], secret: dict[str, str],
              http_port: int | None, settings: KubernetesSettings) -> dict[str, Any]:
    args = ["app", "run", app["app"], "--kind", app["kind"], "--stream", stream, "--label", app["label"],
            "--instance", "$(TUNEFLOW_INSTANCE_INDEX)", "--host", "0.0.0.0", "--port", str(HEALTH_PORT)]
    for topic in app["inputs"]:
        args += ["--input", topic]
    if app["output"]:
        args += ["--output", app["output"]]
    if app.get("group"):
        args += ["--group", app["group"]]
    if app.get("uri"):
        args += ["--uri", app["uri"]]
    memory = memory_mb(app["memory"]) if app.get("memory") else None
    if memory is not None:
        args += ["--max-memory-mb", str(max(1, memory * 9 // 10))]  # drain and exit before the kernel kills it
    # option values come from the ConfigMap and the Secret: the pod spec names them, never holds them
    args += ["--", *(f"--{key}=$({env_name(key)})" for key in options)]
    index: dict[str, Any] = {"name": "TUNEFLOW_INSTANCE_INDEX", "value": "0"}
    if app["count"] > 1:
        index = {"name": "TUNEFLOW_INSTANCE_INDEX",
                 "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{POD_INDEX_LABEL}']"}}}
    env = [index, {"name": "HOME", "value": "/tmp"}, {"name": "TUNEFLOW_HOME", "value": "/tmp/tuneflow"},
           {"name": "TUNEFLOW_KAFKA_BOOTSTRAP",
            "valueFrom": {"configMapKeyRef": {"name": name, "key": "TUNEFLOW_KAFKA_BOOTSTRAP"}}}]
    for key in options:
        source = "secretKeyRef" if key in secret else "configMapKeyRef"
        env.append({"name": env_name(key), "valueFrom": {source: {"name": name, "key": key}}})
    ports = [{"name": "metrics", "containerPort": HEALTH_PORT}]
    if http_port is not None:
        ports.append({"name": "http", "containerPort": http_port})
    container = {
        "name": "app", "image": settings.image, "imagePullPolicy": "IfNotPresent", "args": args, "env": env,
        "ports": ports, "resources": _resources(app),
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 10,
                          "failureThreshold": 6},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "metrics"}, "periodSeconds": 5},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    spec: dict[str, Any] = {
        "automountServiceAccountToken": False,  # the apps never talk to the API server
        "terminationGracePeriodSeconds": 60,  # SIGTERM: drain, flush, commit
        "securityContext": {"runAsNonRoot": True, "runAsUser": settings.run_as_user,
                            "runAsGroup": settings.run_as_user, "fsGroup": settings.run_as_user,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}],
    }
    if settings.service_account:
        spec["serviceAccountName"] = settings.service_account
    return spec


def _resources(app: dict[str, Any]) -> dict[str, Any]:
    """Requests and limits from deployer.<app>.memory and .cpu; without them a modest request and a memory cap."""
    memory = f"{memory_mb(app['memory'])}Mi" if app.get("memory") else None
    cpu = app.get("cpu")
    requests = {"cpu": cpu or "100m", "memory": memory or "256Mi"}
    limits = {"memory": memory or "512Mi"}
    if cpu:
        limits["cpu"] = cpu
    return {"requests": requests, "limits": limits}


# -- printing --------------------------------------------------------------------------------------------------------

def masked(objects: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The objects as they may be printed: every Secret value replaced by ***, URL passwords masked anywhere."""
    out = []
    for obj in objects:
        obj = copy.deepcopy(obj)
        if obj.get("kind") == "Secret":
            for field in ("data", "stringData"):
                if field in obj:
                    obj[field] = dict.fromkeys(obj[field], MASK)
        out.append(orjson.loads(mask_secrets(orjson.dumps(obj).decode())))
    return out
