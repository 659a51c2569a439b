"""Reading one call out of a CoreShowChannels snapshot (pure: no I/O, no clock).

The shipped dialplan moves every inbound call on from the trunk context (to
`calltracking-default-route`, `operators`, a site's route), so a snapshot cannot tell an inbound
call by the context its channels are in now. These rules, checked against the captures in
`fixtures/asterisk/` (ami_answered_call.txt, the CoreShowChannels reply) and the issue's IAX2 run:

owner       the channel whose Uniqueid is the Linkedid started the call. For a trunk call
            (PJSIP/IAX2/SIP) it is the inbound channel and runs the dialplan; for a call placed
            as `Local/<DID>@from-trunk` it is the `;1` half, and its `;2` sibling (same name,
            `;2`) runs the dialplan.
inbound     the owner, its `;2` sibling, any channel now in a trunk context, and any channel on
            which the dialplan set CALLTRACKING_DID (learned with AMI `Getvar`).
tracked     a Linkedid is an inbound call when one of its channels is in a trunk context or
            carries CALLTRACKING_DID (or the recorder already has it open). Anything else (an
            operator's outbound call, an internal call) is none of ours.
ask         the channels whose variables are worth a `Getvar` after a reconnect: the owner
            and the owner's `;2` sibling, i.e. where the dialplan sets CALLTRACKING_DID,
            CALLTRACKING_RECORDING and MixMonitor's MIXMONITOR_FILENAME.
answered    an inbound channel shares a bridge (`BridgeId`) with a channel that is not inbound,
            or a dialed leg (Application `AppDial`) is Up (ChannelState 6). The answering
            channel is that other channel or that leg.
answered at the answering channel's creation (now - its Duration), never before the call's
            start: Asterisk does not show when a bridge formed, so a call answered while we were
            away counts its ringing as talk rather than dropping the talk it had.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

ASKED_VARIABLES = ("CALLTRACKING_DID", "CALLTRACKING_RECORDING", "MIXMONITOR_FILENAME")
_UP = "6"

Channel = Mapping[str, str]  # one normalised CoreShowChannel (lowercase header names)
Variables = Mapping[str, Mapping[str, str]]  # uniqueid -> variable name -> value


def sibling(name: str) -> str | None:
    """The `;2` half of a Local channel's `;1` half, else None."""
    if name.startswith("Local/") and name.endswith(";1"):
        return name[:-1] + "2"
    return None


def owner_and_sibling(linkedid: str, chans: Iterable[Channel]) -> list[Channel]:
    """The channel that started the call and, for a Local `;1` owner, its `;2` half."""
    chans = list(chans)
    owner = [c for c in chans if c.get("uniqueid") == linkedid]
    if not owner:
        return []
    twin = sibling(owner[0].get("channel", ""))
    return owner + [c for c in chans if twin is not None and c.get("channel") == twin]


def channels_to_ask(channels: Iterable[Channel]) -> list[tuple[str, str]]:
    """(channel name, uniqueid) of each call's owner and its `;2` sibling (the `ask` rule)."""
    groups: dict[str, list[Channel]] = {}
    for ch in channels:
        if ch.get("linkedid") and ch.get("uniqueid") and ch.get("channel"):
            groups.setdefault(ch["linkedid"], []).append(ch)
    out: list[tuple[str, str]] = []
    for linkedid, chans in groups.items():
        out += [(c["channel"], c["uniqueid"]) for c in owner_and_sibling(linkedid, chans)]
    return out


def inbound_uids(
    linkedid: str,
    chans: Collection[Channel],
    trunk_contexts: Collection[str],
    variables: Variables,
) -> list[str]:
    """The uniqueids of the call's inbound channels (the `inbound` rule), owner first."""
    out = [c["uniqueid"] for c in owner_and_sibling(linkedid, chans)]
    for ch in chans:
        uid = ch["uniqueid"]
        in_trunk = ch.get("context", "") in trunk_contexts
        if uid not in out and (in_trunk or variables.get(uid, {}).get("CALLTRACKING_DID")):
            out.append(uid)
    return out


def is_tracked(
    chans: Collection[Channel], trunk_contexts: Collection[str], variables: Variables
) -> bool:
    """The `tracked` rule (without the recorder's view)."""
    return any(
        ch.get("context", "") in trunk_contexts
        or variables.get(ch["uniqueid"], {}).get("CALLTRACKING_DID")
        for ch in chans
    )


def answering_channel(chans: Collection[Channel], inbound: Collection[str]) -> Channel | None:
    """The channel that answered the call (the `answered` rule), or None."""
    bridges: dict[str, list[Channel]] = {}
    for ch in chans:
        if ch.get("bridgeid"):
            bridges.setdefault(ch["bridgeid"], []).append(ch)
    for members in bridges.values():
        if any(m["uniqueid"] in inbound for m in members):
            others = [m for m in members if m["uniqueid"] not in inbound]
            if others:
                return others[0]
    for ch in chans:
        app = ch.get("application", "").lower()
        if ch["uniqueid"] not in inbound and app == "appdial" and ch.get("channelstate") == _UP:
            return ch
    return None
