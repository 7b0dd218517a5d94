"""Stream lifecycle: create, deploy, undeploy, destroy, status, history: the state, the registry and a deployer."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from streams import settings
from streams.binders.base import Binder
from streams.dag import Catalog, check
from streams.deployers.base import AppInstanceStatus, Deployer
from streams.dsl import StreamDefinition, parse
from streams.errors import ConfigError
from streams.platform.diff import ReleaseDiff, diff_manifests
from streams.platform.manifest import build_manifest
from streams.platform.properties import format_properties, split_by_labels
from streams.registry import Registry
from streams.runtime.contract import Leftover, parse_options
from streams.state import ReleaseRecord, ReleaseStatus, StateStore, StreamRecord, StreamStatus
from streams.suggest import did_you_mean

RATE_WINDOW_S = 1.0
DRAIN_POLL_S = 0.5
DEFAULT_PLATFORM = "local"


@dataclass(frozen=True)
class Rollout:
    """A change to a running stream: its new release, what changed, and the records of an input topic that no
    app reads any more which were left unread when its last reader had to stop (TUNEFLOW_READY_TIMEOUT_S)."""

    release: ReleaseRecord
    diff: ReleaseDiff
    undrained: dict[str, int]
    grown: dict[str, tuple[int, int]] = field(default_factory=dict)  # topic: (partitions before, after)


@dataclass(frozen=True)
class Redefinition:
    """What `stream update --definition` did: the diff, the rollout (None if not deployed), dropped keys."""

    diff: ReleaseDiff
    rollout: Rollout | None
    dropped_properties: list[str]


__all__ = ["AppInstanceStatus", "Destruction", "Redefinition", "Rollout", "StreamService"]


@dataclass(frozen=True)
class Destruction:
    """What `stream destroy` did: the stream deleted, and what its apps had left outside its topics, dropped or
    kept (then each says how to drop it)."""

    stream: StreamRecord
    leftovers: list[Leftover]
    dropped: bool


class StreamService:
    """`deployer` runs streams on the default platform (local processes); `platforms` adds others by the name a
    user gives (`--platform kubernetes`), each built only when a stream asks for it."""

    def __init__(self, state: StateStore, deployer: Deployer, binder: Callable[[], Binder],
                 platforms: Mapping[str, Callable[[], Deployer]] | None = None) -> None:
        self.state = state
        self.deployer = deployer
        self._binder = binder
        self._platforms = dict(platforms or {})
        self._built: dict[str, Deployer] = {DEFAULT_PLATFORM: deployer}
        self.registry = Registry(state)

    @property
    def platforms(self) -> list[str]:
        return [DEFAULT_PLATFORM, *sorted(self._platforms)]

    def deployer_for(self, platform: str) -> Deployer:
        if platform not in self._built:
            if platform not in self._platforms:
                raise ConfigError(f"unknown platform '{platform}'.{did_you_mean(platform, self.platforms)} "
                                  f"Platforms: {', '.join(self.platforms)}")
            self._built[platform] = self._platforms[platform]()
        return self._built[platform]

    def platform_of(self, name: str) -> str:
        """Where the stream's latest release went (the default platform before its first deploy)."""
        latest = self.state.latest_release(name)
        return str(latest.manifest.get("platform", DEFAULT_PLATFORM)) if latest is not None else DEFAULT_PLATFORM

    def _deployer_of(self, name: str) -> Deployer:
        return self.deployer_for(self.platform_of(name))

    # -- definitions -----------------------------------------------------------------------------------------

    def create(self, name: str, definition: str, description: str | None = None) -> StreamRecord:
        report = check(parse(name, definition), self.definitions(), self.registry.catalog())
        return self.state.create_stream(name, definition, report.to_json()["definition"], description)

    def destroy(self, name: str, drop_leftovers: bool = False) -> Destruction:
        """Undeploy, then delete the definition and history. What the stream's apps keep outside its topics (a
        replication slot) is dropped with `drop_leftovers`, or else returned, each with how to drop it by hand;
        a failed drop stops before the stream is deleted, so the command can be run again."""
        stream = self.state.get_stream(name)  # an unknown name fails before anything is stopped
        if self._deployer_of(name).deployed(name):
            self.undeploy(name)
        leftovers = self.leftovers(stream)
        if drop_leftovers:
            for leftover in leftovers:
                leftover.drop()
        return Destruction(self.state.delete_stream(name), leftovers, dropped=drop_leftovers)

    def leftovers(self, stream: StreamRecord) -> list[Leftover]:
        """What any release of the stream, or its definition as it deploys now, may have left behind (an app that a
        redefinition removed may have left its slot too); each once."""
        manifests = [release.manifest for release in self.state.releases(stream.name)]
        manifests.append(self._manifest_of(stream, self.definitions()))
        found: dict[str, Leftover] = {}
        for manifest in manifests:
            for app in manifest["apps"]:
                try:
                    _, app_class = self.registry.load(app["app"], kind=app["kind"], version=app.get("version"))
                    options = parse_options(app_class, app["options"])
                except ConfigError:
                    continue  # an app no longer registered, or options it no longer takes: nothing to ask
                for leftover in app_class.leftovers(options, manifest["stream"], app["label"]):
                    found.setdefault(leftover.what, leftover)
        return list(found.values())

    def definitions(self) -> dict[str, StreamDefinition]:
        """Every stored stream, parsed."""
        return stored_definitions(self.state)

    # -- deployment ------------------------------------------------------------------------------------------

    def plan(self, name: str, raw: str | None = None, properties: dict[str, str] | None = None,
             platform: str = DEFAULT_PLATFORM) -> tuple[dict[str, Any], int]:
        """The manifest and release number a deploy would make, changing nothing."""
        stream = self.state.get_stream(name)
        self.deployer_for(platform)  # an unknown platform fails first
        if properties is None:
            raw, properties = stream.deployment_properties_raw, dict(stream.deployment_properties or {})
        definitions = self.definitions()
        manifest = build_manifest(definitions[name], properties, self.registry, definitions)
        manifest["deployment_properties"] = {"raw": raw or "", "parsed": properties}
        manifest["platform"] = platform
        return manifest, self._next_release(name)

    def deploy(self, name: str, raw: str | None = None, properties: dict[str, str] | None = None,
               platform: str = DEFAULT_PLATFORM) -> ReleaseRecord:
        """Deploy with these properties, or with the ones kept from the last deploy when none are given."""
        if self._deployer_of(name).running(name):
            raise ConfigError(f"stream '{name}' is already deployed: change it with `tuneflow stream update {name}`, "
                              f"or undeploy it first")
        manifest, release = self.plan(name, raw, properties, platform)
        deployer = self.deployer_for(platform)
        parsed = manifest["deployment_properties"]
        self.state.save_deployment_properties(name, parsed["raw"], parsed["parsed"])
        self.state.set_stream_status(name, StreamStatus.DEPLOYING)
        try:
            self._ensure_topics(manifest)
            deployer.start_apps(manifest, [app["label"] for app in manifest["apps"]], release)
        except Exception:
            self.state.set_stream_status(name, StreamStatus.FAILED)
            self.state.add_release(name, manifest, ReleaseStatus.FAILED)
            raise
        self.state.set_stream_status(name, StreamStatus.DEPLOYED)
        record = self.state.add_release(name, manifest, ReleaseStatus.DEPLOYED)
        self._follow_autoscale(name, manifest)
        return record

    def _ensure_topics(self, manifest: dict[str, Any]) -> dict[str, tuple[int, int]]:
        """The stream's topics — what its apps write and what they read, named destinations and taps included — with
        as many partitions as the most instances of any app (at least one each), so no instance idles; returns the
        topics that grew, with their partitions before and after. Topics never shrink."""
        partitions = max(max(app["count"], (app.get("autoscale") or {}).get("max", 1)) for app in manifest["apps"])
        outputs = list(dict.fromkeys([*(app["output"] for app in manifest["apps"] if app["output"]),
                                      *(topic for app in manifest["apps"] for topic in app["inputs"])]))
        binder = self._binder()
        try:
            before = {topic: binder.partitions(topic) for topic in outputs}
            binder.ensure_topics(outputs, partitions=partitions)
        finally:
            binder.close()
        return {topic: (count, partitions) for topic, count in before.items() if 0 < count < partitions}

    def _next_release(self, name: str) -> int:
        latest = self.state.latest_release(name)
        return 1 if latest is None else latest.number + 1

    # -- changes to a running stream -------------------------------------------------------------------------

    def update(self, name: str, raw: str | None, properties: dict[str, str], cause: str | None = None) -> Rollout:
        """Merge `properties` into the stream's, and move the apps whose manifest changes to a new release;
        `cause` says why in the stream's history (the autoscaler's decisions)."""
        stream = self.state.get_stream(name)
        self._deployed_release(name)
        merged = {**(stream.deployment_properties or {}), **properties}
        definitions = self.definitions()
        manifest = build_manifest(definitions[name], merged, self.registry, definitions)
        joined = ",".join(part for part in (stream.deployment_properties_raw, raw) if part)
        manifest["deployment_properties"] = {"raw": joined, "parsed": merged}
        if cause:
            manifest["cause"] = cause
        return self._rollout(name, manifest)

    def redefine(self, name: str, definition: str, dry_run: bool = False) -> Redefinition:
        """A new DSL for an existing stream. Deployed: red/black for the apps added or changed, then the removed
        ones stop (each after draining what it still had to read). Not deployed: only the definition changes.

        Properties that name an app the new definition no longer has are dropped (listed in the result).
        """
        stream = self.state.get_stream(name)
        definitions = {**self.definitions(), name: parse(name, definition)}
        self._check_dependents(name, definitions)
        current = self._running_release(name)
        labels = _labels(name, definitions, self.registry.catalog())
        properties, dropped = split_by_labels(dict(stream.deployment_properties or {}), labels)
        manifest = build_manifest(definitions[name], properties, self.registry, definitions)
        raw = stream.deployment_properties_raw if not dropped else format_properties(properties)
        manifest["deployment_properties"] = {"raw": raw or "", "parsed": properties}
        old = current.manifest if current is not None else self._manifest_of(stream, definitions)
        diff = diff_manifests(old, manifest)
        if old["definition"] == manifest["definition"]:
            raise ConfigError(f"stream '{name}' already has that definition: {manifest['definition']}")
        if dry_run:
            return Redefinition(diff, None, dropped)
        if current is None:
            self.state.update_stream_definition(name, definition, manifest["definition"])
            self.state.save_deployment_properties(name, raw or "", properties)
            return Redefinition(diff, None, dropped)
        rollout = self._rollout(name, manifest)
        return Redefinition(rollout.diff, rollout, dropped)

    def _check_dependents(self, name: str, definitions: dict[str, StreamDefinition]) -> None:
        """Every other stream must still check with `name` redefined (a tap may read an app that goes away)."""
        for other, definition in definitions.items():
            if other == name:
                continue
            try:
                check(definition, definitions, self.registry.catalog())
            except ConfigError as exc:
                raise ConfigError(f"stream '{other}' depends on '{name}' and would break: {exc}") from None

    def _manifest_of(self, stream: StreamRecord, definitions: dict[str, StreamDefinition]) -> dict[str, Any]:
        """The stream's manifest as it deploys now; just its definition if that no longer resolves."""
        current = parse(stream.name, stream.canonical)
        try:
            return build_manifest(current, dict(stream.deployment_properties or {}), self.registry,
                                  {**definitions, stream.name: current})
        except ConfigError:
            return {"stream": stream.name, "definition": stream.canonical, "apps": []}

    def scale(self, name: str, label: str, count: int, cause: str | None = None) -> Rollout:
        self.state.get_stream(name)
        labels = _labels(name, self.definitions(), self.registry.catalog())
        if label not in labels:
            raise ConfigError(f"stream '{name}' has no app '{label}'.{did_you_mean(label, labels)} "
                              f"Apps: {', '.join(labels)}")
        return self.update(name, f"deployer.{label}.count={count}", {f"deployer.{label}.count": str(count)}, cause)

    def rollback(self, name: str, number: int | None = None) -> Rollout:
        """Deploy an earlier release's manifest (default: the one before the current) as a new release; an
        earlier definition comes back with it."""
        releases = self.state.releases(name)
        current = self._deployed_release(name)
        if number is None:
            earlier = [r for r in releases if r.number < current.number]
            if not earlier:
                raise ConfigError(f"stream '{name}' has no release before {current.number} to roll back to")
            number = earlier[-1].number
        target = self.state.release(name, number)
        if target.number == current.number:
            raise ConfigError(f"release {number} of stream '{name}' is the one deployed")
        definitions = {**self.definitions(), name: parse(name, target.manifest["definition"])}
        self._check_dependents(name, definitions)
        return self._rollout(name, target.manifest)

    def _running_release(self, name: str) -> ReleaseRecord | None:
        deployed = [r for r in self.state.releases(name) if r.status == ReleaseStatus.DEPLOYED]
        if not deployed or not self._deployer_of(name).deployed(name):
            return None
        return deployed[-1]

    def _deployed_release(self, name: str) -> ReleaseRecord:
        release = self._running_release(name)
        if release is None:
            raise ConfigError(f"stream '{name}' is not deployed: deploy it first (`tuneflow stream deploy {name}`)")
        return release

    def _rollout(self, name: str, manifest: dict[str, Any]) -> Rollout:
        """Red/black per changed app: start its new instances, wait until ready, then stop the old ones, upstream
        first; an old app whose input no new app reads drains it before it stops.

        When a new instance never becomes ready, the old ones keep running and the release is recorded failed.
        """
        current = self._deployed_release(name)
        platform = str(current.manifest.get("platform", DEFAULT_PLATFORM))
        manifest = {**manifest, "platform": platform}  # a rollback stays where the stream runs now
        diff = diff_manifests(current.manifest, manifest)
        if diff.empty:
            raise ConfigError(f"nothing to change: release {current.number} of stream '{name}' already runs that")
        release = self._next_release(name)
        deployer = self.deployer_for(platform)
        try:
            grown = self._ensure_topics(manifest)
            deployer.start_apps(manifest, diff.restarted, release)
        except Exception:
            self.state.add_release(name, manifest, ReleaseStatus.FAILED)
            raise
        undrained = self._retire(deployer, name, release, current.manifest, manifest,
                                 set(diff.restarted) | set(diff.removed))
        kept = manifest["deployment_properties"]  # a rollback brings back the properties of its release too
        self.state.save_deployment_properties(name, kept["raw"], kept["parsed"])
        if manifest["definition"] != self.state.get_stream(name).canonical:
            self.state.update_stream_definition(name, manifest["definition"], manifest["definition"])
        rollout = Rollout(self.state.add_release(name, manifest, ReleaseStatus.DEPLOYED), diff, undrained, grown)
        self._follow_autoscale(name, manifest)
        return rollout

    def _retire(self, deployer: Deployer, name: str, release: int, old: dict[str, Any], new: dict[str, Any],
                labels: set[str]) -> dict[str, int]:
        """Stop what runs of `labels` from releases before `release`, upstream first, so each one's readers can
        take what it flushed; returns the records left unread in topics that no app reads any more."""
        read_by_new = {topic for app in new["apps"] for topic in app["inputs"]}
        undrained: dict[str, int] = {}
        for app in old["apps"]:
            if app["label"] not in labels:
                continue
            orphaned = [t for t in app["inputs"] if t not in read_by_new]
            if orphaned and app["kind"] != "source":
                left = self._drain(app.get("group") or name, orphaned)
                if left:
                    undrained[", ".join(orphaned)] = left
            deployer.stop_apps(name, [app["label"]], before=release)
        return undrained

    def _drain(self, group: str, topics: list[str]) -> int:
        """Wait (at most TUNEFLOW_READY_TIMEOUT_S) until `group` has committed everything in `topics`; returns
        what is left."""
        deadline = time.monotonic() + settings.ready_timeout_s()
        binder = self._binder()
        try:
            while (left := binder.group_lag(group, topics)) > 0 and time.monotonic() < deadline:
                time.sleep(DRAIN_POLL_S)
            return left
        finally:
            binder.close()

    def undeploy(self, name: str) -> int:
        """Stop every instance of the stream (each drains and commits); returns how many went."""
        self.state.get_stream(name)
        stopped = self._deployer_of(name).stop_apps(name)
        latest = self.state.latest_release(name)
        if latest is not None and latest.status == ReleaseStatus.DEPLOYED:
            self.state.set_release_status(name, latest.number, ReleaseStatus.UNDEPLOYED)
        self.state.set_stream_status(name, StreamStatus.UNDEPLOYED)
        return stopped

    def open_binder(self) -> Binder:
        """A binder for a look at topics and consumer groups; the caller closes it."""
        return self._binder()

    def _follow_autoscale(self, name: str, manifest: dict[str, Any]) -> None:
        """Whatever follows `deployer.<app>.autoscale` runs while any of the stream's apps has it."""
        self._deployer_of(name).follow_autoscale(name, manifest)

    # -- what runs -------------------------------------------------------------------------------------------

    def status(self, name: str, window_s: float = RATE_WINDOW_S) -> list[AppInstanceStatus]:
        """Each instance as its own endpoints report it now; rates over `window_s`."""
        self.state.get_stream(name)
        return self._deployer_of(name).stream_status(name, window_s)


def _labels(name: str, definitions: dict[str, StreamDefinition], catalog: Catalog) -> list[str]:
    """The app labels of stream `name` once checked (labels default to app names)."""
    return [node.label for node in check(definitions[name], definitions, catalog).definition.apps]


def stored_definitions(state: StateStore) -> dict[str, StreamDefinition]:
    return {s.name: parse(s.name, s.canonical) for s in state.list_streams()}
