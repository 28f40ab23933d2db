"""Token cost in USD, from genai-prices' bundled table plus the user's overrides. Pure logic.

A genai-prices lookup is far too slow to run per span, so each (provider, model) is resolved
once into per-token rates. Prices in tiers of input tokens (long-context prices) are resolved
into rates per tier; any other shape that is not linear in tokens is priced exactly,
call by call, with a small cache. Both are checked against genai-prices when resolved.
"""

from __future__ import annotations

import bisect
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

from agentwatch._errors import ConfigurationError

# gen_ai.provider.name values (and older gen_ai.system ones) -> genai-prices provider ids.
PROVIDER_ALIASES: Final[Mapping[str, str]] = {
    "azure.ai.openai": "azure",
    "az.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "aws.bedrock": "aws",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "vertex_ai": "google",
    "gemini": "google",
    "mistral_ai": "mistral",
    "x_ai": "x-ai",
    "xai": "x-ai",
}
_MTOK: Final = 1_000_000
MAX_MODEL_NAME: Final = 256
MAX_CACHED_MODELS: Final = 10_000
RESOLVE_BURST: Final = 200
RESOLVE_PER_S: Final = 50.0


@dataclass(frozen=True, slots=True)
class Rates:
    """USD per token for each kind of token."""

    input: float
    output: float
    cache_read: float
    cache_write: float

    def cost(
        self, input_tokens: int, output_tokens: int, cache_read: int, cache_write: int
    ) -> float:
        # Input tokens include the cached ones (GenAI convention); those are priced apart.
        uncached = max(0, input_tokens - cache_read - cache_write)
        return (
            uncached * self.input
            + output_tokens * self.output
            + cache_read * self.cache_read
            + cache_write * self.cache_write
        )


def split_model(model: str, provider: str) -> tuple[str, str]:
    """``openai/gpt-4o`` -> (``openai``, ``gpt-4o``); provider names mapped to price-table ids."""
    model = model.strip()
    if "/" in model:
        prefix, rest = model.split("/", 1)
        if rest:
            provider = provider or prefix
            model = rest
    provider = provider.strip().lower()
    return PROVIDER_ALIASES.get(provider, provider), model


class _Exact:
    """A model whose price is not linear in tokens: priced call by call."""

    def __init__(self, model_price: Any) -> None:
        self.model_price = model_price

    @lru_cache(maxsize=4096)  # noqa: B019 - bounded, and these objects live as long as the table
    def cost(
        self, input_tokens: int, output_tokens: int, cache_read: int, cache_write: int
    ) -> float:
        from genai_prices import Usage

        # Input tokens include the cached ones. genai-prices refuses a report with more cached
        # than input tokens; like Rates.cost, price every cached token and no uncached input.
        input_tokens = max(input_tokens, cache_read + cache_write)
        result = self.model_price.calc_price(
            Usage(
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cache_read_tokens=cache_read,
                cache_write_tokens=cache_write,
            )
        )
        return float(result["total_price"])


class _Tiered:
    """A model priced in tiers of total input tokens (a call past a tier's start pays that
    tier's rates on all its tokens): linear rates per tier, resolved once, so a call costs a
    bisect and a few multiplications instead of a genai-prices call. A call whose
    input is exactly at a tier's start is priced exactly (either side could be meant)."""

    def __init__(self, starts: list[int], rates: list[Rates], exact: _Exact) -> None:
        self.starts = starts
        self.rates = rates
        self.exact = exact

    def cost(
        self, input_tokens: int, output_tokens: int, cache_read: int, cache_write: int
    ) -> float:
        input_tokens = max(input_tokens, cache_read + cache_write)  # as _Exact.cost reads it
        tier = bisect.bisect_left(self.starts, input_tokens)
        if tier < len(self.starts) and self.starts[tier] == input_tokens:
            return self.exact.cost(input_tokens, output_tokens, cache_read, cache_write)
        return self.rates[tier].cost(input_tokens, output_tokens, cache_read, cache_write)


def _tier_starts(model_price: Any) -> list[int]:
    from genai_prices.types import TieredPrices

    starts: set[int] = set()
    for value in vars(model_price).values():
        if isinstance(value, TieredPrices):
            starts.update(int(tier.start) for tier in value.tiers)
    return sorted(starts)


def _tiered(model_price: Any) -> _Tiered | None:
    """Per-tier rates for ``model_price``, or None unless they reproduce genai-prices exactly
    on calls inside every tier (the check keeps any other pricing shape on the exact path)."""
    from genai_prices import Usage

    def price(**tokens: int) -> float:
        return float(model_price.calc_price(Usage(**tokens))["total_price"])

    starts = _tier_starts(model_price)
    if not starts:
        return None
    rates = []
    for index, low in enumerate([0, *starts]):
        high = starts[index] if index < len(starts) else 4 * low + 1_000_000
        n = low + 1  # a call inside this tier: just past its start
        base = price(input_tokens=n)
        tier_rates = Rates(
            input=base / n,
            output=(price(input_tokens=n, output_tokens=_MTOK) - base) / _MTOK,
            cache_read=price(input_tokens=n, cache_read_tokens=n) / n,
            cache_write=price(input_tokens=n, cache_write_tokens=n) / n,
        )
        for tokens in (low + 2 + (high - low) // 7, low + (high - low) // 2, high - 1):
            probe = (tokens, 777 + tokens % 1000, tokens // 3, tokens // 5)
            expected = price(
                input_tokens=probe[0],
                output_tokens=probe[1],
                cache_read_tokens=probe[2],
                cache_write_tokens=probe[3],
            )
            if abs(tier_rates.cost(*probe) - expected) > 1e-12 + 1e-9 * expected:
                return None
        rates.append(tier_rates)
    return _Tiered(starts, rates, _Exact(model_price))


def _resolve(provider: str, model: str) -> Rates | _Tiered | _Exact | None:
    from genai_prices import Usage, calc_price

    found = None
    for provider_id in (provider, None) if provider else (None,):
        try:
            found = calc_price(Usage(input_tokens=1), model_ref=model, provider_id=provider_id)
            break
        except LookupError:
            continue
    if found is None:
        return None
    model_price = found.model_price

    def price(**tokens: int) -> float:
        return float(model_price.calc_price(Usage(**tokens))["total_price"])

    try:
        rates = Rates(
            input=price(input_tokens=_MTOK) / _MTOK,
            output=price(output_tokens=_MTOK) / _MTOK,
            cache_read=price(input_tokens=_MTOK, cache_read_tokens=_MTOK) / _MTOK,
            cache_write=price(input_tokens=_MTOK, cache_write_tokens=_MTOK) / _MTOK,
        )
        # Linear if a small call costs what the rates say; tiered prices fail this check.
        small = price(input_tokens=1000, output_tokens=1000)
        if abs(small - rates.cost(1000, 1000, 0, 0)) > 1e-12 + 1e-9 * small:
            return _tiered(model_price) or _Exact(model_price)
    except (ValueError, ArithmeticError, TypeError):
        return _Exact(model_price)
    return rates


@dataclass(frozen=True, slots=True)
class PriceOverride:
    """A user's price for a custom or fine-tuned model, USD per million tokens."""

    model: str
    provider: str
    input_per_mtok: float
    output_per_mtok: float
    cache_read_per_mtok: float | None = None
    cache_write_per_mtok: float | None = None

    def rates(self) -> Rates:
        return Rates(
            input=self.input_per_mtok / _MTOK,
            output=self.output_per_mtok / _MTOK,
            cache_read=(
                self.cache_read_per_mtok
                if self.cache_read_per_mtok is not None
                else self.input_per_mtok
            )
            / _MTOK,
            cache_write=(
                self.cache_write_per_mtok
                if self.cache_write_per_mtok is not None
                else self.input_per_mtok
            )
            / _MTOK,
        )


def _number(entry: Mapping[str, Any], key: str, where: str, *, required: bool) -> float | None:
    value = entry.get(key)
    if value is None:
        if required:
            raise ConfigurationError(f"{where}: missing {key}")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigurationError(f"{where}: {key} must be a number >= 0, not {value!r}")
    return float(value)


def load_overrides(path: str | Path) -> list[PriceOverride]:
    """Read ``[[price]]`` tables (model, provider?, input_per_mtok, output_per_mtok, ...)."""
    try:
        document = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"cannot read price file {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"price file {path} is not valid TOML: {exc}") from exc
    entries = document.get("price", [])
    if not isinstance(entries, list):
        raise ConfigurationError(f"{path}: 'price' must be an array of tables ([[price]])")
    overrides = []
    for index, entry in enumerate(entries):
        where = f"{path}: price[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("model"), str):
            raise ConfigurationError(f"{where}: model must be a string")
        unknown = set(entry) - {
            "model",
            "provider",
            "input_per_mtok",
            "output_per_mtok",
            "cache_read_per_mtok",
            "cache_write_per_mtok",
        }
        if unknown:
            raise ConfigurationError(f"{where}: unknown keys {sorted(unknown)}")
        overrides.append(
            PriceOverride(
                model=entry["model"],
                provider=str(entry.get("provider", "")).lower(),
                input_per_mtok=_number(entry, "input_per_mtok", where, required=True) or 0.0,
                output_per_mtok=_number(entry, "output_per_mtok", where, required=True) or 0.0,
                cache_read_per_mtok=_number(entry, "cache_read_per_mtok", where, required=False),
                cache_write_per_mtok=_number(entry, "cache_write_per_mtok", where, required=False),
            )
        )
    return overrides


class PriceTable:
    """Prices token usage; one instance per collector, caching every model it has seen."""

    def __init__(self, overrides: list[PriceOverride] | None = None) -> None:
        self._overrides: dict[tuple[str, str], Rates] = {}
        for override in overrides or []:
            provider, model = split_model(override.model, override.provider)
            self._overrides[(provider, model)] = override.rates()
        self._cache: dict[tuple[str, str], Rates | _Tiered | _Exact | None] = {}
        # Resolving a model not seen before costs genai-prices lookups. A sender
        # inventing a new model name per span could spend the collector's CPU on them, so new
        # names are resolved at most RESOLVE_BURST at once, RESOLVE_PER_S a second after that;
        # past it a call is left unpriced (not cached: the name is resolved when allowed).
        self._resolve_tokens = float(RESOLVE_BURST)
        self._resolve_refilled = time.monotonic()

    def _lookup(self, provider: str, model: str) -> Rates | _Tiered | _Exact | None:
        key = (provider, model)
        if key in self._cache:
            return self._cache[key]
        if len(model) > MAX_MODEL_NAME or len(provider) > MAX_MODEL_NAME:
            return None  # no price table names a model like this: not worth a lookup or a slot
        if len(self._cache) >= MAX_CACHED_MODELS:
            self._cache.clear()  # senders choose the names: the cache must stay bounded
        found: Rates | _Tiered | _Exact | None = self._overrides.get(key) or self._overrides.get(
            ("", model)
        )
        if found is None:
            if not self._may_resolve():
                return None
            found = _resolve(provider, model)
        self._cache[key] = found
        return found

    def _may_resolve(self) -> bool:
        now = time.monotonic()
        elapsed, self._resolve_refilled = now - self._resolve_refilled, now
        self._resolve_tokens = min(RESOLVE_BURST, self._resolve_tokens + elapsed * RESOLVE_PER_S)
        if self._resolve_tokens < 1:
            return False
        self._resolve_tokens -= 1
        return True

    def pricer(self, model: str, provider: str) -> Rates | _Tiered | _Exact | None:
        """What prices calls to ``model``, or None when it has no known price."""
        if not model:
            return None
        return self._lookup(*split_model(model, provider))

    def cost(
        self,
        model: str,
        provider: str,
        input_tokens: int,
        output_tokens: int,
        cache_read: int = 0,
        cache_write: int = 0,
    ) -> float | None:
        """USD for one call, or None when the model has no known price (unpriced, not $0)."""
        prices = self.pricer(model, provider)
        if prices is None:
            return None
        return prices.cost(input_tokens, output_tokens, cache_read, cache_write)
