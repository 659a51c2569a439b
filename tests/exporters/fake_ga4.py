"""A local stand-in for GA4's Measurement Protocol endpoints, as strict as Google documents.

Written apart from `calltracking.exporters.ga4` (it shares no code with it), so a test that the
fake accepts what our builder makes is a second opinion, not the same rules twice.

- `POST /mp/collect?measurement_id=G-...&api_secret=...`: a JSON body checked against the
  documented limits (client_id `<digits>.<digits>` as read from `_ga`, at most 25 events, names
  `[A-Za-z][A-Za-z0-9_]*` up to 40 characters and not reserved, at most 25 params, string values
  up to 100 characters, body under 130 kB, `timestamp_micros` neither in the future nor more than
  72 hours back). Valid: 204, as GA4 answers. Where GA4 would silently drop the hit, the fake
  answers 400 with the validation messages, so a test sees it; a missing or wrong secret is 403.
- `POST /debug/mp/collect`: 200 with `{"validationMessages": [...]}` (no secret check, as GA4).
- `mode`: "ok", "error500" (answers 500), "slow" (answers only after `slow_s` or at shutdown).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")
_CLIENT_ID = re.compile(r"^\d+\.\d+$")
_MEASUREMENT_ID = re.compile(r"^G-[A-Z0-9]{4,16}$")
_RESERVED_EVENTS = {
    "ad_activeview", "ad_click", "ad_exposure", "ad_impression", "ad_query", "ad_reward",
    "adunit_exposure", "app_clear_data", "app_exception", "app_install", "app_remove",
    "app_store_refund", "app_update", "app_upgrade", "click", "dynamic_link_app_open",
    "dynamic_link_app_update", "dynamic_link_first_open", "error", "file_download",
    "firebase_campaign", "first_open", "first_visit", "form_start", "form_submit",
    "in_app_purchase", "notification_dismiss", "notification_foreground", "notification_open",
    "notification_receive", "os_update", "page_view", "screen_view", "scroll",
    "session_start", "user_engagement", "view_complete", "video_progress", "video_start",
    "view_search_results",
}  # fmt: skip
_RESERVED_PREFIXES = ("_", "ga_", "google_", "firebase_")
_HOUR_US = 3600 * 1_000_000


def _message(path: str, description: str, code: str) -> dict[str, str]:
    return {"fieldPath": path, "description": description, "validationCode": code}


def ga4_problems(body: bytes, now: datetime) -> list[dict[str, str]]:
    """GA4's validation messages for a request body (empty when GA4 would take it)."""
    if len(body) >= 130_000:
        return [_message("", "Post body must be smaller than 130kB", "VALUE_OUT_OF_BOUNDS")]
    try:
        data = json.loads(body)
    except ValueError:
        return [_message("", "Unable to parse Measurement Protocol JSON payload", "VALUE_INVALID")]
    if not isinstance(data, dict):
        return [_message("", "Payload must be a JSON object", "VALUE_INVALID")]
    out: list[dict[str, str]] = []
    client_id = data.get("client_id")
    if not isinstance(client_id, str) or not client_id:
        out.append(_message("client_id", "client_id is required", "VALUE_REQUIRED"))
    elif not _CLIENT_ID.match(client_id):
        out.append(_message("client_id", f"client_id {client_id!r} is not valid", "VALUE_INVALID"))
    now_us = int(now.timestamp() * 1_000_000)
    out += _timestamp("timestamp_micros", data.get("timestamp_micros"), now_us)
    events = data.get("events")
    if not isinstance(events, list) or not events:
        out.append(_message("events", "events are required", "VALUE_REQUIRED"))
        return out
    if len(events) > 25:
        out.append(_message("events", "at most 25 events per request", "EXCEEDED_MAX_ENTITIES"))
    for i, event in enumerate(events):
        out += _event(f"events[{i}]", event, now_us)
    return out


def _timestamp(path: str, value: Any, now_us: int) -> list[dict[str, str]]:
    if value is None:
        return []
    if not isinstance(value, int) or isinstance(value, bool):
        return [_message(path, "timestamp_micros must be an integer", "VALUE_INVALID")]
    # One second of grace for the clock of the sender and of this fake differing a little.
    if value > now_us + 1_000_000:
        return [_message(path, "timestamp_micros is in the future", "VALUE_OUT_OF_BOUNDS")]
    if value < now_us - 72 * _HOUR_US:
        return [_message(path, "timestamp_micros is more than 72h back", "VALUE_OUT_OF_BOUNDS")]
    return []


def _event(path: str, event: Any, now_us: int) -> list[dict[str, str]]:
    if not isinstance(event, dict):
        return [_message(path, "event must be an object", "VALUE_INVALID")]
    out = _name(f"{path}.name", event.get("name"), _RESERVED_EVENTS)
    out += _timestamp(f"{path}.timestamp_micros", event.get("timestamp_micros"), now_us)
    params = event.get("params", {})
    if not isinstance(params, dict):
        return [*out, _message(f"{path}.params", "params must be an object", "VALUE_INVALID")]
    if len(params) > 25:
        out.append(_message(f"{path}.params", "at most 25 params", "EXCEEDED_MAX_ENTITIES"))
    for key, value in params.items():
        out += _name(f"{path}.params.{key}", key, {"firebase_conversion"})
        if isinstance(value, str) and len(value) > 100:
            out.append(_message(f"{path}.params.{key}", "value over 100", "VALUE_OUT_OF_BOUNDS"))
        elif isinstance(value, dict | list | bool) or value is None:
            out.append(_message(f"{path}.params.{key}", "value type", "VALUE_INVALID"))
    return out


def _name(path: str, name: Any, reserved: set[str]) -> list[dict[str, str]]:
    if not isinstance(name, str) or not _NAME.match(name):
        return [_message(path, f"name {name!r} is invalid", "NAME_INVALID")]
    if name in reserved or name.startswith(_RESERVED_PREFIXES):
        return [_message(path, f"name {name!r} is reserved", "NAME_RESERVED")]
    return []


@dataclass
class FakeGa4:
    api_secret: str = "s3cret-api"
    mode: str = "ok"
    slow_s: float = 5.0
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    received: list[dict[str, Any]] = field(default_factory=list)
    refused: list[list[dict[str, str]]] = field(default_factory=list)
    hits: int = 0
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/mp/collect", self._collect)
        app.router.add_post("/debug/mp/collect", self._debug)
        return app

    def release(self) -> None:
        """Let slow handlers finish (at shutdown)."""
        self._release.set()

    async def _collect(self, request: web.Request) -> web.Response:
        self.hits += 1
        if self.mode == "slow":
            with suppress(TimeoutError):
                await asyncio.wait_for(self._release.wait(), self.slow_s)
        if self.mode == "error500":
            return web.json_response({"error": "backend error"}, status=500)
        refusal = _query_problem(request.query, self.api_secret)
        if refusal is not None:
            return web.json_response({"error": refusal}, status=403)
        body = await request.read()
        problems = ga4_problems(body, self.clock())
        if problems:
            self.refused.append(problems)
            return web.json_response({"validationMessages": problems}, status=400)
        self.received.append(json.loads(body))
        return web.Response(status=204)

    async def _debug(self, request: web.Request) -> web.Response:
        problems = ga4_problems(await request.read(), self.clock())
        return web.json_response({"validationMessages": problems})


def _query_problem(query: Mapping[str, str], api_secret: str) -> str | None:
    if not _MEASUREMENT_ID.match(query.get("measurement_id", "")):
        return "measurement_id missing or malformed"
    if query.get("api_secret") != api_secret:
        return "api_secret missing or wrong"
    return None


@asynccontextmanager
async def running(fake: FakeGa4) -> AsyncIterator[str]:
    """Serve `fake` on 127.0.0.1 (a free port); yields the endpoint base URL."""
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        fake.release()
        await server.close()
