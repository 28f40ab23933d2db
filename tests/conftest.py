"""Shared fixtures. Our own internal errors re-raise under pytest (see agentwatch._safety)."""
