"""Declarative, composable expectations on a health probe's answer.

``contains("refund") & max_length(400) & ~contains("I'm sorry")`` is one expectation; evaluating
it returns a ``Verdict`` that says which part failed and why. ``&`` needs every part, ``|`` any
part, ``~`` the opposite. Reasons never quote the answer itself (it may hold user data): they
name what was expected, and positions or sizes.

pydantic is imported only by ``valid_json(model)``, and only when given a model: the SDK's
import stays light.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from agentwatch._errors import ConfigurationError

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = [
    "Expectation",
    "Failure",
    "Verdict",
    "all_of",
    "any_of",
    "contains",
    "matches",
    "max_latency",
    "max_length",
    "not_",
    "not_contains",
    "predicate",
    "valid_json",
]

_MAX_REASON_CHARS: Final = 500


@dataclass(frozen=True, slots=True)
class Failure:
    """One expectation that did not hold: its description and why."""

    expectation: str
    reason: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """The result of evaluating an expectation: passed, or the failures that say why not."""

    failures: tuple[Failure, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.failures

    def __bool__(self) -> bool:
        return self.passed

    @property
    def failed_expectation(self) -> str | None:
        """The first expectation that failed, as written (``contains('refund')``)."""
        return self.failures[0].expectation if self.failures else None

    @property
    def reason(self) -> str | None:
        """Why the first expectation failed, noting how many others failed too."""
        if not self.failures:
            return None
        first = self.failures[0].reason
        if len(self.failures) > 1:
            others = ", ".join(f.expectation for f in self.failures[1:])
            first += f" (and {len(self.failures) - 1} more failed: {others})"
        return first


_PASS: Final = Verdict()


def answer_text(answer: Any) -> str:
    """The text an expectation reads: strings as they are, anything else as JSON (or ``str``)."""
    if isinstance(answer, str):
        return answer
    if isinstance(answer, bytes | bytearray):
        return bytes(answer).decode("utf-8", errors="replace")
    dump = getattr(answer, "model_dump_json", None)  # a pydantic model answers as its JSON
    if callable(dump):
        text = dump()
        if isinstance(text, str):
            return text
    try:
        return json.dumps(answer, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(answer)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _cut(reason: str) -> str:
    return reason if len(reason) <= _MAX_REASON_CHARS else reason[: _MAX_REASON_CHARS - 3] + "..."


class Expectation:
    """Something a probe's answer must satisfy. Combine with ``&``, ``|`` and ``~``."""

    description: str = "expectation"

    def evaluate(self, answer: Any, *, latency_s: float | None = None) -> Verdict:
        """Check ``answer`` (returned after ``latency_s`` seconds); never raises."""
        try:
            return self._evaluate(answer, latency_s)
        except Exception as exc:  # noqa: BLE001 - becomes the failure reason
            return self._fail(f"the check itself raised {type(exc).__name__}: {exc}")

    def _evaluate(self, answer: Any, latency_s: float | None) -> Verdict:
        raise NotImplementedError

    def _fail(self, reason: str) -> Verdict:
        return Verdict((Failure(self.description, _cut(reason)),))

    def __and__(self, other: Expectation) -> Expectation:
        return all_of(self, other)

    def __or__(self, other: Expectation) -> Expectation:
        return any_of(self, other)

    def __invert__(self) -> Expectation:
        return not_(self)

    def __str__(self) -> str:
        return self.description

    def __repr__(self) -> str:
        return f"<Expectation {self.description}>"


class _Contains(Expectation):
    def __init__(self, text: str, *, case_sensitive: bool) -> None:
        self.text = text
        self.case_sensitive = case_sensitive
        extra = "" if case_sensitive else ", case_sensitive=False"
        self.description = f"contains({_short(text)}{extra})"

    def _found(self, answer: Any) -> bool:
        haystack = answer_text(answer)
        if self.case_sensitive:
            return self.text in haystack
        return self.text.casefold() in haystack.casefold()

    def _evaluate(self, answer: Any, latency_s: float | None) -> Verdict:
        if self._found(answer):
            return _PASS
        return self._fail(f"the answer does not contain {_short(self.text)}")


class _NotContains(_Contains):
    def __init__(self, text: str, *, case_sensitive: bool) -> None:
        super().__init__(text, case_sensitive=case_sensitive)
        self.description = "not_" + self.description

    def _evaluate(self, answer: Any, latency_s: float | None) -> Verdict:
        haystack = answer_text(answer)
        needle = self.text if self.case_sensitive else self.text.casefold()
        at = (haystack if self.case_sensitive else haystack.casefold()).find(needle)
        if at < 0:
            return _PASS
        return self._fail(f"the answer contains {_short(self.text)} at position {at}")


class _Matches(Expectation):
    def __init__(self, pattern: str | re.Pattern[str], flags: int) -> None:
        self.pattern = re.compile(pattern, flags) if isinstance(pattern, str) else pattern
        self.description = f"matches({_short(self.pattern.pattern)})"

    def _evaluate(self, answer: Any, latency_s: float | None) -> Verdict:
        if self.pattern.search(answer_text(answer)):
            return _PASS
        return self._fail(f"no match for the pattern {_short(self.pattern.pattern)}")


class _MaxLength(Expectation):
    def __init__(self, chars: int) -> None:
        if chars < 0:
            raise ConfigurationError(f"max_length needs a length >= 0, not {chars!r}")
        self.chars = chars
        self.description = f"max_length({chars})"

    def _evaluate(self, answer: Any, latency_s: float | None) -> Verdict:
        length = len(answer_text(answer))
        if length <= self.chars:
            return _PASS
        return self._fail(f"the answer is {length} characters long, more than {self.chars}")


def _pydantic_reason(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    # include_input=False: pydantic would otherwise quote the (possibly sensitive) answer.
    details = errors(include_url=False, include_input=False, include_context=False)
    parts = []
    for err in details[:3]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(root)"
        parts.append(f"{loc}: {err.get('msg', '')}")
    more = f" (+{len(details) - 3} more)" if len(details) > 3 else ""
    return "; ".join(parts) + more


class _ValidJson(Expectation):
    def __init__(self, model: type[BaseModel] | None) -> None:
        self.model = model
        self.description = "valid_json()" if model is None else f"valid_json({model.__name__})"

    def _evaluate(self, answer: Any, latency_s: float | None) -> Verdict:
        model = self.model
        if model is not None and isinstance(answer, model):
            return _PASS
        if isinstance(answer, str | bytes | bytearray):
            try:
                value = json.loads(answer)
            except ValueError as exc:
                msg = getattr(exc, "msg", type(exc).__name__)
                where = getattr(exc, "pos", None)
                at = f" at position {where}" if where is not None else ""
                return self._fail(f"the answer is not valid JSON: {msg}{at}")
        else:
            value = answer
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                return self._fail(f"the answer is a {type(answer).__name__}, not JSON")
        if model is None:
            return _PASS
        from pydantic import ValidationError  # here, to keep pydantic out of the SDK's import

        try:
            model.model_validate(value)
        except ValidationError as exc:
            return self._fail(f"does not match {model.__name__}: {_pydantic_reason(exc)}")
        return _PASS


class _MaxLatency(Expectation):
    def __init__(self, seconds: float) -> None:
        if not seconds > 0:
            raise ConfigurationError(f"max_latency needs seconds > 0, not {seconds!r}")
        self.seconds = seconds
        self.description = f"max_latency({seconds:g}s)"

    def _evaluate(self, answer: Any, latency_s: float | None) -> Verdict:
        if latency_s is None:
            return self._fail("the latency was not measured")
        if latency_s <= self.seconds:
            return _PASS
        return self._fail(f"the answer took {latency_s:.3f}s, more than {self.seconds:g}s")


class _Predicate(Expectation):
    def __init__(self, fn: Callable[[Any], object], description: str | None) -> None:
        self.fn = fn
        self.description = description or f"predicate({getattr(fn, '__name__', 'fn')})"

    def _evaluate(self, answer: Any, latency_s: float | None) -> Verdict:
        try:
            ok = self.fn(answer)
        except Exception as exc:  # noqa: BLE001 - becomes the failure reason
            return self._fail(f"the predicate raised {type(exc).__name__}: {exc}")
        if ok:
            return _PASS
        return self._fail("the predicate returned false")


class _AllOf(Expectation):
    parts: tuple[Expectation, ...]

    def __init__(self, parts: Sequence[Expectation]) -> None:
        flat: list[Expectation] = []
        for part in parts:
            flat.extend(part.parts if isinstance(part, _AllOf) else (part,))
        self.parts = tuple(flat)
        self.description = " & ".join(_grouped(p) for p in self.parts)

    def _evaluate(self, answer: Any, latency_s: float | None) -> Verdict:
        failures: list[Failure] = []
        for part in self.parts:
            failures.extend(part.evaluate(answer, latency_s=latency_s).failures)
        return Verdict(tuple(failures))


class _AnyOf(Expectation):
    parts: tuple[Expectation, ...]

    def __init__(self, parts: Sequence[Expectation]) -> None:
        flat: list[Expectation] = []
        for part in parts:
            flat.extend(part.parts if isinstance(part, _AnyOf) else (part,))
        self.parts = tuple(flat)
        self.description = " | ".join(_grouped(p) for p in self.parts)

    def _evaluate(self, answer: Any, latency_s: float | None) -> Verdict:
        reasons: list[str] = []
        for part in self.parts:
            verdict = part.evaluate(answer, latency_s=latency_s)
            if verdict.passed:
                return _PASS
            reasons.extend(f"{f.expectation}: {f.reason}" for f in verdict.failures)
        return self._fail("none held: " + "; ".join(reasons))


class _Not(Expectation):
    def __init__(self, inner: Expectation) -> None:
        self.inner = inner
        self.description = f"~{_grouped(inner)}"

    def _evaluate(self, answer: Any, latency_s: float | None) -> Verdict:
        if self.inner.evaluate(answer, latency_s=latency_s).passed:
            return self._fail(f"{self.inner.description} held, and must not")
        return _PASS


def _grouped(part: Expectation) -> str:
    return f"({part.description})" if isinstance(part, _AllOf | _AnyOf) else part.description


def contains(text: str, *, case_sensitive: bool = True) -> Expectation:
    """The answer contains ``text``."""
    return _Contains(text, case_sensitive=case_sensitive)


def not_contains(text: str, *, case_sensitive: bool = True) -> Expectation:
    """The answer does not contain ``text`` (e.g. a refusal or an error phrase)."""
    return _NotContains(text, case_sensitive=case_sensitive)


def matches(pattern: str | re.Pattern[str], flags: int = 0) -> Expectation:
    """The regular expression finds a match somewhere in the answer (``re.search``)."""
    return _Matches(pattern, flags)


def max_length(chars: int) -> Expectation:
    """The answer is at most ``chars`` characters (too verbose often means hallucinating)."""
    return _MaxLength(chars)


def valid_json(model: type[BaseModel] | None = None) -> Expectation:
    """The answer is valid JSON, and validates against the pydantic ``model`` when given."""
    return _ValidJson(model)


def max_latency(seconds: float) -> Expectation:
    """The probe answered within ``seconds``."""
    return _MaxLatency(seconds)


def predicate(fn: Callable[[Any], object], description: str | None = None) -> Expectation:
    """``fn(answer)`` is truthy; ``description`` names it in results (default: its name)."""
    return _Predicate(fn, description)


def all_of(*parts: Expectation) -> Expectation:
    """Every part holds (the same as ``a & b & ...``)."""
    if not parts:
        raise ConfigurationError("all_of needs at least one expectation")
    return _AllOf(parts)


def any_of(*parts: Expectation) -> Expectation:
    """At least one part holds (the same as ``a | b | ...``)."""
    if not parts:
        raise ConfigurationError("any_of needs at least one expectation")
    return _AnyOf(parts)


def not_(part: Expectation) -> Expectation:
    """The part does not hold (the same as ``~part``)."""
    return _Not(part)
