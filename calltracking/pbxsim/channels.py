"""Live channels, folded from the events the simulator emits (what `CoreShowChannels`,
`Status` and `Getvar` read).

Rules:
- `Newchannel` adds a channel, `Hangup` removes it; any other event naming a known `Channel`
  refreshes its snapshot headers; `Newexten` sets its application, `VarSet` a variable (the
  `_`/`__` inheritance prefixes are dropped, as Asterisk stores them), `BridgeEnter` and
  `BridgeLeave` its bridge.
- Listing is newest channel first, as the captured `CoreShowChannels` reply shows.
Events are folded in emission order, so replies always agree with the stream already sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from calltracking.pbxsim.messages import AmiMessage

SNAPSHOT_KEYS = (
    "Channel", "ChannelState", "ChannelStateDesc", "CallerIDNum", "CallerIDName",
    "ConnectedLineNum", "ConnectedLineName", "Language", "AccountCode", "Context", "Exten",
    "Priority", "Uniqueid", "Linkedid",
)  # fmt: skip


@dataclass(slots=True)
class LiveChannel:
    """Mutable record of one channel; owned by `ChannelRegistry` only."""

    created_at: float
    snapshot: dict[str, str]
    application: str = ""
    application_data: str = ""
    bridge_id: str = ""
    variables: dict[str, str] = field(default_factory=dict)

    def snapshot_headers(self) -> list[tuple[str, str]]:
        return [(key, self.snapshot.get(key, "")) for key in SNAPSHOT_KEYS]


class ChannelRegistry:
    def __init__(self) -> None:
        self._channels: dict[str, LiveChannel] = {}

    def fold(self, message: AmiMessage, at: float) -> None:
        name = message.event
        channel = message.get("Channel")
        if not channel or not message.has("Uniqueid"):
            return
        if name == "Newchannel":
            self._channels[channel] = LiveChannel(created_at=at, snapshot={})
        live = self._channels.get(channel)
        if live is None:
            return
        if name == "Hangup":
            del self._channels[channel]
            return
        live.snapshot = {key: message.get(key) for key in SNAPSHOT_KEYS}
        if name == "Newexten":
            live.application = message.get("Application")
            live.application_data = message.get("AppData")
        elif name == "VarSet":
            live.variables[message.get("Variable").lstrip("_")] = message.get("Value")
        elif name == "BridgeEnter":
            live.bridge_id = message.get("BridgeUniqueid")
        elif name == "BridgeLeave":
            live.bridge_id = ""

    def newest_first(self) -> list[LiveChannel]:
        return list(reversed(self._channels.values()))

    def get(self, channel: str) -> LiveChannel | None:
        return self._channels.get(channel)

    def __len__(self) -> int:
        return len(self._channels)
