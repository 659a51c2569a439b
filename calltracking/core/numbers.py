"""Phone numbers: E.164 validation, trunk normalisation, display and masking.

Rules (CONTRACT.md, "Numbers"):
- E.164 is "+" then 8 to 15 digits, the first not 0. The API takes and gives nothing else.
- Trunks send DIDs and caller ids in many shapes; `normalise` turns them into E.164 with the
  configured country code, or None when the text is not a phone number (`s`, a short extension,
  a SIP URI, a withheld caller). Separators (spaces, dashes, parentheses, dots) and a `tel:`
  prefix are ignored. Prefixes, in this order:
    "+"             already international;
    "00"            the ITU international prefix;
    "810"           the Russian international prefix (country code 7 only);
    "8" + 10 digits the Russian trunk prefix (country code 7 only);
    national        10 digits for country codes 7 and 1 (their national numbers are 10 digits),
                    a single leading "0" (the common trunk prefix) elsewhere;
  anything else is taken as already carrying its country code (`74951110001`).
- A withheld caller (`anonymous`, `<unknown>`, `unknown`, empty, `"" <>`, restricted, private)
  is no caller.
- Display fills the `X`s of the site's format with the national significant digits; when the
  counts differ, or the number is not of the configured country, it shows the E.164 form.
- Callers' numbers never reach a log line in full: use `mask`.
"""

from __future__ import annotations

import functools
import re

E164_MIN_DIGITS = 8
E164_MAX_DIGITS = 15

_E164 = re.compile(r"\+[1-9][0-9]{7,14}")
_SEPARATORS = re.compile(r"[\s\-().\u00a0]")
# Countries whose national significant numbers are exactly 10 digits with no trunk "0":
# Russia/Kazakhstan (7) and the North American Numbering Plan (1).
_TEN_DIGIT_NATIONAL = frozenset({"7", "1"})
_WITHHELD_WORDS = frozenset(
    {"", "anonymous", "unknown", "restricted", "private", "unavailable", "withheld", "blocked"}
)
# `"Name" <number>` as Asterisk prints a caller id; the number part decides.
_NAME_AND_NUMBER = re.compile(r'^(?:"[^"]*"\s*)?<([^>]*)>$')


def is_e164(value: object) -> bool:
    """True for "+" followed by 8 to 15 digits, the first not 0 (ASCII digits only)."""
    return isinstance(value, str) and _E164.fullmatch(value) is not None


def normalise(raw: str | None, country_code: str) -> str | None:
    """A trunk's DID or caller id as E.164, or None when it is not a phone number."""
    if raw is None:
        return None
    text = raw.strip()
    if text[:4].lower() == "tel:":
        # RFC 3966 parameters (`;phone-context=...`, `;ext=...`) are not part of the number.
        text = text[4:].split(";", 1)[0]
    compact = _SEPARATORS.sub("", text)
    plus = compact.startswith("+")
    digits = compact[1:] if plus else compact
    # isdigit() alone would accept non-ASCII digits such as "٣"; numbers are ASCII.
    if not digits.isascii() or not digits.isdigit():
        return None
    international = digits if plus else _international_digits(digits, country_code)
    if international is None:
        return None
    candidate = "+" + international
    return candidate if is_e164(candidate) else None


def _international_digits(digits: str, country_code: str) -> str | None:
    """Strip the dialling prefix of a number written without "+"; None when it cannot be told."""
    if digits.startswith("00"):
        return digits[2:]
    if country_code == "7":
        if digits.startswith("810"):
            return digits[3:]
        if len(digits) == 11 and digits.startswith("8"):
            return "7" + digits[1:]
    if country_code in _TEN_DIGIT_NATIONAL:
        if len(digits) == 10:
            return country_code + digits
    elif digits.startswith("0"):
        return country_code + digits[1:]
    return digits


def is_withheld(raw: str | None) -> bool:
    """True when the caller id says the caller withheld (or the trunk did not send) the number."""
    if raw is None:
        return True
    text = raw.strip()
    match = _NAME_AND_NUMBER.fullmatch(text)
    if match is not None:
        text = match.group(1).strip()
    lowered = text.lower()
    if lowered.startswith(("sip:", "sips:")):
        # RFC 3261 anonymous form: sip:anonymous@anonymous.invalid
        lowered = lowered.split(":", 1)[1].split("@", 1)[0]
    return lowered.strip("<>\"' ") in _WITHHELD_WORDS


def national_digits(e164: str, country_code: str) -> str:
    """The national significant number when `e164` starts with the country code, else all digits."""
    digits = e164.lstrip("+")
    if country_code and digits.startswith(country_code) and len(digits) > len(country_code):
        return digits[len(country_code) :]
    return digits


@functools.lru_cache(maxsize=65_536)  # every hello formats its number; pools repeat them
def format_display(e164: str, display_format: str, country_code: str) -> str:
    """Fill the format's `X`s left to right with the national digits; E.164 when they do not fit.

    A number of another country is shown as E.164 too: the format's literal country prefix
    ("+7 ...") would otherwise lie about it.
    """
    digits = e164.lstrip("+")
    if not country_code or not digits.startswith(country_code):
        return "+" + digits
    national = national_digits(e164, country_code)
    if display_format.count("X") != len(national):
        return "+" + digits
    fill = iter(national)
    return "".join(next(fill) if ch == "X" else ch for ch in display_format)


def mask(e164: str | None) -> str:
    """A number fit for a log line: at most the first 5 and last 4 characters, 3 or more hidden."""
    if e164 is None:
        return "(none)"
    if len(e164) <= 4:
        return "***"
    hidden = 3
    tail = min(4, (len(e164) - hidden) // 2)
    head = min(5, len(e164) - hidden - tail)
    return f"{e164[:head]}***{e164[len(e164) - tail :]}"
