"""What nodes forward to a site's owner survives the trip exactly, and anything else on a shard
queue is refused as Malformed, never another error."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calltracking.cluster import messages as fw
from calltracking.cluster.shards import SHARDS, shard_of
from calltracking.core.kinds import DisplayKind
from calltracking.store.visitors import Hello, Shown, Welcome

text = st.text(max_size=40)
ids = st.text(min_size=1, max_size=40)
times = st.datetimes(timezones=st.just(UTC)) | st.datetimes(
    timezones=st.builds(timezone, st.timedeltas(timedelta(hours=-12), timedelta(hours=12)))
)
hellos = st.builds(
    Hello,
    url=text,
    referrer=text,
    visitor_id=st.none() | ids,
    ga=st.none() | text,
    ga_session=st.none() | text,
    ga_cookies=st.none() | st.dictionaries(text, text, max_size=4),
    ym=st.none() | text,
    user_agent=st.none() | text,
    automated=st.booleans(),
    address=text,
)
requests = st.one_of(
    st.builds(fw.HelloRequest, ids, times, ids, ids, hellos),
    st.builds(fw.VisitorEventRequest, ids, times, st.just("activity"), ids, ids),
    st.builds(fw.VisitorEventRequest, ids, times, st.just("want"), ids, st.just("")),
    st.builds(fw.VisibilityRequest, ids, times, ids, ids, st.booleans()),
    st.builds(fw.CloseRequest, ids, times, ids, ids),
    st.builds(fw.CurrentRequest, ids, times, ids),
)
shown = st.builds(Shown, st.sampled_from(DisplayKind), text, text)
changed = st.sets(ids, max_size=5)


@given(requests)
def test_a_request_decodes_to_what_was_encoded(request: fw.Request) -> None:
    assert fw.decode_request(fw.encode_request(request)) == request


def result_for(request: fw.Request, data: st.DataObject) -> fw.Result:
    match request:
        case fw.HelloRequest():
            return data.draw(st.builds(Welcome, ids, text, ids, shown, st.frozensets(ids)))
        case fw.VisitorEventRequest():
            return data.draw(st.tuples(shown, changed))
        case fw.VisibilityRequest():
            return None
        case fw.CloseRequest():
            return data.draw(changed)
        case fw.CurrentRequest():
            return data.draw(st.none() | shown)


@given(requests, st.data())
def test_a_reply_decodes_to_the_operations_result(request: fw.Request, data: st.DataObject) -> None:
    result = result_for(request, data)
    assert fw.decode_reply(request, fw.encode_reply(request, result)) == result


def test_an_error_reply_is_raised_as_refused() -> None:
    request = fw.CurrentRequest("site", datetime(2026, 12, 1, tzinfo=UTC), "visitor")
    with pytest.raises(fw.ForwardRefused, match="database away"):
        fw.decode_reply(request, fw.encode_error("database away"))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=20,
)
fields = st.sampled_from(
    ["op", "site", "now", "node", "tab", "visitor", "visible", "hello", "url", "kind"]
)
shaped = st.dictionaries(fields | text, json_values, max_size=8).map(
    lambda body: json.dumps(body).encode()
)


@given(st.binary(max_size=200) | shaped)
def test_garbage_requests_are_malformed_and_nothing_else(raw: bytes) -> None:
    with contextlib.suppress(fw.Malformed):
        fw.decode_request(raw)


@given(requests, st.binary(max_size=200) | shaped)
def test_garbage_replies_are_malformed_or_refused_and_nothing_else(
    request: fw.Request, raw: bytes
) -> None:
    with contextlib.suppress(fw.Malformed, fw.ForwardRefused):
        fw.decode_reply(request, raw)


def test_a_time_without_its_zone_is_malformed() -> None:
    body = json.loads(
        fw.encode_request(fw.CurrentRequest("s", datetime(2026, 12, 1, tzinfo=UTC), "v"))
    )
    body["now"] = "2026-12-01T00:00:00"
    with pytest.raises(fw.Malformed, match="time zone"):
        fw.decode_request(json.dumps(body).encode())


@given(ids)
def test_a_sites_shard_is_stable_and_in_range(site_id: str) -> None:
    assert 0 <= shard_of(site_id) < SHARDS
    assert shard_of(site_id) == shard_of(str(site_id))
