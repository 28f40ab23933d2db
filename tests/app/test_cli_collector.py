"""The ``agentwatch collector`` command: its help lists every option, and a bad configuration
ends with one clear error line and a non-zero exit, not a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

OPTIONS = (
    "--data-dir",
    "--clickhouse-url",
    "--host",
    "--http-port",
    "--grpc-port",
    "--no-grpc",
    "--query-port",
    "--query-host",
    "--ingest-token",
    "--prices",
    "--retention-days",
)


def agentwatch(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("AGENTWATCH_CLICKHOUSE_URL", "AGENTWATCH_INGEST_TOKEN")
    }
    return subprocess.run(
        [sys.executable, "-m", "agentwatch", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
        check=False,
    )


def test_help_lists_every_option_and_exits_0(tmp_path: Path):
    result = agentwatch("collector", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for option in OPTIONS:
        assert option in result.stdout
    assert "OTLP" in result.stdout


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://db.example:8123/agentwatch", "--clickhouse-url must look like http://"),
        ("not a url", "--clickhouse-url must look like http://"),
        ("http://127.0.0.1:8123/bad-name;DROP", "not a valid ClickHouse identifier"),
    ],
    ids=["scheme", "garbage", "database"],
)
def test_a_bad_clickhouse_url_ends_with_a_clear_error(tmp_path: Path, url: str, problem: str):
    result = agentwatch("collector", "--clickhouse-url", url, "--http-port", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("agentwatch: error:")
    assert problem in line


def test_an_unreachable_clickhouse_server_ends_with_a_clear_error(tmp_path: Path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once closed
    url = f"http://127.0.0.1:{port}/agentwatch"
    result = agentwatch("collector", "--clickhouse-url", url, "--http-port", "0", cwd=tmp_path)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]  # after clickhouse-connect's own warnings
    assert last.startswith("agentwatch: error:")
    assert f"127.0.0.1:{port}" in last


def test_a_bad_price_file_ends_with_a_clear_error(tmp_path: Path):
    prices = tmp_path / "prices.toml"
    prices.write_text('[[price]]\nmodel = "m"\n', encoding="utf-8")
    result = agentwatch("collector", "--prices", str(prices), "--http-port", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "missing input_per_mtok" in line
