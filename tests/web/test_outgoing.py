"""The frames a new visitor is sent, written by web/outgoing.py and web/wire.py: the same text
as `json.dumps`, framed byte for byte as aiohttp's own writer frames it."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

from aiohttp import WSMsgType
from aiohttp._websocket.writer import WebSocketWriter
from aiohttp.base_protocol import BaseProtocol
from hypothesis import given
from hypothesis import strategies as st

from calltracking.core.kinds import DisplayKind
from calltracking.store.visitors import Shown
from web.outgoing import number_text, welcome_text
from web.wire import text_frame

_texts = st.text() | st.sampled_from(["\ud800", '\x00\n"\\/', "ёлка", "\u2028"])


@given(_texts, _texts, _texts, st.booleans())
def test_welcome_text_is_what_json_dumps_writes(
    visitor: str, session: str, lease_on: str, consent: bool
) -> None:
    frame = {
        "type": "welcome",
        "visitor": visitor,
        "session": session,
        "lease_on": lease_on,
        "consent_required": consent,
    }
    assert welcome_text(visitor, session, lease_on, consent) == json.dumps(frame)


@given(st.sampled_from(list(DisplayKind)), _texts, _texts)
def test_number_text_is_what_json_dumps_writes(kind: DisplayKind, e164: str, display: str) -> None:
    shown = Shown(kind, e164, display)
    assert number_text(shown) == json.dumps(shown.frame())


class _Transport:
    def __init__(self) -> None:
        self.written = bytearray()

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return False


@given(st.sampled_from([0, 1, 125, 126, 127, 65535, 65536, 70000]).map(lambda n: b"x" * n))
def test_text_frames_are_framed_as_aiohttp_frames_them(payload: bytes) -> None:
    transport = _Transport()
    protocol = cast(BaseProtocol, type("P", (), {"_paused": False})())
    writer = WebSocketWriter(protocol, cast(Any, transport))
    asyncio.run(writer.send_frame(payload, WSMsgType.TEXT))
    assert text_frame(payload) == bytes(transport.written)
