"""The architecture rules a newcomer relies on: the core stays pure, the folders exist."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "calltracking" / "core"
FORBIDDEN_IN_CORE = {
    "asyncio",
    "aiohttp",
    "sqlalchemy",
    "aio_pika",
    "aiormq",
    "panoramisk",
    "socket",
    "agi",
    "web",
    "ami_listener",
    "calltracking.store",
    "calltracking.bus",
    "calltracking.exporters",
    "time",
    "os",
    "subprocess",
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_core_imports_only_the_standard_library_and_itself() -> None:
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        for name in _imports(path):
            top = name.split(".")[0]
            if (
                name in FORBIDDEN_IN_CORE
                or top in FORBIDDEN_IN_CORE
                or any(name.startswith(f + ".") for f in FORBIDDEN_IN_CORE)
            ):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


def test_design_card_folders_exist() -> None:
    for folder in ("agi", "ami_listener", "web", "dialplan", "tests", "calltracking/core"):
        assert (ROOT / folder).is_dir(), folder
    assert (ROOT / "setup.cfg").is_file()
    assert (ROOT / "docker-compose.yml").is_file()
