"""AMI events per second the listener turns into stored calls, next to a bare TCP reader.

The source is the shipped pbx-sim in a child process (bench/ami_source.py): after the consumer
has logged in, a `go` makes it place `--calls` calls of the load profile's mix (answered,
missed, busy, failed, hung up during the AGI) as fast as it can at `--speed`, then emit a
sentinel. Two consumers read that stream, each from a fresh sim:
- listener: the real `AmiListener` feeding `SqlCallRecorder` on a fresh, migrated SQLite file
  (or a new database on the PostgreSQL server `--database-url` names, one per run);
  done when every call has been ended in the store (counted at the recorder, checked in the
  `calls` table afterwards);
- bare: a TCP reader that logs in, reads and splits the byte stream into messages (on the blank
  line) and counts the events, without parsing them into calls; done at the sentinel.
Both time from `go` to done; events/s is the sim's emitted events over that time. The sim runs on
the other core, so it is the ceiling of both: when the bare reader is near the sim's own rate, it
measures the source, not itself. Runs repeat `--repeat` times, interleaved, medians shown.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ami_listener.listener import AmiListener
from bench.ami_source import SECRET, SENTINEL, USERNAME
from bench.common import LOOPBACK, child, fresh_database, machine, median, table
from calltracking.core.callflow.facts import CallEnded, Fact
from calltracking.core.kinds import CallStatus
from calltracking.core.records import CallKey, OpenCall, Resolution
from calltracking.store import schema as t
from calltracking.store.calls import SqlCallRecorder
from calltracking.store.db import Database
from calltracking.store.migrate import migrate

RUN_TIMEOUT_S = 300.0
LOGIN_TIMEOUT_S = 10.0


@dataclass
class Result:
    consumer: str
    calls: int = 0
    events: int = 0
    received: int = 0
    stored: int = 0
    ended: int = 0
    seconds: float = 0.0
    sim_seconds: float = 0.0
    cpu_seconds: float = 0.0  # this process's CPU (all threads) from `go` to done

    def row(self) -> dict[str, float]:
        return {
            "events_s": self.events / self.seconds if self.seconds else 0.0,
            "calls_s": self.calls / self.seconds if self.seconds else 0.0,
            "sim_events_s": self.events / self.sim_seconds if self.sim_seconds else 0.0,
            "seconds": self.seconds,
            "cpu_us_event": 1e6 * self.cpu_seconds / self.events if self.events else 0.0,
            "events": float(self.events),
            "received": float(self.received),
            "stored": float(self.stored),
            "ended": float(self.ended),
        }


class CountingRecorder:
    """`SqlCallRecorder`, counting the calls it has ended."""

    def __init__(self, inner: SqlCallRecorder) -> None:
        self.inner = inner
        self.ended = 0

    async def start_call(
        self, key: CallKey, did: str, caller: str | None, at: datetime
    ) -> Resolution:
        return await self.inner.start_call(key, did, caller, at)

    async def record_facts(self, facts: Sequence[Fact]) -> None:
        await self.inner.record_facts(facts)
        self.ended += sum(isinstance(f, CallEnded) for f in facts)

    async def answer_call(self, key: CallKey, at: datetime, answered_by: str | None) -> None:
        await self.inner.answer_call(key, at, answered_by)

    async def end_call(
        self,
        key: CallKey,
        at: datetime,
        status: CallStatus,
        hangup_cause: int | None = None,
        *,
        reconciled: bool = False,
    ) -> None:
        await self.inner.end_call(key, at, status, hangup_cause, reconciled=reconciled)
        self.ended += 1

    async def name_recording(self, key: CallKey, asterisk_path: str) -> None:
        await self.inner.name_recording(key, asterisk_path)

    async def confirm_recording(self, key: CallKey, size_bytes: int) -> None:
        await self.inner.confirm_recording(key, size_bytes)

    async def open_calls(self, pbx_id: str) -> list[OpenCall]:
        return await self.inner.open_calls(pbx_id)


class CountingListener(AmiListener):
    received = 0

    def _on_event(self, headers: dict[str, str]) -> None:
        self.received += 1
        super()._on_event(headers)


async def poll(check: Any, interval_s: float = 0.005) -> None:
    while not check():  # noqa: ASYNC110 (plain counters; nothing to await on)
        await asyncio.sleep(interval_s)


# -- consumers -------------------------------------------------------------------------------------
async def run_listener(calls: int, source: tuple[str, ...], database_url: str = "") -> Result:
    result = Result("listener", calls)
    async with fresh_database(database_url) as fresh:
        return await _run_listener_on(fresh, calls, source, result)


async def _run_listener_on(
    database_url: str, calls: int, source: tuple[str, ...], result: Result
) -> Result:
    with tempfile.TemporaryDirectory(prefix="bench-ami-") as tmp:
        db = Database(database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'ct.db'}")
        try:
            await migrate(db)
            recorder = CountingRecorder(SqlCallRecorder(db))
            async with child("bench.ami_source", *source) as sim:
                listener = CountingListener(
                    host=LOOPBACK,
                    port=int(sim.ready["port"]),
                    username=USERNAME,
                    secret=SECRET,
                    pbx_id="pbx-bench",
                    trunk_contexts=("from-trunk",),
                    country_code="7",
                    recordings_dir=tmp,
                    asterisk_monitor_dir="/var/spool/asterisk/monitor",
                    stale_call_s=14_400,
                    recorder=recorder,
                )
                task = asyncio.create_task(listener.run(), name="bench-ami-listener")
                try:
                    async with asyncio.timeout(LOGIN_TIMEOUT_S):
                        await poll(lambda: listener.health.logged_in)
                        await asyncio.sleep(0.3)  # the login's reconcile reply
                        await listener.drain()  # ... and its snapshot handled, before any call
                    before = listener.received
                    async with asyncio.timeout(RUN_TIMEOUT_S):
                        begin, cpu = time.perf_counter(), time.process_time()
                        await sim.send("go")
                        await poll(lambda: recorder.ended >= calls)
                        result.seconds = time.perf_counter() - begin
                        result.cpu_seconds = time.process_time() - cpu
                        done = await sim.receive(RUN_TIMEOUT_S)
                    result.received = listener.received - before - 1  # the sentinel
                finally:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            result.events, result.sim_seconds = int(done["events"]), float(done["seconds"])
            result.stored, result.ended = await stored_calls(db)
        finally:
            await db.close()
    return result


async def stored_calls(db: Database) -> tuple[int, int]:
    """Rows in `calls`, and those of them ended."""
    count = sa.select(sa.func.count(t.calls.c.id))
    async with db.read() as conn:
        stored = (await conn.execute(count)).scalar_one()
        ended = (await conn.execute(count.where(t.calls.c.ended_at.is_not(None)))).scalar_one()
    return int(stored), int(ended)


async def run_bare(calls: int, source: tuple[str, ...], record: Path | None = None) -> Result:
    result = Result("bare", calls)
    async with child("bench.ami_source", *source) as sim:
        reader, writer = await asyncio.open_connection(LOOPBACK, int(sim.ready["port"]))
        try:
            async with asyncio.timeout(LOGIN_TIMEOUT_S):
                await reader.readline()  # the banner
                writer.write(
                    f"Action: Login\r\nUsername: {USERNAME}\r\nSecret: {SECRET}\r\n"
                    "Events: on\r\n\r\n".encode()
                )
                await writer.drain()
                # Login reply, FullyBooted, then our own SuccessfulAuth: the last before `go`.
                while not (await reader.readuntil(b"\r\n\r\n")).startswith(
                    b"Event: SuccessfulAuth"
                ):
                    pass
            async with asyncio.timeout(RUN_TIMEOUT_S):
                begin, cpu = time.perf_counter(), time.process_time()
                await sim.send("go")
                result.received = await split_until_sentinel(reader, record)
                result.seconds = time.perf_counter() - begin
                result.cpu_seconds = time.process_time() - cpu
                done = await sim.receive(RUN_TIMEOUT_S)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
    result.events, result.sim_seconds = int(done["events"]), float(done["seconds"])
    return result


async def split_until_sentinel(reader: asyncio.StreamReader, record: Path | None = None) -> int:
    """Read chunks, split them into messages, count events; stop at the sentinel. With `record`,
    the bytes read after `go`, up to and with the sentinel, are written there."""
    sentinel = f"\r\nUserEvent: {SENTINEL}".encode()  # split drops the line end
    buffer, events = b"", 0
    out = record.open("wb") if record is not None else None
    try:
        while chunk := await reader.read(1 << 16):
            *messages, buffer = (buffer + chunk).split(b"\r\n\r\n")
            for message in messages:
                if out is not None:
                    out.write(message + b"\r\n\r\n")
                if message.endswith(sentinel):
                    return events
                if message.startswith(b"Event:"):
                    events += 1
    finally:
        if out is not None:
            out.close()
    raise ConnectionError("the AMI stream ended before the sentinel")


# -- report ----------------------------------------------------------------------------------------
def report(results: list[Result], repeat: int, calls: int, store: str) -> str:
    med = {}
    for consumer in ("bare", "listener"):
        runs = [r.row() for r in results if r.consumer == consumer]
        med[consumer] = {key: median([run[key] for run in runs]) for key in runs[0]}
    bare, listener = med["bare"], med["listener"]
    rows = [
        [
            "bare reader (split only)",
            bare["events"],
            bare["received"],
            "-",
            bare["seconds"],
            bare["events_s"],
            bare["calls_s"],
            bare["sim_events_s"],
            bare["cpu_us_event"],
            1.0,
        ],
        [
            f"AmiListener + {store}",
            listener["events"],
            listener["received"],
            f"{listener['stored']:.0f}/{listener['ended']:.0f}",
            listener["seconds"],
            listener["events_s"],
            listener["calls_s"],
            listener["sim_events_s"],
            listener["cpu_us_event"],
            listener["events_s"] / bare["events_s"],
        ],
    ]
    headers = [
        "consumer",
        "events sent",
        "events read",
        "calls stored/ended",
        "seconds",
        "events/s",
        "calls/s",
        "source alone events/s",
        "CPU µs/event",
        "x bare",
    ]
    return f"ami_bench: {calls} calls, median of {repeat} runs; {machine()}\n" + table(
        headers, rows
    )


async def main_async(
    calls: int, repeat: int, speed: float, database_url: str, source_kind: str
) -> None:
    sim = ("--calls", str(calls), "--speed", str(speed))
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-ami-stream-") as tmp:
        source: tuple[str, ...] = sim
        if source_kind == "replay":
            stream = Path(tmp) / "stream.ami"
            recorded = await run_bare(calls, sim, record=stream)
            print(f"recorded {recorded.received} events of a sim run to replay", flush=True)
            source = ("--replay", str(stream))
        for run in range(repeat):
            for consumer in ("bare", "listener"):
                if consumer == "bare":
                    result = await run_bare(calls, source)
                else:
                    result = await run_listener(calls, source, database_url)
                results.append(result)
                row = result.row()
                print(
                    f"run {run + 1} {result.consumer:8} events={result.events} "
                    f"read={result.received} stored={result.stored} ended={result.ended} "
                    f"{result.seconds:.2f}s {row['events_s']:.0f} events/s "
                    f"{row['calls_s']:.1f} calls/s "
                    f"(source alone {row['sim_events_s']:.0f} events/s)",
                    flush=True,
                )
    store = "PostgreSQL" if database_url.startswith("postgres") else "SQLite"
    print(f"source: {source_kind}")
    print(report(results, repeat, calls, store))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--speed", type=float, default=1000.0)
    parser.add_argument(
        "--source",
        choices=("sim", "replay"),
        default="sim",
        help="sim: a live pbx-sim per run; replay: one sim run recorded, then replayed as bytes",
    )
    parser.add_argument(
        "--database-url",
        default="",
        help="a PostgreSQL server (postgresql+asyncpg://...): each run gets a new database on it "
        "(default: a fresh SQLite file)",
    )
    args = parser.parse_args()
    if not 1 <= args.repeat <= 10 or not 1 <= args.calls <= 20_000:
        parser.error("--repeat 1..10, --calls 1..20000")
    asyncio.run(main_async(args.calls, args.repeat, args.speed, args.database_url, args.source))


if __name__ == "__main__":
    main()
