"""The source contract: `poll` a batch, `ack` it once it is durable downstream."""

from streams.runtime.contract import AppOptions, Leftover, SourceApp

__all__ = ["AppOptions", "Leftover", "SourceApp"]
