"""Ids drawn from the CSPRNG many at a time (store/outbox.py `new_id`) stay unique, and a
forked child never hands out ids its parent drew."""

from __future__ import annotations

import os
import re

from calltracking.store.outbox import new_id


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
