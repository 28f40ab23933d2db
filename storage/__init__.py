"""agentwatch.storage: the ClickHouse schema, the stores and every SQL statement."""
