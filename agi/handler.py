"""The `calltracking` FastAGI dialogue: resolve the call, tell the dialplan, within the budget.

Rules (CONTRACT.md, "PBX side"):
- The Linkedid is `GET FULL VARIABLE "${CHANNEL(linkedid)}"`; an empty or refused answer falls
  back to `agi_uniqueid`. The call is `recorder.start_call(CallKey(pbx_id, linkedid), ...)`, which
  creates it unless the AMI listener already did, and returns its frozen attribution.
- The variables of `facts.resolution_variables` are set one by one, `CALLTRACKING_KIND` last.
- The dialogue proper must be over by `deadline - reserve`; on an internal error, a garbage
  reply or the budget running out, the reserve is spent setting `CALLTRACKING_ERROR=1` and
  `CALLTRACKING_KIND=unknown` if the channel still answers. A recorder call cut by the budget is
  no longer awaited: with the batched recorder (store/call_batches.py) its start still commits
  with its batch, and the AMI listener's reports of the same call find that row (first report
  wins, attribution resolved once); the PBX was told no attribution, only the error.
- A `HANGUP` line mid-dialogue does not stop it (Asterisk still answers GET/SET on a dead channel
  and the call deserves its attribution); a `511` reply or a closed socket does, quietly.
- This is the one-dialogue boundary: `Exception` is caught and logged once here, with the channel
  and unique id; `CancelledError` passes through.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from enum import StrEnum

from agi.channel import AgiChannel, describe
from agi.facts import ERROR_VARIABLES, read_facts, resolution_variables
from agi.protocol import AgiError, PeerClosed, ProtocolError, get_full_variable, set_variable
from calltracking.core.numbers import mask
from calltracking.core.records import CallKey
from calltracking.ports import CallStarter

log = logging.getLogger(__name__)

LINKEDID_EXPRESSION = "${CHANNEL(linkedid)}"


class Outcome(StrEnum):
    """How one FastAGI connection ended; the server counts them for /metrics."""

    RESOLVED = "resolved"  # variables set
    IGNORED = "ignored"  # the DID is not a number: no inbound trunk call
    REFUSED = "refused"  # a script other than `calltracking`
    BAD_HEADER = "bad_header"  # the header block is not AGI
    HEADER_CLOSED = "header_closed"  # the peer closed before the blank line
    HEADER_TIMEOUT = "header_timeout"  # no blank line in time
    HEADER_TOO_LARGE = "header_too_large"
    HANGUP = "hangup"  # the channel or socket went away mid-dialogue
    BUDGET_EXCEEDED = "budget_exceeded"  # error variables set (if the channel answered)
    ERROR = "error"  # error variables set (if the channel answered)
    OVERLOADED = "overloaded"  # the event loop was late: closed at once, no variables


class ChannelGone(AgiError):
    """Asterisk answered 511: the channel is dead and takes no more variables."""


class CallTrackingHandler:
    """Runs the dialogue of one `calltracking` session whose header has been read."""

    def __init__(
        self,
        recorder: CallStarter,
        pbx_id: str,
        country_code: str,
        clock: Callable[[], datetime],
    ) -> None:
        self._recorder = recorder
        self._pbx_id = pbx_id
        self._country_code = country_code
        self._clock = clock

    async def handle(
        self, channel: AgiChannel, env: Mapping[str, str], deadline: float, reserve: float
    ) -> Outcome:
        """The dialogue, finished by `deadline` (event-loop time) whatever happens."""
        where = describe(env)
        timer = asyncio.timeout_at(deadline - reserve)
        try:
            async with timer:
                return await self._dialogue(channel, env, where)
        except (PeerClosed, ChannelGone) as exc:
            log.info("FastAGI channel gone mid-dialogue (%s), %s", exc, where)
            return Outcome.HANGUP
        except ProtocolError as exc:
            # Asterisk's side of the dialogue, not our code: the message says enough.
            log.warning("FastAGI dialogue got an unexpected reply (%s), %s", exc, where)
            outcome = Outcome.ERROR
        except Exception:
            if timer.expired():
                log.warning("FastAGI dialogue ran out of its budget, %s", where)
                outcome = Outcome.BUDGET_EXCEEDED
            else:
                log.exception("FastAGI dialogue failed, %s", where)
                outcome = Outcome.ERROR
        await self._report_error(channel, deadline, where)
        return outcome

    async def _dialogue(self, channel: AgiChannel, env: Mapping[str, str], where: str) -> Outcome:
        facts = read_facts(env, self._country_code)
        if facts.did is None:
            log.debug(
                "not an inbound trunk call: DID %r (from %s) is not a number, %s",
                facts.raw_did[:40],
                facts.did_source,
                where,
            )
            return Outcome.IGNORED
        linkedid = await self._linkedid(channel, facts.uniqueid)
        resolution = await self._recorder.start_call(
            CallKey(self._pbx_id, linkedid), facts.did, facts.caller, self._clock()
        )
        await self._set(channel, resolution_variables(resolution))
        log.info(
            "call %s linkedid=%s did=%s caller=%s resolved as %s%s, %s",
            resolution.call_id,
            linkedid,
            facts.did,
            mask(facts.caller),
            resolution.kind,
            " (caller hung up during the AGI)" if channel.hung_up else "",
            where,
        )
        return Outcome.RESOLVED

    async def _linkedid(self, channel: AgiChannel, uniqueid: str) -> str:
        reply = await channel.command(get_full_variable(LINKEDID_EXPRESSION))
        if reply.ok and reply.result == "1" and reply.data and reply.data.strip():
            return reply.data.strip()
        if not (reply.ok or reply.dead_channel):
            raise ProtocolError(f"GET FULL VARIABLE answered {reply.line[:60]!r}")
        if not uniqueid:
            raise ProtocolError("neither a Linkedid nor agi_uniqueid")
        return uniqueid

    @staticmethod
    async def _set(channel: AgiChannel, variables: Sequence[tuple[str, str]]) -> None:
        """SET VARIABLE each of `variables` in order; the first refusal ends them."""
        replies = await channel.commands([set_variable(name, value) for name, value in variables])
        reply, name = replies[-1], variables[len(replies) - 1][0]
        if reply.dead_channel:
            raise ChannelGone(f"511 on SET VARIABLE {name}")
        if not reply.ok:
            raise ProtocolError(f"SET VARIABLE {name} answered {reply.line[:60]!r}")

    async def _report_error(self, channel: AgiChannel, deadline: float, where: str) -> None:
        """Spend what is left of the budget telling the dialplan; give up quietly if it cannot."""
        try:
            async with asyncio.timeout_at(deadline):
                await self._set(channel, ERROR_VARIABLES)
        except (AgiError, OSError, TimeoutError) as exc:
            # The failure itself was logged above; this only says the dialplan did not hear it.
            log.debug("could not set the error variables (%r), %s", exc, where)
