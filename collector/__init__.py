"""agentwatch.collector: OTLP ingest — receive, decode, normalise, price, write."""
