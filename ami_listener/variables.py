"""Reading channel variables with AMI `Getvar` after a reconnect (what the events missed).

Rules:
- For each (channel, uniqueid) asked: `Getvar` of each of `ASKED_VARIABLES` (CALLTRACKING_DID,
  CALLTRACKING_RECORDING, MIXMONITOR_FILENAME); an empty value is no value.
- A channel that hung up meanwhile (`Response: Error`, "No such channel") is skipped; a refused
  Getvar (the AMI user lacks `write = reporting`) is logged once per reconcile and the rest is
  skipped, as every other Getvar would be refused too.
- At most `CONCURRENCY` actions are in flight, so a busy PBX is not flooded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from ami_listener.connection import ActionFailed, AmiSession
from calltracking.core.callflow.snapshot import ASKED_VARIABLES

log = logging.getLogger(__name__)
CONCURRENCY = 16


async def read_variables(
    session: AmiSession, asked: Sequence[tuple[str, str]], wait_s: float
) -> dict[str, dict[str, str]]:
    """uniqueid -> variable -> non-empty value, for each (channel, uniqueid) asked."""
    gate = asyncio.Semaphore(CONCURRENCY)
    refused: list[str] = []

    async def one(channel: str, variable: str) -> str:
        if refused:
            return ""
        async with gate:
            try:
                replies = await session.action(
                    {"Action": "Getvar", "Channel": channel, "Variable": variable}, wait_s
                )
            except ActionFailed as exc:
                if "no such channel" not in str(exc).lower():
                    refused.append(str(exc))
                return ""
        return (replies[0].get("Value", "") if replies else "").strip()

    wanted = [(channel, uid, name) for channel, uid in asked for name in ASKED_VARIABLES]
    values = await asyncio.gather(*(one(channel, name) for channel, _uid, name in wanted))
    out: dict[str, dict[str, str]] = {}
    for (_channel, uid, name), value in zip(wanted, values, strict=True):
        if value:
            out.setdefault(uid, {})[name] = value
    if refused:
        log.error(
            "AMI Getvar refused (%s): adopted calls cannot learn DID or recording", refused[0]
        )
    return out
