"""bench.cpu_samples: a child process samples its own CPU time when told, and the report turns
the samples into microseconds of CPU per unit of work, scaled to what each process used.

The child test proves where the samples land by their shares, not by timing: one function
does three times the work of another, and a sleep between them costs no CPU at all.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from bench.common import cpu_seconds
from bench.cpu_samples import (
    SAMPLER_FRAME,
    by_frame,
    compare,
    finish_sampling,
    load_runs,
    read_collector_s,
    read_samples,
    sampler_env,
    start_sampling,
    under,
)

CHILD = """
import sys, time

def spin(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass

def three_parts():
    spin(0.03)

def one_part():
    spin(0.01)

def idle():
    time.sleep(0.02)

print("ready", flush=True)
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    three_parts()
    one_part()
    idle()
"""


async def test_a_child_samples_its_cpu_where_it_spends_it(tmp_path: Path) -> None:
    prefix = tmp_path / "run1-1"
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        "3",
        env={**_plain_env(), **sampler_env(prefix)},
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert child.stdout is not None and await child.stdout.readline() == b"ready\n"
        before = cpu_seconds(child.pid)
        start_sampling([child.pid])
        await asyncio.sleep(1.5)
        spent = cpu_seconds(child.pid) - before
        run = await finish_sampling(prefix, [("web1", child.pid, spent)], per=10)
    finally:
        # The child ends on its own: a sampler left running would end it by SIGPROF instead.
        assert await asyncio.wait_for(child.wait(), 30) == 0

    stacks = load_runs([run], "web")
    assert stacks.units == 10
    assert stacks.total == pytest.approx(spent * 1e6 / 10)
    inclusive = by_frame(stacks)
    three, one = inclusive.get("<string>:three_parts", 0.0), inclusive.get("<string>:one_part", 0.0)
    assert three > 1.5 * one > 0  # 3:1 in CPU, so in samples
    assert three + one > 0.8 * stacks.total  # the sleep between them took none
    assert by_frame(stacks, inclusive=False).get("<string>:spin", 0.0) > 0.8 * stacks.total
    written = Path(f"{prefix}.{child.pid}").read_text()
    assert [line.split()[:2] for line in written.splitlines() if line.startswith("#gc")] == [
        ["#gc", "0"],
        ["#gc", "1"],
        ["#gc", "2"],
    ]


def test_a_process_not_named_by_the_filter_is_left_out(tmp_path: Path) -> None:
    (tmp_path / "r.1").write_text("main;work 4\n")
    (tmp_path / "r.2").write_text("main;relay 4\n")
    _run_json(tmp_path / "r.json", 1, [("web1", "r.1", 0.004), ("workers", "r.2", 0.004)])
    assert by_frame(load_runs([tmp_path / "r.json"], "web")) == {
        "main": pytest.approx(4000),
        "work": pytest.approx(4000),
    }


def test_each_process_is_scaled_to_its_measured_cpu_and_runs_add_up(tmp_path: Path) -> None:
    # Process a: 4 samples for 4 ms; process b: 1 sample for 2 ms; two runs of 2 units each.
    (tmp_path / "a.1").write_text("loop;hello;decide 3\nloop;batch 1\n")
    (tmp_path / "b.1").write_text("loop;batch 1\n")
    _run_json(tmp_path / "one.json", 2, [("web1", "a.1", 0.004), ("web2", "b.1", 0.002)])
    _run_json(tmp_path / "two.json", 2, [("web1", "a.1", 0.004)])
    stacks = load_runs([tmp_path / "one.json", tmp_path / "two.json"], "web")
    assert stacks.units == 4
    # (4 ms + 2 ms + 4 ms) over 4 units
    assert stacks.total == pytest.approx(2500)
    inclusive = by_frame(stacks)
    assert inclusive["loop"] == pytest.approx(2500)
    assert inclusive["hello"] == pytest.approx(1500)  # 3 ms + 3 ms over 4
    assert inclusive["batch"] == pytest.approx(1000)  # 1 + 2 + 1 ms over 4
    assert by_frame(stacks, inclusive=False).get("loop", 0.0) == 0.0
    assert under(stacks, "loop") == {
        "hello": pytest.approx(1500),
        "batch": pytest.approx(1000),
    }
    assert under(stacks, "hello") == {"decide": pytest.approx(1500)}
    assert under(stacks, "decide") == {"(self)": pytest.approx(1500)}


def test_the_collectors_time_is_read_apart_from_the_stacks(tmp_path: Path) -> None:
    (tmp_path / "a.1").write_text("loop;work 2\n#gc 0 3 0.002000\n#gc 1 1 0.001000\n#gc 2 0 0\n")
    _run_json(tmp_path / "r.json", 3, [("web1", "a.1", 0.006)])
    stacks = load_runs([tmp_path / "r.json"], "web")
    assert stacks.collector_us == pytest.approx(1000)  # 3 ms over 3 units
    assert stacks.total == pytest.approx(2000)  # the stacks alone: 6 ms over 3 units
    assert read_collector_s("#gc 0 1 oops\n#gc 0 2\n#gc 1 1 0.5\n") == 0.5


def test_samples_taken_inside_the_sampler_count_for_its_caller_and_garbage_is_skipped() -> None:
    text = f"a;b;{SAMPLER_FRAME};x 2\na;b 1\nnot a count x\n\n lonely\n"
    assert read_samples(text) == {("a", "b"): 3}


def test_compare_puts_the_largest_growth_first_and_keeps_the_largest_fall() -> None:
    a = {f"f{i}": 10.0 for i in range(10)}
    b = {**a, "f3": 25.0, "f7": 1.0, "new": 4.0}
    rows = compare(a, b, top=4)
    assert rows[0] == ("f3", 10.0, 25.0, 15.0)
    assert rows[1][0] == "new"
    assert rows[-1] == ("f7", 10.0, 1.0, -9.0)
    assert len(rows) == 4


def _run_json(path: Path, per: float, processes: list[tuple[str, str, float]]) -> None:
    body = {
        "per": per,
        "processes": [{"name": n, "samples": s, "cpu_s": c} for n, s, c in processes],
    }
    path.write_text(json.dumps(body))


def _plain_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CT_CPU_SAMPLES")}
