from typing import Any

def decode_traces(
    body: bytes,
    max_spans: int,
    max_attributes: int,
    max_value_bytes: int,
    max_events: int,
    max_links: int,
    max_resource_bytes: int,
    max_scope_bytes: int,
    price_keys: tuple[tuple[str, ...], ...],
    /,
) -> dict[str, Any] | None: ...
