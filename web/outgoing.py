"""The JSON text of the frames every new visitor is sent: its welcome and its number.

`json.dumps` of a small dict costs a few microseconds in the encoder's Python layers; at a
thousand new visitors a second those were a visible part of a profile of `bench.ws_bench`. The
text here is the very text `json.dumps` gives for the same dict (same keys, order, separators
and escapes: tests/web/test_outgoing.py compares them on arbitrary strings), so nothing
changes on the wire.
"""

from __future__ import annotations

import json.encoder

from calltracking.store.visitors import Shown

_quote = json.encoder.encode_basestring_ascii  # what json.dumps quotes strings with


def welcome_text(visitor: str, session: str, lease_on: str, consent_required: bool) -> str:
    return (
        f'{{"type": "welcome", "visitor": {_quote(visitor)}, "session": {_quote(session)}, '
        f'"lease_on": {_quote(lease_on)}, '
        f'"consent_required": {"true" if consent_required else "false"}}}'
    )


def number_text(shown: Shown) -> str:
    """`json.dumps(shown.frame())`."""
    return (
        f'{{"type": "number", "kind": {_quote(str(shown.kind))}, "e164": {_quote(shown.e164)}, '
        f'"display": {_quote(shown.display)}}}'
    )
