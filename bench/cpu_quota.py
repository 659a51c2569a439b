"""Hold processes to a fraction of a core each: one small machine per node, on one host.

A benchmark that compares one node against two on a 2-core host measures the host: one node,
the client, PostgreSQL and RabbitMQ already keep both cores busy. With every node held to the
same quota (say a quarter of a core) and the shared parts left free, each node is a small
machine of its own, and two nodes against one measure the design: what a second node adds
when it brings its own CPU, as it would on its own machine.

Linux cgroups do it: a group per process under the `cpu` controller with a CFS quota (v1:
`/sys/fs/cgroup/cpu`, `cpu.cfs_quota_us`; v2: `/sys/fs/cgroup`, `cpu.max`). That needs root or a
delegated cgroup; `CpuQuotaUnavailable` says so instead of running unlimited. On exit each
process still alive goes back to the group it came from and the groups are removed.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

# Short periods: a node over its quota waits a few milliseconds, as on a slower machine, rather
# than 75 ms of every 100 (the kernel's default period), which stalls every round trip with it.
PERIOD_US = 10_000
V1_ROOT = Path("/sys/fs/cgroup/cpu")
V2_ROOT = Path("/sys/fs/cgroup")


class CpuQuotaUnavailable(RuntimeError):
    """No cgroup `cpu` controller this process may write to."""


@dataclass(frozen=True)
class Limited:
    """One process under its quota; `throttled_s()` is the time the kernel held it back."""

    pid: int
    group: Path
    v2: bool

    def throttled_s(self) -> float:
        stat = dict(
            line.split() for line in (self.group / "cpu.stat").read_text().splitlines() if line
        )
        if self.v2:
            return int(stat.get("throttled_usec", 0)) / 1e6
        return int(stat.get("throttled_time", 0)) / 1e9


def _hierarchy() -> tuple[Path, bool]:
    """(where our groups go, whether it is cgroup v2)."""
    if (V1_ROOT / "cpu.cfs_quota_us").exists():
        return V1_ROOT, False
    controllers = V2_ROOT / "cgroup.controllers"
    if controllers.exists() and "cpu" in controllers.read_text().split():
        return V2_ROOT, True
    raise CpuQuotaUnavailable("no cgroup cpu controller (cgroup v1 cpu or v2 with cpu enabled)")


def _own_group(pid: int, v2: bool) -> Path:
    """The group `pid` is in now, in the hierarchy we write to (to move it back)."""
    root = V2_ROOT if v2 else V1_ROOT
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if (v2 and controllers == "") or (not v2 and "cpu" in controllers.split(",")):
            group = root / path.lstrip("/")
            # In a container the path may be the host's view of a hierarchy mounted at its root.
            return group if group.is_dir() else root
    return root


def _limit(group: Path, v2: bool, cores: float) -> None:
    quota = max(1000, int(cores * PERIOD_US))
    if v2:
        (group / "cpu.max").write_text(f"{quota} {PERIOD_US}")
    else:
        (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (group / "cpu.cfs_quota_us").write_text(str(quota))


@contextlib.contextmanager
def cpu_quota(pids: Sequence[int], cores: float) -> Iterator[list[Limited]]:
    """Hold each of `pids` (and its threads and later children) to `cores` of CPU time."""
    if cores <= 0:
        raise ValueError("a quota is a positive fraction of a core")
    root, v2 = _hierarchy()
    tag = secrets.token_hex(3)
    moved: list[tuple[Limited, Path]] = []
    try:
        for pid in pids:
            try:
                home = _own_group(pid, v2)
            except FileNotFoundError:
                raise ProcessLookupError(f"no process {pid}") from None
            group = root / f"ct_bench_{tag}_{pid}"
            try:
                group.mkdir()
                _limit(group, v2, cores)
                (group / "cgroup.procs").write_text(str(pid))
            except OSError as exc:
                with contextlib.suppress(OSError):
                    group.rmdir()
                if isinstance(exc, ProcessLookupError):
                    raise ProcessLookupError(f"no process {pid}") from None
                raise CpuQuotaUnavailable(f"cannot limit process {pid} in {group}: {exc}") from exc
            moved.append((Limited(pid, group, v2), home))
        yield [limited for limited, _ in moved]
    finally:
        for limited, home in moved:
            for line in (limited.group / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):  # it may have exited meanwhile
                    (home / "cgroup.procs").write_text(line)
            with contextlib.suppress(OSError):
                limited.group.rmdir()


def available() -> bool:
    """Whether `cpu_quota` can work here: a group made, limited and removed again."""
    try:
        root, v2 = _hierarchy()
    except CpuQuotaUnavailable:
        return False
    probe = root / f"ct_bench_probe_{secrets.token_hex(3)}"
    try:
        probe.mkdir()
    except OSError:
        return False
    try:
        _limit(probe, v2, 0.5)
    except OSError:
        return False
    finally:
        with contextlib.suppress(OSError):
            probe.rmdir()
    return True
