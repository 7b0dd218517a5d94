"""`--platform kubernetes` against the stack's real kube-apiserver and controller-manager (no kubelet: pods are
created and admitted by the namespace's Pod Security "restricted", and stay Pending)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from kubernetes import client, config

from streams.deployers.kubernetes.manifests import KubernetesSettings, build_objects, label_value
from tests.integration.processes import wait_for
from tests.integration.services import service_url, unique_name

NAMESPACE = "tuneflow"
PASSWORD = "k8s-test-pw-4711"
KINDS = ("deployments", "statefulsets", "replicasets", "controllerrevisions", "pods", "configmaps", "secrets",
         "services", "poddisruptionbudgets", "horizontalpodautoscalers")


class Cli:
    def __init__(self, home: Path, **env: str) -> None:
        self.env = {**os.environ, "TUNEFLOW_HOME": str(home), "TUNEFLOW_KUBERNETES_WAIT": "created",
                    "TUNEFLOW_KUBERNETES_NAMESPACE": NAMESPACE, **env}
        self.env.pop("TUNEFLOW_DB_URL", None)

    def __call__(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "streams.cli", "stream", *args], capture_output=True,
                              text=True, env={**self.env, **env}, timeout=300)

    def ok(self, *args: str, **env: str) -> str:
        result = self(*args, **env)
        assert result.returncode == 0, f"tuneflow stream {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result.stdout


class Cluster:
    """Reads the cluster with the Kubernetes client directly, not through the deployer under test."""

    def __init__(self, kubeconfig: str) -> None:
        self.api = config.new_client_from_config(config_file=kubeconfig)
        self.core, self.apps = client.CoreV1Api(self.api), client.AppsV1Api(self.api)
        self.policy = client.PolicyV1Api(self.api)
        self.autoscaling = client.AutoscalingV2Api(self.api)

    def list(self, kind: str, stream: str) -> list[Any]:
        method = {"deployments": self.apps.list_namespaced_deployment,
                  "statefulsets": self.apps.list_namespaced_stateful_set,
                  "replicasets": self.apps.list_namespaced_replica_set,
                  "controllerrevisions": self.apps.list_namespaced_controller_revision,
                  "pods": self.core.list_namespaced_pod, "configmaps": self.core.list_namespaced_config_map,
                  "secrets": self.core.list_namespaced_secret, "services": self.core.list_namespaced_service,
                  "poddisruptionbudgets": self.policy.list_namespaced_pod_disruption_budget,
                  "horizontalpodautoscalers": self.autoscaling.list_namespaced_horizontal_pod_autoscaler}[kind]
        return list(method(NAMESPACE, label_selector=f"tuneflow.io/stream={label_value(stream)}").items)

    def deployment(self, stream: str, label: str) -> Any:
        [found] = [d for d in self.list("deployments", stream) if d.metadata.labels["tuneflow.io/app"] == label]
        return found

    def leftovers(self, stream: str) -> dict[str, list[str]]:
        found = {kind: [o.metadata.name for o in self.list(kind, stream)] for kind in KINDS}
        return {kind: names for kind, names in found.items() if names}


@pytest.fixture
def cluster() -> Cluster:
    return Cluster(service_url("kubernetes"))


@pytest.fixture
def cli(tmp_path: Path, kafka_bootstrap: str, cluster: Cluster) -> Iterator[Cli]:
    """The CLI as the deployer's service account of deploy/kubernetes/rbac.yaml: its Role must be enough."""
    tool = Cli(tmp_path, TUNEFLOW_KUBECONFIG=str(_deployer_kubeconfig(cluster, tmp_path)))
    yield tool
    for stream in orjson.loads(tool.ok("list", "--json")):  # whatever a failed test left behind
        tool("undeploy", stream["name"])


def _deployer_kubeconfig(cluster: Cluster, directory: Path) -> Path:
    request = {"spec": {"expirationSeconds": 3600}}
    token = cluster.core.create_namespaced_service_account_token("tuneflow-deployer", NAMESPACE, request).status.token
    admin = yaml.safe_load(Path(service_url("kubernetes")).read_text())
    path = directory / "deployer.kubeconfig"
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "clusters": admin["clusters"],
        "users": [{"name": "tuneflow-deployer", "user": {"token": token}}],
        "contexts": [{"name": "deployer", "context": {"cluster": admin["clusters"][0]["name"],
                                                      "user": "tuneflow-deployer", "namespace": NAMESPACE}}],
        "current-context": "deployer"}))
    return path


def test_deploy_update_rollback_scale_undeploy(cli: Cli, cluster: Cluster) -> None:
    stream = unique_name("k8s")  # '_' is not allowed in object names: they are cleaned and hashed
    other = unique_name("k8s")  # a neighbour: nothing of it may move while `stream` changes and goes
    cli.ok("create", other, "--definition", "http | log")
    cli.ok("deploy", other, "--platform", "kubernetes")
    cli.ok("create", stream, "--definition",
           f"http | normalize | mongo --uri=mongodb://svc:{PASSWORD}@mongo:27017/catalog --collection=tracks")
    out = cli.ok("deploy", stream, "--platform", "kubernetes")
    assert out == f"deployed stream {stream} on kubernetes (release 1): http×1, normalize×1, mongo×1\n"

    assert {d.metadata.labels["tuneflow.io/app"] for d in cluster.list("deployments", stream)} == \
        {"http", "normalize", "mongo"}
    assert len(cluster.list("configmaps", stream)) == 3 and len(cluster.list("poddisruptionbudgets", stream)) == 3
    [service] = cluster.list("services", stream)
    assert service.spec.ports[0].port == 8080
    [secret] = cluster.list("secrets", stream)
    assert list(secret.data) == ["uri"]  # the password is in the Secret, not in a ConfigMap or a pod template
    assert PASSWORD not in str([c.data for c in cluster.list("configmaps", stream)])
    assert PASSWORD not in str([d.spec.template for d in cluster.list("deployments", stream)])
    # the controller-manager made a ReplicaSet per Deployment, and each pod was admitted: restricted passed
    wait_for(lambda: len(cluster.list("pods", stream)) == 3, 30, "three pods")
    assert len(cluster.list("replicasets", stream)) == 3
    assert all(p.status.phase == "Pending" for p in cluster.list("pods", stream))
    status = orjson.loads(cli.ok("status", stream, "--json"))
    assert sorted((s["label"], s["state"]) for s in status) == \
        [("http", "pending"), ("mongo", "pending"), ("normalize", "pending")]

    before = {label: cluster.deployment(stream, label) for label in ("http", "normalize", "mongo")}
    cli.ok("update", stream, "--properties", "app.normalize.require-isrc=true")
    after = {label: cluster.deployment(stream, label) for label in ("http", "normalize", "mongo")}
    for label in ("http", "mongo"):  # only the changed app's pod template moves
        assert after[label].spec.template == before[label].spec.template
        assert after[label].metadata.generation == before[label].metadata.generation
    assert after["normalize"].spec.template != before["normalize"].spec.template
    assert after["normalize"].metadata.labels["tuneflow.io/release"] == "2"
    wait_for(lambda: len(cluster.list("replicasets", stream)) == 4, 30, "the new template's ReplicaSet")

    cli.ok("rollback", stream)
    back = cluster.deployment(stream, "normalize")
    assert back.spec.template == before["normalize"].spec.template
    assert back.metadata.labels["tuneflow.io/release"] == "3"

    # a change the namespace refuses: the reason is shown, the app keeps its template, the release is failed
    refused = cli("update", stream, "--properties", "app.normalize.require-isrc=false",
                  TUNEFLOW_KUBERNETES_RUN_AS_USER="0")
    assert refused.returncode != 0 and 'violates PodSecurity "restricted:latest"' in refused.stderr
    assert cluster.deployment(stream, "normalize").spec.template == before["normalize"].spec.template
    assert cli.ok("history", stream).splitlines()[-1].split()[:2] == ["4", "failed"]

    assert "restarted normalize" in cli.ok("scale", stream, "normalize", "--count", "2")
    [statefulset] = cluster.list("statefulsets", stream)  # two instances: each needs its stable index
    assert statefulset.spec.replicas == 2
    assert {d.metadata.labels["tuneflow.io/app"] for d in cluster.list("deployments", stream)} == {"http", "mongo"}
    wait_for(lambda: sorted(p.metadata.labels.get("apps.kubernetes.io/pod-index", "-")
                            for p in cluster.list("pods", stream)
                            if p.metadata.labels["tuneflow.io/app"] == "normalize") == ["0", "1"],
             30, "the StatefulSet's two pods")

    assert cli.ok("undeploy", stream) == f"undeployed stream {stream}: stopped 4 instances\n"
    wait_for(lambda: not cluster.leftovers(stream), 60, "every object of the stream to go")
    assert cli.ok("status", stream) == f"stream {stream}: no instances (not deployed)\n"
    assert {d.metadata.labels["tuneflow.io/app"] for d in cluster.list("deployments", other)} == {"http", "log"}
    assert len(cluster.list("pods", other)) == 2
    cli.ok("destroy", other)  # a deployed stream: undeployed first
    wait_for(lambda: not cluster.leftovers(other), 60, "every object of the other stream to go")


def test_autoscale_becomes_a_horizontal_pod_autoscaler_on_the_consumer_lag(cli: Cli, cluster: Cluster) -> None:
    stream = unique_name("k8s")
    cli.ok("create", stream, "--definition", "http | normalize | log")
    cli.ok("deploy", stream, "--platform", "kubernetes", "--properties",
           "deployer.normalize.autoscale=1..3,deployer.normalize.autoscale-lag=500")
    [hpa] = cluster.list("horizontalpodautoscalers", stream)
    [workload] = cluster.list("statefulsets", stream)
    assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (1, 3)
    assert (hpa.spec.scale_target_ref.kind, hpa.spec.scale_target_ref.name) == ("StatefulSet", workload.metadata.name)
    [metric] = hpa.spec.metrics
    assert (metric.external.metric.name, metric.external.target.average_value) == ("tuneflow_consumer_lag", "500")
    assert workload.metadata.labels["tuneflow.io/app"] == "normalize"
    cli.ok("undeploy", stream)
    assert cluster.leftovers(stream) == {}


def test_a_pod_spec_the_namespace_refuses_is_named_and_leaves_nothing(cli: Cli, cluster: Cluster) -> None:
    stream = "tracks-" + unique_name("x" * 72).replace("_", "-")
    assert len(stream) == 90
    cli.ok("create", stream, "--definition", "http | n1: normalize | n2: normalize | n3: normalize | log")
    # the server's own schemas and admission accept the 5-app stream's objects, Pod Security included
    checked = cli("deploy", stream, "--platform", "kubernetes", "--dry-run=server",
                  "--properties", "deployer.n2.count=3")
    assert checked.returncode == 0, checked.stderr
    as_root = {"TUNEFLOW_KUBERNETES_RUN_AS_USER": "0"}
    checked = cli("deploy", stream, "--platform", "kubernetes", "--dry-run=server", **as_root)
    assert checked.returncode != 0 and "runAsUser=0 (pod must not set runAsUser=0)" in checked.stderr

    refused = cli("deploy", stream, "--platform", "kubernetes", "--properties", "deployer.n2.count=3", **as_root)
    assert refused.returncode != 0
    reason = 'is forbidden: violates PodSecurity "restricted:latest": runAsUser=0'
    assert refused.stderr.count(reason) == 5, refused.stderr  # every app named, the StatefulSet's n2 too
    assert "the cluster refuses the pods of:\n  deployment/tracks-" in refused.stderr
    assert "\n  statefulset/tracks-" in refused.stderr
    assert not cluster.leftovers(stream)
    assert orjson.loads(cli.ok("list", "--json"))[0]["status"] == "failed"


def test_a_pods_command_line_runs_the_app(tmp_path: Path, kafka_bootstrap: str) -> None:
    """No kubelet here: run a Deployment's container as a kubelet would (env from the ConfigMap and the Secret,
    `$(VAR)` expanded in the arguments) on this machine, and ask its /readyz."""
    manifest = {"stream": unique_name("pod"), "apps": [{
        "label": "normalize", "app": "normalize", "kind": "processor", "version": "0.1.0",
        "uri": "python:processors.normalize:Normalize", "options": {"require-isrc": "true"}, "inputs": ["raw"],
        "output": "clean", "count": 1, "memory": "256m", "cpu": None}]}
    objects = build_objects(manifest, 1, KubernetesSettings(kafka_bootstrap=kafka_bootstrap))
    [config] = [o["data"] for o in objects if o["kind"] == "ConfigMap"]
    [workload] = [o for o in objects if o["kind"] == "Deployment"]
    [container] = workload["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] if "value" in e else config[e["valueFrom"]["configMapKeyRef"]["key"]]
           for e in container["env"]}
    args = [re.sub(r"\$\((\w+)\)", lambda m: env[m[1]], arg) for arg in container["args"]]
    port = _free_port()
    args[args.index("--port") + 1] = str(port)  # the pod's own network namespace is this machine's here
    env.update(HOME=str(tmp_path), TUNEFLOW_HOME=str(tmp_path))
    app = subprocess.Popen([sys.executable, "-m", "streams.cli", *args], env={**os.environ, **env},
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        probe = container["readinessProbe"]["httpGet"]["path"]
        wait_for(lambda: _http_status(f"http://127.0.0.1:{port}{probe}") == 200, 60, "the app to be ready")
        assert "--require-isrc=true" in args and "--instance" in args and args[args.index("--instance") + 1] == "0"
    finally:
        app.terminate()
        assert app.wait(60) == 0, app.stderr.read() if app.stderr else ""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code
