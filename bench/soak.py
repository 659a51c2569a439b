"""Soak: thousands of visitor sockets and a steady call rate for N minutes, then the books.

Not a test and not in CI. Run on a quiet machine:

    python -m bench.soak --minutes 10 --sockets 2000 --calls-per-s 1          # SQLite, one process
    python -m bench.soak --minutes 10 --database-url postgresql+asyncpg://... \\
        --amqp-url amqp://...      # an EMPTY database: two web nodes, agi, ami, workers processes
    python -m bench.soak --minutes 1 --sockets 300                             # a smoke run

What it does: seeds one site whose pool can lease every socket; starts the pbx-sim (AMI server,
FastAGI client) in this process and the tracker as `calltracking serve` children; opens
`--sockets` visitor sockets (hello, first number); then for `--minutes` places calls at
`--calls-per-s` to numbers the open sockets show (pbx-sim: AMI events + a real FastAGI dialogue)
and replaces `--churn-per-s` sockets a second with new visitors. The trackers' RSS is sampled
every `--sample-s`. Afterwards it waits for every call to end in the simulator, closes all
sockets, and checks:
- no lease leaked: once every socket closed, no lease and no tab row stays open;
- no event lost: every placed call is stored exactly once, ended; after the trackers stopped
  (SIGTERM: they flush the outbox) no outbox event is unpublished, and every tracker exited 0;
- memory flat: mean RSS of the last third of the steady phase within FLAT_GROWTH_PCT of the
  first third's.
It prints a Markdown table and one JSON line; the exit status is 1 when a check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bench.common import machine, percentile, quiet_logging, raise_nofile, rss_kib, seed_site, table
from bench.soak_nodes import Nodes, Sockets, free_port, scrape, tracker_nodes
from calltracking.pbxsim import PbxSim, SimConfig
from calltracking.pbxsim.calls import PlacedCall
from calltracking.pbxsim.control import load_spec
from calltracking.store import schema as t
from calltracking.store.db import Database
from calltracking.store.migrate import migrate
from calltracking.store.site_split import split_site
from calltracking.store.sites import Site

AMI_USER = AMI_SECRET = "soak"
SETTLE_TIMEOUT_S = 180.0
FLAT_GROWTH_PCT = 10.0


@dataclass
class Run:
    args: argparse.Namespace
    db: Database
    sim: PbxSim
    rss: dict[str, list[int]] = field(default_factory=dict)
    placed: list[PlacedCall] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    add = parser.add_argument
    add("--minutes", type=float, default=10.0, help="steady phase length [10]")
    add("--sockets", type=int, default=2000, help="visitor sockets held open [2000]")
    add("--calls-per-s", type=float, default=1.0, help="calls placed per second [1]")
    add("--churn-per-s", type=float, default=1.0, help="sockets replaced per second [1]")
    add("--opening", type=int, default=100, help="handshakes in flight while opening [100]")
    add("--sample-s", type=float, default=10.0, help="RSS sampling interval [10]")
    add("--talk-s", type=float, default=20.0, help="mean talk time of answered calls [20]")
    add("--sim-speed", type=float, default=4.0, help="pbx-sim time factor (ringing, talk) [4]")
    add("--database-url", default="", help="PostgreSQL (an empty database); default: SQLite")
    add("--amqp-url", default="", help="RabbitMQ; the parts then run in 5 processes")
    add("--parts", type=int, default=1, help="split the site into this many parts [1]")
    add("--seed", type=int, default=7)
    return parser.parse_args(argv)


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    raise_nofile(4 * args.sockets + 4096)
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    db_url = args.database_url or f"sqlite+aiosqlite:///{workdir / 'soak.db'}"
    db = Database(db_url)
    await migrate(db)
    churned = int(args.churn_per_s * args.minutes * 60)
    site = await seed_site(db, pool=min(9999, args.sockets + churned + 100))
    if args.parts > 1:  # decided in parts by the web nodes (`calltracking split-site`)
        await split_site(db, site.id, args.parts)
    agi_port = free_port()
    sim = PbxSim(
        SimConfig(
            port=0, speed=args.sim_speed, username=AMI_USER, secret=AMI_SECRET,
            agi=("127.0.0.1", agi_port),
        )
    )  # fmt: skip
    await sim.start()
    env = {
        "CALLTRACKING_DATABASE_URL": db_url,
        "CALLTRACKING_AMQP_URL": args.amqp_url,
        "CALLTRACKING_AMI_HOST": "127.0.0.1",
        "CALLTRACKING_AMI_PORT": str(sim.ami_port),
        "CALLTRACKING_AMI_USERNAME": AMI_USER,
        "CALLTRACKING_AMI_SECRET": AMI_SECRET,
        "CALLTRACKING_RECORDINGS_DIR": str(workdir),
        "CALLTRACKING_WS_MAX_PER_ADDRESS": "1000000",
    }
    run = Run(args, db, sim)
    try:
        async with tracker_nodes(env, bool(args.amqp_url), agi_port) as nodes:
            await _load(run, site, nodes)
        run.results["exit_codes"] = {n.name: n.exit_code for n in nodes.nodes}
        async with db.read() as conn:
            run.results["outbox_unpublished"] = await _count(
                conn, t.outbox, t.outbox.c.published_at.is_(None)
            )
    finally:
        await sim.stop()
        await db.close()
    run.results["rss"] = _memory(run.rss)
    return run.results


async def _load(run: Run, site: Site, nodes: Nodes) -> None:
    args = run.args
    sockets = Sockets(site, nodes.web_ports, asyncio.Semaphore(args.opening))
    begin = time.perf_counter()
    await sockets.open_many(args.sockets)
    run.results["open_all_s"] = time.perf_counter() - begin
    sampler = asyncio.create_task(_sample(run, nodes))
    try:
        await _steady(run, sockets, random.Random(args.seed))
    finally:
        sampler.cancel()
    await asyncio.gather(*(p.finished for p in run.placed))
    run.results["metrics"] = await _metrics(nodes)
    run.results.update(
        sockets_failed=sockets.failed,
        sockets_closed_by_server=sockets.closed_by_server,
        hellos=len(sockets.hello_ms),
        hello_p50_ms=percentile(sockets.hello_ms, 50),
        hello_p99_ms=percentile(sockets.hello_ms, 99),
    )
    await sockets.close_all()
    await _settle(run)


async def _steady(run: Run, sockets: Sockets, rng: random.Random) -> None:
    args = run.args
    loop = asyncio.get_running_loop()
    end = loop.time() + args.minutes * 60
    call_debt = churn_debt = 0.0
    last = loop.time()
    while loop.time() < end:
        tick = loop.time()
        # Owed by elapsed time, so a slow round is made up in the next one.
        call_debt += args.calls_per_s * (tick - last)
        churn_debt += args.churn_per_s * (tick - last)
        last = tick
        leased = sockets.leased_numbers()
        while call_debt >= 1 and leased:
            call_debt -= 1
            did = rng.choice(leased).removeprefix("+")
            run.placed.append(await run.sim.place_call(load_spec(rng, [did], args.talk_s)))
        if churn_debt >= 1:
            count, churn_debt = int(churn_debt), churn_debt - int(churn_debt)
            await sockets.close_random(count, rng)
            await sockets.open_many(count, wait=False)  # the call rate does not wait on them
        await asyncio.sleep(max(0.0, 1.0 - (loop.time() - tick)))


async def _sample(run: Run, nodes: Nodes) -> None:
    while True:
        for node in nodes.nodes:
            run.rss.setdefault(node.name, []).append(rss_kib(node.proc.pid))
        await asyncio.sleep(run.args.sample_s)


async def _metrics(nodes: Nodes) -> dict[str, float]:
    """A few figures from the trackers' own /metrics, summed over the nodes."""
    from prometheus_client.parser import text_string_to_metric_families

    figures: dict[str, float] = {}
    for node in nodes.nodes:
        for family in text_string_to_metric_families(await scrape(node.port)):
            for s in family.samples:
                if s.name == "calltracking_agi_dialogues_total" and s.value:
                    key = f"agi_{s.labels['outcome']}"
                elif s.name in ("calltracking_ami_reconnects_total", "calltracking_ws_tabs"):
                    key = s.name.removeprefix("calltracking_")
                else:
                    continue
                figures[key] = figures.get(key, 0.0) + s.value
    return figures


async def _settle(run: Run) -> None:
    """Wait (bounded) until the closed sockets' leases ended and every call is stored and
    ended; then count what is left."""
    placed = {p.linkedid for p in run.placed}
    deadline = time.perf_counter() + SETTLE_TIMEOUT_S
    while True:
        async with run.db.read() as conn:
            leases = await _count(conn, t.leases, t.leases.c.ended_at.is_(None))
            tabs = await _count(conn, t.tabs, sa.true())
            columns = (t.calls.c.linkedid, t.calls.c.ended_at, t.calls.c.kind)
            rows = (await conn.execute(sa.select(*columns))).all()
        ours = [r for r in rows if r.linkedid in placed]
        ended = sum(1 for r in ours if r.ended_at is not None)
        if (leases == tabs == 0 and ended == len(placed)) or time.perf_counter() > deadline:
            break
        await asyncio.sleep(1.0)
    run.results.update(
        leases_open_after_close=leases,
        tabs_open_after_close=tabs,
        calls_placed=len(placed),
        calls_stored=len({r.linkedid for r in ours}),
        calls_doubled=len(ours) - len({r.linkedid for r in ours}),
        calls_not_ended=len(ours) - ended,
        calls_dynamic=sum(1 for r in ours if r.kind == "dynamic"),
    )


async def _count(conn: AsyncConnection, table: sa.Table, where: Any) -> int:
    query = sa.select(sa.func.count()).select_from(table).where(where)
    return int((await conn.execute(query)).scalar_one())


def _memory(samples: dict[str, list[int]]) -> dict[str, dict[str, float]]:
    report = {}
    for name, values in samples.items():
        third = max(1, len(values) // 3)
        first, last = statistics.fmean(values[:third]), statistics.fmean(values[-third:])
        report[name] = {
            "samples": len(values),
            "first_mib": first / 1024,
            "last_mib": last / 1024,
            "growth_pct": (last - first) / first * 100,
        }
    return report


def verdicts(r: dict[str, Any]) -> dict[str, bool]:
    return {
        "no lease leaked": r["leases_open_after_close"] == 0 and r["tabs_open_after_close"] == 0,
        "no event lost": r["calls_stored"] == r["calls_placed"]
        and r["calls_doubled"] == 0
        and r["calls_not_ended"] == 0
        and r["outbox_unpublished"] == 0
        and all(code == 0 for code in r["exit_codes"].values()),
        "memory flat": all(m["growth_pct"] <= FLAT_GROWTH_PCT for m in r["rss"].values()),
        "no socket failed": r["sockets_failed"] == 0 and r["sockets_closed_by_server"] == 0,
    }


def report(args: argparse.Namespace, r: dict[str, Any]) -> str:
    backend = "PostgreSQL + RabbitMQ, 5 processes" if args.amqp_url else "SQLite, 1 process"
    lines = [
        f"{machine()}; {backend}; {args.minutes:g} min, {args.sockets} sockets, "
        f"{args.calls_per_s:g} calls/s, {args.churn_per_s:g} sockets replaced/s",
        "",
        table(
            [
                "hellos",
                "p50 ms",
                "p99 ms",
                "open all s",
                "calls placed/stored/ended (dynamic)",
                "doubled",
                "leases/tabs left",
                "outbox left",
                "exit codes",
            ],
            [
                [
                    r["hellos"],
                    r["hello_p50_ms"],
                    r["hello_p99_ms"],
                    r["open_all_s"],
                    f"{r['calls_placed']}/{r['calls_stored']}/"
                    f"{r['calls_stored'] - r['calls_not_ended']} ({r['calls_dynamic']})",
                    r["calls_doubled"],
                    f"{r['leases_open_after_close']}/{r['tabs_open_after_close']}",
                    r["outbox_unpublished"],
                    " ".join(f"{k}={v}" for k, v in r["exit_codes"].items()),
                ]
            ],
        ),
        "",
        table(
            ["process", "RSS samples", "first third MiB", "last third MiB", "growth %"],
            [
                [name, m["samples"], m["first_mib"], m["last_mib"], m["growth_pct"]]
                for name, m in r["rss"].items()
            ],
        ),
        "",
        "tracker /metrics: " + ", ".join(f"{k}={v:g}" for k, v in sorted(r["metrics"].items())),
        "checks: " + ", ".join(f"{k}: {'ok' if ok else 'FAILED'}" for k, ok in verdicts(r).items()),
    ]
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    quiet_logging()
    results = asyncio.run(soak(args))
    print(report(args, results))
    print(json.dumps(results, default=str))
    sys.exit(0 if all(verdicts(results).values()) else 1)


if __name__ == "__main__":
    main()
