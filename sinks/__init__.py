"""Sink apps: where records leave a stream for a store."""
