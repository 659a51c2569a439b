"""A minimal Redis-backed number pool, the peer `bench.peer_bench` measures the tracker against.

It has zar's shape (totalhack/zar: a number per visitor, renewed by an HTTP request every 30 s,
its pool in Redis): `GET /number?visitor=ID` renews the visitor's lease (`EXPIRE`) when it holds
one, else takes a number with one `SPOP` and stores the lease with a 60 s TTL; an empty pool
answers `untracked`. Nothing else (no attribution, no outbox, no presence), so it is a floor.
Redis is spoken over a few pooled connections with a tiny RESP client (no dependency).
Ready line: `{"port", "pid"}`; serves until stdin closes or `--max-seconds` pass.
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web

from bench.common import LOOPBACK, quiet_logging, serve_until_stdin_closes

LEASE_TTL_S = 60
CONNECTIONS = 8
POOL_KEY = "pool"


class Redis:
    """RESP over `CONNECTIONS` connections, one command in flight on each."""

    def __init__(self) -> None:
        self._idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )

    async def connect(self, port: int) -> None:
        for _ in range(CONNECTIONS):
            self._idle.put_nowait(await asyncio.open_connection(LOOPBACK, port))

    async def command(self, *args: str) -> bytes | int | None:
        reader, writer = await self._idle.get()
        try:
            parts = [f"*{len(args)}\r\n".encode()]
            for arg in args:
                data = arg.encode()
                parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
            writer.write(b"".join(parts))
            return await _reply(reader)
        finally:
            self._idle.put_nowait((reader, writer))

    async def close(self) -> None:
        while not self._idle.empty():
            _, writer = self._idle.get_nowait()
            writer.close()


REDIS = web.AppKey("redis", Redis)


async def _reply(reader: asyncio.StreamReader) -> bytes | int | None:
    line = (await reader.readline()).rstrip(b"\r\n")
    kind, rest = line[:1], line[1:]
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        return (await reader.readexactly(size + 2))[:-2]
    if kind == b":":
        return int(rest)
    if kind == b"+":
        return rest
    raise ConnectionError(f"redis: {line!r}")


async def number(request: web.Request) -> web.Response:
    redis = request.app[REDIS]
    visitor = request.query.get("visitor", "")
    key = f"lease:{visitor}"
    held = await redis.command("GET", key) if visitor else None
    if isinstance(held, bytes):
        await redis.command("EXPIRE", key, str(LEASE_TTL_S))
        return web.json_response({"kind": "dynamic", "number": held.decode()})
    taken = await redis.command("SPOP", POOL_KEY)
    if not isinstance(taken, bytes):
        return web.json_response({"kind": "untracked"})
    await redis.command("SET", key, taken.decode(), "EX", str(LEASE_TTL_S))
    return web.json_response({"kind": "dynamic", "number": taken.decode()})


async def serve(redis_port: int, max_s: float) -> None:
    redis = Redis()
    await redis.connect(redis_port)
    app = web.Application()
    app[REDIS] = redis
    app.router.add_get("/number", number)
    try:
        await serve_until_stdin_closes(app, max_s)
    finally:
        await redis.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis-port", type=int, required=True)
    parser.add_argument("--max-seconds", type=float, default=900.0)
    args = parser.parse_args()
    quiet_logging()
    asyncio.run(serve(args.redis_port, args.max_seconds))


if __name__ == "__main__":
    main()
