"""Tags as an account spells them, and the target-call rule."""

from __future__ import annotations

import pytest

from calltracking.core.qualification import canonical_tags, clean_tag, is_target_call


@pytest.mark.parametrize(
    ("raw", "stored"),
    [("VIP", "VIP"), ("  sale   lost ", "sale lost"), ("", None), ("   ", None), ("a\x07b", None)],
)
def test_a_tag_is_trimmed_and_printable(raw: str, stored: str | None) -> None:
    assert clean_tag(raw) == stored


def test_a_tag_longer_than_40_characters_is_refused() -> None:
    assert clean_tag("x" * 40) == "x" * 40 and clean_tag("x" * 41) is None


def test_tags_match_the_account_spelling_once_in_the_order_asked() -> None:
    known, unknown = canonical_tags(["vip", "Lost", "VIP", "new"], ["VIP", "lost"])
    assert (known, unknown) == (["VIP", "lost"], ["new"])


@pytest.mark.parametrize(
    ("talk_s", "answered", "spam", "rule", "target"),
    [
        (60, True, False, None, None),  # no rule: not known, not "no"
        (60, True, False, 60, True),
        (59, True, False, 60, False),
        (600, False, False, 60, False),
        (600, True, True, 60, False),
    ],
)
def test_a_target_call_is_answered_not_spam_and_long_enough(
    talk_s: int, answered: bool, spam: bool, rule: int | None, target: bool | None
) -> None:
    assert is_target_call(talk_s, answered=answered, spam=spam, min_talk_s=rule) is target
