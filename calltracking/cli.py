"""`calltracking`: the console script. Reads the configuration once and passes it down."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from calltracking.config import Config, ConfigError, load_config

DESCRIPTION = """\
Dynamic call tracking for Asterisk: every website visitor is shown a phone number from a pool;
a call to it is matched to the visitor's session, stored with its recording, reported, and sent
to GA4, Yandex Metrika and webhooks.

Configuration comes from CALLTRACKING_* environment variables, or a TOML file (--config) with
the same names in lower case without the prefix; the environment wins. Start with
`calltracking demo`.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="calltracking",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, help="TOML file with settings (env vars win)")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the tracker (web, FastAGI, AMI listener, workers)",
        description="Run the tracker in one process. --only runs a subset (needs RabbitMQ). "
        "Several `--only web` nodes may share one PostgreSQL and RabbitMQ: each site is decided "
        "by one node at a time (the first to need it, or the next when it stops) and the others "
        "forward their visitors' changes to it; send a site's sockets to one node where you "
        "can (the shipped nginx config hashes on ?site=). One process relays the outbox (one "
        "with the workers part when any runs, so that web nodes keep their CPU for sockets) "
        "and one listens to each Asterisk; the others stand by.",
    )
    serve.add_argument(
        "--only", metavar="PARTS", help="comma-separated subset of web,agi,ami,workers"
    )

    demo = commands.add_parser(
        "demo",
        help="a complete local demo: landing page, simulated PBX, dashboard",
        description="Start the tracker with SQLite in ./demo-data, a demo account and site, a "
        "landing page carrying the snippet and a simulated Asterisk; prints the "
        "URLs and the operator token.",
    )
    demo.add_argument(
        "--port", type=int, help="HTTP port (wins over CALLTRACKING_HTTP_PORT; default 8080)"
    )
    demo.add_argument(
        "--data",
        type=Path,
        default=Path("demo-data"),
        help="folder for the database and recordings (default ./demo-data)",
    )

    commands.add_parser("migrate", help="create or upgrade the database schema")
    check = commands.add_parser(
        "check",
        help="check database, broker, AMI, FastAGI and sites; one "
        "line per check, non-zero exit when one fails",
    )
    check.add_argument(
        "--call",
        metavar="DID",
        help="wait for one test call to this number and prove each AMI read right from its events",
    )
    check.add_argument(
        "--wait", type=float, default=120.0, metavar="S", help="how long to wait for it [120]"
    )

    token = commands.add_parser("token", help="manage API tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    create = token_commands.add_parser("create", help="print a new token (stored hashed)")
    who = create.add_mutually_exclusive_group(required=True)
    who.add_argument("--admin", action="store_true", help="a token that manages accounts")
    who.add_argument("--account", metavar="ID", help="a token for one account")
    revoke = token_commands.add_parser(
        "revoke", help="revoke a token at once (named by its first 12 characters, or whole)"
    )
    revoke.add_argument("prefix", metavar="TOKEN_PREFIX")

    sim = commands.add_parser(
        "pbx-sim",
        help="a simulated Asterisk (AMI server) for demos, tests and benchmarks",
        description="Serve AMI like a real Asterisk 22 and emit the event sequences of inbound "
        "calls, driven by --call, stdin, an HTTP control or a load profile.",
    )
    from calltracking.pbxsim.command import add_arguments

    add_arguments(sim)

    simulate = commands.add_parser(
        "simulate",
        help="replay a traffic file through the production engine (accuracy per pool size)",
        description="Replay a traffic CSV (visitor,start_s,end_s,last_active_s,url,referrer,"
        "call_at_s) on a virtual clock and print calls, tracked and correct shares as JSON; "
        "--sweep prints a table over pool sizes; --generate writes a file from the traffic model.",
    )
    from calltracking.simulate.command import add_arguments as add_simulate_arguments

    add_simulate_arguments(simulate)

    advise = commands.add_parser(
        "advise",
        help="size a site's pool from its own recent traffic (replayed through the simulator)",
        description="Replay the site's last N days at other pool sizes and settings; print the "
        "smallest pool (and show_delay_s, idle_timeout_s, hold_s) reaching the target tracked "
        "share, with the expected correct share, as JSON.",
    )
    advise.add_argument("site", metavar="SITE", help="site id")
    advise.add_argument("--target", type=float, default=0.95, help="tracked share (0.95)")
    advise.add_argument("--days", type=int, default=7, help="days of traffic to replay (7)")

    split = commands.add_parser(
        "split-site",
        help="decide one busy site in parts, so that several web nodes share its decisions",
        description="One node decides every change of a site (the owner of its shard). A site "
        "with more new visitors than one node can decide can be split: its pool, visitors and "
        "leases fall into PARTS parts, each decided by its own node, and a node decides its own "
        "sockets' new visitors in a part it owns, without forwarding them. The per-address "
        "rules (hello rate, lease cap) then hold per part, and a part's waiters wait for its own "
        "numbers. 1 undoes the split. Leases are kept; every node reloads the site.",
    )
    split.add_argument("site", metavar="SITE", help="site id")
    split.add_argument("parts", metavar="PARTS", type=int, help="1 to 16 (1: not split)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Alembic says at INFO which plugins and DDL mode it uses: noise to an operator.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        config = load_config(os.environ, args.config)
        return asyncio.run(_dispatch(args, config))
    except ConfigError as exc:
        print(f"calltracking: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


async def _dispatch(args: argparse.Namespace, config: Config) -> int:
    if args.command == "serve":
        from calltracking.serve import parse_parts, serve_forever

        logging.getLogger(__name__).info("configuration: %s", config.describe())
        with contextlib.suppress(asyncio.CancelledError):
            await serve_forever(config, parse_parts(args.only, config))
        return 0
    if args.command == "migrate":
        from calltracking.store.db import Database
        from calltracking.store.migrate import migrate

        db = Database(config.database_url)
        try:
            await migrate(db)
        finally:
            await db.close()
        return 0
    if args.command == "token":
        from calltracking.store.tokens import create_token_cli, revoke_token_cli

        if args.token_command == "revoke":
            return await revoke_token_cli(config, args.prefix)
        return await create_token_cli(config, admin=args.admin, account_id=args.account)
    if args.command == "check":
        from calltracking.check import run_checks

        return await run_checks(config, call_did=args.call, wait_s=args.wait)
    if args.command == "demo":
        from calltracking.config import given_settings
        from calltracking.demo import run_demo

        given = given_settings(os.environ, args.config)
        return await run_demo(config, port=args.port, data=args.data, given=given)
    if args.command == "simulate":
        from calltracking.simulate.command import run_from_args as run_simulate

        return run_simulate(args)
    if args.command == "advise":
        from calltracking.advise import run_advise_cli

        return await run_advise_cli(config, args.site, target=args.target, days=args.days)
    if args.command == "split-site":
        from calltracking.store.site_split import split_site_cli

        return await split_site_cli(config, args.site, args.parts)
    if args.command == "pbx-sim":
        from calltracking.pbxsim.command import run_from_args

        await run_from_args(args)
        return 0
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
