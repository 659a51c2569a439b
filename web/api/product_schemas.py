"""JSON schemas of the dashboard product's endpoints: qualification, overview, test events."""

from __future__ import annotations

from web.api.schemas import ACCOUNT, Schema, nullable, obj

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
