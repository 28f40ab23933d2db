"""Answers from the Review page, sent to the collector as feedback spans over OTLP/HTTP.

The dashboard reads the store through a read-only path, so it records nothing there itself:
like any other sender it posts an OTLP/JSON request to the collector
(``AGENTWATCH_OTLP_ENDPOINT``, with ``AGENTWATCH_INGEST_TOKEN`` as its bearer token when one
is set), which stores the span before it answers 200. An answer is one ``feedback`` span in the
item's trace whose parent is the item's span: ``agentwatch.feedback.correct``, the reviewer,
and the comment and corrected label, redacted and cut short like any recorded text. Answering
twice adds a second span; the latest one is the item's answer and both are kept.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Final

from agentwatch._errors import AgentwatchError
from agentwatch._redact import bounded_redact, default_redactor
from agentwatch._semconv import (
    ENVIRONMENT,
    FEEDBACK_COMMENT,
    FEEDBACK_CORRECT,
    FEEDBACK_TARGET_SPAN_ID,
    GEN_AI_OPERATION_NAME,
    OPERATION_FEEDBACK,
)
from agentwatch.storage._review_queries import ABOUT, ITEM_KINDS, LABEL, REVIEWER

ENV_OTLP_ENDPOINT: Final = "AGENTWATCH_OTLP_ENDPOINT"
ENV_INGEST_TOKEN: Final = "AGENTWATCH_INGEST_TOKEN"  # noqa: S105 - a variable name
ENV_RULES_FILE: Final = "AGENTWATCH_RULES_FILE"  # the review rules' file (``[[review]]``)
ENV_DEMO_RULES: Final = "AGENTWATCH_DEMO_RULES"  # "1": ``agentwatch up --demo`` without a file
DEFAULT_OTLP_ENDPOINT: Final = "http://127.0.0.1:4318"
MAX_TEXT_CHARS: Final = 2000
MAX_REVIEWER_CHARS: Final = 200
SEND_TIMEOUT_S: Final = 10.0
_HEX_TRACE: Final = re.compile(r"[0-9a-f]{32}")
_HEX_SPAN: Final = re.compile(r"[0-9a-f]{16}")


class ReviewNotSent(AgentwatchError):
    """The collector did not store the answer; the message says why (never the token)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """A reviewer's answer about one queued span."""

    trace_id: str
    span_id: str
    kind: str  # the item's kind: decision, action or task
    correct: bool
    reviewer: str
    service: str = ""
    environment: str = ""
    comment: str = ""
    label: str = ""


def otlp_endpoint() -> str:
    return (os.environ.get(ENV_OTLP_ENDPOINT, "").strip() or DEFAULT_OTLP_ENDPOINT).rstrip("/")


def _attribute(key: str, value: str | bool) -> dict[str, Any]:
    typed = {"boolValue": value} if isinstance(value, bool) else {"stringValue": value}
    return {"key": key, "value": typed}


def feedback_request(answer: Answer, now_ns: int | None = None) -> dict[str, Any]:
    """The OTLP/JSON body of one answer (a span of its own, in the item's trace)."""
    trace_id, span_id = answer.trace_id.lower(), answer.span_id.lower()
    if not _HEX_TRACE.fullmatch(trace_id) or int(trace_id, 16) == 0:
        raise ValueError(f"not a trace id: {answer.trace_id!r}")
    if not _HEX_SPAN.fullmatch(span_id) or int(span_id, 16) == 0:
        raise ValueError(f"not a span id: {answer.span_id!r}")
    if answer.kind not in ITEM_KINDS:
        raise ValueError(f"kind must be one of {', '.join(ITEM_KINDS)}, not {answer.kind!r}")
    reviewer = " ".join(answer.reviewer.split())[:MAX_REVIEWER_CHARS]
    if not reviewer:
        raise ValueError("a review needs the reviewer's name")
    attributes = [
        _attribute(GEN_AI_OPERATION_NAME, OPERATION_FEEDBACK),
        _attribute(FEEDBACK_CORRECT, answer.correct),
        _attribute(FEEDBACK_TARGET_SPAN_ID, span_id),
        _attribute(ABOUT, answer.kind),  # what the review judged: the item's kind
        _attribute(REVIEWER, reviewer),
    ]
    # Written to be recorded, so recorded whatever the content policy, but always redacted.
    for key, text in ((FEEDBACK_COMMENT, answer.comment), (LABEL, answer.label)):
        if text.strip():
            attributes.append(
                _attribute(key, bounded_redact(default_redactor, text.strip(), MAX_TEXT_CHARS))
            )
    resource = [_attribute("service.name", answer.service or "agentwatch-review")]
    if answer.environment:
        resource.append(_attribute(ENVIRONMENT, answer.environment))
    at = str(now_ns if now_ns is not None else time.time_ns())
    span = {
        "traceId": trace_id,
        "spanId": secrets.token_hex(8),
        "parentSpanId": span_id,
        "name": OPERATION_FEEDBACK,
        "kind": 1,
        "startTimeUnixNano": at,
        "endTimeUnixNano": at,
        "attributes": attributes,
    }
    scope = {"scope": {"name": "agentwatch.dashboard.review"}, "spans": [span]}
    return {"resourceSpans": [{"resource": {"attributes": resource}, "scopeSpans": [scope]}]}


def send_answer(answer: Answer, endpoint: str | None = None, token: str | None = None) -> None:
    """Post the answer to the collector; returns once it is stored, else raises
    ``ReviewNotSent`` (a 4xx/5xx, a refused connection, a timeout)."""
    url = f"{endpoint or otlp_endpoint()}/v1/traces"
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"{ENV_OTLP_ENDPOINT} must be an http(s) URL")
    token = token if token is not None else os.environ.get(ENV_INGEST_TOKEN) or None
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = json.dumps(feedback_request(answer)).encode()
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - http(s) checked above
    try:
        with urllib.request.urlopen(request, timeout=SEND_TIMEOUT_S) as response:  # noqa: S310
            response.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read(2000).decode("utf-8", "replace")
        raise ReviewNotSent(
            f"the collector at {url} refused the answer ({exc.code}): {_message(detail)}"
        ) from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise ReviewNotSent(f"cannot reach the collector at {url}: {reason}") from None


def _message(detail: str) -> str:
    try:
        parsed = json.loads(detail)
    except ValueError:
        return detail.strip()[:300] or "no detail"
    if isinstance(parsed, dict):
        return str(parsed.get("message") or parsed.get("error") or "no detail")[:300]
    return "no detail"
