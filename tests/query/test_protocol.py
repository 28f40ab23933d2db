"""The query endpoint's protocol pieces on their own: bounded bodies, who may call."""

from __future__ import annotations

import base64
import gzip
import importlib
import zlib

import pytest

from agentwatch.query._protocol import (
    EndpointError,
    decode_body,
    fetched_by_another_page,
    host_allowed,
    is_loopback,
    lower_headers,
    offered_passwords,
    origin_allowed,
    password_ok,
)

LIMIT = 1024 * 1024
BOMB = b"\0" * (64 * LIMIT)  # compresses to a few dozen KB


def compress(encoding: str, data: bytes) -> bytes:
    if encoding == "gzip":
        return gzip.compress(data)
    if encoding == "deflate":
        return zlib.compress(data)
    if encoding == "lz4":
        return bytes(importlib.import_module("lz4.frame").compress(data))
    try:
        zstd = importlib.import_module("compression.zstd")
    except ImportError:
        zstd = importlib.import_module("backports.zstd")
    return bytes(zstd.compress(data))


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "lz4", "zstd"])
def test_bodies_decode_within_the_limit(encoding: str) -> None:
    assert decode_body(compress(encoding, b"SELECT 1"), encoding, LIMIT) == b"SELECT 1"


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "lz4", "zstd"])
def test_a_compression_bomb_stops_at_the_limit(encoding: str) -> None:
    """A body that inflates 64x past the limit is a 413, without inflating it all."""
    body = compress(encoding, BOMB)
    assert len(body) < LIMIT
    with pytest.raises(EndpointError) as refused:
        decode_body(body, encoding, LIMIT)
    assert refused.value.status == 413


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "lz4", "zstd"])
def test_a_corrupt_body_is_a_clean_400(encoding: str) -> None:
    with pytest.raises(EndpointError) as refused:
        decode_body(b"not compressed at all", encoding, LIMIT)
    assert (refused.value.status, refused.value.code) == (400, 36)


def test_an_unknown_encoding_is_not_implemented() -> None:
    with pytest.raises(EndpointError) as refused:
        decode_body(b"x", "compress", LIMIT)
    assert refused.value.status == 501


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_passwords_are_offered_the_ways_clickhouse_takes_them() -> None:
    headers = lower_headers([("authorization", basic("grafana", "b")), ("X-ClickHouse-Key", "c")])
    assert sorted(offered_passwords(headers, {"password": "a"})) == ["a", "b", "c"]
    bearer = lower_headers([("Authorization", "Bearer d")])
    assert offered_passwords(bearer, {}) == ["d"]
    garbled = lower_headers([("Authorization", "Basic %%%")])
    assert offered_passwords(garbled, {}) == []


def test_any_offered_password_that_matches_is_enough() -> None:
    assert password_ok("secret-password", ["wrong", "secret-password"])
    assert not password_ok("secret-password", ["secret-passwor", "secret-password2", ""])
    assert not password_ok("secret-password", [])


def test_a_repeated_header_that_decides_who_calls_is_refused() -> None:
    with pytest.raises(EndpointError):
        lower_headers([("Host", "127.0.0.1"), ("host", "evil.example")])
    assert lower_headers([("Accept", "a"), ("accept", "b")]) == {"accept": "b"}


def test_the_host_must_name_the_endpoint() -> None:
    own = frozenset({"127.0.0.1", "localhost", "::1"})
    for good in ("127.0.0.1:8123", "localhost", "LOCALHOST:8123", "[::1]:8123", None):
        assert host_allowed(good, own), good
    for bad in ("evil.example", "evil.example:8123", "127.0.0.1.evil.example", "[::2]:8123"):
        assert not host_allowed(bad, own), bad
    assert host_allowed("anything", frozenset())  # a wildcard bind: the password guards


def test_only_the_endpoints_own_origin_is_a_friendly_page() -> None:
    own = frozenset({"127.0.0.1", "localhost"})
    assert origin_allowed(None, own, 8123)
    assert origin_allowed("http://127.0.0.1:8123", own, 8123)
    for bad in ("http://evil.example", "http://127.0.0.1:8501", "http://localhost", "null",
                "file://", "http://127.0.0.1:notaport"):  # fmt: skip
        assert not origin_allowed(bad, own, 8123), bad


def test_a_browser_fetch_from_another_site_is_recognised() -> None:
    assert fetched_by_another_page({"sec-fetch-site": "cross-site"})
    assert fetched_by_another_page({"sec-fetch-site": "same-site"})
    assert not fetched_by_another_page({"sec-fetch-site": "same-origin"})
    assert not fetched_by_another_page({"sec-fetch-site": "none"})
    assert not fetched_by_another_page({})


def test_loopback_addresses() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "example.com", ""))
