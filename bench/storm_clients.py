"""Client processes for `bench.reconnect_bench`'s storm: browsers are many machines, and one
Python client spent more CPU opening 10,000 sockets (about 0.8 ms each through aiohttp, 0.4
through the lean client of bench/ws_client.py used here) than a bare server spends serving them,
so the storm's tabs are split across `--clients` of these.

Protocol on stdin/stdout, one JSON line each way: the parent sends
`{"port", "site", "tabs": [[visitor_index, visitor_id], ...]}`, the worker answers
`{"ready": true}` once its session is set up, then waits for a `go` line, opens every tab at
once and answers `{"tabs": [[visitor_id, number or null, seconds], ...], "cpu_s": float}`.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from bench.common import cpu_seconds, raise_nofile

LINE_LIMIT = 1 << 24  # a job or an answer is one line of up to ~100 bytes a tab


async def _worker() -> None:
    from bench.reconnect_bench import Tab, open_tab_lean
    from bench.ws_client import LeanSocket

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=LINE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    job: dict[str, Any] = json.loads(await reader.readline())
    tabs = [Tab(index, visitor) for index, visitor in job["tabs"]]
    raise_nofile(4 * len(tabs) + 1024)
    print(json.dumps({"ready": True}), flush=True)
    await reader.readline()  # go
    cpu0 = cpu_seconds()
    results = await asyncio.gather(
        *(open_tab_lean(job["port"], job["site"], tab) for tab in tabs),
        return_exceptions=True,
    )
    cpu_s = cpu_seconds() - cpu0
    answer = [
        [tab.visitor_id, None if isinstance(result, BaseException) else tab.number, tab.seconds]
        for tab, result in zip(tabs, results, strict=True)
    ]
    print(json.dumps({"tabs": answer, "cpu_s": cpu_s}), flush=True)
    for tab in tabs:
        if isinstance(tab.ws, LeanSocket):
            tab.ws.close()


def main() -> None:
    asyncio.run(_worker())


if __name__ == "__main__":
    main()
