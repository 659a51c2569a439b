"""What a FastAGI session tells about the call, and what the server tells the dialplan back. Pure.

Rules (CONTRACT.md, "PBX side"; "Numbers"):
- Only the script `calltracking` is served; the query string is not part of the name.
- The DID is the first non-empty of: the script's `did` query, `agi_arg_1`, `agi_extension`. The
  first present one decides, even when it is not a number: falling through to the next source
  could take a caller number for the DID (the capture's dialplan passes the caller as arg 1).
  It is normalised to E.164 with the configured country code; a DID that is not a number (`s`,
  an extension, a SIP URI) makes the session no inbound trunk call.
- The caller is `agi_callerid`; withheld (`anonymous`, `unknown`, empty, ...) or not a number is
  no caller.
- Variables go to the channel with `CALLTRACKING_KIND` last: the dialplan treats an empty KIND as
  "the AGI gave no answer", so a dialogue cut short never looks like a complete one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from agi.protocol import split_script
from calltracking.core.kinds import AttributionKind
from calltracking.core.numbers import is_withheld, normalise
from calltracking.core.records import Resolution

SCRIPT_NAME = "calltracking"
# Asterisk writes `unknown` for a missing value; it is never a DID.
_MISSING = "unknown"

ERROR_VARIABLES: tuple[tuple[str, str], ...] = (
    ("CALLTRACKING_ERROR", "1"),
    ("CALLTRACKING_KIND", str(AttributionKind.UNKNOWN)),
)


@dataclass(frozen=True, slots=True)
class SessionFacts:
    """The call as the AGI environment describes it; `did` is None when it is not a number."""

    script: str
    did_source: str  # "query", "arg" or "extension": where the DID was read
    raw_did: str
    did: str | None
    caller: str | None
    uniqueid: str


def script_name(env: Mapping[str, str]) -> str:
    name, _ = split_script(env.get("agi_network_script", ""))
    return name


def pick_did(env: Mapping[str, str]) -> tuple[str, str]:
    """(source, raw DID): the first non-empty of the `did` query, arg 1, the extension."""
    _, query = split_script(env.get("agi_network_script", ""))
    candidates = (
        ("query", query.get("did", "")),
        ("arg", env.get("agi_arg_1", "")),
        ("extension", env.get("agi_extension", "")),
    )
    for source, value in candidates:
        text = value.strip()
        if text and text != _MISSING:
            return source, text
    return "none", ""


def read_facts(env: Mapping[str, str], country_code: str) -> SessionFacts:
    source, raw_did = pick_did(env)
    raw_caller = env.get("agi_callerid")
    caller = None if is_withheld(raw_caller) else normalise(raw_caller, country_code)
    return SessionFacts(
        script=script_name(env),
        did_source=source,
        raw_did=raw_did,
        did=normalise(raw_did, country_code) if raw_did else None,
        caller=caller,
        uniqueid=env.get("agi_uniqueid", "").strip(),
    )


def resolution_variables(resolution: Resolution) -> tuple[tuple[str, str], ...]:
    """The channel variables for a resolved call, in the order they are sent (KIND last)."""
    return (
        ("CALLTRACKING_SITE", resolution.site_id or ""),
        ("CALLTRACKING_SOURCE", resolution.source or ""),
        ("CALLTRACKING_MEDIUM", resolution.medium or ""),
        ("CALLTRACKING_CAMPAIGN", resolution.campaign or ""),
        ("CALLTRACKING_LABEL", resolution.label),
        ("CALLTRACKING_ROUTE", resolution.route or ""),
        ("CALLTRACKING_RECORD", "1" if resolution.record else "0"),
        ("CALLTRACKING_KIND", str(resolution.kind)),
    )
