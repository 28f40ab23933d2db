"""agentwatch.dashboards."""
