"""Other stream processors doing tuneflow's work on the same records, measured in the same `make bench` run."""
