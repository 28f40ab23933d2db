"""agentwatch.storage."""
