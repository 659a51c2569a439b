"""JSON schemas of the API's bodies and answers, for the OpenAPI document (routes.py)."""

from __future__ import annotations

from typing import Any

from calltracking.core.kinds import AttributionKind, CallStatus, ExportState

Schema = dict[str, Any]
KINDS = [str(k) for k in AttributionKind]
STATUSES = [str(s) for s in CallStatus]
E164: Schema = {"type": "string", "pattern": r"^\+[1-9][0-9]{7,14}$"}
TIME: Schema = {"type": "string", "format": "date-time"}


def obj(required: list[str], props: Schema, *, extra: bool = False) -> Schema:
    return {
        "type": "object",
        "required": required,
        "properties": props,
        "additionalProperties": extra,
    }


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def list_of(key: str, item: Schema) -> Schema:
    return obj([key], {key: {"type": "array", "items": item}})


ERROR = obj(
    ["error"],
    {
        "error": obj(
            ["code", "message"],
            {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "field": {"type": "string"},
            },
        )
    },
)
ACCOUNT_IN = obj(
    ["name"],
    {
        "name": {"type": "string", "maxLength": 200},
        "timezone": {"type": "string", "default": "Europe/Moscow"},
        "max_numbers": {"type": "integer", "minimum": 0, "default": 50},
        "retention_days": {"type": "integer", "minimum": 1, "default": 365},
    },
)
ACCOUNT = obj(
    ["id", "name", "timezone", "max_numbers", "retention_days"],
    {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "timezone": {"type": "string"},
        "max_numbers": {"type": "integer"},
        "retention_days": {"type": "integer"},
    },
)
ACCOUNT_CREATED = ACCOUNT | {
    "required": [*ACCOUNT["required"], "token"],
    "properties": ACCOUNT["properties"] | {"token": {"type": "string"}},
}
NUMBERS_IN = obj(["numbers"], {"numbers": {"type": "array", "items": E164, "minItems": 1}})
NUMBERS_ADDED = obj(
    ["added", "already_present"],
    {"added": {"type": "integer"}, "already_present": {"type": "integer"}},
)
NUMBER = obj(
    ["e164", "state"],
    {
        "e164": E164,
        "state": {
            "type": "string",
            "enum": [
                "reserve",
                "cooling",
                "default",
                "free",
                "leased",
                "held",
                "static",
                "removed",
            ],
        },
        "site_id": nullable({"type": "string"}),
        "label": nullable({"type": "string"}),
        "cooling_site_id": nullable({"type": "string"}),
        "cooling_until": nullable(TIME),
        "last_released_at": nullable(TIME),
    },
)
DEFAULTS = obj(
    ["initial", "expired", "untracked"], {"initial": E164, "expired": E164, "untracked": E164}
)
SETTINGS: Schema = {
    "type": "object",
    "description": "merged key by key over the defaults; each analytics target replaced whole",
    "properties": {
        "show_delay_s": {"type": "integer", "minimum": 0, "default": 0},
        "idle_timeout_s": {"type": "integer", "minimum": 1, "default": 3600},
        "hold_s": {"type": "integer", "minimum": 0, "default": 1800},
        "cooldown_days": {"type": "number", "minimum": 0, "default": 7},
        "preempt_idle_s": {"type": "integer", "minimum": 0, "default": 600},
        "pool_min": {"type": "integer", "minimum": 0, "default": 0},
        "pool_max": {"type": "integer", "minimum": 0, "default": 20},
        "channels": nullable({"type": "array", "items": {"type": "string"}}),
        "static": {"type": "object", "additionalProperties": {"type": "string"}},
        "route": nullable({"type": "string"}),
        "display_format": {"type": "string", "default": "+7 (XXX) XXX-XX-XX"},
        "record_calls": {"type": "boolean", "default": True},
        "lease_on": {"type": "string", "enum": ["load", "visible", "interaction"]},
        "require_consent": {"type": "boolean", "default": False},
        "max_leases_per_address": nullable({"type": "integer", "minimum": 1}),
        "analytics": {"type": "object"},
    },
    "additionalProperties": False,
}
SITE_IN = obj(
    ["name", "domains", "defaults"],
    {
        "account_id": {"type": "string", "description": "required with the admin token only"},
        "name": {"type": "string"},
        "domains": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "defaults": DEFAULTS,
        "settings": SETTINGS,
    },
)
SITE_PATCH = obj([], {k: v for k, v in SITE_IN["properties"].items() if k != "account_id"})
SITE = obj(
    ["id", "account_id", "key", "name", "domains", "defaults", "settings", "created_at"],
    {
        "id": {"type": "string"},
        "account_id": {"type": "string"},
        "key": {"type": "string"},
        "name": {"type": "string"},
        "domains": {"type": "array", "items": {"type": "string"}},
        "defaults": DEFAULTS,
        "settings": {"type": "object", "description": "secrets masked"},
        "created_at": TIME,
        "snippet": {"type": "string"},
    },
)
SITE_DELETED = obj(
    ["id", "deleted"],
    {
        "id": {"type": "string"},
        "deleted": {"type": "boolean"},
        "leases_ended": {"type": "integer"},
        "numbers_returned": {"type": "integer"},
        "numbers_removed": {"type": "integer"},
    },
)
SITE_NUMBERS_IN: Schema = {
    "oneOf": [
        obj(["count"], {"count": {"type": "integer", "minimum": 1}}),
        obj(["numbers"], {"numbers": {"type": "array", "items": E164, "minItems": 1}}),
    ]
}
SITE_NUMBERS_ADDED = obj(
    ["added", "pool_size"],
    {"added": {"type": "array", "items": E164}, "pool_size": {"type": "integer"}},
)
POOL = obj(
    ["site_id", "numbers"],
    {
        "site_id": {"type": "string"},
        "numbers": {
            "type": "array",
            "items": obj(
                ["e164", "state"],
                {
                    "e164": E164,
                    "state": {"type": "string", "enum": ["free", "leased", "held", "static"]},
                    "label": nullable({"type": "string"}),
                    "visitor": nullable({"type": "string"}),
                    "leased_since": nullable(TIME),
                    "last_released_at": nullable(TIME),
                },
            ),
        },
    },
)
EXPORT_STATE: Schema = {"type": "string", "enum": [str(s) for s in ExportState]}
CALL = obj(
    ["id", "site_id", "did", "caller", "started_at", "status", "attribution", "recording_url"],
    {
        "id": {"type": "string"},
        "site_id": nullable({"type": "string"}),
        "did": E164,
        "caller": nullable(E164),
        "started_at": TIME,
        "answered_at": nullable(TIME),
        "ended_at": nullable(TIME),
        "status": {"type": "string", "enum": STATUSES},
        "duration_s": {"type": "integer"},
        "talk_s": {"type": "integer"},
        "answered_by": nullable({"type": "string"}),
        "attribution": {
            "type": "object",
            "properties": {
                "kind": {"type": "string", "enum": KINDS},
                "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                "visitor": nullable({"type": "string"}),
                "session": nullable({"type": "object"}),
            },
        },
        "first_time_caller": {"type": "boolean"},
        "lead": {"type": "boolean"},
        "spam": {"type": "boolean"},
        "note": nullable({"type": "string"}),
        "reconciled": {"type": "boolean"},
        "recording_url": nullable({"type": "string", "format": "uri"}),
        "exports": obj([], {"ga4": EXPORT_STATE, "metrika": EXPORT_STATE}),
        "tags": {"type": "array", "items": {"type": "string"}},
        "target_call": nullable({"type": "boolean"}),
    },
    extra=True,
)
CALL_PAGE = obj(
    ["calls", "next"],
    {
        "calls": {"type": "array", "items": CALL},
        "next": nullable({"type": "string"}),
        "total": {"type": "integer", "description": "every call the filters match, all pages"},
    },
)
CALL_PATCH = obj(
    [],
    {
        "spam": {"type": "boolean"},
        "note": nullable({"type": "string"}),
        "tags": {"type": "array", "items": {"type": "string"}, "description": "replaces the set"},
    },
)
RETRIED = obj(
    ["call_id", "target", "state"],
    {"call_id": {"type": "string"}, "target": {"type": "string"}, "state": EXPORT_STATE},
)
LEADS = obj(
    ["account_id", "month", "leads", "calls"],
    {
        "account_id": {"type": "string"},
        "month": {"type": "string"},
        "timezone": {"type": "string"},
        "leads": {"type": "integer"},
        "calls": {"type": "array", "items": CALL},
    },
)
REPORT: Schema = {
    "type": "object",
    "required": [
        "visits",
        "visitors_with_number",
        "calls",
        "accuracy",
        "by_source",
        "leads",
        "pool",
        "advice",
    ],
}
AUDIO: Schema = {"type": "string", "format": "binary"}
ERASED = obj(
    ["calls", "recordings_deleted"],
    {"calls": {"type": "integer"}, "recordings_deleted": {"type": "integer"}},
)
TOKEN_REVOKED = obj(
    ["prefix", "admin", "revoked_at"],
    {
        "prefix": {"type": "string"},
        "admin": {"type": "boolean"},
        "account_id": nullable({"type": "string"}),
        "revoked_at": TIME,
    },
)
