"""How apps talk: the Kafka binder for real streams, the memory binder for in-process runs and unit tests."""
