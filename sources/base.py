"""The source contract: `poll` a batch, `ack` it once it is durable downstream."""

from streams.runtime.contract import AppOptions, SourceApp

__all__ = ["AppOptions", "SourceApp"]
