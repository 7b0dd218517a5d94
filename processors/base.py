"""The processor contract: `process(batch) -> Outcome(outputs, failures)`."""

from streams.runtime.contract import AppOptions, Failure, Outcome, ProcessorApp

__all__ = ["AppOptions", "Failure", "Outcome", "ProcessorApp"]
