"""Traffic sources: utm tags, click ids, referrers, own domains, channel classes."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calltracking.core.traffic import (
    DIRECT,
    ChannelClass,
    TrafficSource,
    channel_class,
    classify,
)

LANDING = "https://shop.example/"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            "utm_source=Google&utm_medium=CPC&utm_campaign=Spring&utm_term=Sofa&utm_content=Ad1",
            TrafficSource("google", "cpc", "spring", "sofa", "ad1"),
        ),
        ("utm_source=newsletter", TrafficSource("newsletter", "(not set)")),
        ("utm_medium=email", TrafficSource("(not set)", "email")),
        ("utm_campaign=sale", TrafficSource("(not set)", "(not set)", "sale")),
        ("utm_source=vk&utm_medium=social&utm_source=other", TrafficSource("vk", "social")),
        ("utm_source=&utm_medium=cpc", TrafficSource("(not set)", "cpc")),
        ("UTM_SOURCE=yandex&UTM_MEDIUM=cpc", TrafficSource("yandex", "cpc")),
        ("utm_source=%D0%AF%D0%BD%D0%B4%D0%B5%D0%BA%D1%81&utm_medium=cpc",
         TrafficSource("яндекс", "cpc")),
        ("utm_source=my+site&utm_medium=banner", TrafficSource("my site", "banner")),
        # utm tags win over click ids and referrers.
        ("utm_source=partner&utm_medium=cpa&gclid=abc", TrafficSource("partner", "cpa")),
    ],
)  # fmt: skip
def test_utm_tags_win_and_are_lower_case(query: str, expected: TrafficSource) -> None:
    assert classify(f"{LANDING}?{query}", "https://www.google.com/") == expected


@pytest.mark.parametrize(
    "query",
    ["utm_term=sofa", "utm_content=ad1", "utm_term=sofa&utm_content=ad1"],
)
def test_utm_term_or_content_alone_do_not_tag_a_visit(query: str) -> None:
    assert classify(f"{LANDING}?{query}", "") == DIRECT


def test_utm_values_are_capped_at_100_characters() -> None:
    source = classify(f"{LANDING}?utm_source={'a' * 300}&utm_medium=cpc", "")
    assert source.source == "a" * 100


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("gclid=Cj0KCQ", TrafficSource("google", "cpc")),
        ("gbraid=0AAAA", TrafficSource("google", "cpc")),
        ("wbraid=0AAAA", TrafficSource("google", "cpc")),
        ("yclid=123456789", TrafficSource("yandex", "cpc")),
        ("msclkid=abc", TrafficSource("bing", "cpc")),
    ],
)
def test_paid_click_ids_win_over_the_referrer(query: str, expected: TrafficSource) -> None:
    assert classify(f"{LANDING}?{query}", "https://vk.com/") == expected


@pytest.mark.parametrize(
    ("query", "referrer", "expected"),
    [
        ("fbclid=IwAR", "", TrafficSource("facebook", "social")),
        ("ysclid=lq1", "", TrafficSource("yandex", "organic")),
        # The referrer, when it tells anything, says more than these unpaid click ids.
        ("fbclid=IwAR", "https://l.instagram.com/", TrafficSource("instagram", "social")),
        ("ysclid=lq1", "https://yandex.ru/search/?text=x", TrafficSource("yandex", "organic")),
        # An own-domain referrer is none, so the click id decides.
        ("fbclid=IwAR", "https://shop.example/cart", TrafficSource("facebook", "social")),
    ],
)
def test_unpaid_click_ids_stand_in_for_a_missing_referrer(
    query: str, referrer: str, expected: TrafficSource
) -> None:
    assert classify(f"{LANDING}?{query}", referrer, ["shop.example"]) == expected


@pytest.mark.parametrize(
    ("referrer", "engine"),
    [
        ("https://www.google.com/", "google"),
        ("https://www.google.ru/", "google"),
        ("https://google.co.uk/search?q=x", "google"),
        ("https://www.google.com.br/", "google"),
        ("android-app://com.google.android.googlequicksearchbox/", "google"),
        ("https://yandex.ru/search/?text=sofa", "yandex"),
        ("https://yandex.com.tr/", "yandex"),
        ("https://ya.ru/", "yandex"),
        ("https://www.bing.com/search?q=x", "bing"),
        ("https://cn.bing.com/", "bing"),
        ("https://go.mail.ru/search?q=x", "mail.ru"),
        ("https://duckduckgo.com/", "duckduckgo"),
        ("https://search.yahoo.com/", "yahoo"),
        ("https://r.search.yahoo.com/_ylt=x", "yahoo"),
        ("https://www.baidu.com/link?url=x", "baidu"),
        ("https://m.baidu.com/", "baidu"),
        ("https://nova.rambler.ru/search?query=x", "rambler"),
        ("https://www.ecosia.org/", "ecosia"),
        ("https://search.brave.com/", "brave"),
        ("HTTPS://WWW.GOOGLE.COM/", "google"),
    ],
)
def test_search_engine_referrers_are_organic(referrer: str, engine: str) -> None:
    assert classify(LANDING, referrer) == TrafficSource(engine, "organic")


@pytest.mark.parametrize(
    ("referrer", "network"),
    [
        ("https://vk.com/feed", "vk"),
        ("https://m.vk.com/", "vk"),
        ("https://away.vk.com/away.php?to=x", "vk"),
        ("https://vk.ru/", "vk"),
        ("https://ok.ru/", "ok"),
        ("https://t.me/channel/1", "telegram"),
        ("https://web.telegram.org/", "telegram"),
        ("https://l.facebook.com/l.php", "facebook"),
        ("https://m.facebook.com/", "facebook"),
        ("https://www.instagram.com/", "instagram"),
        ("https://www.youtube.com/watch?v=x", "youtube"),
        ("https://youtu.be/x", "youtube"),
        ("https://x.com/someone", "x"),
        ("https://twitter.com/someone", "x"),
        ("https://t.co/abc", "x"),
        ("https://www.tiktok.com/", "tiktok"),
        ("https://www.linkedin.com/", "linkedin"),
        ("https://dzen.ru/", "dzen"),
        ("https://zen.yandex.ru/", "dzen"),
        ("https://www.pinterest.com/", "pinterest"),
    ],
)
def test_social_referrers_give_the_canonical_network(referrer: str, network: str) -> None:
    assert classify(LANDING, referrer) == TrafficSource(network, "social")


@pytest.mark.parametrize(
    ("referrer", "domain"),
    [
        ("https://www.partner.example/page", "partner.example"),
        ("https://blog.partner.example/", "blog.partner.example"),
        ("http://partner.example:8080/x", "partner.example"),
        ("https://partner.example./", "partner.example"),
        ("partner.example/page", "partner.example"),
        # Services on engines' domains that are not search stay referrals.
        ("https://mail.google.com/", "mail.google.com"),
        ("https://e.mail.ru/", "e.mail.ru"),
        ("https://music.yandex.ru/", "music.yandex.ru"),
        # A look-alike is not the engine.
        ("https://notgoogle.com/", "notgoogle.com"),
        ("https://google.example.org/", "google.example.org"),
    ],
)
def test_other_sites_are_referrals_by_domain_without_www(referrer: str, domain: str) -> None:
    assert classify(LANDING, referrer) == TrafficSource(domain, "referral")


@pytest.mark.parametrize(
    "referrer",
    [
        "",
        "   ",
        "https://shop.example/catalog",
        "https://www.shop.example/",
        "https://m.shop.example/",
        "https://SHOP.EXAMPLE/",
        "about:blank",
        "javascript:void(0)",
        "not a url at all",
        "http://[::1",
    ],
)
def test_no_referrer_or_an_own_domain_is_direct(referrer: str) -> None:
    assert classify(LANDING, referrer, ["shop.example"]) == DIRECT


def test_own_domain_match_is_by_whole_labels() -> None:
    # "myshop.example" is not a subdomain of "shop.example".
    assert classify(LANDING, "https://myshop.example/", ["shop.example"]) == TrafficSource(
        "myshop.example", "referral"
    )


def test_own_domains_given_with_www_still_cover_the_bare_domain() -> None:
    assert classify(LANDING, "https://shop.example/", ["www.shop.example"]) == DIRECT


@pytest.mark.parametrize("url", ["", "not a url", "http://[::1/?utm_source=x", "?&&=&", "%zz"])
def test_malformed_landing_urls_never_raise(url: str) -> None:
    assert classify(url, "") == DIRECT


@given(st.text(max_size=200), st.text(max_size=200), st.lists(st.text(max_size=20), max_size=3))
def test_classify_never_raises_and_gives_lower_case(
    url: str, referrer: str, own: list[str]
) -> None:
    source = classify(url, referrer, own)
    for value in (source.source, source.medium, source.campaign, source.term, source.content):
        assert value is None or value == value.lower()


@given(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._~", min_size=1, max_size=30),
    st.sampled_from(["utm_source", "utm_medium", "utm_campaign"]),
)
def test_any_single_utm_tag_tags_the_visit(value: str, tag: str) -> None:
    source = classify(f"{LANDING}?{tag}={value}", "https://vk.com/")
    assert source != DIRECT
    assert source.medium != "social"


def test_key_is_source_medium_and_campaign() -> None:
    source = TrafficSource("google", "cpc", "spring", "sofa", "ad1")
    assert source.key == ("google", "cpc", "spring")


@pytest.mark.parametrize(
    ("medium", "expected"),
    [
        ("cpc", ChannelClass.CPC),
        ("ppc", ChannelClass.CPC),
        ("cpm", ChannelClass.CPC),
        ("cpa", ChannelClass.CPC),
        ("paid", ChannelClass.CPC),
        ("paidsearch", ChannelClass.CPC),
        ("paid_social", ChannelClass.CPC),
        ("retargeting", ChannelClass.CPC),
        ("display", ChannelClass.CPC),
        ("banner", ChannelClass.CPC),
        ("CPC", ChannelClass.CPC),
        ("organic", ChannelClass.ORGANIC),
        ("social", ChannelClass.SOCIAL),
        ("social-network", ChannelClass.SOCIAL),
        ("sm", ChannelClass.SOCIAL),
        ("smm", ChannelClass.SOCIAL),
        ("referral", ChannelClass.REFERRAL),
        ("link", ChannelClass.REFERRAL),
        ("(none)", ChannelClass.DIRECT),
        ("email", ChannelClass.OTHER),
        ("(not set)", ChannelClass.OTHER),
        ("offline", ChannelClass.OTHER),
    ],
)
def test_channel_class_follows_the_medium(medium: str, expected: ChannelClass) -> None:
    assert channel_class(TrafficSource("any", medium)) is expected


@pytest.mark.parametrize(
    ("url", "referrer", "expected"),
    [
        (f"{LANDING}?gclid=x", "", ChannelClass.CPC),
        (LANDING, "https://www.google.com/", ChannelClass.ORGANIC),
        (LANDING, "https://vk.com/", ChannelClass.SOCIAL),
        (LANDING, "https://partner.example/", ChannelClass.REFERRAL),
        (LANDING, "", ChannelClass.DIRECT),
    ],
)
def test_every_classified_source_has_its_class(
    url: str, referrer: str, expected: ChannelClass
) -> None:
    assert channel_class(classify(url, referrer)) is expected
