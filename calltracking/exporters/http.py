"""One HTTP request to an analytics target, with the failures every target shares turned into
outcomes: no answer in time or a broken connection is `RetryLater`; redirects are never followed
(an API that moves is a configuration problem, not something to chase). Secrets never reach the
reason text."""

from __future__ import annotations

from typing import Any

import aiohttp

from calltracking.exporters.outcome import RetryLater


async def request(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    detail: str,
    timeout_s: float,
    secret: str = "",
    **kwargs: Any,
) -> tuple[int, bytes] | RetryLater:
    """(status, body), or RetryLater when the target could not be reached."""
    try:
        async with session.request(
            method,
            url,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            allow_redirects=False,
            **kwargs,
        ) as response:
            return response.status, await response.read()
    except TimeoutError:
        return RetryLater(f"{detail}: no answer within {timeout_s} s")
    except aiohttp.ClientError as exc:
        text = f"{type(exc).__name__}: {exc}"
        return RetryLater(f"{detail}: {text.replace(secret, '****') if secret else text}")
