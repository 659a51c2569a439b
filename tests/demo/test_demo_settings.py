"""`calltracking demo` for a newcomer: the settings `serve` honours apply (its --port wins), a
port in use is one clear line and a non-zero exit, start-up says no Alembic INFO lines, the demo
account creates a site with default settings, and every page has a favicon."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from calltracking.config import Config
from calltracking.demo import AMI_USER, DEMO_PORT, DemoInfo, demo_config, run_demo

START_S = 60.0  # a loaded machine may take long to migrate and start; we wait on output, not time


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("given", "port", "expected_port", "expected_db"),
    [
        (frozenset(), None, DEMO_PORT, "demo"),
        (frozenset({"http_port"}), None, 9001, "demo"),
        (frozenset({"http_port"}), 9002, 9002, "demo"),  # the flag wins
        (frozenset({"database_url"}), None, DEMO_PORT, "given"),
    ],
)
def test_demo_settings_are_the_given_ones_else_the_demo_s_own(
    tmp_path: Path, given: frozenset[str], port: int | None, expected_port: int, expected_db: str
) -> None:
    base = Config(http_port=9001, database_url="sqlite+aiosqlite:///elsewhere.db")
    config = demo_config(base, data=tmp_path, port=port, given=given)
    assert config.http_port == expected_port
    demo_db = f"sqlite+aiosqlite:///{tmp_path.resolve() / 'calltracking.db'}"
    assert config.database_url == (demo_db if expected_db == "demo" else base.database_url)
    assert config.ami_username == AMI_USER and config.amqp_url == ""


@asynccontextmanager
async def demo_process(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> AsyncIterator[tuple[asyncio.subprocess.Process, list[str]]]:
    """`calltracking demo` as a newcomer runs it; yields the process and its stdout so far."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CALLTRACKING_")}
    full_env.update(env or {})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "calltracking.cli", "demo", "--data", str(tmp_path / "data"), *args,
        env=full_env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        yield proc, []
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def read_until_running(proc: asyncio.subprocess.Process) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(START_S):
        while not any("Ctrl+C stops" in line for line in lines):
            line = await proc.stdout.readline()
            assert line, f"demo exited early: {lines}"
            lines.append(line.decode())
    return lines


async def stop_and_read_stderr(proc: asyncio.subprocess.Process) -> str:
    assert proc.stderr is not None
    proc.send_signal(signal.SIGINT)
    err = await asyncio.wait_for(proc.stderr.read(), 30)
    await asyncio.wait_for(proc.wait(), 30)
    return err.decode()


@pytest.mark.parametrize("flag", [False, True])
async def test_demo_listens_where_the_environment_says_unless_port_is_given(
    tmp_path: Path, flag: bool
) -> None:
    env_port, flag_port = free_port(), free_port()
    args = ("--port", str(flag_port)) if flag else ()
    env = {"CALLTRACKING_HTTP_PORT": str(env_port), "CALLTRACKING_ADMIN_TOKEN": "demo-admin-1"}
    async with demo_process(tmp_path, *args, env=env) as (proc, _):
        out = "".join(await read_until_running(proc))
        port = flag_port if flag else env_port
        assert f"http://127.0.0.1:{port}/dashboard/" in out
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": "Bearer demo-admin-1"}  # the admin token setting applies
            async with http.get(f"http://127.0.0.1:{port}/api/v1/accounts", headers=headers) as r:
                assert r.status == 200
                assert [a["name"] for a in (await r.json())["accounts"]] == ["Demo"]
        err = await stop_and_read_stderr(proc)
    assert "alembic" not in err.lower()
    assert "INFO alembic" not in err


async def test_demo_says_in_one_line_that_its_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        async with demo_process(tmp_path, "--port", str(port)) as (proc, _):
            _out, err = await asyncio.wait_for(proc.communicate(), START_S)
    assert proc.returncode == 1
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert f"port {port} on 127.0.0.1 is already in use" in lines[0]


async def test_the_demo_account_creates_a_site_with_default_settings_and_pages_have_an_icon(
    tmp_path: Path,
) -> None:
    port, ready, stop = free_port(), asyncio.Event(), asyncio.Event()
    infos: list[DemoInfo] = []

    def on_ready(info: DemoInfo) -> None:
        infos.append(info)
        ready.set()

    demo = asyncio.create_task(
        run_demo(Config(), port=port, data=tmp_path / "data", ready=on_ready, stop=stop)
    )
    try:
        await asyncio.wait_for(ready.wait(), START_S)
        base, token = infos[0].base_url, infos[0].token
        body = {
            "name": "My shop",
            "domains": ["shop.example"],
            "defaults": {
                "initial": "+74958880001",
                "expired": "+74958880002",
                "untracked": "+74958880003",
            },
        }
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
            async with http.post(f"{base}/api/v1/sites", json=body) as response:
                answer = await response.json()
                assert response.status == 201, answer
            assert answer["settings"]["pool_max"] == 20  # the default, unchanged
            async with http.get(f"{base}/favicon.ico") as response:
                icon = await response.read()
                assert (response.status, response.content_type) == (200, "image/x-icon")
            assert icon[:4] == b"\x00\x00\x01\x00"  # an ICO header
    finally:
        stop.set()
        assert await asyncio.wait_for(demo, 30) == 0
