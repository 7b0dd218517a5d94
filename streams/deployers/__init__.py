"""Deployers: where and how a stream's app instances run."""
