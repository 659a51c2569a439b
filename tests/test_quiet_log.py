"""`QuietLog`: one line when a failure starts, at most one per interval while it lasts (counting
what was left out), one when it ends; never a traceback. Time is a parameter."""

from __future__ import annotations

import logging

import pytest

from calltracking.quiet_log import QuietLog


def test_a_long_outage_is_a_few_lines_and_its_end_is_one(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="quiet")
    quiet = QuietLog(logging.getLogger("quiet"), "database unavailable", interval_s=60)
    for tick in range(300):  # 0.2 s rounds for a minute, then 59 s more
        quiet.failed(ConnectionRefusedError("refused\nsecond line"), now=tick * 0.4)
    quiet.recovered()
    quiet.recovered()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines
    assert lines[0].startswith("database unavailable: ConnectionRefusedError: refused second")
    assert "(149 more like it not logged)" in lines[1]
    assert lines[2] == "database unavailable: working again"
    assert not any(r.exc_info for r in caplog.records)
