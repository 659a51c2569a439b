"""`calltracking simulate`: arguments in, one JSON object (or a sweep table) out.

Rules: `--set NAME=VALUE` takes any site setting of CONTRACT.md, the value read as JSON when it
parses (`3600`, `true`, `["source=google"]`) and as plain text otherwise (`lease_on=visible`),
checked by the same `merge_settings` as the API; `--policy seed` starts from the seed article's
settings (50 s delay, 15-minute hold, revocation an hour after assignment) and `--set` still
applies over them. Bad input ends with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from calltracking.core.engine import Policy
from calltracking.core.errors import InvalidInput
from calltracking.core.settings import SiteSettings, merge_settings
from calltracking.simulate.model import TrafficModel, generate
from calltracking.simulate.replay import Scenario, replay
from calltracking.simulate.results import Result, sweep_table
from calltracking.simulate.traffic import TrafficError, VisitRow, format_traffic, parse_traffic

SEED_SETTINGS = {"show_delay_s": 50, "hold_s": 900, "idle_timeout_s": 3600}
SWEEP_POOLS = (5, 10, 15, 20, 25, 30, 40, 50, 75, 100, 150, 200)


class UsageError(Exception):
    """A bad argument: one line for stderr."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--traffic", type=Path, metavar="FILE", help="traffic CSV to replay")
    source.add_argument("--generate", type=Path, metavar="OUT", help="write a model traffic CSV")
    parser.add_argument("--pool", type=int, help="pool size (default: the pool_max setting)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="a site setting"
    )
    parser.add_argument("--policy", choices=("product", "seed"), default="product")
    parser.add_argument("--warmup-s", type=float, default=0.0, help="leave earlier calls out")
    parser.add_argument("--sweep", action="store_true", help="a table over pool sizes")
    parser.add_argument("--pools", help="pool sizes for --sweep, comma separated")
    parser.add_argument(
        "--vary", action="append", default=[], metavar="NAME=V1,V2", help="--sweep a setting too"
    )
    parser.add_argument("--days", type=int, default=7, help="--generate: days (7)")
    parser.add_argument("--visits-per-day", type=int, default=3000, help="--generate (3000)")
    parser.add_argument("--seed", type=int, default=1, help="--generate: random seed (1)")


def run_from_args(args: argparse.Namespace) -> int:
    try:
        if args.generate is not None:
            return _generate(args)
        base = scenario_from(args.policy, args.set, args.pool, args.warmup_s)
        rows = read_traffic(args.traffic)
        if args.sweep:
            pools = _ints(args.pools, "--pools") if args.pools else SWEEP_POOLS
            vary = [_vary(item) for item in args.vary]
            results = sweep(rows, base, pools, vary)
            print(sweep_table(results, [name for name, _ in vary]))
        else:
            print(json.dumps(replay(rows, base).to_json(), indent=2))
        return 0
    except (UsageError, TrafficError) as exc:
        print(f"calltracking simulate: {exc}", file=sys.stderr)
        return 2


def read_traffic(path: Path) -> list[VisitRow]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    return parse_traffic(text, str(path))


def scenario_from(
    policy: str, assignments: Sequence[str], pool: int | None, warmup_s: float
) -> Scenario:
    patch: dict[str, Any] = dict(SEED_SETTINGS) if policy == "seed" else {}
    for item in assignments:
        name, value = _assignment(item)
        patch[name] = value
    settings = _settings(patch)
    size = settings.pool_max if pool is None else pool
    if size < 0 or warmup_s < 0:
        raise UsageError("--pool and --warmup-s must be >= 0")
    chosen = Policy.seed() if policy == "seed" else Policy()
    return Scenario(settings, size, chosen, warmup_s)


def sweep(
    rows: Sequence[VisitRow],
    base: Scenario,
    pools: Sequence[int],
    vary: Sequence[tuple[str, list[Any]]] = (),
) -> list[Result]:
    results = []
    names = [name for name, _ in vary]
    for values in itertools.product(*(v for _, v in vary)):
        settings = _settings(dict(zip(names, values, strict=True)), base.settings)
        for pool in pools:
            results.append(replay(rows, replace(base, settings=settings, pool=pool)))
    return results


def _settings(patch: dict[str, Any], base: SiteSettings | None = None) -> SiteSettings:
    try:
        return merge_settings(base or SiteSettings(), patch)
    except InvalidInput as exc:
        raise UsageError(f"--set {exc.message}") from None


def _assignment(item: str) -> tuple[str, Any]:
    name, eq, raw = item.partition("=")
    if not eq or not name:
        raise UsageError(f"--set {item!r}: expected NAME=VALUE")
    return name.strip(), _value(raw)


def _value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _vary(item: str) -> tuple[str, list[Any]]:
    name, eq, raw = item.partition("=")
    if not eq or not name or not raw:
        raise UsageError(f"--vary {item!r}: expected NAME=V1,V2,...")
    values = [_value(v) for v in raw.split(",")]
    for value in values:
        _settings({name: value})
    return name.strip(), values


def _ints(raw: str, flag: str) -> list[int]:
    try:
        values = [int(v) for v in raw.split(",")]
    except ValueError:
        raise UsageError(f"{flag} must be whole numbers separated by commas") from None
    if any(v < 0 for v in values):
        raise UsageError(f"{flag} must be >= 0")
    return values


def _generate(args: argparse.Namespace) -> int:
    if args.days < 1 or args.visits_per_day < 0:
        raise UsageError("--days must be >= 1 and --visits-per-day >= 0")
    model = TrafficModel(days=args.days, visits_per_day=args.visits_per_day, seed=args.seed)
    try:
        args.generate.write_text(format_traffic(generate(model)), encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {args.generate}: {exc}") from None
    return 0
