"""Ids drawn from the CSPRNG many at a time (store/ids.py) stay unique, a forked child never
hands out ids its parent drew, and time-ordered ids (calls, events) sort by the millisecond
they were made in."""

from __future__ import annotations

import os
import re
import time

from calltracking.store.ids import new_id, time_ordered_id


def test_ids_are_32_hex_digits_and_unique() -> None:
    ids = [new_id() for _ in range(5000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_a_forked_child_draws_its_own() -> None:
    new_id()  # the parent holds undrawn ids now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report the ids it would hand out
        os.write(write, "".join(new_id() for _ in range(200)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        text = pipe.read()
    child = {text[i : i + 32] for i in range(0, len(text), 32)}
    parent = {new_id() for _ in range(200)}
    assert len(child) == 200
    assert not child & parent


def _millisecond() -> int:
    return time.time_ns() // 1_000_000


def test_time_ordered_ids_begin_with_the_millisecond_and_stay_unique() -> None:
    before = _millisecond()
    ids = [time_ordered_id() for _ in range(5000)]
    after = _millisecond()
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    stamps = [int(i[:12], 16) for i in ids]
    assert before <= min(stamps) and max(stamps) <= after
    assert stamps == sorted(stamps)  # made later, sorts later (whatever the random part)
    assert len({i[12:] for i in ids}) == len(ids)  # 80 random bits each, never repeated
