"""Analytics ids read from the visitor's cookies: GA client id, GA4 session id, Metrika ClientID.

Rules:
- `_ga` is `GA1.<n>.<X>.<Y>` (n the cookie's domain depth); the client id GA4's Measurement
  Protocol wants is `X.Y`, both parts digits. A bare `X.Y` (already parsed by the page) is accepted.
- `_ga_<ID>` holds the GA4 session of the property whose measurement id is `G-<ID>`, in the old
  `GS1.<n>.<session_id>.<session_number>...` or the 2025 `GS2.<n>.s<session_id>$o<n>$g..$t..`
  form, whose `$` parts are keyed by their first letter and come in no fixed order. The session
  id is digits.
- With a measurement id only that property's cookie counts (another property's session would be
  the wrong one); without one, the first cookie in the mapping that parses.
- Metrika's ClientID is a positive whole number, at most 30 digits.
Anything else is None: these values come from browsers and are never trusted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# re.ASCII: `\d` would otherwise accept any Unicode digit ("٣").
_GA_CLIENT = re.compile(r"(?:GA1\.\d{1,2}\.)?(\d{1,20}\.\d{1,20})", re.ASCII)
_GS1 = re.compile(r"GS1\.\d{1,2}\.(\d{1,20})(?:\..*)?", re.ASCII | re.DOTALL)
_GS2 = re.compile(r"GS2\.\d{1,2}\.(.*)", re.ASCII | re.DOTALL)
_DIGITS = re.compile(r"\d{1,20}", re.ASCII)
_YM_CLIENT = re.compile(r"[1-9]\d{0,29}", re.ASCII)
_GA_COOKIE_PREFIX = "_ga_"


def ga_client_id(cookie: str | None) -> str | None:
    """`X.Y` from a `_ga` cookie value, or None."""
    if not isinstance(cookie, str):
        return None
    match = _GA_CLIENT.fullmatch(cookie.strip())
    return match.group(1) if match else None


def ga_session_id(cookies: Mapping[str, str] | None, measurement_id: str | None) -> str | None:
    """The GA4 session id from the `_ga_<ID>` cookies, or None."""
    if not isinstance(cookies, Mapping):
        return None
    if measurement_id:
        wanted = _GA_COOKIE_PREFIX + measurement_id.strip().upper().removeprefix("G-")
        for name, value in cookies.items():
            if isinstance(name, str) and name.upper() == wanted.upper():
                return _session_from_cookie(value)
        return None
    for name, value in cookies.items():
        if isinstance(name, str) and name.startswith(_GA_COOKIE_PREFIX):
            session = _session_from_cookie(value)
            if session is not None:
                return session
    return None


def _session_from_cookie(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.strip()
    old = _GS1.fullmatch(text)
    if old is not None:
        return old.group(1)
    new = _GS2.fullmatch(text)
    if new is None:
        return None
    for part in new.group(1).split("$"):
        if part.startswith("s") and _DIGITS.fullmatch(part[1:]):
            return part[1:]
    return None


def ym_client_id(value: str | None) -> str | None:
    """Metrika's ClientID (digits), or None."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    return text if _YM_CLIENT.fullmatch(text) else None
