"""The one harness every app instance runs in: binding, batching, DLQ, retries, metrics, health, shutdown."""
