"""Row and event ids: 32 hex digits, from the operating system's CSPRNG.

- `new_id`: 128 random bits, for what must not be guessable (visitors: the contract says so;
  accounts, sites, tokens, dashboard sessions). Drawn `_IDS_PER_DRAW` at a time: a new
  visitor takes several ids, and a `getrandom` call for each was a visible part of its CPU. A
  forked child starts without its parent's undrawn ids.
- `time_ordered_id`: the current Unix time in milliseconds (12 digits), then 80 random bits;
  for the rows written most and never secret (calls, events, visits, leases, tabs). An id made
  later sorts later, so a new row lands at the right-hand end of each index its id keys
  instead of on a random page of it: with 200,000 calls stored, a batch of call starts cost
  1.7x the CPU it cost on an empty database with random ids, and the same with these
  (docs/benchmarks.md, FastAGI, tenth session). A clock stepped back only costs that locality
  for a moment; uniqueness comes from the random bits.
"""

from __future__ import annotations

import os
import time

_IDS_PER_DRAW = 128
_undrawn: list[str] = []
os.register_at_fork(after_in_child=_undrawn.clear)
_TIME_DIGITS = 12  # milliseconds since 1970 fit in 48 bits until the year 10889


def new_id() -> str:
    """128 random bits, 32 hex digits (as `secrets.token_hex(16)`)."""
    while True:
        try:
            return _undrawn.pop()
        except IndexError:
            raw = os.urandom(16 * _IDS_PER_DRAW).hex()
            _undrawn.extend(raw[i : i + 32] for i in range(0, len(raw), 32))


def time_ordered_id() -> str:
    """32 hex digits: the time in milliseconds, then 80 random bits."""
    return f"{time.time_ns() // 1_000_000:0{_TIME_DIGITS}x}{new_id()[_TIME_DIGITS:]}"
