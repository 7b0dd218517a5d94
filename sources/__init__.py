"""Source apps: where records enter a stream."""
