"""agentwatch.app: the `agentwatch` command and the wiring that knows every layer."""
