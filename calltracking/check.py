"""`calltracking check`: what works and what does not, one line per check, for PBX operators.

Checks: the database (reachable, schema current), the broker (when configured), the AMI login,
the event classes the AMI user receives (read rights `call,cdr,dialplan` and `agi` as far as the
traffic seen during the check shows them), that each trunk context exists in the dialplan
(`ShowDialPlan`), that the FastAGI port answers, and each site's pool and default numbers.
Exit status 1 when any check fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable

import sqlalchemy as sa

from calltracking.config import Config
from calltracking.store.db import Database
from calltracking.store.schema import numbers
from calltracking.store.sites import list_sites

AMI_TIMEOUT_S = 5.0
REQUIRED_CLASSES = ("call", "cdr", "dialplan", "agi")


class Report:
    def __init__(self, write: Callable[[str], None] = print) -> None:
        self.failed = 0
        self._write = write

    def line(self, ok: bool | None, what: str) -> None:
        mark = {True: "ok  ", False: "FAIL", None: "info"}[ok]
        if ok is False:
            self.failed += 1
        self._write(f"{mark} {what}")


async def run_checks(config: Config, write: Callable[[str], None] = print) -> int:
    report = Report(write)
    await _check_database(config, report)
    await _check_broker(config, report)
    await _check_ami(config, report)
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
                report.line(
                    bool(pool) or site.settings.pool_max > 0,
                    f"site {site.name!r}: {pool} numbers in the pool (max "
                    f"{site.settings.pool_max}); defaults {defaults}",
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


async def _check_ami(config: Config, report: Report) -> None:
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
        seen = await _seen_classes(reader, seconds=2.0)
        missing = [c for c in REQUIRED_CLASSES if c not in seen]
        report.line(
            None,
            f"AMI read rights seen in 2 s of traffic: {', '.join(sorted(seen)) or 'none'}"
            + (
                f"; not seen: {', '.join(missing)} (needs read = call,cdr,dialplan,agi;"
                " check with `manager show user`)"
                if missing
                else ""
            ),
        )
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


async def _seen_classes(reader: asyncio.StreamReader, seconds: float) -> set[str]:
    seen: set[str] = set()
    with contextlib.suppress(TimeoutError, asyncio.IncompleteReadError):
        async with asyncio.timeout(seconds):
            while True:
                raw = (await reader.readuntil(b"\r\n\r\n")).decode(errors="replace")
                for line in raw.splitlines():
                    if line.startswith("Privilege:"):
                        seen.update(
                            p.strip()
                            for p in line.split(":", 1)[1].split(",")
                            if p.strip() != "all"
                        )
    return seen


async def _check_agi(config: Config, report: Report) -> None:
    try:
        _reader, writer = await asyncio.wait_for(
            asyncio.open_connection(config.agi_host, config.agi_port), AMI_TIMEOUT_S
        )
        writer.close()
        report.line(True, f"FastAGI: {config.agi_host}:{config.agi_port} answers")
    except (OSError, TimeoutError) as exc:
        report.line(False, f"FastAGI: {config.agi_host}:{config.agi_port} not reachable ({exc})")
