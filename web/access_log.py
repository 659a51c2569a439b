"""The HTTP access log, with what must not be logged taken out.

Rules: a caller's number in a path (`DELETE /api/v1/callers/+79161234567`) is masked to its
first four and last two characters; a token named in a path (`DELETE /api/v1/tokens/...` takes
the whole token too) keeps only its 12-character prefix; the `sig` of a signed recording URL
(replayable until it expires) and any `token` query value are replaced by `<redacted>`; the
path is logged as sent (percent-encoded) and through `%r`, so it cannot break a line or forge
another one.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

_CALLER = re.compile(r"(/callers/)([^/?]+)")
_TOKEN = re.compile(r"(/tokens/[^/?]{0,12})[^/?]*")
_SECRET_QUERY = re.compile(r"(?i)([?&](?:sig|token)=)[^&]*")


def mask_number(value: str) -> str:
    return value[:4] + "*" * max(len(value) - 6, 3) + value[-2:] if len(value) > 6 else "***"


def redact(path_qs: str) -> str:
    """The request target with callers' numbers masked and signatures removed."""
    path_qs = _CALLER.sub(lambda m: m.group(1) + mask_number(unquote(m.group(2))), path_qs)
    path_qs = _TOKEN.sub(r"\1...", path_qs)
    return _SECRET_QUERY.sub(r"\1<redacted>", path_qs)


class RedactingAccessLogger(AbstractAccessLogger):
    __slots__ = ()  # aiohttp makes one per connection; the base class has slots

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        # A websocket is logged when it closes; visitor sockets come and go by the thousand and
        # the hub sums them up, so their lines are kept for debug level.
        level = logging.DEBUG if response.status == 101 else logging.INFO
        if not self.logger.isEnabledFor(level):
            # Redacting the path alone was ~5% of a visitor socket's close (bench.nodes_bench).
            return
        self.logger.log(
            level,
            '%s "%s %r" %s %s %.3fs %r',
            request.remote,
            request.method,
            redact(request.raw_path)[:500],
            response.status,
            response.body_length,
            time,
            request.headers.get("User-Agent", "-")[:200],
        )
