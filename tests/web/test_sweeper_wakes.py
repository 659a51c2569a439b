"""The lease sweeper does not poll: it sleeps until the engines' next due time and is woken by
each committed visitor batch. With its idle look-around pushed to an hour, a show delay still
ends on time only because of that."""

from __future__ import annotations

from pathlib import Path

import pytest

import web.app
from tests.web.harness import hello, make_site, open_tab, session, tracker, web_config


async def test_a_show_delay_ends_by_its_due_time_not_by_polling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(web.app, "SWEEP_IDLE_S", 3600.0)
    async with tracker(web_config(tmp_path)) as state, session() as http:
        site = await make_site(state, reserve=3, show_delay_s=1)
        tab = await open_tab(http, state)
        await hello(tab, site)
        assert (await tab.number())["kind"] == "initial"
        due = state.services.visitors.next_due()
        assert due is not None  # the delay's end, known to the engine
        # Hang guard only: without a due-time wake-up the number would come with the
        # next tab touch (30 s) at the earliest.
        assert (await tab.until_kind("dynamic", timeout=20))["kind"] == "dynamic"
        assert state.services.visitors.next_due() != due
