"""agentwatch.alerts: readers of storage that judge it — alert rules, pure detection,
evaluation, notification and passive health."""
