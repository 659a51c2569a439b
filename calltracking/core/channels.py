"""Channel rules: which traffic a site tracks (its `channels` setting).

Rules (CONTRACT.md, "Traffic sources and channels"):
- `channels` null tracks all traffic; a list tracks a visitor when any rule matches, so an empty
  list tracks nothing.
- A rule is `key=value` with key `source`, `medium` or `campaign` (`utm_source` etc. are the same
  keys), both sides compared without case and surrounding blanks; a value equals the source's
  value exactly (no wildcards). Or a rule is one class word: `cpc`, `organic`, `social`,
  `referral`, `direct`, matched against `traffic.channel_class`.
- A bad rule raises ValueError with a message fit for the API's 422 (settings validation calls
  `parse_rule`, so stored rules are always valid).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from calltracking.core.traffic import ChannelClass, TrafficSource, channel_class


class RuleField(StrEnum):
    SOURCE = "source"
    MEDIUM = "medium"
    CAMPAIGN = "campaign"
    CLASS = "class"


CLASS_WORDS = frozenset(
    {ChannelClass.CPC, ChannelClass.ORGANIC, ChannelClass.SOCIAL, ChannelClass.REFERRAL,
     ChannelClass.DIRECT}
)  # fmt: skip
_KEYS = {"source": RuleField.SOURCE, "medium": RuleField.MEDIUM, "campaign": RuleField.CAMPAIGN}


@dataclass(frozen=True, slots=True)
class ChannelRule:
    field: RuleField
    value: str  # lower case

    def matches(self, source: TrafficSource) -> bool:
        if self.field is RuleField.CLASS:
            return channel_class(source) == self.value
        actual = {
            RuleField.SOURCE: source.source,
            RuleField.MEDIUM: source.medium,
            RuleField.CAMPAIGN: source.campaign,
        }[self.field]
        return actual is not None and actual.strip().lower() == self.value


def parse_rule(text: str) -> ChannelRule:
    """One rule from its text; ValueError naming what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("a channel rule must be a non-empty text")
    key, equals, value = text.partition("=")
    if not equals:
        word = text.strip().lower()
        if word not in CLASS_WORDS:
            raise ValueError(
                f"unknown channel rule {text!r}: use source=, medium=, campaign= "
                f"or one of {', '.join(sorted(CLASS_WORDS))}"
            )
        return ChannelRule(RuleField.CLASS, word)
    name = key.strip().lower().removeprefix("utm_")
    field = _KEYS.get(name)
    if field is None:
        raise ValueError(
            f"unknown key {key.strip()!r} in channel rule: use source, medium or campaign"
        )
    wanted = value.strip().lower()
    if not wanted:
        raise ValueError(f"channel rule {text!r} has no value after '='")
    return ChannelRule(field, wanted)


def is_tracked(rules: Sequence[str | ChannelRule] | None, source: TrafficSource) -> bool:
    """Whether a visitor from `source` gets a dynamic number under these rules."""
    if rules is None:
        return True
    parsed = (rule if isinstance(rule, ChannelRule) else parse_rule(rule) for rule in rules)
    return any(rule.matches(source) for rule in parsed)
