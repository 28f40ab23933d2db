"""agentwatch.collector."""
