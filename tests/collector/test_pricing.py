"""Pricing: the collector's cost equals genai-prices' for the same usage, unknown models are
unpriced (None, never $0), and user overrides price custom models or fail with a clear error."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from genai_prices import Usage, calc_price

from agentwatch._errors import ConfigurationError
from agentwatch.collector._pricing import (
    MAX_CACHED_MODELS,
    RESOLVE_BURST,
    PriceOverride,
    PriceTable,
    Rates,
    _Tiered,
    load_overrides,
    split_model,
)


def reference(model: str, provider: str | None, **tokens: int) -> float:
    """What genai-prices itself charges for this usage."""
    return float(calc_price(Usage(**tokens), model_ref=model, provider_id=provider).total_price)


# -- split_model --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "provider", "expected"),
    [
        ("gpt-4o", "openai", ("openai", "gpt-4o")),
        ("openai/gpt-4o", "", ("openai", "gpt-4o")),
        ("anthropic/claude-sonnet-4-5", "", ("anthropic", "claude-sonnet-4-5")),
        ("openai/gpt-4o", "azure.ai.openai", ("azure", "gpt-4o")),
        (" gpt-4o ", " OpenAI ", ("openai", "gpt-4o")),
        ("gemini-1.5-pro", "gcp.gemini", ("google", "gemini-1.5-pro")),
        ("mistral-large-latest", "mistral_ai", ("mistral", "mistral-large-latest")),
        ("grok-2", "xai", ("x-ai", "grok-2")),
        ("gpt-4o", "", ("", "gpt-4o")),
        ("weird/", "", ("", "weird/")),
    ],
)
def test_split_model_separates_a_provider_prefix_and_maps_provider_names(
    model: str, provider: str, expected: tuple[str, str]
):
    assert split_model(model, provider) == expected


# -- Rates --------------------------------------------------------------------------------------
def test_rates_price_uncached_input_output_and_cache_tokens_separately():
    rates = Rates(input=2e-6, output=8e-6, cache_read=0.5e-6, cache_write=3e-6)
    cost = rates.cost(input_tokens=1000, output_tokens=200, cache_read=300, cache_write=100)
    assert cost == pytest.approx(600 * 2e-6 + 200 * 8e-6 + 300 * 0.5e-6 + 100 * 3e-6, rel=1e-12)


def test_rates_never_charge_negative_uncached_input_when_cache_exceeds_input():
    rates = Rates(input=1.0, output=0.0, cache_read=0.1, cache_write=0.0)
    assert rates.cost(input_tokens=10, output_tokens=0, cache_read=50, cache_write=0) == 5.0


# -- PriceTable against genai-prices ------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "provider", "ref_model", "ref_provider"),
    [
        ("gpt-4o", "openai", "gpt-4o", "openai"),
        ("gpt-4o", "", "gpt-4o", None),
        ("openai/gpt-4o", "", "gpt-4o", "openai"),
        ("gpt-4o-2024-08-06", "openai", "gpt-4o-2024-08-06", "openai"),
        ("gpt-4o-mini", "openai", "gpt-4o-mini", "openai"),
        ("claude-3-5-haiku-latest", "anthropic", "claude-3-5-haiku-latest", "anthropic"),
    ],
)
def test_cost_equals_genai_prices_for_the_same_usage(
    model: str, provider: str, ref_model: str, ref_provider: str | None
):
    tokens = {"input_tokens": 12_345, "output_tokens": 678, "cache_read_tokens": 2_000}
    expected = reference(ref_model, ref_provider, **tokens)
    cost = PriceTable().cost(model, provider, 12_345, 678, cache_read=2_000)
    assert expected > 0
    assert cost == pytest.approx(expected, rel=1e-9)


def test_cache_write_tokens_are_priced_as_genai_prices_prices_them():
    expected = reference(
        "claude-3-5-haiku-latest",
        "anthropic",
        input_tokens=5000,
        output_tokens=100,
        cache_read_tokens=1000,
        cache_write_tokens=2000,
    )
    table = PriceTable()
    cost = table.cost("claude-3-5-haiku-latest", "anthropic", 5000, 100, 1000, 2000)
    assert cost == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("input_tokens", [1_000, 150_000, 199_999, 200_001, 300_000, 900_000])
def test_tiered_prices_are_exact_on_both_sides_of_the_tier(input_tokens: int):
    """claude-sonnet-4-5 charges more per token past 200k input tokens: no single per-token
    rate is right for every call, so the table must price such models call by call."""
    expected = reference(
        "claude-sonnet-4-5",
        "anthropic",
        input_tokens=input_tokens,
        output_tokens=2_000,
        cache_read_tokens=1_000,
    )
    cost = PriceTable().cost("claude-sonnet-4-5", "anthropic", input_tokens, 2_000, 1_000)
    assert cost == pytest.approx(expected, rel=1e-9)


def test_a_tiered_model_priced_small_then_large_is_still_exact():
    """The per-model cache must not freeze the first call's tier."""
    table = PriceTable()
    table.cost("claude-sonnet-4-5", "anthropic", 1_000, 10)
    large = table.cost("claude-sonnet-4-5", "anthropic", 400_000, 10)
    expected = reference("claude-sonnet-4-5", "anthropic", input_tokens=400_000, output_tokens=10)
    assert large == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    ("model", "provider", "starts"),
    [
        ("claude-sonnet-4-5", "anthropic", [200_000]),
        ("gemini-2.5-pro", "google", [200_000]),
        ("gemini-1.5-pro", "google", [128_000]),
    ],
)
def test_tiered_models_resolve_to_rates_per_tier_that_match_genai_prices(
    model: str, provider: str, starts: list[int]
):
    """A model priced in tiers of input tokens gets linear rates per tier (no genai-prices call
    per span), and they agree with genai-prices on random usages in every tier and exactly at
    each tier's start."""
    pricer = PriceTable().pricer(model, provider)
    assert isinstance(pricer, _Tiered)
    assert pricer.starts == starts
    rng = random.Random(7)
    usages = [(start + delta, 321, 0, 0) for start in starts for delta in (-1, 0, 1)]
    for _ in range(300):
        input_tokens = rng.randint(1, 2 * starts[-1])
        cache_read = rng.randint(0, input_tokens // 2)
        cache_write = rng.randint(0, (input_tokens - cache_read) // 2)
        usages.append((input_tokens, rng.randint(0, 30_000), cache_read, cache_write))
    for input_tokens, output_tokens, cache_read, cache_write in usages:
        expected = reference(
            model,
            provider,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read_tokens=cache_read,
            cache_write_tokens=cache_write,
        )
        cost = pricer.cost(input_tokens, output_tokens, cache_read, cache_write)
        assert cost == pytest.approx(expected, rel=1e-9, abs=1e-15), (input_tokens, cache_read)


@pytest.mark.parametrize("input_tokens", [1_000, 199_999, 200_000, 200_001])
def test_more_cached_than_input_tokens_is_priced_as_all_cached_never_an_error(input_tokens: int):
    """A usage report claiming more cached than input tokens (genai-prices refuses it) costs
    what a report of exactly that many all-cached input tokens costs, on every pricing path."""
    table = PriceTable()
    cost = table.cost("claude-sonnet-4-5", "anthropic", input_tokens, 10, 300_000, 0)
    expected = reference(
        "claude-sonnet-4-5",
        "anthropic",
        input_tokens=300_000,
        output_tokens=10,
        cache_read_tokens=300_000,
    )
    assert cost == pytest.approx(expected, rel=1e-9)
    linear = table.cost("gpt-4o", "openai", input_tokens, 10, 300_000, 0)
    assert linear == pytest.approx(
        reference(
            "gpt-4o", "openai", input_tokens=300_000, output_tokens=10, cache_read_tokens=300_000
        ),
        rel=1e-9,
    )


def test_absurd_model_names_are_unpriced_and_the_cache_stays_bounded():
    """Senders choose model names: one longer than any real one is unpriced without a lookup,
    and however many distinct names arrive, the table caches a bounded number."""
    table = PriceTable()
    assert table.cost("gpt-4o" + "x" * 300, "openai", 100, 10) is None
    for i in range(MAX_CACHED_MODELS + 5):
        table._resolve_tokens = RESOLVE_BURST  # this test is about the cache, not the rate
        table.pricer(f"custom-{i}", "acme")
    assert len(table._cache) <= MAX_CACHED_MODELS
    assert table.cost("gpt-4o", "openai", 100, 10) == pytest.approx(
        reference("gpt-4o", "openai", input_tokens=100, output_tokens=10), rel=1e-9
    )


def test_new_model_names_are_resolved_at_a_bounded_rate():
    """A burst of invented model names cannot spend the collector's CPU on genai-prices
    lookups: past the burst, new names are left unpriced (and not cached), while names already
    resolved keep their price."""
    table = PriceTable()
    known = table.cost("gpt-4o", "openai", 100, 10)
    assert known is not None
    resolved = [table.pricer(f"invented-{i}", "acme") for i in range(RESOLVE_BURST + 50)]
    assert len(table._cache) <= RESOLVE_BURST + 1  # the burst, plus gpt-4o
    assert all(r is None for r in resolved)
    assert table.cost("gpt-4o", "openai", 100, 10) == known


def test_an_unknown_model_is_unpriced_not_free():
    assert PriceTable().cost("no-such-model-xyz-123", "openai", 1000, 1000) is None


def test_a_span_without_a_model_is_unpriced():
    assert PriceTable().cost("", "openai", 1000, 1000) is None


def test_an_unknown_provider_still_finds_the_model_by_name():
    expected = reference("gpt-4o", None, input_tokens=1000, output_tokens=100)
    cost = PriceTable().cost("gpt-4o", "some-gateway", 1000, 100)
    assert cost == pytest.approx(expected, rel=1e-9)


# -- overrides ----------------------------------------------------------------------------------
def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "prices.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_overrides_are_read_from_toml(tmp_path: Path):
    path = write(
        tmp_path,
        """
[[price]]
model = "acme-ft-1"
provider = "ACME"
input_per_mtok = 1.5
output_per_mtok = 6
cache_read_per_mtok = 0.15

[[price]]
model = "local-llama"
input_per_mtok = 0
output_per_mtok = 0
""",
    )
    assert load_overrides(path) == [
        PriceOverride("acme-ft-1", "acme", 1.5, 6.0, 0.15, None),
        PriceOverride("local-llama", "", 0.0, 0.0, None, None),
    ]


def test_an_override_prices_a_custom_model(tmp_path: Path):
    path = write(
        tmp_path,
        """
[[price]]
model = "acme-ft-1"
input_per_mtok = 2
output_per_mtok = 10
cache_read_per_mtok = 0.5
cache_write_per_mtok = 4
""",
    )
    table = PriceTable(load_overrides(path))
    cost = table.cost("acme-ft-1", "", 1_000_000, 500_000, cache_read=200_000, cache_write=100_000)
    assert cost == pytest.approx(700_000 * 2e-6 + 500_000 * 10e-6 + 200_000 * 0.5e-6 + 0.4)


def test_override_cache_prices_default_to_the_input_price():
    table = PriceTable([PriceOverride("m", "", input_per_mtok=3, output_per_mtok=0)])
    assert table.cost("m", "", 1_000_000, 0, cache_read=500_000) == pytest.approx(3.0)


def test_an_override_replaces_the_bundled_price_of_a_known_model():
    table = PriceTable([PriceOverride("gpt-4o", "openai", input_per_mtok=1, output_per_mtok=1)])
    assert table.cost("gpt-4o", "openai", 1_000_000, 1_000_000) == pytest.approx(2.0)


def test_a_provider_specific_override_applies_only_to_that_provider():
    table = PriceTable([PriceOverride("shared-name", "acme", input_per_mtok=1, output_per_mtok=0)])
    assert table.cost("shared-name", "acme", 1_000_000, 0) == pytest.approx(1.0)
    assert table.cost("acme/shared-name", "", 1_000_000, 0) == pytest.approx(1.0)
    assert table.cost("shared-name", "other", 1_000_000, 0) is None


def test_an_override_without_provider_applies_to_every_provider():
    table = PriceTable([PriceOverride("mine", "", input_per_mtok=1, output_per_mtok=0)])
    assert table.cost("mine", "whatever", 1_000_000, 0) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[[price]\nmodel = 1", "is not valid TOML"),
        ("price = 3", "'price' must be an array of tables"),
        ("[[price]]\ninput_per_mtok = 1\noutput_per_mtok = 1", "price[0]: model must be a string"),
        ("[[price]]\nmodel = 7\ninput_per_mtok = 1\noutput_per_mtok = 1", "model must be a string"),
        ('[[price]]\nmodel = "m"\noutput_per_mtok = 1', "price[0]: missing input_per_mtok"),
        ('[[price]]\nmodel = "m"\ninput_per_mtok = 1', "missing output_per_mtok"),
        (
            '[[price]]\nmodel = "m"\ninput_per_mtok = -1\noutput_per_mtok = 1',
            "input_per_mtok must be a number >= 0, not -1",
        ),
        (
            '[[price]]\nmodel = "m"\ninput_per_mtok = "3"\noutput_per_mtok = 1',
            "input_per_mtok must be a number >= 0, not '3'",
        ),
        (
            '[[price]]\nmodel = "m"\ninput_per_mtok = true\noutput_per_mtok = 1',
            "input_per_mtok must be a number >= 0, not True",
        ),
        (
            '[[price]]\nmodel = "m"\ninput_per_mtok = 1\noutput_per_mtok = 1\ninput_mtok = 2',
            "unknown keys ['input_mtok']",
        ),
        (
            '[[price]]\nmodel = "ok"\ninput_per_mtok = 1\noutput_per_mtok = 1\n'
            '[[price]]\nmodel = "bad"\ninput_per_mtok = 1',
            "price[1]: missing output_per_mtok",
        ),
    ],
)
def test_a_bad_override_file_raises_a_configuration_error_naming_the_problem(
    tmp_path: Path, text: str, problem: str
):
    path = write(tmp_path, text)
    with pytest.raises(ConfigurationError) as caught:
        load_overrides(path)
    assert problem in str(caught.value)
    assert str(path) in str(caught.value)


def test_a_missing_override_file_raises_a_configuration_error(tmp_path: Path):
    with pytest.raises(ConfigurationError, match="cannot read price file"):
        load_overrides(tmp_path / "absent.toml")
