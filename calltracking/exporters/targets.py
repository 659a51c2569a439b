"""HTTP sessions for webhooks that reach only public addresses (CALLTRACKING_WEBHOOK_ALLOW_PRIVATE).

Rules kept here:
- Unless private targets are allowed, a webhook never connects to a loopback, private,
  link-local, multicast, unspecified or reserved address (`core.netpolicy.address_refusal`).
- Names are judged on what they resolve to, and the socket is judged again on the exact address
  it is about to connect to (the connector's socket factory), so a name that resolves to a
  public address at one lookup and to 127.0.0.1 at the next (DNS rebinding) is still refused.
- A refusal is `TargetRefused`, an `OSError` that aiohttp wraps in a `ClientConnectorError`
  (`.os_error`); `targets.refusal` finds it, so senders turn it into a failed delivery, not a
  retry.
- Answers are not decompressed: a small compressed answer cannot grow past the read cap.
- `resolver` is a seam: tests point names at the addresses they want without a DNS server.
"""

from __future__ import annotations

import socket
from typing import Any

import aiohttp
from aiohappyeyeballs import AddrInfoType
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from calltracking.core.netpolicy import address_refusal, parse_address


class TargetRefused(OSError):
    """The target is on an address webhooks may not reach."""


def refusal(exc: BaseException) -> TargetRefused | None:
    """The `TargetRefused` behind an aiohttp connection error, if that is what it was."""
    seen: BaseException | None = exc
    for _ in range(4):  # aiohttp wraps once; stay finite whatever the chain
        if seen is None:
            return None
        if isinstance(seen, TargetRefused):
            return seen
        seen = getattr(seen, "os_error", None) or seen.__cause__
    return None


def _refusal_of(host: str) -> str | None:
    address = parse_address(host)
    return f"{host} is not an address" if address is None else address_refusal(address)


class PublicOnlyResolver(AbstractResolver):
    """Resolves with `inner` and keeps only public addresses; none left is a refusal."""

    def __init__(self, inner: AbstractResolver) -> None:
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        kept = [r for r in results if _refusal_of(r["host"]) is None]
        if not kept:
            reasons = sorted({_refusal_of(r["host"]) or "" for r in results})
            raise TargetRefused(f"{host} resolves only to refused addresses: {'; '.join(reasons)}")
        return kept

    async def close(self) -> None:
        await self._inner.close()


def public_only_socket(addr_info: AddrInfoType) -> socket.socket:
    """The connector's socket factory: the last check, on the address about to be connected."""
    family, type_, proto, _, sockaddr = addr_info
    reason = _refusal_of(str(sockaddr[0]))
    if reason is not None:
        raise TargetRefused(reason)
    return socket.socket(family=family, type=type_, proto=proto)


def webhook_session(
    *, allow_private: bool, resolver: AbstractResolver | None = None, **kwargs: Any
) -> aiohttp.ClientSession:
    """A session for webhook deliveries; call inside the running loop, close when done."""
    inner = resolver if resolver is not None else DefaultResolver()
    if allow_private:
        connector = aiohttp.TCPConnector(resolver=inner)
    else:
        connector = aiohttp.TCPConnector(
            resolver=PublicOnlyResolver(inner), socket_factory=public_only_socket
        )
    return aiohttp.ClientSession(connector=connector, auto_decompress=False, **kwargs)
