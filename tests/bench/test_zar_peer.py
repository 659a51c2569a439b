"""bench.zar_peer's visitor speaks as zar's JS client: cookies come back as a browser sends them,
a renewal names the held number, and the first call asks for the pool on the page URL."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

from bench.zar_peer import POOL_ID, Visitor, cookie_header


def test_later_cookies_replace_earlier_ones_and_the_rest_are_kept() -> None:
    first = cookie_header("", {"_zar_sid": "a", "_zar_cid": "b"})
    assert cookie_header(first, {"_zar_sid": "c", "_zar_pool": "d"}) == (
        "_zar_sid=c; _zar_cid=b; _zar_pool=d"
    )


def test_the_page_view_asks_for_the_pool_and_carries_its_context() -> None:
    properties = Visitor(7).page_body()["properties"]
    assert parse_qs(urlparse(properties["url"]).query)["pl"] == ["1"]
    assert properties["pool_id"] == POOL_ID
    assert properties["pool_context"] == {"url": properties["url"]}


def test_a_renewal_names_the_held_number_and_sends_the_cookies_back() -> None:
    visitor = Visitor(3)
    visitor.number, visitor.cookie = "+74951110001", "_zar_sid=x; _zar_pool=y"
    assert visitor.renew_body()["number"] == "+74951110001"
    assert visitor.renew_body()["properties"]["zar"]["vid"] == visitor.vid
    assert visitor.headers()["Cookie"] == "_zar_sid=x; _zar_pool=y"
