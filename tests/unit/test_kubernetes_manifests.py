"""`tuneflow stream deploy --platform kubernetes --dry-run`: the objects of a 5-app stream with a 90-character name."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from streams.deployers.kubernetes.manifests import KubernetesSettings, build_objects, label_value, object_name
from tests.unit.cli import Run, in_process

NAME = "tracks-" + "x" * 83  # 90 characters
PASSWORD = "hunter2-s3cr3t"
DEFINITION = (f"http --port=8080 | n1: normalize | n2: normalize | n3: normalize "
              f"| mongo --uri=mongodb://svc:{PASSWORD}@mongo:27017/catalog --collection=tracks")
PROPERTIES = "deployer.n2.count=3,deployer.mongo.memory=1g,deployer.mongo.cpu=500m"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    for variable in ("TUNEFLOW_KUBECONFIG", "KUBECONFIG", "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(variable, raising=False)
    run = in_process(tmp_path, monkeypatch, capsys)
    assert run("stream", "create", NAME, "--definition", DEFINITION).returncode == 0
    return run


@pytest.fixture
def printed(cli: Run) -> str:
    result = cli("stream", "deploy", NAME, "--platform", "kubernetes", "--dry-run", "-o", "yaml",
                 "--properties", PROPERTIES)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _labels(obj: dict[str, Any]) -> Iterator[tuple[str, str]]:
    yield from obj["metadata"].get("labels", {}).items()
    spec = obj.get("spec", {})
    yield from spec.get("selector", {}).get("matchLabels", {}).items()
    if obj["kind"] == "Service":
        yield from spec.get("selector", {}).items()
    yield from spec.get("template", {}).get("metadata", {}).get("labels", {}).items()


def test_every_name_and_label_fits_and_names_are_unique(printed: str) -> None:
    objects = list(yaml.safe_load_all(printed))
    kinds = sorted({o["kind"] for o in objects})
    assert kinds == ["ConfigMap", "Deployment", "PodDisruptionBudget", "Secret", "Service", "StatefulSet"]
    workloads = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
    assert len(workloads) == 5 and [o["kind"] for o in workloads].count("StatefulSet") == 1  # n2, count 3
    for obj in objects:
        name = obj["metadata"]["name"]
        assert len(name) <= 63 and DNS_LABEL.match(name), name
        for key, value in _labels(obj):
            assert len(value) <= 63 and LABEL_VALUE.match(value), (key, value)
    statefulset = next(o for o in workloads if o["kind"] == "StatefulSet")
    assert len(statefulset["metadata"]["name"]) <= 52  # its pods' controller-revision-hash label must fit too
    for kind in kinds:
        names = [o["metadata"]["name"] for o in objects if o["kind"] == kind]
        assert len(names) == len(set(names)), kind
    assert len({o["metadata"]["name"] for o in workloads}) == 5
    assert {o["metadata"]["annotations"]["tuneflow.io/stream-name"] for o in objects} == {NAME}


def test_long_names_that_differ_only_past_the_cut_stay_apart() -> None:
    names = {object_name(NAME + suffix, "normalize") for suffix in ("a", "b", "-a", "_a")}
    assert len(names) == 4 and all(len(n) <= 63 for n in names)
    assert object_name("Tracks_A", "n") != object_name("tracks-a", "n")
    assert object_name("a-b", "c") != object_name("a", "b-c")  # the same text joined, two different apps
    assert object_name("tracks", "normalize") == "tracks-normalize"  # readable where that is unambiguous
    assert label_value("tracks") == "tracks" and len(label_value(NAME)) == 63


def test_pods_meet_the_restricted_profile(printed: str) -> None:
    workloads = [o for o in yaml.safe_load_all(printed) if o["kind"] in ("Deployment", "StatefulSet")]
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        [container] = pod["containers"]
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False and context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
        assert {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}} in pod["volumes"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    mongo = next(w for w in workloads if w["metadata"]["labels"]["tuneflow.io/app"] == "mongo")
    assert mongo["spec"]["template"]["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "500m", "memory": "1024Mi"}, "limits": {"cpu": "500m", "memory": "1024Mi"}}


def test_no_secret_value_in_config_maps_or_printed_yaml(printed: str) -> None:
    assert PASSWORD not in printed
    printed_secret = next(o for o in yaml.safe_load_all(printed) if o["kind"] == "Secret")
    assert printed_secret["stringData"] == {"uri": "***"}
    # the objects that are applied: the password is in the Secret only, and the pod names it without holding it

    objects = build_objects(_plan(), 1, KubernetesSettings())
    [secret] = [o for o in objects if o["kind"] == "Secret"]
    assert PASSWORD in secret["stringData"]["uri"]
    for obj in objects:
        if obj["kind"] != "Secret":
            assert PASSWORD not in yaml.safe_dump(obj), obj["kind"]
    mongo = next(o for o in objects
                 if o["kind"] == "Deployment" and o["metadata"]["labels"]["tuneflow.io/app"] == "mongo")
    container = mongo["spec"]["template"]["spec"]["containers"][0]
    assert "--uri=$(TUNEFLOW_OPT_URI)" in container["args"]
    assert {"name": "TUNEFLOW_OPT_URI", "valueFrom": {"secretKeyRef": {"name": secret["metadata"]["name"],
                                                                        "key": "uri"}}} in container["env"]


def test_a_changed_option_changes_only_its_apps_pod_template() -> None:
    before = {(o["kind"], o["metadata"]["name"]): o for o in build_objects(_plan(), 1, KubernetesSettings())}
    changed = _plan()
    next(a for a in changed["apps"] if a["label"] == "n1")["options"]["require-isrc"] = "true"
    after = {(o["kind"], o["metadata"]["name"]): o for o in build_objects(changed, 2, KubernetesSettings())}
    differs = {name for (kind, name), obj in after.items() if kind in ("Deployment", "StatefulSet")
               and obj["spec"]["template"] != before[kind, name]["spec"]["template"]}
    assert differs == {object_name(NAME, "n1")}


def _plan() -> dict[str, Any]:
    apps = []
    for label, app, kind, count in (("http", "http", "source", 1), ("n1", "normalize", "processor", 1),
                                    ("n2", "normalize", "processor", 3), ("n3", "normalize", "processor", 1),
                                    ("mongo", "mongo", "sink", 1)):
        options = {"uri": f"mongodb://svc:{PASSWORD}@mongo:27017/catalog"} if app == "mongo" else {}
        apps.append({"label": label, "app": app, "kind": kind, "version": "0.1.0", "uri": None, "options": options,
                     "inputs": [] if kind == "source" else [f"{NAME}.x"], "output": None if kind == "sink" else
                     f"{NAME}.{label}", "count": count, "memory": None})
    return {"stream": NAME, "apps": apps}


def test_the_local_platform_prints_its_commands_without_secrets(cli: Run) -> None:
    result = cli("stream", "deploy", NAME, "--dry-run", "-o", "json")
    assert result.returncode == 0, result.stderr
    commands = {i["instance"]: i["command"] for i in orjson.loads(result.stdout)}
    assert sorted(commands) == ["http-0", "mongo-0", "n1-0", "n2-0", "n3-0"]
    assert "--uri=***" in commands["mongo-0"] and PASSWORD not in result.stdout


def test_an_unknown_platform_is_named(cli: Run) -> None:
    result = cli("stream", "deploy", NAME, "--platform", "kubernets", "--dry-run")
    assert result.returncode != 0
    assert "unknown platform 'kubernets'. Did you mean 'kubernetes'? Platforms: local, kubernetes" in result.stderr


def test_an_autoscaled_app_is_a_stateful_set_with_a_lag_driven_autoscaler() -> None:
    plan = _plan()
    n1 = next(a for a in plan["apps"] if a["label"] == "n1")
    n1["autoscale"] = {"min": 1, "max": 4, "lag": 500, "cooldown_s": 45.0}
    objects = {(o["kind"], o["metadata"]["labels"]["tuneflow.io/app"]): o for o in build_objects(plan, 1,
                                                                                                 KubernetesSettings())}
    workload, hpa = objects["StatefulSet", "n1"], objects["HorizontalPodAutoscaler", "n1"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet",
                                             "name": workload["metadata"]["name"]}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 4)
    [metric] = hpa["spec"]["metrics"]
    assert metric["external"]["metric"]["name"] == "tuneflow_consumer_lag"
    assert metric["external"]["metric"]["selector"]["matchLabels"]["app"] == "n1"
    assert metric["external"]["target"] == {"type": "AverageValue", "averageValue": "500"}
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 45
    assert len(hpa["metadata"]["name"]) <= 52 and hpa["metadata"]["name"] == workload["metadata"]["name"]
    assert ("HorizontalPodAutoscaler", "n3") not in objects


def test_service_monitors_on_request_select_a_metrics_port_of_every_app() -> None:
    assert not [o for o in build_objects(_plan(), 1, KubernetesSettings()) if o["kind"] == "ServiceMonitor"]
    objects = build_objects(_plan(), 1, KubernetesSettings(service_monitor=True))
    monitors = {o["metadata"]["labels"]["tuneflow.io/app"]: o for o in objects if o["kind"] == "ServiceMonitor"}
    services = {o["metadata"]["labels"]["tuneflow.io/app"]: o for o in objects if o["kind"] == "Service"}
    assert set(monitors) == set(services) == {"http", "n1", "n2", "n3", "mongo"}
    for label, monitor in monitors.items():
        service = services[label]
        assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "15s"}]
        assert "metrics" in {port["name"] for port in service["spec"]["ports"]}
    assert {port["name"] for port in services["http"]["spec"]["ports"]} == {"http", "metrics"}
