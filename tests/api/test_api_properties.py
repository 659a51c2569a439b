"""Property-based: whatever a client sends to the operator API (a JSON body, a query string, a
signed recording URL, raw bytes), the answer is a 2xx or a 4xx with the contract's error body,
never a 500, and a refused request changes nothing.

One tracker serves every example of a test (examples share its state, as real clients would);
each example compares what it may not change before and after.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calltracking.core.settings import SiteSettings
from tests.api.conftest import ADMIN, Api, defaults
from web.api.signing import signature

SHARED = settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)

# Text with everything in it: lone surrogates, NUL, controls, digits of other scripts.
TEXT = st.text(
    st.characters(codec=None, exclude_categories=()) | st.sampled_from("\ud800\udfff\x00\n"),
    max_size=30,
)
EDGY = st.one_of(
    TEXT,
    st.sampled_from(["²", "٣", "9" * 5000, "0000-01", "9999-12-31T23:59:59-14:00", "-1"]),
    st.sampled_from(["+74951110001", "+7495", "1e9", "NaN", "2026-03-10T09:00:00+00:00"]),
)
# Values stay under aiohttp's 8 KiB request line (a longer line is its own plain 400).
IN_URL = EDGY.map(lambda v: v[:1500])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),  # NaN and Infinity too: json.dumps writes them, the API must refuse them
    EDGY,
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
SETTING_KEYS = st.sampled_from([*SiteSettings.__dataclass_fields__, "analytics", "bogus"])
SITE_BODY = st.fixed_dictionaries(
    {},
    optional={
        "name": JSON,
        "domains": st.lists(EDGY, max_size=3) | JSON,
        "defaults": st.fixed_dictionaries(
            {}, optional={k: EDGY | JSON for k in ("initial", "expired", "untracked")}
        )
        | JSON,
        "settings": st.dictionaries(SETTING_KEYS, JSON, max_size=4) | JSON,
    },
)
E164S = st.integers(min_value=0, max_value=9_999_999).map(lambda n: f"+7495{n:07d}")
# Bodies one field away from valid, so odd text reaches the store, not only the checks.
NEAR_VALID = st.fixed_dictionaries(
    {
        "name": TEXT,
        "domains": st.just(["shop.example"]),
        "defaults": st.fixed_dictionaries({k: E164S for k in ("initial", "expired", "untracked")}),
    },
    optional={"settings": st.dictionaries(SETTING_KEYS, JSON, max_size=2)},
)
BODY_PATHS = [
    ("POST", "/api/v1/sites"),
    ("PATCH", "/api/v1/sites/{site}"),
    ("POST", "/api/v1/sites/{site}/numbers"),
    ("POST", "/api/v1/accounts"),
    ("POST", "/api/v1/numbers"),
    ("PATCH", "/api/v1/calls/{call}"),
]


@pytest.fixture
async def scene(api: Api) -> dict[str, str]:
    _, token = await api.account()
    site = await api.site(token, base=100)
    call = await api.call(defaults(100)["initial"], "+79161234567", api.services.clock())
    return {"token": token, "site": site["id"], "call": call}


async def state(api: Api) -> Any:
    """What a refused request must not change: every number, site and account."""
    numbers = await api.ok("GET", "/api/v1/numbers")
    sites = await api.ok("GET", "/api/v1/sites")
    accounts = await api.ok("GET", "/api/v1/accounts")
    return numbers, sites, accounts


def assert_answer(status: int, body: Any) -> None:
    assert status < 500, body
    if status >= 400:
        assert isinstance(body, dict) and set(body) == {"error"}, body
        assert isinstance(body["error"]["code"], str) and isinstance(body["error"]["message"], str)


@SHARED
@given(
    route=st.sampled_from(BODY_PATHS),
    body=NEAR_VALID | SITE_BODY | JSON | st.fixed_dictionaries({"name": TEXT}),
    as_admin=st.booleans(),
)
async def test_any_json_body_is_answered_without_a_500_and_a_refusal_changes_nothing(
    api: Api, scene: dict[str, str], route: tuple[str, str], body: Any, as_admin: bool
) -> None:
    method, path = route
    before = await state(api)
    status, answer = await api.req(
        method, path.format(**scene), ADMIN if as_admin else scene["token"], json=body
    )
    assert_answer(status, answer)
    if status >= 400:
        assert await state(api) == before


@SHARED
@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
async def test_any_raw_body_is_a_4xx(api: Api, scene: dict[str, str], raw: bytes) -> None:
    try:
        json.loads(raw)
    except ValueError:
        parsed = False
    else:
        parsed = True
    status, answer = await api.req(
        "PATCH",
        f"/api/v1/sites/{scene['site']}",
        scene["token"],
        data=raw,
        headers={"Content-Type": "application/json"},
    )
    assert_answer(status, answer)
    if not parsed:
        assert status == 400


QUERY_NAMES = st.sampled_from(
    ["site", "since", "until", "kind", "status", "limit", "cursor", "month", "x"]
)


@SHARED
@given(
    path=st.sampled_from(
        ["/api/v1/calls", "/api/v1/sites/{site}/report", "/api/v1/accounts/{account}/leads"]
    ),
    query=st.dictionaries(QUERY_NAMES, IN_URL, max_size=4),
)
async def test_any_query_string_is_answered_without_a_500(
    api: Api, scene: dict[str, str], path: str, query: dict[str, str]
) -> None:
    account = (await api.ok("GET", "/api/v1/accounts"))["accounts"][0]["id"]
    url = path.format(site=scene["site"], account=account)
    # Lone surrogates cannot be put into a URL by the client; the server's side is the
    # edge-input test's.
    safe = {k: v.encode("utf-8", "replace").decode() for k, v in query.items()}
    status, answer = await api.req("GET", url, scene["token"], params=safe)
    assert_answer(status, answer)


@SHARED
@given(
    exp=st.one_of(IN_URL, st.integers(min_value=-(2**40), max_value=2**40).map(str)),
    sig=st.one_of(IN_URL, st.text("0123456789abcdef", min_size=64, max_size=64)),
    call=st.one_of(st.just("{call}"), st.text("abcdef0123456789", min_size=1, max_size=40)),
)
async def test_a_signed_url_opens_only_with_its_own_signature(
    api: Api, scene: dict[str, str], exp: str, sig: str, call: str
) -> None:
    call_id = call.format(**scene)
    query = {"exp": exp, "sig": sig}
    safe = {k: v.encode("utf-8", "replace").decode() for k, v in query.items()}
    status, answer = await api.req("GET", f"/api/v1/calls/{call_id}/recording", None, params=safe)
    assert_answer(status, answer)
    genuine = (
        exp.isascii()
        and exp.isdigit()
        and len(exp) <= 12
        and int(exp) >= time.time()
        and sig == signature(api.services.signing_key, call_id, int(exp))
    )
    assert (status in (403, 422)) != genuine
