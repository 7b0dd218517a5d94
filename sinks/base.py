"""The sink contract: `write(batch) -> Outcome` (failures only); raise TransientError while the target is down."""

from streams.runtime.contract import AppOptions, Failure, Outcome, SinkApp

__all__ = ["AppOptions", "Failure", "Outcome", "SinkApp"]
