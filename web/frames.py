"""What a visitor's socket may send, parsed and checked before anything acts on it.

Rules (CONTRACT.md, "Visitor websocket and site snippet"):
- a frame that is not a JSON object with a string `type` is malformed; so is JSON nested deeper
  than `MAX_DEPTH` or text with a NUL or a lone surrogate (no store takes it);
- the first frame must be a hello naming its site; its fields are cut to the lengths the store
  keeps, and analytics cookies to ten of them;
- more than FRAME_BURST frames in FRAME_WINDOW_S is a broken or hostile tab.
Every function here is pure: property tests throw garbage at them (tests/web/test_ws_protocol.py).
"""

from __future__ import annotations

import json
from typing import Any

from calltracking.store.visitors import Hello

MAX_DEPTH = 8  # the snippet's frames nest two deep; room to grow, none for a RecursionError
FRAME_BURST, FRAME_WINDOW_S = 60, 10.0


class Malformed(Exception):
    pass


class FrameRate:
    """At most FRAME_BURST frames in any FRAME_WINDOW_S: the snippet sends a handful a minute,
    so a tab far past that is broken or hostile and is closed before it loads the database."""

    __slots__ = ("_times",)

    def __init__(self) -> None:
        # A list, not a deque: a deque's first block costs ~600 bytes on every held socket.
        self._times: list[float] = []

    def allow(self, now: float) -> bool:
        times = self._times
        stale = 0
        while stale < len(times) and now - times[stale] > FRAME_WINDOW_S:
            stale += 1
        if stale:
            del times[:stale]
        times.append(now)
        return len(times) <= FRAME_BURST


def parse_frame(data: str) -> dict[str, Any]:
    try:
        frame = json.loads(data)
    except (ValueError, RecursionError):
        raise Malformed("not JSON") from None
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        raise Malformed("a frame is a JSON object with a string type")
    if not _plainly_fine(data):
        _check_values(frame)
    return frame


def _plainly_fine(data: str) -> bool:
    """True when the text itself shows that no value breaks `_check_values`' rules, so the
    walk (a visible part of a new visitor's CPU) can be skipped:
    - in ASCII text, a NUL or a lone surrogate can reach a parsed string only through a `\\u`
      escape (the decoder refuses a raw control character in a string);
    - a value nests at most as deep as the text has brackets that open.
    Brackets and escapes inside strings count too, which only sends a frame to the walk."""
    return data.isascii() and "\\u" not in data and data.count("{") + data.count("[") <= MAX_DEPTH


def _check_values(frame: dict[str, Any]) -> None:
    """Depth and text that every store accepts, walked without recursion."""
    pending: list[tuple[Any, int]] = [(frame, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, str):
            if "\x00" in value or (not value.isascii() and not _encodable(value)):
                raise Malformed("text with a NUL or a lone surrogate")
        elif isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise Malformed(f"a frame nests at most {MAX_DEPTH} deep")
            items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
            pending.extend((item, depth + 1) for item in items)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_hello(
    frame: dict[str, Any], user_agent: str | None, address: str = ""
) -> tuple[str, Hello]:
    if frame.get("type") != "hello":
        raise Malformed("the first frame must be a hello")
    site = frame.get("site")
    if not isinstance(site, str) or not site:
        raise Malformed("hello needs a string site")

    def text(name: str, limit: int = 2000) -> str | None:
        value = frame.get(name)
        return value[:limit] if isinstance(value, str) and value else None

    cookies = frame.get("ga_cookies")
    ga_cookies = (
        {
            k[:64]: v[:200]
            for k, v in list(cookies.items())[:10]
            if isinstance(k, str) and isinstance(v, str)
        }
        if isinstance(cookies, dict)
        else None
    )
    return site, Hello(
        url=text("url") or "",
        referrer=text("referrer") or "",
        visitor_id=text("visitor", 64),
        ga=text("ga", 100),
        ga_session=text("ga_session", 40),
        ga_cookies=ga_cookies,
        ym=text("ym", 40),
        user_agent=user_agent,
        automated=frame.get("automation") is True,
        address=address,
    )
