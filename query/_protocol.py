"""The ClickHouse HTTP protocol as the query endpoint speaks it: errors, bodies, credentials,
formats, who may call. No sockets and no engine here."""

from __future__ import annotations

import base64
import hmac
import importlib
import ipaddress
import re
import zlib
from collections.abc import Iterable, Mapping
from email import message_from_bytes
from email import policy as email_policy
from typing import Any, Final
from urllib.parse import urlsplit

from agentwatch._errors import AgentwatchError
from agentwatch.collector._decode import InvalidRequest
from agentwatch.collector._ingest import gunzip

SERVER_NAME: Final = "agentwatch"

# ClickHouse error codes the endpoint raises itself.
BAD_ARGUMENTS: Final = 36
NOT_IMPLEMENTED: Final = 48
SYNTAX_ERROR: Final = 62
UNKNOWN_FORMAT: Final = 73
UNKNOWN_DATABASE: Final = 81
UNKNOWN_SETTING: Final = 115
READONLY: Final = 164
TOO_MANY_SIMULTANEOUS_QUERIES: Final = 202
ABORTED: Final = 236
ACCESS_DENIED: Final = 497
AUTHENTICATION_FAILED: Final = 516
_ERROR_NAMES: Final = {
    BAD_ARGUMENTS: "BAD_ARGUMENTS",
    NOT_IMPLEMENTED: "NOT_IMPLEMENTED",
    SYNTAX_ERROR: "SYNTAX_ERROR",
    UNKNOWN_FORMAT: "UNKNOWN_FORMAT",
    UNKNOWN_DATABASE: "UNKNOWN_DATABASE",
    UNKNOWN_SETTING: "UNKNOWN_SETTING",
    READONLY: "READONLY",
    TOO_MANY_SIMULTANEOUS_QUERIES: "TOO_MANY_SIMULTANEOUS_QUERIES",
    ABORTED: "ABORTED",
    ACCESS_DENIED: "ACCESS_DENIED",
    AUTHENTICATION_FAILED: "AUTHENTICATION_FAILED",
}
# HTTP status per ClickHouse error code, as ClickHouse's HTTP handler maps them; others get 500.
_HTTP_STATUS: Final = {
    BAD_ARGUMENTS: 400,
    47: 400,  # UNKNOWN_IDENTIFIER
    SYNTAX_ERROR: 400,
    UNKNOWN_FORMAT: 400,
    UNKNOWN_SETTING: 400,
    456: 400,  # UNKNOWN_QUERY_PARAMETER
    46: 404,  # UNKNOWN_FUNCTION
    60: 404,  # UNKNOWN_TABLE
    UNKNOWN_DATABASE: 404,
    NOT_IMPLEMENTED: 501,
    READONLY: 403,
    ACCESS_DENIED: 403,
    AUTHENTICATION_FAILED: 401,
    TOO_MANY_SIMULTANEOUS_QUERIES: 503,
    159: 504,  # TIMEOUT_EXCEEDED
}

# URL parameters of the HTTP interface itself (or transport-only settings): never settings here.
HTTP_PARAMS: Final = frozenset(
    {
        "query", "database", "default_format", "user", "password", "quota_key", "query_id",
        "role", "session_id", "session_timeout", "session_check", "close_session", "buffer_size",
        "wait_end_of_query", "http_wait_end_of_query", "client_protocol_version", "stacktrace",
        "enable_http_compression", "http_zlib_compression_level", "send_progress_in_http_headers",
        "http_headers_progress_interval_ms", "cancel_http_readonly_queries_on_client_close",
        "add_http_cors_header", "http_response_buffer_size", "compress", "decompress",
    }
)  # fmt: skip
# chDB output "formats" that are Python objects, not ClickHouse formats.
_CHDB_PSEUDO_FORMATS: Final = frozenset({"arrowtable", "dataframe", "datastore", "debug"})
_FORMAT_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_CONTENT_TYPES: Final = (
    (re.compile(r"(TabSeparated|TSV)", re.IGNORECASE), "text/tab-separated-values; charset=UTF-8"),
    (re.compile(r"CSV", re.IGNORECASE), "text/csv; charset=UTF-8"),
    (re.compile(r"(JSONEachRow|JSONLines|NDJSON|JSONCompactEachRow)", re.IGNORECASE),
     "application/x-ndjson; charset=UTF-8"),
    (re.compile(r"JSON", re.IGNORECASE), "application/json; charset=UTF-8"),
    (re.compile(r"(Pretty|Vertical|Markdown|Values|XML|Template|LineAsString|Raw)", re.IGNORECASE),
     "text/plain; charset=UTF-8"),
)  # fmt: skip


class EndpointError(AgentwatchError):
    """A request the endpoint answers with a ClickHouse-style error."""

    def __init__(self, code: int, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status if status is not None else _HTTP_STATUS.get(code, 500)

    def body(self) -> bytes:
        text = str(self)
        if not text.startswith("Code: "):
            name = _ERROR_NAMES.get(self.code)
            text = f"Code: {self.code}. DB::Exception: {text}" + (f". ({name})" if name else "")
        return (text.rstrip() + "\n").encode()


_CODE: Final = re.compile(r"Code: (\d+)\.")


def engine_error(exc: BaseException) -> EndpointError:
    """ClickHouse's own code and message from a chDB (or StorageError-wrapped) exception."""
    text = str(exc).strip()
    match = _CODE.search(text)
    if match is None:  # 1002 = UNKNOWN_EXCEPTION
        return EndpointError(1002, f"Code: 1002. DB::Exception: {text}. (UNKNOWN_EXCEPTION)")
    return EndpointError(int(match.group(1)), text[match.start() :])


def check_format(name: str) -> str:
    if not _FORMAT_NAME.fullmatch(name) or name.lower() in _CHDB_PSEUDO_FORMATS:
        raise EndpointError(UNKNOWN_FORMAT, f"Unknown format {name!r}")
    return name


def content_type(fmt: str) -> str:
    for pattern, value in _CONTENT_TYPES:
        if pattern.match(fmt):
            return value
    return "application/octet-stream"


def summary(
    *,
    read_rows: int = 0,
    read_bytes: int = 0,
    written_rows: int = 0,
    written_bytes: int = 0,
    result_bytes: int = 0,
    elapsed_s: float = 0.0,
) -> dict[str, str]:
    """The X-ClickHouse-Summary fields (ClickHouse sends the numbers as strings)."""
    return {
        "read_rows": str(read_rows),
        "read_bytes": str(read_bytes),
        "written_rows": str(written_rows),
        "written_bytes": str(written_bytes),
        "total_rows_to_read": str(read_rows),
        "result_bytes": str(result_bytes),
        "elapsed_ns": str(int(elapsed_s * 1e9)),
    }


# -- request bodies -------------------------------------------------------------------------------
def _too_large(limit: int) -> EndpointError:
    return EndpointError(BAD_ARGUMENTS, f"Decompressed request body exceeds {limit} bytes", 413)


def decode_body(body: bytes, encoding: str, limit: int) -> bytes:
    """Undo a request's Content-Encoding, never holding more than ``limit`` decoded bytes."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    try:
        if encoding == "gzip":
            return gunzip(body, limit)
        if encoding == "deflate":
            inflater = zlib.decompressobj()
            data = inflater.decompress(body, limit + 1)
            if len(data) > limit or inflater.unconsumed_tail:
                raise _too_large(limit)
            return data
        if encoding in ("lz4", "zstd"):
            decompressor = _decompressor(encoding)
            data = decompressor.decompress(body, limit + 1)
            if len(data) > limit:
                raise _too_large(limit)
            return bytes(data)
    except InvalidRequest as exc:
        if exc.reason == "decompressed_too_large":
            raise _too_large(limit) from exc
        raise EndpointError(BAD_ARGUMENTS, f"Cannot decode the {encoding} body: {exc}") from exc
    except EndpointError:
        raise
    except ImportError as exc:
        raise EndpointError(
            NOT_IMPLEMENTED, f"Content-Encoding {encoding} is not available here: {exc}"
        ) from exc
    except Exception as exc:  # each codec raises its own error type: the client's bad body
        raise EndpointError(BAD_ARGUMENTS, f"Cannot decode the {encoding} body: {exc}") from exc
    raise EndpointError(NOT_IMPLEMENTED, f"Unsupported Content-Encoding {encoding!r}")


def _decompressor(encoding: str) -> Any:
    if encoding == "lz4":
        return importlib.import_module("lz4.frame").LZ4FrameDecompressor()
    try:
        zstd = importlib.import_module("compression.zstd")
    except ImportError:
        zstd = importlib.import_module("backports.zstd")
    return zstd.ZstdDecompressor()


def form_fields(body: bytes, content_type_header: str) -> dict[str, str]:
    """The fields of a multipart/form-data body (clickhouse-connect's form-encoded queries)."""
    message = message_from_bytes(
        f"Content-Type: {content_type_header}\r\n\r\n".encode("latin-1") + body,
        policy=email_policy.HTTP,
    )
    if not message.is_multipart():
        raise EndpointError(BAD_ARGUMENTS, "Malformed multipart/form-data body")
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if part.get_param("filename", header="content-disposition") is not None:
            raise EndpointError(
                NOT_IMPLEMENTED, "External data (form file fields) is not supported"
            )
        if not isinstance(name, str):
            raise EndpointError(BAD_ARGUMENTS, "A form field without a name")
        payload = part.get_payload(decode=True)
        fields[name] = payload.decode() if isinstance(payload, bytes) else ""
    return fields


# -- who may call ---------------------------------------------------------------------------------
def lower_headers(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Header names lower-cased (HTTP names are case-insensitive); a request that repeats one
    of the headers who-may-call is decided on is refused rather than guessed at."""
    headers: dict[str, str] = {}
    for name, value in items:
        key = name.lower()
        if key in headers and key in _SINGLE_HEADERS:
            raise EndpointError(BAD_ARGUMENTS, f"Repeated {name} header", 400)
        headers[key] = value
    return headers


_SINGLE_HEADERS: Final = frozenset(
    {"host", "origin", "authorization", "x-clickhouse-user", "x-clickhouse-key", "sec-fetch-site",
     "content-length", "transfer-encoding", "content-encoding"}
)  # fmt: skip


def offered_passwords(headers: Mapping[str, str], params: Mapping[str, str]) -> list[str]:
    """Every password the request offers, the ways ClickHouse accepts one: HTTP basic (any
    user), ``X-ClickHouse-Key``, the ``password`` URL parameter; and ``Authorization: Bearer``.
    ``headers`` from ``lower_headers``."""
    offered = [params.get("password", ""), headers.get("x-clickhouse-key", "")]
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        offered.append(credentials.strip())
    elif scheme.lower() == "basic":
        try:
            offered.append(base64.b64decode(credentials.strip()).decode().partition(":")[2])
        except (ValueError, UnicodeDecodeError):
            pass
    return [o for o in offered if o]


def password_ok(expected: str, offered: list[str]) -> bool:
    """Constant-time comparison against each offered password."""
    want = expected.encode()
    ok = False
    for candidate in offered:
        ok |= hmac.compare_digest(candidate.encode(), want)
    return ok


LOOPBACK_NAMES: Final = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    return host.strip("[]") in ("0.0.0.0", "::", "")


def _host_of(value: str) -> str:
    """``host`` of ``host[:port]`` or ``[v6][:port]``, lower-cased."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def host_allowed(host_header: str | None, allowed: frozenset[str]) -> bool:
    """The Host header names this endpoint (DNS rebinding sends the attacker's name).

    ``allowed`` empty means any name (a wildcard bind, where the credential is the guard)."""
    if not allowed or host_header is None:
        return True
    return _host_of(host_header) in allowed


def fetched_by_another_page(headers: Mapping[str, str]) -> bool:
    """A browser says a page of another origin sent this (``Sec-Fetch-Site``), which it does
    even where it sends no Origin (a no-cors GET). Clients that are not browsers send neither;
    ``none`` is the user typing the URL."""
    site = headers.get("sec-fetch-site")
    return site is not None and site.strip().lower() not in ("same-origin", "none")


def origin_allowed(origin: str | None, allowed: frozenset[str], port: int) -> bool:
    """No Origin (not a browser), or a page of this endpoint's own origin: one of its names
    and its port. Any other page (another site, another local app's port) is foreign."""
    if origin is None:
        return True
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False  # "null" and the like: sandboxed frames, file:// pages
    try:
        origin_port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return False
    return origin_port == port and (not allowed or parts.hostname.lower() in allowed)
