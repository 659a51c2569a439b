"""Call qualification: account-defined tags and the "target call" rule.

Rules:
- A tag is 1-40 characters after trimming, no control characters; tags compare case-insensitively
  and are stored as given the first time (so "VIP" and "vip" are one tag).
- A target call is answered, not spam, and talked at least `min_talk_s` seconds (Russian call
  tracking services call these "целевые звонки"). With no rule (`None`) nobody is a target call:
  the answer is `None`, not `False`, so "unknown" never reads as "no".
"""

from __future__ import annotations

import unicodedata

MAX_TAG_LEN = 40
MAX_TAGS_PER_ACCOUNT = 100
MAX_TARGET_TALK_S = 24 * 3600


def clean_tag(raw: str) -> str | None:
    """The tag as stored, or None when it is not a usable tag."""
    tag = " ".join(raw.split())
    if not tag or len(tag) > MAX_TAG_LEN:
        return None
    if any(unicodedata.category(ch).startswith("C") for ch in tag):
        return None
    return tag


def canonical_tags(wanted: list[str], defined: list[str]) -> tuple[list[str], list[str]]:
    """(tags as the account spells them, tags it has not defined): in the order asked, once."""
    by_fold = {d.casefold(): d for d in defined}
    known: list[str] = []
    unknown: list[str] = []
    for raw in wanted:
        hit = by_fold.get(" ".join(raw.split()).casefold())
        if hit is None:
            unknown.append(raw)
        elif hit not in known:
            known.append(hit)
    return known, unknown


def is_target_call(
    talk_s: int, *, answered: bool, spam: bool, min_talk_s: int | None
) -> bool | None:
    if min_talk_s is None:
        return None
    return answered and not spam and talk_s >= min_talk_s
