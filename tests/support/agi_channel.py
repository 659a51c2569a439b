"""An inbound channel as the AGI commands see it (`pbxsim.agi_client.AgiChannel`): its Linkedid
is its uniqueid, and it keeps the variables the tracker sets; `dial` plays one call's whole
FastAGI dialogue on a new one, as Asterisk 22 does (pbxsim.agi_client)."""

from __future__ import annotations

import uuid

from calltracking.pbxsim.agi_client import FastAgiSession, agi_env


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


async def dial(agi_port: int, did: str) -> Channel:
    """Call `did` through the FastAGI on 127.0.0.1: the channel, with what the tracker set."""
    channel = Channel(f"{uuid.uuid4().int % 10**10}.1")
    env = agi_env(
        request=f"agi://127.0.0.1:{agi_port}/calltracking",
        channel="PJSIP/trunk-00000001",
        uniqueid=channel.uniqueid,
        caller="+79160000001",
        context="from-trunk",
        did=did,
        args=[did],
    )
    await FastAgiSession(channel, session_timeout_s=5).run("127.0.0.1", agi_port, env)
    return channel
