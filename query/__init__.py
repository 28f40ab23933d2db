"""agentwatch.query: the read-only ClickHouse HTTP endpoint over the embedded store."""
