"""Change-data-capture machinery under the `cdc-postgres` (and `cdc-mysql`) sources."""
