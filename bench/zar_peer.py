"""zar itself (totalhack/zar) as `bench.peer_bench`'s peer: stood up from a local checkout,
spoken to as its JS client speaks to it.

Nothing of zar is in this repository: the bench is given a checkout (`--zar`) and a Python that
has zar's dependencies (`--zar-python`). Setup, once (the venv from the package index, with the
versions its backend/app/pyproject.toml allows, plus uvicorn[standard], which its image ships):

    git clone <zar> /tmp/zar
    python3.11 -m venv /tmp/zarvenv
    /tmp/zarvenv/bin/pip install "uvicorn[standard]>=0.34,<0.35" "fastapi>=0.131,<0.132" \
        "requests>=2.23,<3" "geoip2>=5.2,<6" "tenacity>=6.1,<7" "pydantic>=2.10.6,<3" \
        "pydantic-settings>=2.8,<3" "gunicorn>=23,<24" "jinja2>=2.11.2,<3" "markupsafe<2.1" \
        "alembic>=1.4.2,<2" "sqlalchemy>=1.4.50,<2" "pymysql==1.1.1" \
        "databases[aiomysql]>=0.8,<0.9" "redis>=3.5.3,<4" "tlbx>=0.1.21" "rollbar>=1.2,<2" \
        "pgeocode==0.5.0"

zar loads a US postal-code table when it starts (pgeocode, used only to price calls by distance);
with no network it would download and fail, so each run points PGEOCODE_DATA_DIR at a one-row
table of its own.

Each run, as zar's docker image does (prestart.sh, then the image's gunicorn):
1. a throwaway redis-server with a password, as zar's compose file runs it, on 127.0.0.2:6379:
   zar always dials port 6379, and 127.0.0.1:6379 may be someone else's Redis;
2. the MySQL database `zar` (zar's SQL names it) is DROPPED and created anew on `--zar-db-url`,
   `alembic upgrade head` builds its tables, one pool (id 1, random leasing, zar's default
   properties) gets N numbers, and `app/backend_pre_start.py` loads the pool into Redis;
3. `gunicorn -k uvicorn.workers.UvicornWorker app.main:app` with the image's defaults: workers =
   max(cores, 2), keep-alive 5 s, log level info, access log to stdout (here a log file).
A new visitor is zar's first call, `POST /api/v2/page` with `?pl=1` on the page URL: it records
the page in MySQL and leases a number for the session. A held visitor renews with
`POST /api/v2/number_pool` every 30 s (the client's default), sending back the cookies `/page` set.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import secrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import DESKTOP_UA, LOOPBACK, ORIGIN
from bench.redis_child import free_port, redis_server

REDIS_HOST = "127.0.0.2"
REDIS_PORT = 6379  # zar's number_pool.py dials this port whatever it is told
DEFAULT_DB_URL = "mysql+pymysql://root@127.0.0.1:3306/zar"
POOL_ID = 1
RENEW_S = 30.0  # NUMBER_POOL_RENEWAL_INTERVAL_MS in zar's frontend/src/zar.js
API = "/api/v2"
PAGE_URL = f"{ORIGIN}/?pl=1&utm_source=bench"
REFERRER = "https://www.google.com/"
READY_S = 60.0
STEP_S = 120.0
STOP_S = 15.0
PGEOCODE_HEADER = (
    "country_code,postal_code,place_name,state_name,state_code,county_name,county_code,"
    "community_name,community_code,latitude,longitude,accuracy"
)
PGEOCODE_ROW = "US,10001,New York,New York,NY,New York,061,,,40.7484,-73.9967,4"

# Run by zar's Python (it has pymysql and sqlalchemy): `reset URL` drops and creates the
# database; `seed URL` reads numbers on stdin and stores one active pool holding them.
DB_SCRIPT = """
import sys
import pymysql
from sqlalchemy.engine import make_url
url = make_url(sys.argv[2])
assert url.database == "zar", "zar's SQL names its database zar"
conn = pymysql.connect(host=url.host, port=url.port or 3306, user=url.username,
                       password=url.password or "", autocommit=True)
cur = conn.cursor()
if sys.argv[1] == "reset":
    cur.execute("DROP DATABASE IF EXISTS zar")
    cur.execute("CREATE DATABASE zar")
else:
    numbers = sys.stdin.read().split()
    cur.execute("INSERT INTO zar.pools (id, name, active, properties) "
                "VALUES (%s, 'bench', 1, '{}')", (int(sys.argv[3]),))
    cur.executemany("INSERT INTO zar.pool_numbers (pool_id, number) VALUES (%s, %s)",
                    [(int(sys.argv[3]), n) for n in numbers])
conn.close()
"""


@dataclass
class ZarServer:
    url: str
    parts: dict[str, list[int]]  # gunicorn (master and workers), redis, mysql: their pids
    log: Path
    workers: int

    @property
    def pids(self) -> list[int]:
        return [pid for pids in self.parts.values() for pid in pids]


def default_workers() -> int:
    """The tiangolo/uvicorn-gunicorn image's default: WORKERS_PER_CORE (1) x cores, at least 2."""
    return max(multiprocessing.cpu_count(), 2)


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            text = stat.read_text()
            if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def database_server_pid() -> int | None:
    """The local MariaDB/MySQL server, whose CPU counts for zar like its Redis."""
    for comm in Path("/proc").glob("[0-9]*/comm"):
        with contextlib.suppress(OSError):
            if comm.read_text().strip() in {"mariadbd", "mysqld"}:
                return int(comm.parent.name)
    return None


async def _run(argv: Sequence[str], cwd: Path, env: dict[str, str], stdin: bytes = b"") -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(STEP_S):
        out, _ = await proc.communicate(stdin)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} failed:\n{out.decode(errors='replace')[-2000:]}")


def zar_env(app_dir: Path, db_url: str, redis_password: str, scratch: Path) -> dict[str, str]:
    """zar's settings as its .env and compose file give them, with the pool on."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(scratch),
        "PYTHONPATH": str(app_dir),
        "PGEOCODE_DATA_DIR": str(scratch),
        "SERVER_NAME": "localhost",
        "SERVER_HOST": "https://localhost",
        "PROJECT_NAME": "zar",
        "DEBUG": "false",
        "ENABLE_DOCS": "false",
        "BACKEND_CORS_ORIGINS": json.dumps(["http://localhost", "https://localhost", ORIGIN]),
        "SQLALCHEMY_DATABASE_URI": db_url,
        "SQLALCHEMY_SILENCE_UBER_WARNING": "1",
        "REDIS_HOST": REDIS_HOST,
        "REDIS_PASSWORD": redis_password,
        "ROLLBAR_ENABLED": "false",
        "ROLLBAR_ENV": "zar-bench",
        "ROLLBAR_KEY": "none",
        "NUMBER_POOL_ENABLED": "true",
        "NUMBER_POOL_KEY": secrets.token_hex(8),
        "KEEP_ALIVE": "5",
    }


@contextlib.asynccontextmanager
async def zar_server(
    checkout: Path,
    python: Path,
    numbers: Sequence[str],
    db_url: str = DEFAULT_DB_URL,
    workers: int | None = None,
) -> AsyncIterator[ZarServer]:
    app_dir = checkout / "backend" / "app"
    if not (app_dir / "app" / "number_pool.py").is_file():
        raise SystemExit(f"{checkout} is not a zar checkout (no backend/app/app/number_pool.py)")
    password = secrets.token_hex(12)
    with tempfile.TemporaryDirectory(prefix="zar-bench-") as scratch_name:
        scratch = Path(scratch_name)
        (scratch / "US.txt").write_text(f"{PGEOCODE_HEADER}\n{PGEOCODE_ROW}\n")
        env = zar_env(app_dir, db_url, password, scratch)
        py = str(python)
        async with redis_server(REDIS_HOST, REDIS_PORT, password) as (_, redis_pid):
            await _run([py, "-c", DB_SCRIPT, "reset", db_url], app_dir, env)
            await _run([py, "-m", "alembic", "upgrade", "head"], app_dir, env)
            await _run(
                [py, "-c", DB_SCRIPT, "seed", db_url, str(POOL_ID)],
                app_dir,
                env,
                "\n".join(numbers).encode(),
            )
            # prestart.sh: wait for the database and load the pools into Redis, initial data
            await _run([py, "app/backend_pre_start.py"], app_dir, env)
            await _run([py, "app/initial_data.py"], app_dir, env)
            port = free_port()
            workers = workers or default_workers()
            log = scratch / "zar.log"
            with log.open("wb") as log_file:
                proc = await asyncio.create_subprocess_exec(
                    py,
                    "-m",
                    "gunicorn",
                    "-k",
                    "uvicorn.workers.UvicornWorker",
                    "--workers",
                    str(workers),
                    "--bind",
                    f"{LOOPBACK}:{port}",
                    "--keep-alive",
                    "5",
                    "--timeout",
                    "120",
                    "--graceful-timeout",
                    "120",
                    "--log-level",
                    "info",
                    "--access-logfile",
                    "-",
                    "--error-logfile",
                    "-",
                    "--worker-tmp-dir",
                    "/dev/shm",
                    "app.main:app",
                    cwd=app_dir,
                    env=env,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=asyncio.subprocess.STDOUT,
                )
            try:
                url = f"http://{LOOPBACK}:{port}{API}"
                await _wait_ready(proc, url, workers, log)
                db_pid = database_server_pid()
                parts = {
                    "gunicorn": [proc.pid, *children_of(proc.pid)],
                    "redis": [redis_pid],
                    "mysql": [] if db_pid is None else [db_pid],
                }
                yield ZarServer(url, parts, log, workers)
            finally:
                await _stop(proc)


async def _wait_ready(proc: asyncio.subprocess.Process, url: str, workers: int, log: Path) -> None:
    async with aiohttp.ClientSession() as http:
        try:
            async with asyncio.timeout(READY_S):
                while len(children_of(proc.pid)) < workers or not await _ok(http, url):
                    if proc.returncode is not None:
                        raise RuntimeError("zar's gunicorn exited")
                    await asyncio.sleep(0.2)
        except (TimeoutError, RuntimeError) as exc:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"zar did not start ({exc!r}); its log ends:\n{tail}") from exc
    # each worker imports the app on its own; give the slower one a moment after the first OK
    await asyncio.sleep(1.0)


async def _ok(http: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with http.get(f"{url}/ok") as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False


async def _stop(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        async with asyncio.timeout(STOP_S):
            await proc.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


# -- the visitor, as zar's JS client ---------------------------------------------------------------
@dataclass
class Visitor:
    """One browser tab: its vid (session storage), cookies and leased number."""

    index: int
    vid: dict[str, Any] = field(default_factory=dict)
    cookie: str = ""
    number: str | None = None

    def __post_init__(self) -> None:
        now_ms = int(time.time() * 1000)
        self.vid = {
            "id": f"{now_ms:x}.{self.index:x}{secrets.token_hex(4)}",
            "t": now_ms,
            "origReferrer": REFERRER,
            "isNew": True,
        }

    def headers(self) -> dict[str, str]:
        i = self.index
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "Origin": ORIGIN,
            "Referer": PAGE_URL,
            "User-Agent": DESKTOP_UA,
            # zar sits behind a proxy; it stores the client address from this header
            "X-Forwarded-For": f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
        }
        if self.cookie:
            headers["Cookie"] = self.cookie
        return headers

    def page_body(self) -> dict[str, Any]:
        """analytics.page() with zar's plugin: page data, its ids, the pool id and context."""
        return {
            "type": "page",
            "properties": {
                "title": "Shop",
                "url": PAGE_URL,
                "width": 1280,
                "height": 800,
                "referrer": REFERRER,
                "zar": {"vid": self.vid},
                "is_bot": False,
                "pool_id": POOL_ID,
                "pool_context": {"url": PAGE_URL},
            },
        }

    def renew_body(self) -> dict[str, Any]:
        """getPoolNumber() on the renewal timer: the held number and the pool context."""
        return {
            "pool_id": POOL_ID,
            "number": self.number,
            "context": {"url": PAGE_URL},
            "properties": {"zar": {"vid": self.vid}},
        }


def cookie_header(previous: str, set_now: Mapping[str, str]) -> str:
    """What a browser sends back: the cookies set so far, later ones replacing earlier ones."""
    jar = dict(part.split("=", 1) for part in previous.split("; ") if "=" in part)
    jar.update(set_now)
    return "; ".join(f"{name}={value}" for name, value in jar.items())


def set_cookies(response: aiohttp.ClientResponse) -> dict[str, str]:
    return {name: morsel.value for name, morsel in response.cookies.items()}


async def arrive(http: aiohttp.ClientSession, url: str, visitor: Visitor) -> str:
    """The page view that leases a number: 'dynamic' when one was leased, else zar's answer."""
    async with http.post(f"{url}/page", json=visitor.page_body(), headers=visitor.headers()) as r:
        body = await r.json(content_type=None) if r.status == 200 else {}
        visitor.cookie = cookie_header(visitor.cookie, set_cookies(r))
    pool = body.get("pool_data") or {}
    if pool.get("status") == "success" and pool.get("number"):
        visitor.number = str(pool["number"])
        return "dynamic"
    return str(pool.get("msg") or f"http {r.status}")


async def renew(http: aiohttp.ClientSession, url: str, visitor: Visitor) -> str:
    """One renewal: 'renewed' when zar kept the visitor's number."""
    if visitor.number is None:
        return "no number"
    body = visitor.renew_body()
    async with http.post(f"{url}/number_pool", json=body, headers=visitor.headers()) as r:
        answer = await r.json(content_type=None) if r.status == 200 else {}
    if answer.get("status") == "success" and answer.get("number") == visitor.number:
        return "renewed"
    return str(answer.get("msg") or f"http {r.status}")


def main() -> None:
    """`python -m bench.zar_peer CHECKOUT PYTHON [N]`: start zar, lease one number, stop."""
    checkout, python = Path(sys.argv[1]), Path(sys.argv[2])
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 10

    async def smoke() -> None:
        numbers = [f"+7495111{i:04d}" for i in range(1, n + 1)]
        async with zar_server(checkout, python, numbers) as zar:
            jar = aiohttp.DummyCookieJar()
            async with aiohttp.ClientSession(cookie_jar=jar) as http:
                visitor = Visitor(0)
                print("page:", await arrive(http, zar.url, visitor), visitor.number)
                print("renew:", await renew(http, zar.url, visitor))
            print("pids:", zar.parts, "workers:", zar.workers)
            print(zar.log.read_text(errors="replace")[-1500:])

    asyncio.run(smoke())


if __name__ == "__main__":
    main()
