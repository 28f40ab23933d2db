"""A fake OpenAI-compatible server on loopback: real HTTP, just enough of the API for agents.

It speaks the Chat Completions API (``POST /v1/chat/completions``, plain and streamed) and the
Responses API (``POST /v1/responses``, not streamed), and drives a tool-using agent without any
model: while the conversation holds fewer tool results than ``tool_calls``, it answers with a
call to the first tool the request declares (arguments: every declared parameter set to
``"Paris"``); after that, with a final text answer. Every reply reports ``usage`` with the
fixed token counts below (cached input and reasoning tokens included), so what a framework
records can be checked exactly.

Stateless between requests (the decision is made from the conversation each request carries),
so one server serves any number of agents; ``requests`` records what each one sent.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final

INPUT_TOKENS: Final = 120
CACHED_TOKENS: Final = 32
OUTPUT_TOKENS: Final = 18
REASONING_TOKENS: Final = 6
FINAL_ANSWER: Final = "It is sunny and 21 degrees in Paris."
TOOL_ARGUMENT: Final = "Paris"


@dataclass(frozen=True, slots=True)
class Recorded:
    """One request the server received."""

    path: str
    body: dict[str, Any]


def _chat_usage() -> dict[str, Any]:
    return {
        "prompt_tokens": INPUT_TOKENS,
        "completion_tokens": OUTPUT_TOKENS,
        "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS,
        "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": REASONING_TOKENS,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _responses_usage() -> dict[str, Any]:
    return {
        "input_tokens": INPUT_TOKENS,
        "input_tokens_details": {"cached_tokens": CACHED_TOKENS},
        "output_tokens": OUTPUT_TOKENS,
        "output_tokens_details": {"reasoning_tokens": REASONING_TOKENS},
        "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS,
    }


def _arguments(parameters: Any) -> str:
    """Arguments for a declared tool: each of its parameters set to ``TOOL_ARGUMENT``."""
    properties = parameters.get("properties", {}) if isinstance(parameters, dict) else {}
    return json.dumps(dict.fromkeys(properties, TOOL_ARGUMENT))


class FakeOpenAI:
    """The server; ``with FakeOpenAI() as llm:`` starts it, ``llm.base_url`` is the client's."""

    def __init__(self, tool_calls: int = 1) -> None:
        self.tool_calls = tool_calls
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fake-openai", daemon=True
        )

    @property
    def base_url(self) -> str:
        """The OpenAI client's ``base_url`` (it ends in ``/v1``)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def paths(self) -> list[str]:
        with self._lock:
            return [r.path for r in self.requests]

    # -- replies ----------------------------------------------------------------------------
    def _record(self, path: str, body: dict[str, Any]) -> int:
        with self._lock:
            self.requests.append(Recorded(path, body))
            return next(self._ids)

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        """A ``chat.completion`` for a Chat Completions request."""
        n = self._record("/v1/chat/completions", body)
        messages = body.get("messages") or []
        done = sum(1 for m in messages if isinstance(m, dict) and m.get("role") == "tool")
        tools = [t.get("function", {}) for t in body.get("tools") or []]
        message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
        if tools and done < self.tool_calls:
            tool = tools[0]
            message["tool_calls"] = [
                {
                    "id": f"call_{n}",
                    "type": "function",
                    "function": {
                        "name": tool.get("name", ""),
                        "arguments": _arguments(tool.get("parameters")),
                    },
                }
            ]
            finish = "tool_calls"
        else:
            message["content"] = FINAL_ANSWER
            finish = "stop"
        return {
            "id": f"chatcmpl-{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", ""),
            "system_fingerprint": "fp_fake",
            "choices": [
                {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
            ],
            "usage": _chat_usage(),
        }

    def chat_stream(self, body: dict[str, Any]) -> bytes:
        """The same reply as ``chat``, as server-sent ``chat.completion.chunk`` events."""
        reply = self.chat(body)
        choice = reply["choices"][0]
        message = choice["message"]
        base = {k: reply[k] for k in ("id", "created", "model", "system_fingerprint")}
        base["object"] = "chat.completion.chunk"
        delta: dict[str, Any] = {"role": "assistant"}
        if message.get("tool_calls"):
            delta["tool_calls"] = [{"index": 0, **message["tool_calls"][0]}]
        else:
            delta["content"] = message["content"]
        chunks = [
            {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
            {
                **base,
                "choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}],
            },
        ]
        if (body.get("stream_options") or {}).get("include_usage"):
            chunks.append({**base, "choices": [], "usage": reply["usage"]})
        events = [f"data: {json.dumps(chunk)}\n\n" for chunk in chunks]
        return ("".join(events) + "data: [DONE]\n\n").encode()

    def responses(self, body: dict[str, Any]) -> dict[str, Any]:
        """A ``response`` for a Responses API request."""
        n = self._record("/v1/responses", body)
        items = body.get("input")
        items = items if isinstance(items, list) else []
        done = sum(
            1 for i in items if isinstance(i, dict) and i.get("type") == "function_call_output"
        )
        tools = [t for t in body.get("tools") or [] if t.get("type") == "function"]
        output: list[dict[str, Any]]
        if tools and done < self.tool_calls:
            tool = tools[0]
            output = [
                {
                    "type": "function_call",
                    "id": f"fc_{n}",
                    "call_id": f"call_{n}",
                    "name": tool.get("name", ""),
                    "arguments": _arguments(tool.get("parameters")),
                    "status": "completed",
                }
            ]
        else:
            output = [
                {
                    "type": "message",
                    "id": f"msg_{n}",
                    "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": FINAL_ANSWER, "annotations": []}],
                }
            ]
        return {
            "id": f"resp_{n}",
            "object": "response",
            "created_at": int(time.time()),
            "status": "completed",
            "model": body.get("model", ""),
            "output": output,
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": body.get("tools") or [],
            "instructions": body.get("instructions"),
            "metadata": {},
            "temperature": 1.0,
            "top_p": 1.0,
            "text": {"format": {"type": "text"}},
            "truncation": "disabled",
            "error": None,
            "incomplete_details": None,
            "usage": _responses_usage(),
        }


def _handler(server: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: tests read ``requests`` instead."""

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, document: dict[str, Any]) -> None:
            self._send(status, json.dumps(document).encode(), "application/json")

        def _error(self, status: int, message: str) -> None:
            self._json(status, {"error": {"message": message, "type": "invalid_request_error"}})

        def do_GET(self) -> None:
            self._error(404, f"no route GET {self.path}")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except json.JSONDecodeError:
                self._error(400, "body is not JSON")
                return
            path = self.path.split("?", 1)[0].rstrip("/")
            if path.endswith("/chat/completions"):
                if body.get("stream"):
                    self._send(200, server.chat_stream(body), "text/event-stream")
                else:
                    self._json(200, server.chat(body))
            elif path.endswith("/responses"):
                if body.get("stream"):
                    self._error(400, "the fake server does not stream the Responses API")
                else:
                    self._json(200, server.responses(body))
            else:
                self._error(404, f"no route POST {self.path}")

    return Handler
