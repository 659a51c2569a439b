"""What a visitor websocket lets go of once its upgrade is done (memory per held socket).

aiohttp keeps, for the whole life of an upgraded connection, objects that only the handshake
needed: its HTTP request parser (llhttp's state and buffers, ~1.9 KiB: it is dropped anyway
when the connection is lost) and the response's headers, already sent. A node holding 10,000
tabs holds 10,000 of each (bench/ws_bench.py).

Rules kept here:
- the HTTP parser is dropped only once the websocket parser has taken the connection over
  (aiohttp then feeds every byte to that one and never reads its HTTP parser again, except
  behind an `is not None` check);
- nothing the access log reads at close (status, method, path, User-Agent: the request's,
  not the response's headers) is dropped;
- with an aiohttp that keeps these elsewhere, nothing is touched.
"""

from __future__ import annotations

from aiohttp import web


def shed_after_upgrade(request: web.Request, ws: web.WebSocketResponse) -> None:
    protocol = request.protocol
    # `_parser` and `_payload_parser` are aiohttp's (web_protocol.RequestHandler); the parser is
    # set to None in its own connection_lost, which every read of it allows for.
    if getattr(protocol, "_payload_parser", None) is not None and hasattr(protocol, "_parser"):
        protocol._parser = None
    if ws.prepared:
        ws.headers.clear()  # sent with the 101; aiohttp reads them only before they are sent
