"""Webhooks reach only public addresses, follow no redirect and read a bounded answer.

The receivers are real HTTP servers on 127.0.0.1; names are pointed at addresses through the
session's resolver seam, since no DNS server is at hand.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestServer

from calltracking.core.events import Event
from calltracking.core.settings import WebhookTarget
from calltracking.exporters.http import MAX_ANSWER_BYTES, request
from calltracking.exporters.outcome import Hopeless, Sent
from calltracking.exporters.targets import (
    PublicOnlyResolver,
    TargetRefused,
    public_only_socket,
    webhook_session,
)
from calltracking.exporters.webhooks import deliver
from tests.exporters import NOW

HUGE = 400 * 1024 * 1024


class FakeResolver(AbstractResolver):
    """Names to addresses, as a DNS server under the tenant's control would answer."""

    def __init__(self, names: dict[str, list[str]]) -> None:
        self.names = names
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=0,
            )
            for address in self.names[host]
        ]

    async def close(self) -> None:
        return None


@dataclass
class Receiver:
    hits: list[str] = field(default_factory=list)
    redirect_to: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        self.hits.append(request.path)
        if self.redirect_to:
            raise web.HTTPFound(self.redirect_to)
        return web.Response(status=204)


async def _serve(receiver: Receiver) -> TestServer:
    app = web.Application()
    app.router.add_post("/{tail:.*}", receiver.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, TestServer]]:
    hook = Receiver()
    server = await _serve(hook)
    try:
        yield hook, server
    finally:
        await server.close()


def call_ended() -> Event:
    return Event(key="call.ended", id="ev-7", occurred_at=NOW, data={"id": "call-1"})


def target(url: str) -> WebhookTarget:
    return WebhookTarget(url=url, events=("call.*",), secret="whsec-0123456789")


async def test_a_loopback_target_is_refused_without_a_request(
    receiver: tuple[Receiver, TestServer],
) -> None:
    hook, server = receiver
    async with webhook_session(allow_private=False) as http:
        outcome = await deliver(http, target(str(server.make_url("/x"))), call_ended(), NOW)
    assert isinstance(outcome, Hopeless)
    assert "target refused" in outcome.reason
    assert "127.0.0.1 is a loopback address" in outcome.reason
    assert hook.hits == []


async def test_a_loopback_target_is_reached_when_the_operator_allows_private_targets(
    receiver: tuple[Receiver, TestServer],
) -> None:
    hook, server = receiver
    async with webhook_session(allow_private=True) as http:
        outcome = await deliver(
            http, target(str(server.make_url("/x"))), call_ended(), datetime.now(UTC)
        )
    assert isinstance(outcome, Sent)
    assert hook.hits == ["/x"]


async def test_a_name_that_resolves_to_loopback_is_refused(
    receiver: tuple[Receiver, TestServer],
) -> None:
    hook, server = receiver
    names = FakeResolver({"hooks.tenant.test": ["127.0.0.1"]})
    url = f"http://hooks.tenant.test:{server.port}/x"
    async with webhook_session(allow_private=False, resolver=names) as http:
        refused = await deliver(http, target(url), call_ended(), NOW)
    assert isinstance(refused, Hopeless)
    assert "hooks.tenant.test resolves only to refused addresses" in refused.reason
    assert names.asked == ["hooks.tenant.test"]
    # The same name, the same receiver: only the policy made the difference.
    async with webhook_session(allow_private=True, resolver=names) as http:
        allowed = await deliver(http, target(url), call_ended(), datetime.now(UTC))
    assert isinstance(allowed, Sent)
    assert hook.hits == ["/x"]


async def test_private_addresses_among_a_names_answers_are_dropped() -> None:
    names = FakeResolver({"mixed.test": ["10.0.0.7", "8.8.8.8", "::1", "169.254.169.254"]})
    kept = await PublicOnlyResolver(names).resolve("mixed.test", 443)
    assert [r["host"] for r in kept] == ["8.8.8.8"]


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "169.254.169.254", "224.0.0.1", "0.0.0.0", "::1", "fe80::1"],
)
def test_the_socket_factory_refuses_the_address_about_to_be_connected(address: str) -> None:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with pytest.raises(TargetRefused):
        public_only_socket((family, socket.SOCK_STREAM, 0, "", (address, 80)))


def test_the_socket_factory_lets_a_public_address_through() -> None:
    sock = public_only_socket((socket.AF_INET, socket.SOCK_STREAM, 0, "", ("8.8.8.8", 443)))
    sock.close()


async def test_a_redirect_is_not_followed(receiver: tuple[Receiver, TestServer]) -> None:
    elsewhere, elsewhere_server = receiver
    mover = Receiver(redirect_to=str(elsewhere_server.make_url("/internal")))
    server = await _serve(mover)
    try:
        async with webhook_session(allow_private=True) as http:
            outcome = await deliver(
                http, target(str(server.make_url("/hook"))), call_ended(), datetime.now(UTC)
            )
    finally:
        await server.close()
    assert isinstance(outcome, Hopeless)
    assert "HTTP 302" in outcome.reason
    assert mover.hits == ["/hook"]
    assert elsewhere.hits == []


@dataclass
class Firehose:
    """Answers 200 with a body of HUGE bytes, written as fast as the client takes them."""

    sent: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        chunk = b"x" * 65536
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % HUGE)
            while self.sent < HUGE:
                writer.write(chunk)
                await writer.drain()
                self.sent += len(chunk)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client hung up: what this test waits for
        finally:
            writer.close()
            self.done.set()


async def test_an_endless_answer_is_cut_off_after_the_cap() -> None:
    firehose = Firehose()
    server = await asyncio.start_server(firehose.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with webhook_session(allow_private=True) as http:
            answer = await request(
                http, "POST", f"http://127.0.0.1:{port}/", detail="test", timeout_s=60, data=b"{}"
            )
        await firehose.done.wait()
    finally:
        server.close()
        await server.wait_closed()
    assert isinstance(answer, tuple)
    status, body = answer
    assert status == 200
    assert len(body) == MAX_ANSWER_BYTES
    # Socket buffers on both sides hold a few MB at most; the 400 MB never left the server.
    assert firehose.sent < 32 * 1024 * 1024
