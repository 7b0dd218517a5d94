"""What an app is to the harness: an options model and a batch function, typed by its kind."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from streams.errors import ConfigError
from streams.records import Record

if TYPE_CHECKING:
    from streams.binders.base import Binder
    from streams.runtime.metrics import AppMetrics

AppKind = Literal["source", "processor", "sink"]


def _kebab(name: str) -> str:
    return name.replace("_", "-")


OUTPUT_OPTIONS = frozenset({"partition_key"})  # what every app that writes records takes, sinks not


class AppOptions(BaseModel):
    """Options are written `--some-option=value` in the DSL and on the command line.

    `--partition-key` is every source's and processor's: the harness keys the app's outputs by that field.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=_kebab, frozen=True)

    partition_key: str | None = Field(
        default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$",
        description="Key each output record by this field of its JSON value (dotted path, e.g. album.album_id), "
                    "so one entity's records stay on one partition and one instance downstream.")


@dataclass(slots=True)
class Failure:
    """A record that cannot be processed: it goes to the DLQ with every reason."""

    record: Record
    reasons: list[dict[str, str]]
    kind: str = "invalid"


@dataclass(slots=True)
class Outcome:
    outputs: list[Record] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)

    def extend(self, other: Outcome) -> None:
        self.outputs.extend(other.outputs)
        self.failures.extend(other.failures)


@dataclass(slots=True)
class AppContext:
    stream: str
    label: str
    instance: int
    binder: Binder
    metrics: AppMetrics
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("tuneflow.app"))


@dataclass(frozen=True)
class Leftover:
    """Something an app keeps outside the stream's topics that outlives the stream (a replication slot holding WAL
    on a database): what it is, the exact way to remove it by hand, and `drop`, which removes it."""

    what: str
    how: str
    drop: Callable[[], None]


OptionsT = TypeVar("OptionsT", bound=AppOptions)


class App(Generic[OptionsT]):
    """Base of every app; `sources/base.py`, `processors/base.py`, `sinks/base.py` narrow it by kind."""

    kind: ClassVar[AppKind]
    name: ClassVar[str]
    options_model: ClassVar[type[AppOptions]] = AppOptions

    def __init__(self, options: OptionsT, context: AppContext) -> None:
        self.options = options
        self.context = context

    def setup(self) -> None:
        """Open connections; called once in the process that runs the app."""

    def close(self) -> None:
        """Release what setup opened; called once on shutdown."""

    @classmethod
    def leftovers(cls, options: Any, stream: str, label: str) -> list[Leftover]:
        """What an instance with these options may have left behind that `stream destroy` must tell about (or
        drop); called in the platform's process, never in the app's."""
        return []


class SourceApp(App[OptionsT]):
    kind: ClassVar[AppKind] = "source"

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        raise NotImplementedError

    def ack(self, records: Sequence[Record]) -> None:
        """The records are durable downstream; the source may forget them (commit offsets, feedback LSN)."""

    @property
    def exhausted(self) -> bool:
        """A bounded source (a snapshot) has emitted everything; an unbounded one never is."""
        return False


class ProcessorApp(App[OptionsT]):
    kind: ClassVar[AppKind] = "processor"

    def process(self, batch: Sequence[Record]) -> Outcome:
        raise NotImplementedError


class SinkApp(App[OptionsT]):
    kind: ClassVar[AppKind] = "sink"

    def write(self, batch: Sequence[Record]) -> Outcome:
        """Make the batch durable; return the records that cannot ever be written as failures.

        Raise TransientError when the target is unavailable: the harness pauses and retries.
        """
        raise NotImplementedError


def parse_options(app: type[App[Any]], values: dict[str, Any]) -> AppOptions:
    """Validate `--key=value` options against the app's model; errors name each field and reason."""
    try:
        options = app.options_model.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"--{'.'.join(str(p) for p in error['loc']) or '?'}: {_option_message(error)}" for error in exc.errors()
        )
        raise ConfigError(f"invalid options for app '{app.name}': {problems}") from None
    if app.kind == "sink" and getattr(options, "partition_key", None):
        raise ConfigError(f"invalid options for app '{app.name}': --partition-key: a sink writes no records to key; "
                          "set it on the app that writes the sink's input")
    return options


def _option_message(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown option"
    if error["type"] == "missing":
        return "required"
    return str(error["msg"])


def validation_reasons(exc: ValidationError, union_tags: frozenset[str] = frozenset()) -> list[dict[str, str]]:
    """Every problem of a record as {field, message}, the shape DLQ headers and HTTP 4xx bodies carry.

    `union_tags` are the tags of a tagged union the record was validated against; pydantic puts the chosen tag
    first in each location, which is not a field of the record, so it is left out.
    """
    reasons = []
    for error in exc.errors(include_url=False):
        loc = list(error["loc"])
        if loc and loc[0] in union_tags:
            loc = loc[1:]
        reasons.append({"field": ".".join(str(part) for part in loc), "message": str(error["msg"])})
    return reasons
