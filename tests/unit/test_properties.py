"""Deployment properties: parsing, `*` and per-app settings, and the mistakes users make."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.errors import ConfigError
from streams.platform.properties import (
    AppDeployment,
    format_properties,
    memory_mb,
    parse_properties,
    per_app,
    read_properties_file,
    split_by_labels,
)

LABELS = ["kafka", "normalize", "mongo"]


def test_pairs_with_quoted_commas_keep_their_order_and_text() -> None:
    text = 'deployer.normalize.count=2, app.mongo.collection="a,b" ,app.kafka.topic=raw,version.mongo=0.1.0'
    assert parse_properties(text) == {"deployer.normalize.count": "2", "app.mongo.collection": "a,b",
                                      "app.kafka.topic": "raw", "version.mongo": "0.1.0"}
    assert parse_properties("") == {}


def test_star_applies_to_every_app_and_an_apps_own_setting_wins() -> None:
    deployments = per_app(parse_properties("deployer.normalize.count=3,deployer.*.count=2,deployer.*.memory=512m,"
                                           "app.mongo.database=cat,version.normalize=2.0"), LABELS)
    assert deployments["normalize"] == AppDeployment(count=3, memory="512m", version="2.0")
    assert deployments["kafka"] == AppDeployment(count=2, memory="512m")
    assert deployments["mongo"] == AppDeployment(count=2, memory="512m", options={"database": "cat"})


def test_a_properties_file_with_comments(tmp_path: Path) -> None:
    path = tmp_path / "deploy.properties"
    path.write_text("# scale out\ndeployer.normalize.count = 2\n\napp.mongo.collection=tracks_v2\n")
    raw, parsed = read_properties_file(path)
    assert raw == path.read_text()
    assert parsed == {"deployer.normalize.count": "2", "app.mongo.collection": "tracks_v2"}


@pytest.mark.parametrize(("text", "message"), [
    ("deployer.normalise.count=2",
     "deployment property 'deployer.normalise.count' names no app of the stream. Did you mean 'normalize'? "
     "Apps: kafka, normalize, mongo"),
    ("deployer.normalize.count=0",
     "deployment property 'deployer.normalize.count' must be a whole number of instances ≥ 1, got '0'"),
    ("deployer.normalize.cnt=2",
     "unknown deployer property 'deployer.normalize.cnt'. Did you mean 'count'? Deployer properties: count, memory, "
     "cpu, autoscale, autoscale-lag, autoscale-cooldown"),
    ("deployer.normalize.autoscale=3..1",
     "deployment property 'deployer.normalize.autoscale' must be MIN..MAX instances (1 ≤ MIN ≤ MAX), got '3..1'"),
    ("deployer.normalize.autoscale=0..2",
     "deployment property 'deployer.normalize.autoscale' must be MIN..MAX instances (1 ≤ MIN ≤ MAX), got '0..2'"),
    ("deployer.normalize.autoscale-lag=0",
     "deployment property 'deployer.normalize.autoscale-lag' must be the records of lag per instance (≥ 1), got '0'"),
    ("deployer.normalize.autoscale-cooldown=soon",
     "deployment property 'deployer.normalize.autoscale-cooldown' must be seconds (e.g. 30 or 30s), got 'soon'"),
    ("deployer.mongo.memory=lots", "deployment property 'deployer.mongo.memory' must be a size like 512m or 1g, "
                                   "got 'lots'"),
    ("spring.mongo.x=1", "unknown deployment property 'spring.mongo.x': use deployer.<app>.count, "
                         "deployer.<app>.memory, deployer.<app>.cpu, app.<app>.<option> or version.<app>"),
    ("deployer.mongo.cpu=fast", "deployment property 'deployer.mongo.cpu' must be CPU units like 500m, 0.5 or 2, "
                                "got 'fast'"),
    ("app.mongo=1", "deployment property 'app.mongo' names no option: app.<app>.<option>=value"),
    ("version.*=2", "deployment property 'version.*': write version.<app>=<version>"),
])
def test_mistakes_are_named(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        per_app(parse_properties(text), LABELS)
    assert str(error.value) == message


def test_a_piece_that_is_not_key_value_is_named() -> None:
    with pytest.raises(ConfigError, match="cannot read deployment properties at 'nonsense'"):
        parse_properties("deployer.mongo.count=1,nonsense")


@pytest.mark.parametrize("value", ["soon", "0", "-5"])
def test_a_bad_readiness_timeout_is_named(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.settings import ready_timeout_s

    monkeypatch.setenv("TUNEFLOW_READY_TIMEOUT_S", value)
    with pytest.raises(ConfigError, match=f"TUNEFLOW_READY_TIMEOUT_S must be a positive number of seconds, "
                                          f"got '{value}'"):
        ready_timeout_s()


def test_formatting_then_parsing_gives_the_same_properties() -> None:
    properties = {"app.mongo.collection": "a,b", "app.log.prefix": 'say "hi"', "deployer.*.count": "2",
                  "app.file.dir": " padded "}
    text = format_properties(properties)
    assert text.startswith('app.mongo.collection="a,b",')
    assert parse_properties(text) == properties


def test_properties_of_apps_a_new_definition_drops_are_split_off() -> None:
    kept, dropped = split_by_labels({"deployer.mongo.count": "2", "deployer.*.memory": "1g",
                                     "app.normalize.strict": "true", "version.mongo": "0.2"}, ["kafka", "normalize"])
    assert kept == {"deployer.*.memory": "1g", "app.normalize.strict": "true"}
    assert dropped == ["deployer.mongo.count", "version.mongo"]


@pytest.mark.parametrize(("size", "mib"), [("512m", 512), ("1g", 1024), ("2G", 2048), ("2048k", 2), ("300", 300)])
def test_memory_sizes_in_mib(size: str, mib: int) -> None:
    assert memory_mb(size) == mib


def test_autoscale_takes_bounds_a_lag_per_instance_and_a_cool_down() -> None:
    deployments = per_app(parse_properties(
        "deployer.normalize.autoscale=1..4,deployer.normalize.autoscale-lag=500,deployer.normalize.autoscale-cooldown=45s"
    ), LABELS)
    policy = deployments["normalize"].autoscaling()
    assert policy is not None and (policy.min, policy.max, policy.lag, policy.cooldown_s) == (1, 4, 500, 45.0)
    assert deployments["mongo"].autoscaling() is None
    lone = per_app(parse_properties("deployer.mongo.autoscale-lag=5"), LABELS)["mongo"]
    with pytest.raises(ConfigError, match=r"go with deployer\.<app>\.autoscale=MIN\.\.MAX"):
        lone.autoscaling()
