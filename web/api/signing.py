"""Short-lived signed recording URLs, so an `<audio>` element can play a recording without an
Authorization header: `...?exp=<unix seconds>&sig=<hex HMAC-SHA256 of "call_id.exp">`.

Rules: the signature covers the call id and the expiry; a URL is good until `exp` (at most
URL_TTL_S after it was made); a tampered, malformed or expired one is refused with 403
`forbidden`. `exp` is checked as at most 12 ASCII digits and `sig` as 64 hex digits before any
arithmetic or comparison, so no input reaches `int()` or `encode()` that could fail.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import datetime

from web.api.errors import Forbidden

URL_TTL_S = 900
_EXP = re.compile(r"[0-9]{1,12}")
_SIG = re.compile(r"[0-9a-f]{64}")


def signature(key: bytes, call_id: str, exp: int) -> str:
    return hmac.new(key, f"{call_id}.{exp}".encode(), hashlib.sha256).hexdigest()


def signed_query(key: bytes, call_id: str, now: datetime) -> str:
    exp = int(now.timestamp()) + URL_TTL_S
    return f"exp={exp}&sig={signature(key, call_id, exp)}"


def verify(key: bytes, call_id: str, exp: str | None, sig: str | None, now: datetime) -> None:
    if exp is None or sig is None or not _EXP.fullmatch(exp) or not _SIG.fullmatch(sig):
        raise Forbidden("the recording link is malformed")
    if not hmac.compare_digest(sig.encode(), signature(key, call_id, int(exp)).encode()):
        raise Forbidden("the recording link is not valid")
    if int(exp) < now.timestamp():
        raise Forbidden("the recording link has expired; fetch the call again for a new one")
