"""What nodes forward to a site's owner survives the trip exactly, and anything else on a shard
queue is refused as Malformed, never another error."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
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


@given(st.lists(requests, min_size=1, max_size=5))
def test_a_batch_decodes_to_the_requests_encoded(batch: list[fw.Request]) -> None:
    assert fw.decode_batch(fw.encode_batch(batch)) == batch


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


@given(st.lists(requests, min_size=1, max_size=5), st.data())
def test_the_replies_decode_to_each_operations_result(
    batch: list[fw.Request], data: st.DataObject
) -> None:
    results = [result_for(request, data) for request in batch]
    raw = fw.encode_replies(
        [fw.reply_json(r, result) for r, result in zip(batch, results, strict=True)]
    )
    values = fw.decode_replies(raw, len(batch))
    assert [fw.result_from(r, v) for r, v in zip(batch, values, strict=True)] == results


def test_an_error_reply_is_raised_as_refused_for_its_request_only() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    batch = [fw.CurrentRequest("site", now, "v1"), fw.CurrentRequest("site", now, "v2")]
    raw = fw.encode_replies([fw.error_json("database away"), fw.reply_json(batch[1], None)])
    first, second = fw.decode_replies(raw, 2)
    with pytest.raises(fw.ForwardRefused, match="database away"):
        fw.result_from(batch[0], first)
    assert fw.result_from(batch[1], second) is None


def test_a_refused_batch_is_raised_as_refused() -> None:
    with pytest.raises(fw.ForwardRefused, match="not a batch"):
        fw.decode_replies(fw.encode_batch_error("not a batch"), 3)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=20,
)
fields = st.sampled_from(
    ["op", "site", "now", "node", "tab", "visitor", "visible", "hello", "url", "kind"]
)
shaped_objects = st.dictionaries(fields | text, json_values, max_size=8)
shaped = shaped_objects.map(lambda body: json.dumps(body).encode())


batches = st.lists(shaped_objects, max_size=4).map(lambda items: {"requests": items})


@given(st.binary(max_size=200) | shaped | batches.map(lambda b: json.dumps(b).encode()))
def test_garbage_batches_are_malformed_and_nothing_else(raw: bytes) -> None:
    with contextlib.suppress(fw.Malformed):
        for item in fw.decode_batch(raw):
            assert isinstance(item, fw.Malformed | fw.Request)


@given(requests, st.binary(max_size=200) | shaped, json_values | shaped_objects)
def test_garbage_replies_are_malformed_or_refused_and_nothing_else(
    request: fw.Request, raw: bytes, value: object
) -> None:
    with contextlib.suppress(fw.Malformed, fw.ForwardRefused):
        fw.decode_replies(raw, 1)
    with contextlib.suppress(fw.Malformed, fw.ForwardRefused):
        fw.result_from(request, value)


def test_a_time_without_its_zone_is_malformed() -> None:
    body = fw.request_json(fw.CurrentRequest("s", datetime(2026, 12, 1, tzinfo=UTC), "v"))
    body["now"] = "2026-12-01T00:00:00"
    with pytest.raises(fw.Malformed, match="time zone"):
        fw.request_from(body)


@given(ids)
def test_a_sites_shard_is_in_range(site_id: str) -> None:
    assert 0 <= shard_of(site_id) < SHARDS


def test_every_process_puts_a_site_in_the_same_shard() -> None:
    """Nodes must agree on a site's shard whatever their hash seed (not Python's `hash`)."""
    site_ids = [f"site-{n}" for n in range(50)]
    script = (
        "import sys; from calltracking.cluster.shards import shard_of; "
        "print(*(shard_of(s) for s in sys.argv[1:]))"
    )
    seen = [
        subprocess.run(
            [sys.executable, "-c", script, *site_ids],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        for seed in ("1", "2")
    ]
    assert seen[0] == seen[1] == [str(shard_of(s)) for s in site_ids]
    assert len(set(seen[0])) > 10  # spread over the shards, not all in one
