"""One HTTP request to an analytics target, with the failures every target shares turned into
outcomes: no answer in time or a broken connection is `RetryLater`; redirects are never followed
(an API that moves is a configuration problem, not something to chase). Secrets never reach the
reason text.

An answer is read up to `MAX_ANSWER_BYTES` and the connection is then dropped: a target that
streams without end costs a few buffers, not the memory of the process that also serves web,
AGI and AMI. A target on a refused address (`targets.TargetRefused`) is `Hopeless`: trying
again reaches the same address."""

from __future__ import annotations

from typing import Any

import aiohttp

from calltracking.exporters.outcome import Hopeless, RetryLater
from calltracking.exporters.targets import refusal

# Targets answer with a status and a few lines of JSON; nothing they say needs more.
MAX_ANSWER_BYTES = 64 * 1024


async def request(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    detail: str,
    timeout_s: float,
    secret: str = "",
    **kwargs: Any,
) -> tuple[int, bytes] | RetryLater | Hopeless:
    """(status, body at most MAX_ANSWER_BYTES long), RetryLater when the target could not be
    reached, Hopeless when its address is refused."""
    try:
        async with session.request(
            method,
            url,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            allow_redirects=False,
            **kwargs,
        ) as response:
            return response.status, await read_capped(response, MAX_ANSWER_BYTES)
    except TimeoutError:
        return RetryLater(f"{detail}: no answer within {timeout_s} s")
    except aiohttp.ClientError as exc:
        refused = refusal(exc)
        if refused is not None:
            return Hopeless(f"{detail}: target refused: {refused}")
        text = f"{type(exc).__name__}: {exc}"
        return RetryLater(f"{detail}: {text.replace(secret, '****') if secret else text}")


async def read_capped(response: aiohttp.ClientResponse, cap: int) -> bytes:
    """At most `cap` bytes of the body; the connection is closed (not reused) when more remain."""
    chunks: list[bytes] = []
    size = 0
    while size < cap:
        chunk = await response.content.read(cap - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if not response.content.at_eof():
        response.close()
    return b"".join(chunks)
