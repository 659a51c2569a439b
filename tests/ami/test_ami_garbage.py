"""Any garbage between Asterisk's AMI event blocks, over real TCP, is dropped without a traceback
and changes nothing about the real call around it (a property over arbitrary blocks)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from calltracking.core.kinds import CallStatus
from calltracking.core.records import CallKey
from tests.ami.test_listener import (
    FakeAsterisk,
    MemoryRecorder,
    Session,
    after_login,
    ended,
    make_listener,
    running,
    until,
)
from tests.ami.transcripts import SEP, load

LINKEDID = "1795592545.22"  # the busy transcript's call
_names = st.sampled_from(
    [
        "Event",
        "Linkedid",
        "Uniqueid",
        "Channel",
        "Context",
        "Exten",
        "DialStatus",
        "Cause",
        "Timestamp",
        "Variable",
        "Value",
        "BridgeUniqueid",
        "CallerIDNum",
    ]
) | st.text(max_size=12)
_events = st.sampled_from(
    ["Newchannel", "Newexten", "VarSet", "DialEnd", "BridgeEnter", "Hangup", "Newstate", ""]
)
_header_blocks = st.lists(
    st.tuples(_names, _events | st.text(max_size=30)), min_size=1, max_size=8
).map(lambda pairs: "\r\n".join(f"{k}: {v}" for k, v in pairs).encode("utf-8", "replace"))
_junk = (_header_blocks | st.binary(min_size=1, max_size=120)).filter(
    lambda b: (
        SEP not in b
        and b"1795592545" not in b  # another call's ids are fair game; the real call's are not
        and b"Response" not in b  # an answer to an action is not an event block
        and b"ActionID" not in b
        and not b.endswith(b"\r")
    )
)


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name}: {record.getMessage()}")


async def _replay(junk: list[bytes], recordings: Path) -> MemoryRecorder:
    blocks = after_login(load("busy"))
    mixed = [x for i, block in enumerate(blocks) for x in (block, junk[i % len(junk)])]
    recorder = MemoryRecorder()
    async with FakeAsterisk([Session(stream=mixed)]) as server:
        listener = make_listener(server.port, recorder, recordings)
        async with running(listener):
            await until(lambda: ended(recorder, LINKEDID))
    return recorder


def test_garbage_ami_blocks_are_dropped_and_the_real_call_is_stored_as_it_was(
    tmp_path: Path,
) -> None:
    loop = asyncio.new_event_loop()
    errors = _Errors()
    root = logging.getLogger()
    root.addHandler(errors)
    try:

        @settings(max_examples=30, deadline=None)
        @given(st.lists(_junk, min_size=1, max_size=6))
        def check(junk: list[bytes]) -> None:
            recorder = loop.run_until_complete(_replay(junk, tmp_path))
            assert list(recorder.calls) == [CallKey("pbx1", LINKEDID)]
            call = recorder.calls[CallKey("pbx1", LINKEDID)]
            assert (call.status, call.hangup_cause, call.reconciled) == (CallStatus.BUSY, 16, False)
            assert call.starts == 1
            assert errors.lines == []

        check()
    finally:
        root.removeHandler(errors)
        loop.close()
