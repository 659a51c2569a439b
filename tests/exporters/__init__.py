"""Exporter tests: builders by tables and hypothesis, senders against local fakes of the peers.

Shared here: `make_call` (a tracked, answered call with a full session, fields overridable) and
`calls()` (hypothesis: arbitrary calls, sessions and analytics ids around a given `now`).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from calltracking.core.kinds import AttributionKind, CallStatus
from calltracking.core.records import CallRecord, SessionInfo

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def make_call(started_at: datetime = NOW - timedelta(minutes=10), **overrides: Any) -> CallRecord:
    session = SessionInfo(
        source="google",
        medium="cpc",
        campaign="winter-sale",
        landing_url="https://shop.example/landing?utm_source=google",
        ga_client_id="1234567890.1700000000",
        ga_session_id=str(int((started_at - timedelta(minutes=5)).timestamp())),
        ym_client_id="1700000000123456789",
        started_at=started_at - timedelta(minutes=5),
    )
    call = CallRecord(
        id="call-1",
        account_id="acc-1",
        site_id="site-1",
        did="+74951110001",
        caller="+79161234567",
        started_at=started_at,
        status=CallStatus.ANSWERED,
        kind=AttributionKind.DYNAMIC,
        confidence=1.0,
        answered_at=started_at + timedelta(seconds=12),
        ended_at=started_at + timedelta(seconds=95),
        session=session,
        first_time_caller=True,
    )
    return dataclasses.replace(call, **overrides)


_valid_ga = st.from_regex(r"\A[0-9]{1,12}\.[0-9]{1,12}\Z")
_ga_ids = st.one_of(
    _valid_ga,
    _valid_ga,
    st.from_regex(r"\AGA1\.[12]\.[0-9]{1,12}\.[0-9]{1,12}\Z"),
    st.none(),
    st.text(max_size=60),
)
_ym_ids = st.one_of(
    st.from_regex(r"\A[0-9]{1,25}\Z"), st.from_regex(r"\A[0-9]{1,25}\Z"), st.none(), st.text()
)
_times = st.datetimes(
    min_value=datetime(2026, 11, 1), max_value=datetime(2026, 12, 1), timezones=st.just(UTC)
)
_texts = st.text(max_size=300)


@st.composite
def sessions(draw: st.DrawFn, call_start: datetime) -> SessionInfo:
    """A session around `call_start`: its start and GA4 session id often fit the call."""
    start = draw(
        st.none() | st.just(call_start - timedelta(seconds=draw(st.integers(-600, 4 * 86400))))
    )
    session_id = st.just(str(int(start.timestamp()))) if start is not None else st.nothing()
    return SessionInfo(
        source=draw(_texts),
        medium=draw(_texts),
        campaign=draw(st.none() | _texts),
        landing_url=draw(st.none() | _texts | st.just("https://a.example/?q=1,2")),
        ga_client_id=draw(_ga_ids),
        ga_session_id=draw(
            session_id | st.none() | st.text(max_size=30) | st.from_regex(r"\A[0-9]{1,12}\Z")
        ),
        ym_client_id=draw(_ym_ids),
        started_at=start,
    )


@st.composite
def calls(draw: st.DrawFn) -> CallRecord:
    """Arbitrary calls, mostly tracked, non-spam and with a session, so most get exported."""
    started = draw(_times)
    answered = draw(st.none() | st.just(started + timedelta(seconds=draw(st.integers(0, 600)))))
    ended = draw(st.none() | st.just(started + timedelta(seconds=draw(st.integers(0, 7200)))))
    tracked = sorted(k for k in AttributionKind if k.tracked)
    return CallRecord(
        id=draw(st.uuids()).hex,
        account_id="acc",
        site_id="site",
        did="+74951110001",
        caller=draw(st.none() | st.just("+79161234567") | st.text(max_size=20)),
        started_at=started,
        status=draw(st.sampled_from(CallStatus)),
        kind=draw(st.sampled_from(tracked) | st.sampled_from(AttributionKind)),
        confidence=1.0,
        answered_at=answered,
        ended_at=ended,
        session=draw(sessions(started) | sessions(started) | st.none()),
        first_time_caller=draw(st.booleans()),
        spam=draw(st.sampled_from([False, False, False, True])),
    )
