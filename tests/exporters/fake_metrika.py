"""A local stand-in for Yandex Metrika's calls-upload API, as strict as Yandex documents.

Shares no code with `calltracking.exporters.metrika`: it checks what it receives on its own.

- `POST /management/v1/counter/{id}/offline_conversions/upload_calls?client_id_type=CLIENT_ID`:
  `Authorization: OAuth <token>` (401 otherwise), the fake's counter (403 otherwise), a multipart
  field `file` holding a UTF-8 CSV whose header uses only Metrika's call columns, one id column,
  `DateTime`, and every column the CONTRACT names; rows with digits for ClientId, Unix seconds not
  in the future for DateTime, E.164 or nothing for PhoneNumber, whole seconds for durations, 0/1
  flags (400 with Metrika's error body otherwise). Answers `{"uploading": {...}}`.
- `GET .../calls_uploading/{id}`: the upload, now `PROCESSED`.
- `POST .../calls_extended_threshold`: `{"success": true}`.
- `mode`: "ok", "quota429", "quota420" (the quota answers the docs name), "error500".
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

KNOWN_COLUMNS = {
    "UserId", "ClientId", "Yclid", "DateTime", "StaticCall", "Price", "Currency",
    "PhoneNumber", "TalkDuration", "HoldDuration", "CallMissed", "Tag", "FirstTimeCaller",
    "URL", "CallTrackerURL",
}  # fmt: skip
CONTRACT_COLUMNS = (
    "ClientId", "DateTime", "PhoneNumber", "TalkDuration", "HoldDuration", "CallMissed",
    "FirstTimeCaller", "URL",
)  # fmt: skip
_ID_COLUMNS = {"UserId", "ClientId", "Yclid"}
_DIGITS = re.compile(r"^\d+$")
_PHONE = re.compile(r"^\+\d{8,15}$")
_FLAG_COLUMNS = ("StaticCall", "CallMissed", "FirstTimeCaller")


class Refused(Exception):
    pass


def check_calls_csv(text: str, now: datetime) -> list[dict[str, str]]:
    """The rows of a valid calls CSV; raises `Refused` naming the first problem."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        raise Refused("empty file")
    header = rows[0]
    unknown = [c for c in header if c not in KNOWN_COLUMNS]
    if unknown or len(set(header)) != len(header):
        raise Refused(f"bad header: unknown or repeated columns {unknown or header}")
    if len(_ID_COLUMNS & set(header)) != 1 or "DateTime" not in header:
        raise Refused("header needs exactly one of UserId/ClientId/Yclid, and DateTime")
    missing = [c for c in CONTRACT_COLUMNS if c not in header]
    if missing:
        raise Refused(f"header lacks {missing}")
    records = []
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise Refused(f"line {number}: {len(row)} fields, header has {len(header)}")
        record = dict(zip(header, row, strict=True))
        _check_row(number, record, now)
        records.append(record)
    return records


def _check_row(number: int, row: dict[str, str], now: datetime) -> None:
    if "ClientId" in row and not _DIGITS.match(row["ClientId"]):
        raise Refused(f"line {number}: ClientId {row['ClientId']!r} is not a ClientID")
    if not _DIGITS.match(row["DateTime"]) or int(row["DateTime"]) > now.timestamp() + 1:
        raise Refused(f"line {number}: DateTime must be Unix seconds in the past")
    if row.get("PhoneNumber") and not _PHONE.match(row["PhoneNumber"]):
        raise Refused(f"line {number}: PhoneNumber {row['PhoneNumber']!r}")
    for column in ("TalkDuration", "HoldDuration"):
        if row.get(column) and not _DIGITS.match(row[column]):
            raise Refused(f"line {number}: {column} must be whole seconds")
    for column in _FLAG_COLUMNS:
        if row.get(column) not in (None, "", "0", "1"):
            raise Refused(f"line {number}: {column} must be 0 or 1")
    if row.get("URL") and not row["URL"].startswith(("http://", "https://")):
        raise Refused(f"line {number}: URL {row['URL']!r}")


def _error(status: int, error_type: str, message: str) -> web.Response:
    body = {
        "errors": [{"error_type": error_type, "message": message}],
        "code": status,
        "message": message,
    }
    return web.json_response(body, status=status)


@dataclass
class FakeMetrika:
    counter_id: str = "12345678"
    token: str = "y0_oauth-token"
    mode: str = "ok"
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    uploads: list[dict[str, Any]] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    extended_threshold: bool = False
    hits: int = 0

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._gate])
        base = "/management/v1/counter/{counter}/offline_conversions"
        app.router.add_post(f"{base}/upload_calls", self._upload)
        app.router.add_get(f"{base}/calls_uploading/{{upload_id}}", self._status)
        app.router.add_post(f"{base}/calls_extended_threshold", self._threshold)
        return app

    @web.middleware
    async def _gate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.hits += 1
        if self.mode in ("quota429", "quota420"):
            return _error(int(self.mode[-3:]), "quota_requests_by_uid", "Quota exceeded")
        if self.mode == "error500":
            return _error(500, "backend_error", "Internal error")
        if request.headers.get("Authorization") != f"OAuth {self.token}":
            return _error(401, "invalid_token", "Invalid oauth_token")
        if request.match_info.get("counter") != self.counter_id:
            return _error(403, "access_denied", "Access is denied")
        response: web.StreamResponse = await handler(request)
        return response

    async def _upload(self, request: web.Request) -> web.Response:
        if request.query.get("client_id_type") != "CLIENT_ID":
            return self._refuse("client_id_type must be CLIENT_ID")
        if not request.content_type.startswith("multipart/"):
            return self._refuse("expected multipart/form-data")
        form = await request.post()
        upload = form.get("file")
        if not isinstance(upload, web.FileField):
            return self._refuse("multipart field 'file' missing")
        try:
            rows = check_calls_csv(upload.file.read().decode("utf-8"), self.clock())
        except (Refused, UnicodeDecodeError) as exc:
            return self._refuse(str(exc))
        uploading = {
            "id": len(self.uploads) + 1,
            "create_time": self.clock().isoformat(),
            "source_quantity": len(rows),
            "line_quantity": len(rows),
            "type": "CALLS",
            "client_id_type": "CLIENT_ID",
            "comment": request.query.get("comment", ""),
            "status": "UPLOADED",
            "rows": rows,
        }
        self.uploads.append(uploading)
        public = {k: v for k, v in uploading.items() if k != "rows"}
        return web.json_response({"uploading": public})

    def _refuse(self, message: str) -> web.Response:
        self.refusals.append(message)
        return _error(400, "invalid_parameter", message)

    async def _status(self, request: web.Request) -> web.Response:
        upload_id = request.match_info["upload_id"]
        for uploading in self.uploads:
            if str(uploading["id"]) == upload_id:
                uploading["status"] = "PROCESSED"
                public = {k: v for k, v in uploading.items() if k != "rows"}
                return web.json_response({"uploading": public})
        return _error(404, "not_found", "Entity not found")

    async def _threshold(self, request: web.Request) -> web.Response:
        self.extended_threshold = True
        return web.json_response({"success": True})


@asynccontextmanager
async def running(fake: FakeMetrika) -> AsyncIterator[str]:
    """Serve `fake` on 127.0.0.1 (a free port); yields the endpoint base URL."""
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()
