"""An inbound channel as the AGI commands see it (`pbxsim.agi_client.AgiChannel`): its Linkedid
is its uniqueid, and it keeps the variables the tracker sets."""

from __future__ import annotations


class Channel:
    def __init__(self, uniqueid: str) -> None:
        self.uniqueid = uniqueid
        self.variables: dict[str, str] = {}

    @property
    def dead(self) -> bool:
        return False

    def lookup(self, name: str) -> str | None:
        return self.uniqueid if name == "CHANNEL(linkedid)" else self.variables.get(name)

    def set_variable(self, name: str, value: str) -> None:
        self.variables[name] = value

    def command_started(self, command_id: int, command: str) -> None:
        pass

    def command_finished(self, command_id: int, command: str, code: int, result: str) -> None:
        pass
