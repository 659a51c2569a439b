"""What a visitor websocket lets go of once the socket is established (memory per held socket).

aiohttp keeps, for the whole life of an upgraded connection, objects only the handshake and the
hello needed: its HTTP request parser (llhttp's state and buffers, ~1.9 KiB; aiohttp itself
drops it only when the connection is lost), the response's headers (already sent) and the
request's parsed headers (~1.2 KiB for the bench's ten, more for a browser's). A node holding
10,000 tabs holds 10,000 of each (bench/ws_bench.py).

Rules kept here:
- the HTTP parser is dropped only once the websocket parser has taken the connection over
  (aiohttp then feeds every byte to that one and reads its HTTP parser only behind an
  `is not None` check, as after its own connection_lost);
- the request's headers are emptied only after the hello, which reads `User-Agent` and
  `Origin`; `User-Agent` stays, since the access log reads it when the socket closes (the raw
  header lines stay too: they are immutable);
- with an aiohttp or multidict that keeps these some other way, nothing is touched.
"""

from __future__ import annotations

import gc

from aiohttp import hdrs, web
from multidict import CIMultiDict

# web/access_log.py logs it when the socket closes. aiohttp's spelling is an `istr`, whose
# lower-case form multidict keeps with it: re-added under a plain str, each socket would hold
# its own lower-cased copy (~200 bytes per socket with the entry, measured).
KEPT_HEADER = hdrs.USER_AGENT


def shed_after_upgrade(request: web.Request, ws: web.WebSocketResponse) -> None:
    protocol = request.protocol
    # `_parser` and `_payload_parser` are aiohttp's (web_protocol.RequestHandler).
    if getattr(protocol, "_payload_parser", None) is not None and hasattr(protocol, "_parser"):
        protocol._parser = None
    if ws.prepared:
        ws.headers.clear()  # sent with the 101; aiohttp reads them only before they are sent


def shed_after_hello(request: web.Request) -> None:
    headers = request.headers  # a read-only view of the dict the parser filled
    # The view's only referent of that type is the dict it shows (multidict's C and Python
    # views alike); clearing it is what the view is a view of.
    underlying = [r for r in gc.get_referents(headers) if isinstance(r, CIMultiDict)]
    if len(underlying) != 1:
        return
    kept = headers.getall(KEPT_HEADER, [])
    underlying[0].clear()
    for value in kept:
        underlying[0].add(KEPT_HEADER, value)
