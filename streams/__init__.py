"""tuneflow platform core: catalog model, runtime, DSL, registry, deployers and CLI."""

__version__ = "0.1.0"
