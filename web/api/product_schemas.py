"""JSON schemas of the dashboard product's endpoints: qualification, overview, test events."""

from __future__ import annotations

from web.api.schemas import ACCOUNT, TIME, Schema, nullable, obj

STRING: Schema = {"type": "string"}
INTEGER: Schema = {"type": "integer"}

TALK_S: Schema = {"type": "integer", "minimum": 1, "maximum": 86400}
QUALIFICATION_IN = obj(
    [],
    {
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 40}, "maxItems": 100},
        "target_call_talk_s": nullable(TALK_S | {"description": "null: no target-call rule"}),
    },
)
QUALIFICATION = obj(
    ["account_id", "tags", "target_call_talk_s"],
    {
        "account_id": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "target_call_talk_s": nullable(TALK_S),
    },
)
WHOAMI = obj(["admin", "account"], {"admin": {"type": "boolean"}, "account": nullable(ACCOUNT)})
FIGURES = obj(
    ["calls", "tracked", "counted", "tracked_share", "leads", "missed", "target_calls"],
    {
        "calls": {"type": "integer"},
        "tracked": {"type": "integer"},
        "counted": {"type": "integer"},
        "tracked_share": nullable({"type": "number"}),
        "leads": {"type": "integer"},
        "missed": {"type": "integer"},
        "target_calls": nullable({"type": "integer"}),
    },
)
WINDOW = obj(["since", "until"], {"since": TIME, "until": TIME, "preset": nullable(STRING)})
DAYS = {"type": "array", "items": obj(["day", "calls"], {"day": STRING, "calls": INTEGER})}
OVERVIEW = obj(
    ["timezone", "period", "previous", "figures", "previous_figures", "trend", "top_sources"],
    {
        "account_id": nullable(STRING),
        "site_id": nullable(STRING),
        "timezone": STRING,
        "period": WINDOW,
        "previous": WINDOW,
        "figures": FIGURES,
        "previous_figures": FIGURES,
        "trend": {"type": "object", "description": "relative change per figure; null: n/a"},
        "top_sources": {
            "type": "array",
            "items": obj(
                ["source", "calls", "previous_calls", "trend"],
                {
                    "source": STRING,
                    "calls": INTEGER,
                    "previous_calls": INTEGER,
                    "trend": nullable({"type": "number"}),
                },
            ),
        },
        "per_day": DAYS,
        "previous_per_day": DAYS,
    },
)
TEST_EVENT_IN = obj(
    ["target"],
    {
        "target": {"type": "string", "enum": ["ga4", "metrika", "webhook"]},
        "index": {"type": "integer", "minimum": 0, "description": "which webhook (default 0)"},
    },
)
TEST_EVENT = obj(
    ["target", "ok", "outcome", "detail"],
    {
        "target": STRING,
        "ok": {"type": "boolean"},
        "outcome": {"type": "string", "enum": ["sent", "retry_later", "failed", "skipped"]},
        "detail": STRING,
    },
)
