"""Moving the legacy RDBMS catalog into the document store: backfill, verification."""
