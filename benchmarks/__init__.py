"""Benchmarks for agentwatch; each module runs standalone (``python -m benchmarks.<name>``)."""
