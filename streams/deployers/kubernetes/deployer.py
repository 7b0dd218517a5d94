"""The Kubernetes deployer: a release's objects go to the API server by server-side apply, and what runs is read back
from it (workloads, their pods, and the reasons the cluster gives when it refuses a pod).

A stream's objects carry `tuneflow.io/stream` and `app.kubernetes.io/managed-by=tuneflow`: undeploy deletes exactly
those. Each app's objects carry the release that last changed them (`tuneflow.io/release`), so an update re-applies
only the changed apps and retires what older releases left (an app removed, or a Deployment grown into a
StatefulSet).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from kubernetes import config as kube_config  # type: ignore[import-untyped]
from kubernetes.client import ApiClient  # type: ignore[import-untyped]
from kubernetes.client.exceptions import ApiException  # type: ignore[import-untyped]
from urllib3.exceptions import HTTPError

from streams import __version__, settings
from streams.deployers.base import AppInstanceStatus
from streams.deployers.kubernetes.manifests import (
    APP_LABEL,
    POD_INDEX_LABEL,
    RELEASE_LABEL,
    KubernetesSettings,
    build_objects,
    masked,
    stream_selector,
)
from streams.errors import ConfigError, ServiceUnavailableError

FIELD_MANAGER = "tuneflow"
POLL_S = 0.5
IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
# where each kind lives in the API, in the order objects are applied (configuration before the pods that read it)
PATHS = {
    "ConfigMap": ("api/v1", "configmaps"),
    "Secret": ("api/v1", "secrets"),
    "Service": ("api/v1", "services"),
    "Deployment": ("apis/apps/v1", "deployments"),
    "StatefulSet": ("apis/apps/v1", "statefulsets"),
    "PodDisruptionBudget": ("apis/policy/v1", "poddisruptionbudgets"),
    "HorizontalPodAutoscaler": ("apis/autoscaling/v2", "horizontalpodautoscalers"),
    "ServiceMonitor": ("apis/monitoring.coreos.com/v1", "servicemonitors"),
}
WORKLOADS = ("Deployment", "StatefulSet")
DELETE_ORDER = ("HorizontalPodAutoscaler", "Deployment", "StatefulSet", "PodDisruptionBudget", "Service", "ConfigMap",
                "Secret")


@dataclass
class KubernetesDeployer:
    """`connect()` gives a `kubernetes.client.ApiClient` (called on first use: printing manifests needs no
    cluster); `wait` is `ready` (every pod of the new template ready) or `created` (every pod created and admitted:
    a cluster without nodes, like the local stack's, runs none)."""

    connect: Callable[[], Any]
    config: KubernetesSettings = field(default_factory=KubernetesSettings)
    wait: str = "ready"
    _api: Any = None

    @property
    def api(self) -> Any:
        if self._api is None:
            self._api = self.connect()
        return self._api

    @classmethod
    def from_environment(cls) -> KubernetesDeployer:
        """TUNEFLOW_KUBECONFIG (or KUBECONFIG, or the pod's service account inside a cluster) and
        TUNEFLOW_KUBERNETES_{NAMESPACE,IMAGE,KAFKA_BOOTSTRAP,RUN_AS_USER,SERVICE_ACCOUNT,WAIT}."""
        env = os.environ
        kubeconfig = env.get("TUNEFLOW_KUBECONFIG") or env.get("KUBECONFIG")
        in_cluster = kubeconfig is None and bool(env.get("KUBERNETES_SERVICE_HOST"))
        namespace = env.get("TUNEFLOW_KUBERNETES_NAMESPACE")
        if namespace is None and in_cluster and IN_CLUSTER_NAMESPACE.exists():
            namespace = IN_CLUSTER_NAMESPACE.read_text().strip()

        def connect() -> Any:
            try:
                if in_cluster:
                    kube_config.load_incluster_config()
                    return ApiClient()
                return kube_config.new_client_from_config(config_file=kubeconfig)
            except (kube_config.ConfigException, OSError) as exc:
                raise ConfigError(f"cannot read the Kubernetes configuration ({kubeconfig or '~/.kube/config'}): "
                                  f"{exc}; set TUNEFLOW_KUBECONFIG to a kubeconfig file") from None
        wait = env.get("TUNEFLOW_KUBERNETES_WAIT", "ready")
        if wait not in ("ready", "created"):
            raise ConfigError(f"TUNEFLOW_KUBERNETES_WAIT must be ready or created, not {wait!r}")
        run_as = env.get("TUNEFLOW_KUBERNETES_RUN_AS_USER", "10001")
        if not run_as.isdigit():
            raise ConfigError(f"TUNEFLOW_KUBERNETES_RUN_AS_USER must be a numeric user id, not {run_as!r}")
        config = KubernetesSettings(
            namespace=namespace or "tuneflow", image=env.get("TUNEFLOW_KUBERNETES_IMAGE", f"tuneflow:{__version__}"),
            kafka_bootstrap=env.get("TUNEFLOW_KUBERNETES_KAFKA_BOOTSTRAP", settings.kafka_bootstrap()),
            run_as_user=int(run_as), service_account=env.get("TUNEFLOW_KUBERNETES_SERVICE_ACCOUNT"),
            service_monitor=env.get("TUNEFLOW_KUBERNETES_SERVICE_MONITOR", "").lower() in ("1", "true", "yes"))
        return cls(connect, config, wait)

    # -- the deployer protocol (streams.deployers.base) -------------------------------------------------------

    def render(self, manifest: dict[str, Any], release: int, validate: bool = False) -> list[dict[str, Any]]:
        """The objects of the whole manifest, Secrets masked; `validate` has the API server check each one
        (schema, admission) by a server-side dry-run apply, creating nothing."""
        objects = build_objects(manifest, release, self.config)
        if validate:
            self.validate(objects)
        return masked(objects)

    def validate(self, objects: list[dict[str, Any]]) -> None:
        """A server-side dry-run apply of each object (the server's own schemas and admission), and a dry-run
        create of a pod from each workload's template: Pod Security judges pods, not the workloads that make them,
        so this is where a namespace's profile refuses. Warnings count as refusals (PodSecurity's `warn` mode)."""
        problems = []
        for obj in objects:
            problems += [f"{obj['kind'].lower()}/{obj['metadata']['name']}: {w}" for w in self._apply(obj, True)]
            if obj["kind"] in WORKLOADS:
                template = obj["spec"]["template"]
                pod = {"apiVersion": "v1", "kind": "Pod", "spec": template["spec"],
                       "metadata": {**template["metadata"], "name": f"{obj['metadata']['name']}-dry-run"}}
                try:
                    self._call("POST", self._path("Pod"), [("dryRun", "All"), ("fieldManager", FIELD_MANAGER)], pod)
                except ConfigError as exc:
                    problems.append(f"{obj['kind'].lower()}/{obj['metadata']['name']}: {exc}")
        if problems:
            raise ConfigError("the Kubernetes API server does not accept the manifests:\n  " + "\n  ".join(problems))

    def start_apps(self, manifest: dict[str, Any], labels: Sequence[str], release: int) -> None:
        """Apply the apps' objects and wait until their pods are created (or ready); when the cluster refuses
        them, every object goes back to what it was before, and the error gives the cluster's reason."""
        objects = build_objects(manifest, release, self.config, labels)
        before = {(o["kind"], o["metadata"]["name"]): self._get(o["kind"], o["metadata"]["name"]) for o in objects}
        started = time.time()
        applied: list[dict[str, Any]] = []
        try:
            for obj in objects:
                self._apply(obj)
                applied.append(obj)
            self._wait([o for o in objects if o["kind"] in WORKLOADS], started)
        except Exception:
            self._restore(applied, before)
            raise

    def stop_apps(self, stream: str, labels: Sequence[str] | None = None, before: int | None = None) -> int:
        """Delete the stream's objects (of `labels`; from releases before `before`); returns the instances that
        went (the replicas of the deleted workloads). Their ReplicaSets and pods go with them."""
        instances = 0
        selector = stream_selector(stream, labels)
        # a ServiceMonitor's kind exists only where the Prometheus Operator's CRD is installed
        kinds = ("ServiceMonitor", *DELETE_ORDER) if self.config.service_monitor else DELETE_ORDER
        for kind in kinds:
            for obj in self._list(kind, selector):
                if before is not None and int(obj["metadata"]["labels"].get(RELEASE_LABEL, "0")) >= before:
                    continue
                if kind in WORKLOADS:
                    instances += int(obj["spec"].get("replicas", 0))
                self._delete(kind, obj["metadata"]["name"])
        return instances

    def follow_autoscale(self, stream: str, manifest: dict[str, Any]) -> None:
        """Nothing to run: an autoscaled app's HorizontalPodAutoscaler is one of its objects."""

    def deployed(self, stream: str) -> bool:
        selector = stream_selector(stream)
        return any(self._list(kind, selector) for kind in (*WORKLOADS, "ConfigMap"))

    def running(self, stream: str) -> bool:
        selector = stream_selector(stream)
        return any(int(o["spec"].get("replicas", 0)) > 0 for kind in WORKLOADS for o in self._list(kind, selector))

    def stream_status(self, stream: str, window_s: float) -> list[AppInstanceStatus]:
        """Each pod of the stream as the API server reports it, and a `refused` line for a workload whose pods the
        cluster will not create (with its reason). Rates are not read here: pods' metrics go to Prometheus."""
        selector = stream_selector(stream)
        rows = [_pod_status(pod) for pod in self._list("Pod", selector)]
        for kind in WORKLOADS:
            for workload in self._list(kind, selector):
                refusal = self._refusal(workload, since=0.0)
                if refusal:
                    rows.append(AppInstanceStatus(
                        _app_label(workload), -1, 0, 0, "refused", False, 0, 0, 0, 0, 0, 0, 0,
                        name=f"{kind.lower()}/{workload['metadata']['name']}", detail=refusal))
        return sorted(rows, key=lambda r: (r.label, r.index, r.name))

    # -- waiting and reasons ---------------------------------------------------------------------------------

    def _wait(self, workloads: list[dict[str, Any]], started: float) -> None:
        """Until every workload's pods are created (or ready); every refusal the cluster gives is named at once."""
        timeout_s = settings.ready_timeout_s()
        deadline = time.monotonic() + timeout_s
        waiting = {(o["kind"], o["metadata"]["name"]) for o in workloads}
        refusals: dict[str, str] = {}
        while waiting:
            for kind, name in sorted(waiting):
                workload = self._get(kind, name)
                if workload is None:
                    continue
                refusal = self._refusal(workload, since=started)
                if refusal:
                    refusals[f"{kind.lower()}/{name}"] = refusal
                if refusal or _rolled_out(workload, self.wait):
                    waiting.discard((kind, name))
            if waiting and time.monotonic() > deadline:
                late = ", ".join(f"{kind.lower()}/{name}" for kind, name in sorted(waiting))
                raise ServiceUnavailableError(
                    f"pods of {late} not {self.wait} within {timeout_s:g}s (TUNEFLOW_READY_TIMEOUT_S); "
                    "see `tuneflow stream status` and the namespace's events")
            if waiting:
                time.sleep(POLL_S)
        if len(refusals) == 1:
            [(refused, reason)] = refusals.items()
            raise ConfigError(f"the cluster refuses the pods of {refused}: {reason}")
        if refusals:
            raise ConfigError("the cluster refuses the pods of:\n" + "\n".join(f"  {refused}: {reason}" for
                                                                             refused, reason in refusals.items()))

    def _refusal(self, workload: dict[str, Any], since: float) -> str:
        """Why the controller could not create the workload's pods (admission, quota), or ''. A Deployment says
        so in a condition; a StatefulSet only in events, which count while it lacks pods."""
        status = workload.get("status", {})
        for condition in status.get("conditions", []):
            if condition["type"] == "ReplicaFailure" and condition["status"] == "True":
                return str(condition.get("message", condition.get("reason", "")))
        if workload["kind"] != "StatefulSet" or int(status.get("replicas", 0)) >= int(workload["spec"]["replicas"]):
            return ""
        events = self._list("Event", None, field_selector=f"involvedObject.uid={workload['metadata']['uid']},"
                                                          "reason=FailedCreate")
        recent = [e for e in events if _event_time(e) >= since - 1]
        return str(max(recent, key=_event_time)["message"]) if recent else ""

    def _restore(self, applied: list[dict[str, Any]], before: dict[tuple[str, str], dict[str, Any] | None]) -> None:
        """Undo a refused start: objects that did not exist go, the others get back their earlier content."""
        for obj in reversed(applied):
            kind, name = obj["kind"], obj["metadata"]["name"]
            earlier = before.get((kind, name))
            try:
                if earlier is None:
                    self._delete(kind, name)
                else:
                    self._apply(_appliable(earlier))
            except (ConfigError, ServiceUnavailableError):
                pass  # the first error is the one to report

    # -- the API ---------------------------------------------------------------------------------------------

    def _path(self, kind: str, name: str | None = None) -> str:
        prefix, plural = PATHS.get(kind) or ("api/v1", kind.lower() + "s")
        path = f"/{prefix}/namespaces/{self.config.namespace}/{plural}"
        return f"{path}/{name}" if name else path

    def _call(self, method: str, path: str, query: list[tuple[str, str]] | None = None, body: Any = None,
              content_type: str = "application/json", warnings: list[str] | None = None) -> Any:
        """One request; the server's `Warning` headers are added to `warnings` when given."""
        try:
            data, _, headers = self.api.call_api(
                path, method, query_params=query or [], body=body,
                header_params={"Content-Type": content_type, "Accept": "application/json"},
                response_type="object", auth_settings=["BearerToken"], _return_http_data_only=False,
                _request_timeout=30)
            if warnings is not None and headers is not None:  # urllib3's HTTPHeaderDict: one entry per header
                warnings += [_warning_text(w) for w in headers.getlist("Warning")]
            return data
        except ApiException as exc:
            if exc.status == 404:
                raise
            raise ConfigError(f"the Kubernetes API server refused {method} {path}: {_reason(exc)}") from None
        except HTTPError as exc:
            raise ServiceUnavailableError(f"cannot reach the Kubernetes API server "
                                          f"({self.api.configuration.host}): {exc}") from None

    def _apply(self, obj: dict[str, Any], dry_run: bool = False) -> list[str]:
        """Server-side apply (tuneflow owns the fields it sets, and forces them back if someone changed them);
        returns the server's warnings."""
        query = [("fieldManager", FIELD_MANAGER), ("force", "true")]
        if dry_run:
            query.append(("dryRun", "All"))
        warnings: list[str] = []
        self._call("PATCH", self._path(obj["kind"], obj["metadata"]["name"]), query, obj,
                   "application/apply-patch+yaml", warnings)
        return warnings

    def _get(self, kind: str, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self._call("GET", self._path(kind, name))
            return found
        except ApiException:
            return None

    def _list(self, kind: str, selector: str | None, field_selector: str | None = None) -> list[dict[str, Any]]:
        query = [("labelSelector", selector)] if selector else []
        if field_selector:
            query.append(("fieldSelector", field_selector))
        items: list[dict[str, Any]] = self._call("GET", self._path(kind), query)["items"]
        for item in items:
            item.setdefault("kind", kind)
        return items

    def _delete(self, kind: str, name: str) -> None:
        with contextlib.suppress(ApiException):  # already gone
            self._call("DELETE", self._path(kind, name), body={"propagationPolicy": "Background"})


def _rolled_out(workload: dict[str, Any], wait: str) -> bool:
    spec, status = workload["spec"], workload.get("status", {})
    if status.get("observedGeneration", 0) < workload["metadata"]["generation"]:
        return False
    wanted = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas", 0))
    if wait == "ready":
        return updated >= wanted and int(status.get("readyReplicas", 0)) >= wanted \
            and int(status.get("replicas", 0)) == wanted
    if workload["kind"] == "StatefulSet":
        # a StatefulSet replaces pods one at a time, each after the last is ready: without nodes only the first
        # pod of a new revision is ever created
        return int(status.get("replicas", 0)) >= wanted and (updated >= 1 or wanted == 0)
    return updated >= wanted


def _pod_status(pod: dict[str, Any]) -> AppInstanceStatus:
    labels = pod["metadata"].get("labels", {})
    status = pod.get("status", {})
    conditions = {c["type"]: c for c in status.get("conditions", [])}
    ready = conditions.get("Ready", {}).get("status") == "True"
    phase = status.get("phase", "Unknown")
    state = {"Running": "up" if ready else "starting", "Pending": "pending"}.get(phase, "down")
    detail = ""
    if phase == "Pending":
        scheduled = conditions.get("PodScheduled")
        detail = scheduled.get("message", "") if scheduled else "no node has taken it yet"
    return AppInstanceStatus(_app_label(pod), int(labels.get(POD_INDEX_LABEL, 0)), 0, 0, state, ready,
                             0, 0, 0, 0, 0, 0, 0, name=f"pod/{pod['metadata']['name']}", detail=detail)


def _app_label(obj: dict[str, Any]) -> str:
    metadata = obj["metadata"]
    return str(metadata.get("annotations", {}).get("tuneflow.io/app-label")
               or metadata.get("labels", {}).get(APP_LABEL, "?"))


def _event_time(event: dict[str, Any]) -> float:
    stamp = event.get("lastTimestamp") or event.get("eventTime") or event["metadata"]["creationTimestamp"]
    return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()


def _appliable(live: dict[str, Any]) -> dict[str, Any]:
    """A live object as an apply body: its content, without what the server keeps for itself."""
    metadata = live["metadata"]
    body = {key: value for key, value in live.items() if key not in ("metadata", "status")}
    body["metadata"] = {key: metadata[key] for key in ("name", "namespace", "labels", "annotations") if key in metadata}
    return body


def _warning_text(header: str) -> str:
    """`299 - "text"` (RFC 7234, as the API server sends it) → text."""
    code, _, rest = header.partition(" - ")
    return rest.strip().strip('"').replace('\\"', '"') if code.strip().isdigit() else header


def _reason(exc: Any) -> str:
    try:
        return str(json.loads(exc.body)["message"])
    except (TypeError, ValueError, KeyError):
        return f"{exc.status} {exc.reason}"
