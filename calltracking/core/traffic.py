"""A visit's traffic source from its landing URL and referrer, and the channel class of a source.

Rules (CONTRACT.md, "Traffic sources and channels"), first that applies wins:
1. utm tags: any of `utm_source`, `utm_medium`, `utm_campaign` present (non-empty) tags the visit;
   a missing source or medium reads "(not set)", as GA4 shows it. `utm_term` and `utm_content`
   ride along but cannot tag a visit alone (they say nothing of where it came from).
2. Paid click ids: `gclid`/`gbraid`/`wbraid` -> google/cpc, `yclid` -> yandex/cpc,
   `msclkid` -> bing/cpc.
3. The referrer: a search engine -> engine/organic, a social network -> network/social (canonical
   lower-case network name: `vk`, `ok`, `telegram`, `x`, ...), another site -> its host without
   `www.`/referral. A referrer on one of the site's own domains (or their subdomains) is none.
4. Click ids Facebook and Yandex add to unpaid links, when no referrer told more: `fbclid` ->
   facebook/social, `ysclid` -> yandex/organic (in-app browsers often drop the referrer).
5. Otherwise (direct)/(none).
Values are lower case and at most 100 characters (GA4's limit for a parameter value). Nothing here
raises on a malformed URL: it simply tells less.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import parse_qsl, urlsplit

MAX_VALUE_LENGTH = 100
NOT_SET = "(not set)"
# Letters (IDN hosts arrive decoded), digits, hyphens, dots; colons for IPv6 literals.
_HOST = re.compile(r"[\w\-.:]+")


@dataclass(frozen=True, slots=True)
class TrafficSource:
    source: str
    medium: str
    campaign: str | None = None
    term: str | None = None
    content: str | None = None

    @property
    def key(self) -> tuple[str, str, str | None]:
        """What makes a campaign: a change of any of these starts a new visit."""
        return (self.source, self.medium, self.campaign)


DIRECT = TrafficSource("(direct)", "(none)")

_PAID_CLICK_IDS = (
    ("gclid", "google"), ("gbraid", "google"), ("wbraid", "google"),
    ("yclid", "yandex"), ("msclkid", "bing"),
)  # fmt: skip
_UNPAID_CLICK_IDS = (("fbclid", TrafficSource("facebook", "social")),
                     ("ysclid", TrafficSource("yandex", "organic")))  # fmt: skip

# Engines on many country domains: the engine's name, then one or two short TLD labels.
_ENGINE_PATTERNS = (
    (re.compile(r"google(\.[a-z]{2,3}){1,2}"), "google"),
    (re.compile(r"yandex(\.[a-z]{2,3}){1,2}"), "yandex"),
)
# Host (or parent domain) -> engine. Webmail and other services on these groups' domains
# (mail.google.com, e.mail.ru) are not search and stay referrals.
_ENGINE_DOMAINS: Mapping[str, str] = {
    "ya.ru": "yandex", "bing.com": "bing", "go.mail.ru": "mail.ru", "duckduckgo.com": "duckduckgo",
    "search.yahoo.com": "yahoo", "baidu.com": "baidu", "nova.rambler.ru": "rambler",
    "ecosia.org": "ecosia", "search.brave.com": "brave", "search.naver.com": "naver",
    "search.seznam.cz": "seznam", "ask.com": "ask", "search.aol.com": "aol",
    "startpage.com": "startpage", "qwant.com": "qwant", "sogou.com": "sogou",
    # Android's Google app sends this app referrer instead of a web page.
    "com.google.android.googlequicksearchbox": "google",
}  # fmt: skip
_SOCIAL_DOMAINS: Mapping[str, str] = {
    "vk.com": "vk", "vk.ru": "vk", "vkontakte.ru": "vk", "ok.ru": "ok", "odnoklassniki.ru": "ok",
    "t.me": "telegram", "telegram.me": "telegram", "telegram.org": "telegram",
    "facebook.com": "facebook", "fb.com": "facebook", "fb.me": "facebook",
    "instagram.com": "instagram", "youtube.com": "youtube", "youtu.be": "youtube",
    "x.com": "x", "twitter.com": "x", "t.co": "x", "tiktok.com": "tiktok",
    "linkedin.com": "linkedin", "lnkd.in": "linkedin", "dzen.ru": "dzen", "zen.yandex.ru": "dzen",
    "pinterest.com": "pinterest", "pinterest.ru": "pinterest", "reddit.com": "reddit",
    "threads.net": "threads", "whatsapp.com": "whatsapp", "wa.me": "whatsapp",
    "pikabu.ru": "pikabu", "my.mail.ru": "moimir", "snapchat.com": "snapchat",
}  # fmt: skip


def classify(url: str, referrer: str, own_domains: Sequence[str] = ()) -> TrafficSource:
    """The traffic source of a visit landing on `url` from `referrer` (see the module rules)."""
    params = _query_params(url)
    tagged = _from_utm(params)
    if tagged is not None:
        return tagged
    for name, engine in _PAID_CLICK_IDS:
        if name in params:
            return TrafficSource(engine, "cpc")
    host = _host(referrer)
    if host and not _is_own(host, own_domains):
        return _from_referrer(host)
    for name, source in _UNPAID_CLICK_IDS:
        if name in params:
            return source
    return DIRECT


def _query_params(url: str) -> dict[str, str]:
    """Lower-cased names -> first non-empty value, lower-cased and capped."""
    try:
        pairs = parse_qsl(urlsplit(url).query)
    except ValueError:
        return {}
    params: dict[str, str] = {}
    for name, value in pairs:
        cleaned = value.strip().lower()[:MAX_VALUE_LENGTH]
        if cleaned:
            params.setdefault(name.strip().lower(), cleaned)
    return params


def _from_utm(params: Mapping[str, str]) -> TrafficSource | None:
    if not any(f"utm_{tag}" in params for tag in ("source", "medium", "campaign")):
        return None
    return TrafficSource(
        source=params.get("utm_source", NOT_SET),
        medium=params.get("utm_medium", NOT_SET),
        campaign=params.get("utm_campaign"),
        term=params.get("utm_term"),
        content=params.get("utm_content"),
    )


def _host(referrer: str) -> str:
    """The referrer's host, lower case, without a trailing dot or `www.`; "" when there is none."""
    text = referrer.strip()
    if "//" not in text:
        if ":" in text:
            return ""  # about:blank, data:..., javascript:...: no host at all
        text = "//" + text  # "example.com/page": a host without a scheme
    try:
        host = urlsplit(text).hostname or ""
    except ValueError:
        return ""
    host = host.rstrip(".")
    if not _HOST.fullmatch(host):
        return ""
    return host[4:] if host.startswith("www.") else host


def _normalise_domain(domain: str) -> str:
    domain = domain.strip().lower().rstrip(".")
    return domain[4:] if domain.startswith("www.") else domain


def _within(host: str, domain: str) -> bool:
    return bool(domain) and (host == domain or host.endswith("." + domain))


def _is_own(host: str, own_domains: Sequence[str]) -> bool:
    return any(_within(host, _normalise_domain(domain)) for domain in own_domains)


def _from_referrer(host: str) -> TrafficSource:
    # Mobile hosts (m.vk.com, m.facebook.com) are the same network or engine.
    bare = host[2:] if host.startswith("m.") else host
    for pattern, engine in _ENGINE_PATTERNS:
        if pattern.fullmatch(bare):
            return TrafficSource(engine, "organic")
    for domain, network in _SOCIAL_DOMAINS.items():
        if _within(bare, domain):
            return TrafficSource(network, "social")
    for domain, engine in _ENGINE_DOMAINS.items():
        if _within(bare, domain):
            return TrafficSource(engine, "organic")
    return TrafficSource(host[:MAX_VALUE_LENGTH], "referral")


class ChannelClass(StrEnum):
    """The coarse class of a source, as channel rules and reports name it; `cpc` means paid."""

    CPC = "cpc"
    ORGANIC = "organic"
    SOCIAL = "social"
    REFERRAL = "referral"
    DIRECT = "direct"
    OTHER = "other"


# GA4's default channel grouping for paid search and display, folded into one paid class.
_PAID_MEDIUM = re.compile(r".*cp.*|ppc|retargeting|paid.*|display|banner|interstitial|expandable")
_SOCIAL_MEDIUMS = frozenset({"social", "social-network", "social-media", "sm", "social network",
                             "social media", "smm"})  # fmt: skip
_REFERRAL_MEDIUMS = frozenset({"referral", "link", "app"})


def channel_class(source: TrafficSource) -> ChannelClass:
    """The class of a source, decided by its medium (lower case, as `classify` gives it)."""
    medium = source.medium.lower()
    if medium == "(none)":
        return ChannelClass.DIRECT
    if medium == "organic":
        return ChannelClass.ORGANIC
    if _PAID_MEDIUM.fullmatch(medium):
        return ChannelClass.CPC
    if medium in _SOCIAL_MEDIUMS:
        return ChannelClass.SOCIAL
    if medium in _REFERRAL_MEDIUMS:
        return ChannelClass.REFERRAL
    return ChannelClass.OTHER
