"""`calltracking check`: what works and what does not, one line per check, for PBX operators.

Checks: the database (reachable, schema current), the broker (when configured), the AMI login,
that each trunk context exists in the dialplan (`ShowDialPlan`), the AMI user's read rights
`call`, `dialplan` and `agi` (proven by events only, check_call.py: with `--call DID` from one
test call to that number, else from a short window of traffic; a right not proven is a failure),
that the FastAGI port answers, and each site's pool and default numbers.
Exit status 1 when any check fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable

import sqlalchemy as sa

from calltracking.check_call import EXAMPLES, NEEDED, TestCall, seen_classes, watch_test_call
from calltracking.config import Config
from calltracking.store.db import Database
from calltracking.store.schema import numbers
from calltracking.store.sites import list_sites

AMI_TIMEOUT_S = 5.0
TRAFFIC_WINDOW_S = 2.0
CALL_WAIT_S = 120.0


class Report:
    def __init__(self, write: Callable[[str], None] = print) -> None:
        self.failed = 0
        self._write = write

    def line(self, ok: bool | None, what: str) -> None:
        mark = {True: "ok  ", False: "FAIL", None: "info"}[ok]
        if ok is False:
            self.failed += 1
        self._write(f"{mark} {what}")


async def run_checks(
    config: Config,
    write: Callable[[str], None] = print,
    *,
    call_did: str | None = None,
    wait_s: float = CALL_WAIT_S,
) -> int:
    """Every check, one line each; 1 when one failed. `call_did`: wait up to `wait_s` for a
    test call to that number and prove the AMI read rights from its events."""
    report = Report(write)
    await _check_database(config, report)
    await _check_broker(config, report)
    await _check_ami(config, report, call_did, wait_s)
    await _check_agi(config, report)
    return 1 if report.failed else 0


async def _check_database(config: Config, report: Report) -> None:
    db = Database(config.database_url)
    try:
        if not await db.ping():
            report.line(False, "database: not reachable")
            return
        async with db.read() as conn:
            version = await conn.scalar(sa.text("SELECT version_num FROM alembic_version"))
            report.line(True, f"database: reachable, schema revision {version}")
            for site in await list_sites(conn, None):
                pool = await conn.scalar(
                    sa.select(sa.func.count())
                    .select_from(numbers)
                    .where(numbers.c.site_id == site.id, numbers.c.role == "pool")
                )
                defaults = ", ".join(f"{k}={v}" for k, v in site.defaults.items())
                split = (
                    f"; decided in {site.decision_parts} parts (split-site)"
                    if site.decision_parts > 1
                    else ""
                )
                report.line(
                    bool(pool) or site.settings.pool_max > 0,
                    f"site {site.name!r}: {pool} numbers in the pool (max "
                    f"{site.settings.pool_max}); defaults {defaults}{split}",
                )
    except Exception as exc:
        report.line(False, f"database: {exc.__class__.__name__}: {exc}"[:300])
    finally:
        await db.close()


async def _check_broker(config: Config, report: Report) -> None:
    if not config.amqp_url:
        report.line(None, "broker: none configured (in-process bus, single process)")
        return
    try:
        from calltracking.bus.rabbit import RabbitBus

        bus = RabbitBus(config.amqp_url, connect_timeout_s=5)
        await bus.start()
        await bus.close()
        report.line(True, "broker: RabbitMQ reachable, exchange `calltracking` declared")
    except Exception as exc:
        report.line(False, f"broker: {exc.__class__.__name__}: {exc}"[:300])


async def _check_ami(config: Config, report: Report, call_did: str | None, wait_s: float) -> None:
    if not config.ami_host:
        report.line(None, "AMI: no CALLTRACKING_AMI_HOST, listener off")
        return
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(config.ami_host, config.ami_port), AMI_TIMEOUT_S
        )
    except (OSError, TimeoutError) as exc:
        report.line(False, f"AMI: cannot connect to {config.ami_host}:{config.ami_port} ({exc})")
        return
    try:
        await asyncio.wait_for(reader.readline(), AMI_TIMEOUT_S)
        ok = await _ami_login(reader, writer, config)
        report.line(
            ok,
            f"AMI: login as {config.ami_username!r}"
            + ("" if ok else " refused (check secret and permit)"),
        )
        if not ok:
            return
        for context in config.trunk_contexts:
            reply = await _ami_action(
                reader, writer, {"Action": "ShowDialPlan", "Context": context}
            )
            exists = "Response: Success" in reply
            report.line(
                exists,
                f"dialplan: trunk context [{context}] "
                + ("exists" if exists else "not found (or no reporting right)"),
            )
        await _check_rights(config, report, reader, call_did, wait_s)
    except (OSError, TimeoutError) as exc:
        report.line(False, f"AMI: {exc.__class__.__name__}: {exc}")
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _ami_action(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, fields: dict[str, str]
) -> str:
    action_id = f"check-{id(fields)}"
    body = "".join(f"{k}: {v}\r\n" for k, v in {**fields, "ActionID": action_id}.items())
    writer.write(body.encode() + b"\r\n")
    await writer.drain()
    while True:
        raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), AMI_TIMEOUT_S)
        text = raw.decode(errors="replace")
        if f"ActionID: {action_id}" in text and (
            "Response:" in text or "EventList: Complete" in text
        ):
            return text


async def _ami_login(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, config: Config
) -> bool:
    challenge = await _ami_action(reader, writer, {"Action": "Challenge", "AuthType": "md5"})
    value = next(
        (
            line.split(":", 1)[1].strip()
            for line in challenge.splitlines()
            if line.startswith("Challenge:")
        ),
        "",
    )
    if value:
        key = hashlib.md5((value + config.ami_secret).encode()).hexdigest()  # AMI challenge scheme
        reply = await _ami_action(
            reader,
            writer,
            {
                "Action": "Login",
                "AuthType": "md5",
                "Username": config.ami_username,
                "Key": key,
                "Events": "on",
            },
        )
    else:
        reply = await _ami_action(
            reader,
            writer,
            {
                "Action": "Login",
                "Username": config.ami_username,
                "Secret": config.ami_secret,
                "Events": "on",
            },
        )
    return "Response: Success" in reply


async def _check_rights(
    config: Config,
    report: Report,
    reader: asyncio.StreamReader,
    call_did: str | None,
    wait_s: float,
) -> None:
    hint = "needs read = call,dialplan,agi (check with `manager show user`)"
    if call_did is None:
        seen = await seen_classes(reader, TRAFFIC_WINDOW_S)
        for right in NEEDED:
            ok = right in seen
            report.line(
                ok,
                f"AMI read right `{right}`: "
                + (
                    f"seen in {TRAFFIC_WINDOW_S:g} s of traffic"
                    if ok
                    else f"not proven: no {EXAMPLES[right]} event in {TRAFFIC_WINDOW_S:g} s; "
                    "prove it with `calltracking check --call DID` and one test call"
                ),
            )
        return
    report.line(None, f"AMI: waiting up to {wait_s:g} s for a test call to {call_did}")
    call = TestCall(call_did, config.trunk_contexts, config.country_code)
    await watch_test_call(reader, call, wait_s)
    if not call.linkedid:
        report.line(False, f"AMI: no test call to {call_did} within {wait_s:g} s")
    for right in NEEDED:
        if right in call.proven:
            report.line(True, f"AMI read right `{right}`: {EXAMPLES[right]} of the test call")
        elif call.linkedid:
            extra = " (or the FastAGI did not run)" if right == "agi" else ""
            report.line(
                False,
                f"AMI read right `{right}`: the test call brought no {EXAMPLES[right]} "
                f"event{extra}; {hint}",
            )
        else:
            report.line(False, f"AMI read right `{right}`: not proven (no test call)")


async def _check_agi(config: Config, report: Report) -> None:
    try:
        _reader, writer = await asyncio.wait_for(
            asyncio.open_connection(config.agi_host, config.agi_port), AMI_TIMEOUT_S
        )
        writer.close()
        report.line(True, f"FastAGI: {config.agi_host}:{config.agi_port} answers")
    except (OSError, TimeoutError) as exc:
        report.line(False, f"FastAGI: {config.agi_host}:{config.agi_port} not reachable ({exc})")
