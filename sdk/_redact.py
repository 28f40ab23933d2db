"""Redaction of text before it leaves the process: content, exception messages, reasons.

``default_redactor`` (also ``redact_text``) is a ``Callable[[str], str]`` that replaces secrets
and personal data with ``[REDACTED:kind]``. It is a list of ``Rule`` s, each a regular
expression with an optional cheap pre-check (a substring that must be present) and an optional
validator (Luhn for cards, mod-97 for IBANs) that leaves a candidate alone when it fails.

Every pattern is written to run in linear time: each starts with a literal or a narrow anchor
(often a look-behind that refuses to start inside a run of the same characters), every repeat
is bounded, and no repeated group can match the same text in two ways, so a failed attempt
backtracks a bounded number of steps. ``bounded_redact`` also cuts the text to what will be
kept (plus a margin) before redacting, so the cost is bounded by ``max_content_chars``.

The collector reuses ``default_redactor``: keep its name and signature.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

Redactor = Callable[[str], str]
Validator = Callable[["re.Match[str]"], "str | None"]

# Extra characters redacted past the cut: a secret that straddles ``max_content_chars`` is still
# seen whole by the patterns (tokens are shorter than this; JWTs and PEM blocks that are longer
# are matched even when cut, see their patterns).
REDACTION_MARGIN: Final = 512


@dataclass(frozen=True, slots=True)
class Rule:
    """One class of secret: ``pattern`` matches, a hint (when set) must occur in the text for
    the pattern to run at all, ``validate`` (when set) returns the replacement for a match, or
    None to keep it. Without ``validate`` the match (or its ``secret`` group) is replaced."""

    kind: str
    pattern: re.Pattern[str]
    hints: tuple[str, ...] = ()
    validate: Validator | None = None
    lower_hints: tuple[str, ...] = ()  # as ``hints``, in the lowercased text

    def apply(self, text: str) -> str:
        if self.hints and not any(h in text for h in self.hints):
            return text
        if self.lower_hints:
            lowered = text.lower()
            if not any(h in lowered for h in self.lower_hints):
                return text
        return self.pattern.sub(self._replace, text)

    def _replace(self, match: re.Match[str]) -> str:
        if self.validate is not None:
            replaced = self.validate(match)
            return match.group(0) if replaced is None else replaced
        return _keep_context(match, f"[REDACTED:{self.kind}]")


def _keep_context(match: re.Match[str], replacement: str) -> str:
    """Replace the ``secret`` group when the pattern has one (keeping ``password=``), else all."""
    if "secret" not in match.re.groupindex or match.group("secret") is None:
        return replacement
    start, end = match.span("secret")
    whole = match.group(0)
    offset = match.start()
    return whole[: start - offset] + replacement + whole[end - offset :]


# --- validators ---------------------------------------------------------------------------------
def luhn_valid(digits: str) -> bool:
    """The Luhn checksum every payment card number carries."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card(match: re.Match[str]) -> str | None:
    digits = "".join(ch for ch in match.group(0) if ch.isdigit())
    # Issuers' numbers start with 2-6 (Mastercard 2/5, Amex/Diners/JCB 3, Visa 4, Discover and
    # UnionPay 6): millisecond timestamps and most ids start elsewhere.
    if not 13 <= len(digits) <= 19 or digits[0] not in "23456" or not luhn_valid(digits):
        return None
    return "[REDACTED:card]"


# IBAN length per country (the SWIFT registry).
IBAN_LENGTHS: Final[dict[str, int]] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30,
    "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22,
    "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip


def iban_valid(iban: str) -> bool:
    """Country length and the ISO 13616 mod-97 checksum (``iban`` without spaces)."""
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban.isalnum():
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _iban(match: re.Match[str]) -> str | None:
    text = match.group(0)
    length = IBAN_LENGTHS.get(text[:2])
    if length is None:
        return None
    # The candidate may run on into the next word ("... 0130 00 SEPA"): take exactly the
    # country's length in letters and digits, which must end at a word boundary.
    count, end = 0, -1
    for i, ch in enumerate(text):
        if ch != " ":
            count += 1
            if count == length:
                end = i
                break
    if end < 0:
        return None
    rest = text[end + 1 :]
    if rest[:1].isalnum() or not iban_valid(text[: end + 1].replace(" ", "")):
        return None
    return "[REDACTED:iban]" + rest


def _phone(match: re.Match[str]) -> str | None:
    digits = sum(ch.isdigit() for ch in match.group(0))
    return "[REDACTED:phone]" if 8 <= digits <= 15 else None


def _national_phone(match: re.Match[str]) -> str | None:
    digits = sum(ch.isdigit() for ch in match.group(0))
    return "[REDACTED:phone]" if 9 <= digits <= 15 else None


# --- patterns -----------------------------------------------------------------------------------
_TOKEN_PREFIXES = (
    r"sk-ant-[\w-]{20,300}+",  # Anthropic
    r"(?:sk|pk|rk|ak)-[\w-]{12,300}+",  # OpenAI (sk-proj-, sk-svcacct-) and look-alikes
    r"(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{10,247}+",  # Stripe secret and restricted keys
    r"whsec_[A-Za-z0-9]{20,100}+",  # Stripe webhook secret
    r"gh[pousr]_[A-Za-z0-9]{36,251}+",  # GitHub classic, OAuth, server, user, refresh tokens
    r"github_pat_[A-Za-z0-9_]{22,251}+",  # GitHub fine-grained tokens
    r"glpat-[\w-]{20,64}+",  # GitLab
    r"xox[abposr]-[A-Za-z0-9-]{10,250}+",  # Slack
    r"AIza[\w-]{35}+",  # Google API keys
    r"ya29\.[\w-]{20,2000}+",  # Google OAuth access tokens
    r"hf_[A-Za-z0-9]{30,40}+",  # Hugging Face
    r"npm_[A-Za-z0-9]{36}+",  # npm
    r"SG\.[\w-]{22}\.[\w-]{43}+",  # SendGrid
    # AWS access key ids (long-term AKIA, temporary ASIA, and the other key-id prefixes).
    r"(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA|ASCA)[A-Z0-9]{16}+",
)

# Keys whose value is a secret, written REVERSED: the key-value rule scans the reversed text
# from each ``:``/``=`` (rare characters, found by a fast scan) back to the key, so plain prose
# costs a character scan, not a case-insensitive alternation tried at every position.
# Forward, these are: password, passwd, passphrase, pwd, secret (client_secret,
# aws_secret_access_key, SecretAccessKey, ...), api_key/apikey, access_key, private_key,
# access/auth/refresh/api/bearer/id/session_token and a bare ``token``.
_REVERSED_KEYS = (
    r"drowssap|dwssap|esarhpssap|dwp|terces|yek[_-]?ipa|yek[_-]?ssecca|yek[_-]?etavirp"
    r"|nekot[_-]?(?:ssecca|htua|hserfer|ipa|reraeb|di|noisses)|nekot\b"
)
# Reversed: the separator, blanks, a closing quote of the key (maybe escaped), whatever follows
# the key stem (``_hash``, ``AccessKey``: not a lowercase letter right after it), the key.
_REVERSED_KEY_VALUE: Final = re.compile(
    r"(?i)[:=][ \t]{0,3}[\"']?\\?[\w.-]{0,30}?(?-i:(?<![a-z]))(?P<key>" + _REVERSED_KEYS + ")"
)
# A value after ``key=`` / ``key: `` / ``"key": "``: quoted (up to the closing quote) or bare.
# JSON-serialized values escape their quotes (``password=\"x\"``): a backslash may precede them.
_VALUE: Final = re.compile(
    r"""[ \t]{0,3}(?:\\?"(?P<dq>[^"\\\n]{1,512})\\?"|\\?'(?P<sq>[^'\\\n]{1,512})\\?'"""
    r"""|(?P<bare>(?i:(?:bearer|basic|token)[ \t]{1,3})?[^\s"'\\,;&<>)}\]]{1,512}))"""
)


class _KeyValueRule:
    """``password=...``, ``"api_key": "..."``, ``aws_secret_access_key = ...``: the key and the
    separator stay, the value becomes ``[REDACTED:password]`` or ``[REDACTED:secret]``."""

    kind = "secret"
    pattern = _REVERSED_KEY_VALUE

    def apply(self, text: str) -> str:
        if ":" not in text and "=" not in text:
            return text
        n = len(text)
        pieces: list[str] = []
        done = 0
        found_all = list(_REVERSED_KEY_VALUE.finditer(text[::-1]))
        for found in reversed(found_all):
            sep = n - 1 - found.start()
            if sep < done:
                continue
            value = _VALUE.match(text, sep + 1)
            if value is None:
                continue
            group = next(g for g in ("dq", "sq", "bare") if value.group(g) is not None)
            if value.group(group).startswith("[REDACTED"):
                continue
            start, end = value.span(group)
            key = found.group("key").lower()
            kind = "password" if key.endswith(("ssap", "dwp")) else "secret"
            pieces.append(text[done:start])
            pieces.append(f"[REDACTED:{kind}]")
            done = end
        if not pieces:
            return text
        pieces.append(text[done:])
        return "".join(pieces)


DEFAULT_RULES: Final[tuple[Rule | _KeyValueRule, ...]] = (
    # PEM private keys, whole blocks; a block cut before its END line is redacted to the end.
    Rule(
        "private_key",
        re.compile(
            r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
            r"[\s\S]*?(?:-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|\Z)"
        ),
        hints=("PRIVATE KEY",),
    ),
    # Passwords in URLs: scheme://user:PASSWORD@host keeps the user and host.
    Rule(
        "password",
        re.compile(r"://[^\s:/@]{0,256}:(?P<secret>[^\s@/]{1,256})@"),
        hints=("://",),
    ),
    _KeyValueRule(),
    Rule(
        "bearer",
        re.compile(r"(?i)\bbearer\s{1,10}[a-z0-9._~+/=-]{8,4096}"),
        lower_hints=("bearer",),
    ),
    Rule(
        "basic_auth",
        re.compile(
            r"(?i)authorization\\?[\"']?[ \t]{0,3}[:=][ \t]{0,3}\\?[\"']?basic[ \t]{1,3}"
            r"(?P<secret>[a-z0-9+/]{6,4096}={0,2})"
        ),
        lower_hints=("basic",),
    ),
    # Bare JWTs (and JWEs): a base64url JSON header, then one or more segments; a token cut in
    # its payload still matches.
    Rule(
        "jwt",
        re.compile(r"\beyJ[\w-]{8,8192}(?:\.[\w-]{0,16384}){1,4}"),
        hints=("eyJ",),
    ),
    # The look-ahead on the first letters lets the scan skip most positions cheaply; the
    # possessive repeats (``{m,n}+``, Python 3.11) never give back what they matched.
    Rule(
        "api_key",
        re.compile(r"(?=[sprawgxAyhnS])\b(?:" + "|".join(_TOKEN_PREFIXES) + r")(?![\w-])"),
    ),
    # E-mail addresses, internationalised ones too (\w is Unicode); the look-behind means a
    # match only starts where a local part can start, so a long run is tried once, not per char.
    Rule(
        "email",
        re.compile(
            r"(?<![\w.%+'-])[\w.%+'-]{1,64}@(?:[\w-]{1,63}\.){1,10}"
            r"(?:xn--[a-z0-9-]{1,59}|[^\W\d_]{2,63})(?![\w-])"
        ),
        hints=("@",),
    ),
    Rule(
        "iban",
        re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}"),
        validate=_iban,
    ),
    # Card numbers, 13-19 digits with optional single spaces or hyphens, checked with Luhn.
    Rule("card", re.compile(r"(?<![\d.])(?<!\d-)\d(?:[ -]?\d){12,18}(?![\d])"), validate=_card),
    # US social security numbers: never area 000, 666 or 9xx, group 00 or serial 0000.
    Rule(
        "ssn",
        re.compile(
            r"(?<![\w.-])(?!000|666|9\d\d)\d{3}(?P<sep>[- ])(?!00)\d{2}(?P=sep)"
            r"(?!0000)\d{4}(?![\w-])"
        ),
    ),
    # International phone numbers: +country code, then groups split by single separators or
    # parentheses; 8 to 15 digits in all (E.164).
    Rule(
        "phone",
        re.compile(
            r"(?<![\w+])\+\d{1,4}(?:(?:[ .-]\(?|\(|\)[ .-]?)\d{1,10}){1,7}\)?(?![\w])"
            r"|(?<![\w+])\+\d{8,15}(?![\w])"
        ),
        hints=("+",),
        validate=_phone,
    ),
    # National phone numbers: (415) 555-0100, 415-555-0100, 415.555.0100, and trunk-prefixed
    # 020 7946 0958 / 06 12 34 56 78 (one separator throughout). Bare digit runs (ids,
    # timestamps) and dates are not phone numbers.
    Rule(
        "phone",
        re.compile(
            r"(?<![\w+.-])(?:\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}|\d{3}(?P<s1>[ .-])\d{3}(?P=s1)\d{4}"
            r"|0(?:0[1-9]|[1-9])\d{0,3}(?P<s2>[ .-])\d{2,8}(?:(?P=s2)\d{2,8}){0,4})(?![\w]|[.:-]\d)"
        ),
        validate=_national_phone,
    ),
)

# The old name: (kind, pattern) pairs, for anyone who listed them.
DEFAULT_PATTERNS: Final[tuple[tuple[str, re.Pattern[str]], ...]] = tuple(
    (rule.kind, rule.pattern) for rule in DEFAULT_RULES
)


def default_redactor(text: str) -> str:
    """Replace secrets and personal data in ``text`` with ``[REDACTED:kind]``.

    Covered: PEM private keys, passwords in URLs and ``password=``/``secret=``/``api_key=``
    pairs (the key is kept), bearer and basic credentials, JWTs, API keys and tokens (OpenAI,
    Anthropic, Stripe, GitHub, GitLab, Slack, Google, Hugging Face, npm, SendGrid, AWS key ids),
    e-mail addresses (internationalised too), IBANs (mod-97 checked), card numbers (Luhn
    checked), US social security numbers, international and national phone numbers. Linear in
    the length of ``text``.
    """
    for rule in DEFAULT_RULES:
        text = rule.apply(text)
    return text


redact_text: Redactor = default_redactor


def make_redactor(extra_patterns: Sequence[str | re.Pattern[str]] = ()) -> Redactor:
    """A redactor with the default patterns plus ``extra_patterns`` (replaced by ``[REDACTED]``).

    Your patterns run on every recorded text: keep them linear (a literal prefix, bounded
    repeats), as the defaults are.
    """
    compiled = [re.compile(p) if isinstance(p, str) else p for p in extra_patterns]

    def redact(text: str) -> str:
        text = default_redactor(text)
        for pattern in compiled:
            text = pattern.sub("[REDACTED]", text)
        return text

    return redact


def truncate(text: str, max_chars: int) -> str:
    """Cut ``text`` to ``max_chars``, saying how much was dropped."""
    if len(text) <= max_chars:
        return text
    dropped = len(text) - max_chars
    return f"{text[:max_chars]}...[truncated {dropped} chars]"


def bounded_redact(redact: Redactor, text: str, max_chars: int) -> str:
    """Redact and truncate ``text`` to ``max_chars``, in time bounded by ``max_chars``.

    Only ``text[:max_chars + REDACTION_MARGIN]`` is redacted (the rest would be cut anyway), so
    a secret straddling the cut is seen whole and not half-shipped; then the redacted text is
    cut to ``max_chars``. The count of dropped characters mixes redacted and original ones.
    """
    limit = max_chars + REDACTION_MARGIN
    dropped = 0
    if len(text) > limit:
        dropped = len(text) - limit
        text = text[:limit]
    redacted = redact(text)
    if len(redacted) > max_chars:
        dropped += len(redacted) - max_chars
        redacted = redacted[:max_chars]
    if dropped:
        return f"{redacted}...[truncated {dropped} chars]"
    return redacted


# --- exceptions ---------------------------------------------------------------------------------
def exception_type_name(exc: BaseException) -> str:
    """The exception's fully qualified class name (bare for builtins), as ``error.type``."""
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _is_own_message(exc: BaseException) -> bool:
    """agentwatch's own limit errors carry only the limit and numbers: safe in every mode."""
    from agentwatch._errors import AgentLimitExceeded

    return type(exc) is AgentLimitExceeded


def exception_message(
    exc: BaseException, *, redact: Redactor, capture_content: bool, max_chars: int
) -> str | None:
    """What may leave the process of ``str(exc)``: None with content capture off (messages
    quote arguments and answers), else the message redacted and cut to ``max_chars``."""
    if not (capture_content or _is_own_message(exc)):
        return None
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not break telemetry
        return None
    return bounded_redact(redact, message, max_chars)


def exception_summary(
    exc: BaseException, *, redact: Redactor, capture_content: bool, max_chars: int
) -> str:
    """``Type`` with content capture off, ``Type: redacted message`` with it on."""
    name = exception_type_name(exc)
    message = exception_message(
        exc, redact=redact, capture_content=capture_content, max_chars=max_chars
    )
    return f"{name}: {message}" if message else name


def exception_stacktrace(
    exc: BaseException, *, redact: Redactor, capture_content: bool, max_chars: int
) -> str:
    """A Python traceback of ``exc`` and its causes with every frame (file, line, function,
    source line) but each exception's own line reduced by ``exception_summary`` (notes go the
    same way). Locals are never included."""
    import traceback  # only failures need it: keeps the SDK's import light

    lines: list[str] = []
    seen: set[int] = set()

    def summary(e: BaseException) -> str:
        return exception_summary(
            e, redact=redact, capture_content=capture_content, max_chars=max_chars
        )

    def walk(e: BaseException, depth: int) -> None:
        seen.add(id(e))
        if depth > 20:
            return
        cause, context = e.__cause__, e.__context__
        if cause is not None and id(cause) not in seen:
            walk(cause, depth + 1)
            lines.append(
                "\nThe above exception was the direct cause of the following exception:\n\n"
            )
        elif context is not None and not e.__suppress_context__ and id(context) not in seen:
            walk(context, depth + 1)
            lines.append(
                "\nDuring handling of the above exception, another exception occurred:\n\n"
            )
        if e.__traceback__ is not None:
            lines.append("Traceback (most recent call last):\n")
            lines.extend(traceback.format_list(traceback.extract_tb(e.__traceback__)))
        lines.append(summary(e) + "\n")
        notes = getattr(e, "__notes__", None)
        if capture_content and isinstance(notes, list):
            lines.extend(
                bounded_redact(redact, n, max_chars) + "\n" for n in notes if isinstance(n, str)
            )
        for i, sub in enumerate(getattr(e, "exceptions", None) or (), 1):
            if isinstance(sub, BaseException) and id(sub) not in seen:
                lines.append(f"+---------------- {i} ----------------\n")
                walk(sub, depth + 1)

    walk(exc, 0)
    return "".join(lines)
