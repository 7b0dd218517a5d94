"""Processor apps: records in, records out."""
