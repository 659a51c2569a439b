"""bench.cpu_quota holds a process to its share of a core, and puts it back afterwards.

It needs a writable cgroup `cpu` controller (root, as on the CI machine); elsewhere these tests
skip and say so. Proof that the quota bites comes from the kernel's own count of the time it
held the process back, not from timing it here.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.cpu_quota import V1_ROOT, V2_ROOT, available, cpu_quota

pytestmark = pytest.mark.skipif(
    not available(), reason="needs a writable cgroup cpu controller (run as root on Linux)"
)

SPIN = "import time\nend = time.monotonic() + 30\nwhile time.monotonic() < end: pass\n"


@pytest.fixture
def spinner() -> Iterator[subprocess.Popen[bytes]]:
    """A child that keeps one core busy until killed."""
    proc = subprocess.Popen([sys.executable, "-c", SPIN])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _cgroup_lines(pid: int) -> str:
    return Path(f"/proc/{pid}/cgroup").read_text()


def test_a_busy_process_is_throttled_in_its_own_group(spinner: subprocess.Popen[bytes]) -> None:
    with cpu_quota([spinner.pid], 0.1) as (limited,):
        assert limited.pid == spinner.pid
        assert str(spinner.pid) in (limited.group / "cgroup.procs").read_text().split()
        deadline = time.monotonic() + 10
        while limited.throttled_s() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)  # the kernel counts throttled periods as they end
        assert limited.throttled_s() > 0


def test_the_process_goes_back_and_the_group_is_removed(spinner: subprocess.Popen[bytes]) -> None:
    before = _cgroup_lines(spinner.pid)
    with cpu_quota([spinner.pid], 0.5) as (limited,):
        assert _cgroup_lines(spinner.pid) != before
        group = limited.group
    assert _cgroup_lines(spinner.pid) == before
    assert not group.exists()


def test_a_process_that_exits_inside_the_quota_leaves_nothing_behind() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    with cpu_quota([proc.pid], 0.5) as (limited,):
        proc.wait()
    assert not limited.group.exists()


def test_a_missing_process_is_refused_and_leaves_no_group() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    with pytest.raises(ProcessLookupError, match=str(proc.pid)), cpu_quota([proc.pid], 0.5):
        pass
    assert _groups_of(proc.pid) == []


def _groups_of(pid: int) -> list[Path]:
    """Groups cpu_quota made for `pid` and left (their names end with it)."""
    return [
        g for root in (V1_ROOT, V2_ROOT) if root.is_dir() for g in root.glob(f"ct_bench_*_{pid}")
    ]


def test_a_quota_must_be_a_positive_share() -> None:
    with pytest.raises(ValueError, match="positive"), cpu_quota([1], 0):
        pass
