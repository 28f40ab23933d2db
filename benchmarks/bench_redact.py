"""Redaction cost: µs per KB on typical text, and the worst case on adversarial inputs.

    python -m benchmarks.bench_redact [--runs R]

``default_redactor`` on the whole text (no cut), best of ``R`` runs. Typical text is a support
prompt with a few secrets in it (an e-mail, a card, an API key, a phone number). Adversarial
inputs are 200,000 characters built to make a backtracking pattern go quadratic. The last
figure is one decorated tool call with a 200,000-character argument and content capture on:
what ``max_content_chars`` (4000) bounds. Results: benchmarks/BENCHMARKS.md, "Redaction".
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable

import agentwatch as aw
from agentwatch._redact import default_redactor

TYPICAL = (
    "User: Hi, I'm Jane (jane.doe@example.com). My order 88213 placed on 2024-05-01 never "
    "arrived. I paid with 4111 1111 1111 1111; call me on +1 (415) 555-0100. Our integration "
    "uses key sk-proj-abcDEF1234567890xyzABC and the status page says version 1.2.3 is live.\n"
    "Assistant: Sorry to hear that, Jane. I can see the order; it is delayed at the depot. "
    "I have asked the carrier for an update and will refund the shipping cost.\n"
)

# Shared with the linear-time test (tests/sdk/test_privacy.py).
ADVERSARIAL: dict[str, Callable[[int], str]] = {
    "'a.' * n/2": lambda n: "a." * (n // 2),
    "'a@' * n/2": lambda n: "a@" * (n // 2),
    "'a@a.' * n/4": lambda n: "a@a." * (n // 4),
    "'x.' * 30 + '@' * n/61": lambda n: ("x." * 30 + "@") * (n // 61),
    "digits": lambda n: "1" * n,
    "'1 ' * n/2": lambda n: "1 " * (n // 2),
    "'+1 (2' * n/5": lambda n: "+1 (2" * (n // 5),
    "'AB12 ' * n/5": lambda n: "AB12 " * (n // 5),
    "'eyJ' * n/3": lambda n: "eyJ" * (n // 3),
    "'://a:' * n/5": lambda n: "://a:" * (n // 5),
    "'password=' * n/9": lambda n: "password=" * (n // 9),
    "PEM headers": lambda n: "-----BEGIN PRIVATE KEY-----" * (n // 27),
    "'sk-' * n/3": lambda n: "sk-" * (n // 3),
    "'a:' * n/2": lambda n: "a:" * (n // 2),
}


def best_of(fn: Callable[[], object], runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    typical = TYPICAL * 10
    t = best_of(lambda: default_redactor(typical), args.runs)
    print(f"typical text ({len(typical)} chars): {t * 1e6 / (len(typical) / 1024):.0f} µs/KB")

    n = 200_000
    print(f"\nadversarial, {n} chars (and 8x smaller, for the growth ratio):")
    for name, make in ADVERSARIAL.items():
        large, small = make(n), make(n // 8)
        t_large = best_of(functools.partial(default_redactor, large), args.runs)
        t_small = best_of(functools.partial(default_redactor, small), args.runs)
        per_kb = t_large * 1e6 / (len(large) / 1024)
        print(
            f"  {name:18} {t_large * 1e3:7.1f} ms  {per_kb:5.0f} µs/KB"
            f"  x{t_large / t_small:4.1f} for 8x"
        )

    @aw.tool
    def lookup(query: str) -> str:
        return "ok"

    with aw.capture_spans(capture_content=True):
        argument = "a." * (n // 2)
        t = best_of(lambda: lookup(argument), args.runs)
    print(f"\ndecorated tool call, {n}-char argument, capture on: {t * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
