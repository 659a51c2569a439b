"""bench.pairs runs a benchmark on two revisions in alternation: each side runs its own code with
the head's benchmarks, every run's rows are kept, and a failing run stops the comparison."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bench.pairs import Side, compare, last_table, unpack, with_bench_of

SHOW = """\
from pkg.value import VALUE

MEASURE = {measure!r}
print("a line before the tables")
print("| old | table |\\n|-----|-------|\\n| 1 | 2 |")
print()
print(f"| value | measure |\\n|-------|---------|\\n| {{VALUE}} | {{MEASURE}} |")
"""


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def _commit(repo: Path, value: str, measure: str) -> str:
    (repo / "pkg").mkdir(exist_ok=True)
    (repo / "bench").mkdir(exist_ok=True)
    (repo / "pkg" / "__init__.py").write_text("")
    (repo / "pkg" / "value.py").write_text(f"VALUE = {value!r}\n")
    (repo / "bench" / "__init__.py").write_text("")
    (repo / "bench" / "show.py").write_text(SHOW.format(measure=measure))
    (repo / "bench" / "fail.py").write_text("raise SystemExit('no luck')\n")
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", value)
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture
def revisions(tmp_path: Path) -> tuple[Path, Path]:
    """(base tree, head tree): base has the old code, both the head's benchmarks."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    old = _commit(repo, "old code", "old bench")
    new = _commit(repo, "new code", "new bench")
    head = unpack(new, tmp_path / "head", repo)
    base = unpack(old, tmp_path / "base", repo)
    with_bench_of(base, head)
    return base, head


def test_each_side_runs_its_own_code_with_the_heads_benchmark(
    revisions: tuple[Path, Path],
) -> None:
    base, head = revisions
    report = last_table(compare([Side("base", base), Side("head", head)], ["bench.show"], pairs=2))
    assert report.headers == ["pair", "tree", "value", "measure"]
    assert report.rows == [
        ["1", "base", "old code", "new bench"],
        ["1", "head", "new code", "new bench"],
        ["2", "base", "old code", "new bench"],
        ["2", "head", "new code", "new bench"],
    ]


def test_a_failing_run_stops_the_comparison_with_its_output(
    revisions: tuple[Path, Path],
) -> None:
    base, head = revisions
    with pytest.raises(RuntimeError, match=r"(?s)base run failed.*no luck"):
        compare([Side("base", base), Side("head", head)], ["bench.fail"], pairs=1)


def test_the_last_table_is_kept_and_text_without_one_is_refused() -> None:
    output = "| a | b |\n|---|---|\n| 1 | 2 |\n\nnoise\n| c |\n|:--|\n| 3 |\n| 4 |\ntrailer\n"
    got = last_table(output)
    assert got.headers == ["c"]
    assert got.rows == [["3"], ["4"]]
    with pytest.raises(ValueError, match="no markdown table"):
        last_table("| not | a table |\nplain text\n")
