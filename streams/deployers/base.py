"""The deployer protocol: all the platform asks of a place where apps run (local processes, Kubernetes).

The platform hands a deployer a release's manifest and the app labels to start; it never asks for one deployer by
name. A stream remembers its platform in its release manifests (`platform`), so later verbs reach the same one.
The embedded deployer stands outside: it runs a manifest inside `tuneflow run` and ends with that process, with
no releases to move between.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class AppInstanceStatus:
    """One instance as the deployer sees it now; rates are over the status window.

    `pid` and `port` are the local process's (0 where there is none, as for a pod); `name` is what the platform
    calls the instance (a pod name on Kubernetes) and `detail` why it is not up, when the platform says.
    """

    label: str
    index: int
    pid: int
    port: int
    state: str  # up | starting | stalled | down | pending | refused
    ready: bool
    records_in: float
    records_out: float
    records_failed: float
    in_per_s: float
    out_per_s: float
    failed_per_s: float
    lag: float
    name: str = ""
    detail: str = ""


class Deployer(Protocol):
    """What every deployer does, per stream and app label. Each call is whole: all started and ready, or an error
    with nothing new left running."""

    def start_apps(self, manifest: dict[str, Any], labels: Sequence[str], release: int) -> None:
        """Run the apps `labels` of `manifest` as release `release`, beside what runs of earlier releases."""

    def stop_apps(self, stream: str, labels: Sequence[str] | None = None, before: int | None = None) -> int:
        """Stop the apps `labels` of `stream` (every app when None; only what comes from releases before `before`,
        when given); returns how many instances or objects went."""

    def follow_autoscale(self, stream: str, manifest: dict[str, Any]) -> None:
        """Run what moves apps with `deployer.<app>.autoscale` between their bounds while any has it; stop it
        when none has."""

    def deployed(self, stream: str) -> bool:
        """Anything of the stream exists on the platform (running or not)."""

    def running(self, stream: str) -> bool:
        """Some instance of the stream is alive or on its way up."""

    def stream_status(self, stream: str, window_s: float) -> list[AppInstanceStatus]:
        """Every instance of the stream as the platform reports it now, rates over `window_s`."""

    def render(self, manifest: dict[str, Any], release: int, validate: bool = False) -> list[dict[str, Any]]:
        """What `start_apps` would create for the whole manifest, secrets masked (`stream deploy --dry-run`);
        with `validate`, the platform checks them too, creating nothing (a ConfigError says what it refused)."""
