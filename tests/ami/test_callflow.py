"""CallFlow against the real Asterisk transcripts, field by field; order, repeats, garbage."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calltracking.core.callflow.facts import (
    CallAnswered,
    CallEnded,
    CallIgnored,
    CallStarted,
    Fact,
    RecordingNamed,
)
from calltracking.core.callflow.headers import device
from calltracking.core.callflow.reconcile import CallFlow, reconciled_end
from calltracking.core.callflow.snapshot import channels_to_ask
from calltracking.core.kinds import CallStatus
from calltracking.core.records import CallKey, OpenCall
from tests.ami.expected import EXPECTED as SHARED
from tests.ami.expected import OPERATOR
from tests.ami.transcripts import load

NOW = datetime(2026, 11, 25, 7, 42, tzinfo=UTC)
MON = "/var/spool/asterisk/monitor/calltracking/"

EXPECTED = {name: (*case[:6], MON + case[6] if case[6] else None) for name, case in SHARED.items()}


def new_flow(**kw: float) -> CallFlow:
    return CallFlow("pbx1", ["from-trunk"], "7", **kw)


def run(events: list[dict[str, str]], flow: CallFlow | None = None) -> list[Fact]:
    flow = new_flow() if flow is None else flow
    facts: list[Fact] = []
    for event in events:
        facts += flow.feed(event, NOW)
    return facts


def check(facts: list[Fact], name: str) -> None:
    linkedid, did, caller, answered_by, status, cause, recording = EXPECTED[name]
    key = CallKey("pbx1", linkedid)
    assert all(f.key == key for f in facts)
    kinds = [type(f) for f in facts]
    assert kinds[0] is CallStarted
    assert kinds[-1] is CallEnded
    assert kinds.count(CallStarted) == 1
    assert kinds.count(CallEnded) == 1
    started, ended = facts[0], facts[-1]
    assert isinstance(started, CallStarted)
    assert isinstance(ended, CallEnded)
    assert (started.did, started.caller) == (did, caller)
    answers = [f for f in facts if isinstance(f, CallAnswered)]
    assert [a.answered_by for a in answers] == ([answered_by] if answered_by else [])
    assert (ended.status, ended.hangup_cause, ended.reconciled) == (status, cause, False)
    names = [f.asterisk_path for f in facts if isinstance(f, RecordingNamed)]
    assert names == ([recording] if recording else [])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_transcript_gives_one_call_field_by_field(name: str) -> None:
    check(run(load(name).events), name)


def test_timestamps_are_used_when_asterisk_sends_them() -> None:
    facts = run(load("answered_call_timestampevents").events)
    started, answered, ended = (
        next(f for f in facts if isinstance(f, t)) for t in (CallStarted, CallAnswered, CallEnded)
    )
    assert isinstance(started, CallStarted)
    assert isinstance(ended, CallEnded)
    events = load("answered_call_timestampevents").events
    first = next(e for e in events if e["Event"] == "Newchannel")
    last = [e for e in events if e["Event"] == "Hangup"][-1]
    assert started.at == datetime.fromtimestamp(float(first["Timestamp"]), UTC)
    assert ended.at == datetime.fromtimestamp(float(last["Timestamp"]), UTC)
    assert isinstance(answered, CallAnswered)
    assert started.at < answered.at < ended.at


@pytest.mark.parametrize("name", ["answered_call", "busy", "no_answer"])
@pytest.mark.parametrize("seed", range(5))
def test_cdr_and_cel_order_against_hangup_does_not_matter(name: str, seed: int) -> None:
    events = load(name).events
    rng = random.Random(seed)
    tail_start = next(i for i, e in enumerate(events) if e["Event"] in ("Hangup", "HangupRequest"))
    tail = events[tail_start:]
    side = [e for e in tail if e["Event"] in ("Cdr", "CEL")]
    rest = [e for e in tail if e["Event"] not in ("Cdr", "CEL")]
    for e in side:  # each Cdr/CEL anywhere in the tail, before or after the Hangups
        rest.insert(rng.randrange(len(rest) + 1), e)
    side_first = events[:tail_start] + side + [e for e in tail if e not in side]
    assert run(events[:tail_start] + rest) == run(events)
    assert run(side_first) == run(events)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_repeated_events_change_nothing(name: str) -> None:
    events = load(name).events
    assert run([e for e in events for _ in range(2)]) == run(events)
    assert run(events + events) == run(events)  # a replay after the end, too


def test_events_of_calls_started_before_we_listened_are_ignored() -> None:
    events = load("answered_call").events
    middle = next(i for i, e in enumerate(events) if e["Event"] == "DialEnd")
    assert run(events[middle:]) == []


def test_a_did_that_is_not_a_number_is_ignored() -> None:
    events = [
        dict(e, Exten="s") if e.get("Context") == "from-trunk" else e
        for e in load("answered_call").events
    ]
    facts = run(events)
    assert [type(f) for f in facts] == [CallIgnored]


def test_calltracking_did_variable_wins_over_the_exten() -> None:
    events = load("answered_call").events
    first_set = next(i for i, e in enumerate(events) if e.get("Variable") == "__CT_DID")
    var = dict(events[first_set], Variable="__CALLTRACKING_DID", Value="84957770011")
    facts = run([*events[:first_set], var, *events[first_set:]])
    assert isinstance(facts[0], CallStarted)
    assert facts[0].did == "+74957770011"


def test_calltracking_recording_wins_over_mixmonitor() -> None:
    events = load("answered_call").events
    at = next(i for i, e in enumerate(events) if e.get("Variable") == "MIXMONITOR_FILENAME")
    var = dict(events[at], Variable="CALLTRACKING_RECORDING", Value="calls/x.wav")
    facts = run([*events[: at + 1], var, *events[at + 1 :]])
    names = [f.asterisk_path for f in facts if isinstance(f, RecordingNamed)]
    assert names == [MON + "1795592516.1.wav", "calls/x.wav"]


@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(
                [
                    "Event",
                    "event",
                    "Linkedid",
                    "Uniqueid",
                    "Channel",
                    "Context",
                    "Exten",
                    "CallerIDNum",
                    "DialStatus",
                    "DestChannel",
                    "Cause",
                    "Variable",
                    "Value",
                    "BridgeUniqueid",
                    "Timestamp",
                    "Application",
                    "ChannelState",
                ]
            ),
            st.one_of(
                st.sampled_from(
                    [
                        "Newchannel",
                        "Newexten",
                        "Hangup",
                        "DialEnd",
                        "BridgeEnter",
                        "VarSet",
                        "from-trunk",
                        "1.1",
                        "1.2",
                        "ANSWER",
                        "17",
                        "nan",
                        "1e400",
                        "<unknown>",
                        "s",
                        "74951110001",
                        "MIXMONITOR_FILENAME",
                        "b1",
                        "6",
                        "AGI",
                        "-1",
                    ]
                ),
                st.text(max_size=5),
            ),
        ),
        max_size=40,
    )
)
def test_garbage_never_crashes_and_every_call_starts_before_it_ends(
    events: list[dict[str, str]],
) -> None:
    flow = new_flow()
    facts: list[Fact] = []
    for i, event in enumerate(events):
        facts += flow.feed(event, NOW + timedelta(seconds=i))
    facts += flow.expire(NOW + timedelta(days=1))
    facts += flow.adopt(events, NOW + timedelta(days=1))
    started: set[CallKey] = set()
    ended: set[CallKey] = set()
    for fact in facts:
        if isinstance(fact, CallStarted):
            assert fact.key not in started
            started.add(fact.key)
        elif isinstance(fact, CallEnded):
            assert fact.key in started
            assert fact.key not in ended
            ended.add(fact.key)
        elif not isinstance(fact, CallIgnored):
            assert fact.key in started


def test_garbage_between_real_events_changes_nothing() -> None:
    events = load("busy").events
    junk = [
        {},
        {"Event": "Hangup"},
        {"Event": "Hangup", "Linkedid": "x", "Uniqueid": "y"},
        {"Event": "DialEnd", "DialStatus": "ANSWER"},
        {"Event": "Newexten", "Timestamp": "z"},
    ]
    mixed = [x for e in events for x in (e, junk[len(e) % len(junk)])]
    assert run(mixed) == run(events)


def test_a_pending_call_settles_after_settle_s_and_a_silent_one_goes_stale() -> None:
    events = load("answered_call").events
    flow = new_flow(settle_s=2, stale_call_s=100)
    opening = events[: next(i for i, e in enumerate(events) if e["Event"] == "LocalBridge")]
    assert run(opening, flow) == []
    assert flow.expire(NOW + timedelta(seconds=1)) == []
    started = flow.expire(NOW + timedelta(seconds=2))
    assert [type(f) for f in started] == [CallStarted]
    stale = flow.expire(NOW + timedelta(seconds=100))
    assert len(stale) == 1
    assert isinstance(stale[0], CallEnded)
    assert (stale[0].status, stale[0].reconciled) == (CallStatus.UNKNOWN, True)


def test_ended_calls_are_forgotten_after_a_while() -> None:
    flow = new_flow(forget_s=60)
    run(load("busy").events, flow)
    assert len(flow) == 1
    assert flow.open_keys() == []
    flow.expire(NOW + timedelta(seconds=59))
    assert len(flow) == 1
    flow.expire(NOW + timedelta(seconds=60))
    assert len(flow) == 0


def _snapshot() -> list[dict[str, str]]:
    return [m for m in load("answered_call").events if m["Event"] == "CoreShowChannel"]


def test_adopt_opens_a_call_we_did_not_see_start_and_sees_it_answered() -> None:
    flow = new_flow()
    # The call is 65 s old; the operator leg that answered it was dialed 40 s ago.
    channels = [
        dict(c, Duration="00:00:40" if "operators" in c["Channel"] else "00:01:05")
        for c in _snapshot()
    ]
    facts = flow.adopt(channels, NOW)
    key = CallKey("pbx1", "1795592516.0")
    assert facts == [
        CallStarted(key, "+74951110001", "+79161234567", NOW - timedelta(seconds=65)),
        CallAnswered(key, NOW - timedelta(seconds=40), OPERATOR),
    ]
    assert flow.adopt(channels, NOW) == []  # still up: nothing new
    gone = flow.adopt([], NOW + timedelta(seconds=5))
    assert gone == [CallEnded(key, NOW, CallStatus.ANSWERED, None, True, up_until=NOW)]


def _moved_on(context: str = "operators") -> list[dict[str, str]]:
    """The captured snapshot with the dialplan's `;2` half moved on to `context`, as the shipped
    dialplan does (default route, operators, a site's route)."""
    return [
        dict(c, Context=context) if c["Channel"].endswith("from-trunk-00000000;2") else c
        for c in _snapshot()
    ]


def _trunk_call(
    context: str, *, did_var: bool
) -> tuple[list[dict[str, str]], dict[str, dict[str, str]]]:
    """A trunk call (IAX2, owning its Linkedid) bridged to an operator, now in `context`."""
    trunk = {
        "Event": "CoreShowChannel", "Channel": "IAX2/trunk-6759", "ChannelState": "6",
        "CallerIDNum": "+79161234567", "Context": context, "Exten": "s", "Priority": "2",
        "Uniqueid": "1795600000.7", "Linkedid": "1795600000.7", "Application": "Dial",
        "ApplicationData": "PJSIP/101,30", "Duration": "00:00:12", "BridgeId": "b-1",
    }  # fmt: skip
    operator = dict(
        trunk, Channel="PJSIP/101-0000002a", Uniqueid="1795600000.8", Context="internal",
        CallerIDNum="74951110006", Application="AppDial", ApplicationData="(Outgoing Line)",
        Duration="00:00:09",
    )  # fmt: skip
    variables = {"1795600000.7": {"CALLTRACKING_RECORDING": "calltracking/x/1795600000.7.wav"}}
    if did_var:
        variables["1795600000.7"]["CALLTRACKING_DID"] = "74951110006"
    return [trunk, operator], variables


@pytest.mark.parametrize("context", ["operators", "calltracking-default-route", "sales"])
def test_adopt_finds_a_trunk_call_that_moved_on_by_its_did_variable(context: str) -> None:
    flow = new_flow()
    channels, variables = _trunk_call(context, did_var=True)
    facts = flow.adopt(channels, NOW, variables=variables)
    key = CallKey("pbx1", "1795600000.7")
    assert facts == [
        CallStarted(key, "+74951110006", "+79161234567", NOW - timedelta(seconds=12)),
        CallAnswered(key, NOW - timedelta(seconds=9), "PJSIP/101"),
        RecordingNamed(key, "calltracking/x/1795600000.7.wav"),
    ]
    assert flow.open_keys() == [key]


def test_adopt_leaves_a_call_without_trunk_context_or_did_variable_alone() -> None:
    flow = new_flow()
    channels, variables = _trunk_call("internal", did_var=False)  # e.g. an outbound call
    assert flow.adopt(channels, NOW, variables=variables) == []
    assert flow.open_keys() == []


def test_adopt_of_a_local_call_in_operators_is_answered_with_its_recording() -> None:
    flow = new_flow()
    variables = {"1795592516.1": {"MIXMONITOR_FILENAME": MON + "1795592516.1.wav"}}
    facts = flow.adopt(_moved_on(), NOW, variables=variables)
    key = CallKey("pbx1", "1795592516.0")
    assert [type(f) for f in facts] == [CallStarted, CallAnswered, RecordingNamed]
    assert facts[1] == CallAnswered(key, NOW, OPERATOR)  # the capture's Durations are 0
    assert facts[2] == RecordingNamed(key, MON + "1795592516.1.wav")
    ended = flow.adopt([], NOW + timedelta(seconds=4))
    assert ended == [CallEnded(key, NOW, CallStatus.ANSWERED, None, True, up_until=NOW)]


def test_channels_to_ask_are_each_calls_owner_and_its_dialplan_half() -> None:
    channels = [{k.lower(): v for k, v in c.items()} for c in _moved_on()]
    channels += [
        {k.lower(): v for k, v in c.items()} for c in _trunk_call("operators", did_var=True)[0]
    ]
    assert channels_to_ask(channels) == [
        ("Local/74951110001@from-trunk-00000000;1", "1795592516.0"),
        ("Local/74951110001@from-trunk-00000000;2", "1795592516.1"),
        ("IAX2/trunk-6759", "1795600000.7"),
    ]


def test_a_reconciled_end_is_the_recordings_last_write_when_later_than_the_last_event() -> None:
    key = CallKey("pbx1", "1.1")
    seen = CallEnded(key, NOW, CallStatus.ANSWERED, 16, True, up_until=NOW)
    later, earlier = NOW + timedelta(seconds=4), NOW - timedelta(seconds=4)
    assert reconciled_end(seen, later) == later  # the call talked on while we were away
    assert reconciled_end(seen, earlier) == NOW  # recording stopped early: the event stands
    assert reconciled_end(seen, None) == NOW
    noticed = CallEnded(key, NOW, CallStatus.UNKNOWN, None, True)  # no event known
    assert reconciled_end(noticed, earlier) == earlier
    assert reconciled_end(noticed, later) == NOW
    live = CallEnded(key, NOW, CallStatus.ANSWERED, 16)
    assert reconciled_end(live, later) == NOW  # a hangup we saw is the end


def test_adopt_closes_open_calls_asterisk_no_longer_shows() -> None:
    flow = new_flow()
    events = load("no_answer").events
    ringing = events[: next(i for i, e in enumerate(events) if e["Event"] == "DialState")]
    run(ringing, flow)
    recorder_only = OpenCall(CallKey("pbx1", "9.9"), "c9", NOW - timedelta(hours=1), None)
    facts = flow.adopt(
        [],
        NOW + timedelta(seconds=30),
        requested_at=NOW + timedelta(seconds=29),
        open_calls=[recorder_only],
    )
    assert facts == [
        CallEnded(CallKey("pbx1", "1795592531.14"), NOW, CallStatus.UNKNOWN, None, True, NOW),
        CallEnded(recorder_only.key, NOW + timedelta(seconds=30), CallStatus.UNKNOWN, None, True),
    ]


def test_adopt_spares_calls_with_events_after_the_snapshot_was_requested() -> None:
    flow = new_flow()
    run(load("no_answer").events[:12], flow)
    assert flow.adopt([], NOW, requested_at=NOW) == []


def test_check_open_closes_stale_recorder_calls_and_repeats_missed_ends() -> None:
    flow = new_flow(stale_call_s=3600)
    facts = run(load("busy").events, flow)
    ended = facts[-1]
    busy = OpenCall(ended.key, "c1", NOW, None)
    old = OpenCall(CallKey("pbx1", "7.7"), "c2", NOW - timedelta(hours=2), NOW)
    young = OpenCall(CallKey("pbx1", "8.8"), "c3", NOW - timedelta(minutes=2), None)
    other_pbx = OpenCall(CallKey("pbx2", "7.7"), "c4", NOW - timedelta(hours=2), None)
    assert flow.check_open([busy, old, young, other_pbx], NOW) == [
        ended,
        CallEnded(old.key, NOW, CallStatus.UNKNOWN, None, reconciled=True),
    ]


@pytest.mark.parametrize(
    ("channel", "expected"),
    [
        ("PJSIP/101-0000002a", "PJSIP/101"),
        ("Local/operator@operators-00000001;1", "Local/operator@operators"),
        ("SIP/trunk-peer-0000abcd", "SIP/trunk-peer"),
        ("DAHDI/1-1", "DAHDI/1-1"),
        ("", None),
    ],
)
def test_device_names_the_operator_not_the_channel_instance(
    channel: str,
    expected: str | None,
) -> None:
    assert device(channel) == expected
