"""A simulated Asterisk Manager Interface server on TCP.

Rules (each seen in `fixtures/asterisk/ami_login_*.txt` and `ami_answered_call.txt`):
- On connect: the banner `Asterisk Call Manager/11.0.0\\r\\n`, no blank line after it.
- `Login` with `Secret`, or `Challenge` (`AuthType: MD5`) then `Login` with `AuthType: MD5` and
  `Key` = md5(challenge + secret). Success: `Message: Authentication accepted`, then (events on)
  `FullyBooted`, then a `SuccessfulAuth` security event to every session. Wrong secret or unknown
  user: `Response: Error` / `Message: Authentication failed`, the socket is closed, and the other
  sessions get `InvalidPassword` / `InvalidAccountID`.
- `Events: off` means no events at all; `on` (or absent) all; a class list (`call,cdr`) those
  classes, judged by the event's `Privilege`. The user's `read` classes (manager.conf) filter
  the same way on top: a user with `read = call,cdr` never gets Newexten/VarSet (`dialplan`).
- Every reply carries the action's `ActionID` second; action names are case-insensitive; unknown
  actions get `Message: Invalid/unknown command`; actions before login get
  `Authentication Required`. `Logoff` answers `Goodbye` and closes.
- Each session has its own outgoing queue, written in order by one owned writer task, so replies
  and events never interleave inside a message and a slow client never stalls the others.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections.abc import Callable

from calltracking.pbxsim.channels import ChannelRegistry
from calltracking.pbxsim.messages import AmiMessage, event, parse_lines, reply

log = logging.getLogger(__name__)

BANNER = b"Asterisk Call Manager/11.0.0\r\n"
READ_TIMEOUT_S = 3600.0


def _tv(at: float) -> str:
    ms = int((at % 1) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{ms:03d}+0000"


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


class _Session:
    """One client connection: its login state, event filter and outgoing queue."""

    def __init__(self, writer: asyncio.StreamWriter, read: set[str] | None) -> None:
        self.writer = writer
        self.read = read  # the user's read classes (None: all)
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.username = ""
        self.logged_in = False
        self.challenge = ""
        self.event_classes: set[str] | None = set()  # None: all; empty: none
        peer = writer.get_extra_info("peername") or ("?", 0)
        sock = writer.get_extra_info("sockname") or ("?", 0)
        self.remote = f"IPV4/TCP/{peer[0]}/{peer[1]}"
        self.local = f"IPV4/TCP/{sock[0]}/{sock[1]}"
        self.session_id = f"0x{id(self):x}"

    def send(self, message: AmiMessage) -> None:
        self.queue.put_nowait(message.encode())

    def wants(self, message: AmiMessage) -> bool:
        if not self.logged_in:
            return False
        classes = {c.strip() for c in message.privilege.split(",")} - {"all"}
        for allowed in (self.read, self.event_classes):
            if allowed is not None and not classes & allowed:
                return False
        return True


def _event_filter(value: str) -> set[str] | None:
    value = value.strip().lower()
    if value in ("", "on", "yes", "true", "all"):
        return None
    if value in ("off", "no", "false"):
        return set()
    return {part.strip() for part in value.split(",") if part.strip()}


class AmiServer:
    def __init__(
        self,
        registry: ChannelRegistry,
        username: str,
        secret: str,
        clock: Callable[[], float],
        read: str = "all",
    ) -> None:
        self._read = _event_filter(read)
        self.logins = 0
        self._registry = registry
        self._username = username
        self._secret = secret
        self._clock = clock
        self._started_at = clock()
        self._server: asyncio.Server | None = None
        self._sessions: set[_Session] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self.contexts: set[str] = {"from-trunk"}  # dialplan contexts ShowDialPlan finds

    @property
    def port(self) -> int:
        assert self._server is not None, "AMI server not started"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._handle, host, port)
        log.info("pbx-sim AMI listening on %s:%d", host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def drop_sessions(self) -> int:
        """Abort every connection (a network loss: no Goodbye, nothing flushed)."""
        sessions = list(self._sessions)
        for session in sessions:
            session.writer.transport.abort()
        return len(sessions)

    def publish(self, messages: list[AmiMessage]) -> None:
        for session in list(self._sessions):
            for message in messages:
                if session.wants(message):
                    session.send(message)

    # -- connection ----------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        session = _Session(writer, self._read)
        self._sessions.add(session)
        sender = asyncio.create_task(self._write_loop(session))
        try:
            session.queue.put_nowait(BANNER)
            await self._read_loop(reader, session)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError) as exc:
            log.debug("AMI client %s gone: %s", session.remote, exc)
        finally:
            self._sessions.discard(session)
            session.queue.put_nowait(None)
            try:
                # Flush what is queued (a Goodbye, an Authentication failed) before closing;
                # wait_for cancels the writer if the client does not read within the limit.
                await asyncio.wait_for(sender, 2.0)
            except TimeoutError:
                log.debug("AMI client %s did not read its last messages", session.remote)
            finally:
                sender.cancel()
                writer.close()
                self._handlers.discard(task)

    async def _write_loop(self, session: _Session) -> None:
        while True:
            data = await session.queue.get()
            if data is None:
                break
            try:
                session.writer.write(data)
                await session.writer.drain()
            except ConnectionError:
                break

    async def _read_loop(self, reader: asyncio.StreamReader, session: _Session) -> None:
        lines: list[str] = []
        while True:
            raw = await asyncio.wait_for(reader.readline(), READ_TIMEOUT_S)
            if not raw:
                return
            line = raw.decode(errors="replace").rstrip("\r\n")
            if line:
                lines.append(line)
                continue
            if not lines:
                continue
            action = parse_lines(lines)
            lines = []
            try:
                keep_open = self._dispatch(session, action)
            except Exception:
                # One bad action must not take the session down (boundary of one message).
                log.exception("AMI action %r failed", action.get("Action"))
                session.send(reply("Error", action.get("ActionID") or None,
                                   [("Message", "Internal error")]))  # fmt: skip
                keep_open = True
            if not keep_open:
                return

    # -- actions -------------------------------------------------------------------------------
    def _dispatch(self, session: _Session, action: AmiMessage) -> bool:
        name = action.get("Action").lower()
        aid = action.get("ActionID") if action.has("ActionID") else None
        if not name:
            session.send(reply("Error", aid, [("Message", "Missing action in request")]))
            return True
        if name == "challenge":
            session.challenge = str(secrets.randbelow(900_000_000) + 100_000_000)
            session.send(reply("Success", aid, [("Challenge", session.challenge)]))
            return True
        if name == "login":
            return self._login(session, action, aid)
        if name == "logoff":
            session.send(reply("Goodbye", aid, [("Message", "Thanks for all the fish.")]))
            return False
        if not session.logged_in:
            session.send(reply("Error", aid, [("Message", "Authentication Required")]))
            return True
        if name == "ping":
            stamp = f"{self._clock():.6f}"
            session.send(reply("Success", aid, [("Ping", "Pong"), ("Timestamp", stamp)]))
        elif name == "coreshowchannels":
            self._core_show_channels(session, aid)
        elif name == "getvar":
            self._getvar(session, action, aid)
        elif name == "status":
            self._status(session, aid)
        elif name == "showdialplan":
            context = action.get("Context")
            if context and context not in self.contexts:
                session.send(reply("Error", aid, [("Message", f"Did not find context {context}")]))
            else:
                session.send(reply("Success", aid, [("Message", "DialPlan list will follow")]))
        else:
            session.send(reply("Error", aid, [("Message", "Invalid/unknown command")]))
        return True

    def _login(self, session: _Session, action: AmiMessage, aid: str | None) -> bool:
        user = action.get("Username")
        if action.get("AuthType").lower() == "md5":
            expected = hashlib.md5((session.challenge + self._secret).encode()).hexdigest()
            ok = bool(session.challenge) and secrets.compare_digest(action.get("Key"), expected)
        else:
            ok = secrets.compare_digest(action.get("Secret"), self._secret)
        now = self._clock()
        if user != self._username or not ok:
            session.send(reply("Error", aid, [("Message", "Authentication failed")]))
            kind = "InvalidAccountID" if user != self._username else "InvalidPassword"
            self.publish([self._security(kind, session, user, now)])
            log.info("AMI login refused for %r from %s", user, session.remote)
            return False
        session.logged_in = True
        self.logins += 1
        session.username = user
        session.event_classes = _event_filter(action.get("Events"))
        session.send(reply("Success", aid, [("Message", "Authentication accepted")]))
        uptime = str(int(now - self._started_at))
        booted = event(
            "FullyBooted",
            "system,all",
            [("Uptime", uptime), ("LastReload", uptime), ("Status", "Fully Booted")],
        )
        if session.wants(booted):
            session.send(booted)
        self.publish([self._security("SuccessfulAuth", session, user, now)])
        return True

    def _security(self, kind: str, session: _Session, user: str, at: float) -> AmiMessage:
        ok = kind == "SuccessfulAuth"
        headers = [
            ("EventTV", _tv(at)),
            ("Severity", "Informational" if ok else "Error"),
            ("Service", "AMI"),
            ("EventVersion", "2" if kind == "InvalidPassword" else "1"),
            ("AccountID", user),
            ("SessionID", session.session_id),
            ("LocalAddress", session.local),
            ("RemoteAddress", session.remote),
        ]
        if ok:
            headers.append(("UsingPassword", "0"))
        headers.append(("SessionTV", _tv(at) if ok else "1970-01-01T00:00:00.000+0000"))
        return event(kind, "security,all", headers)

    def _core_show_channels(self, session: _Session, aid: str | None) -> None:
        session.send(reply("Success", aid, [("EventList", "start"),
                                            ("Message", "Channels will follow")]))  # fmt: skip
        now = self._clock()
        items = self._registry.newest_first()
        for live in items:
            session.send(event("CoreShowChannel", None, _aid(aid), live.snapshot_headers(), [
                ("Application", live.application),
                ("ApplicationData", live.application_data),
                ("Duration", _hms(now - live.created_at)),
                ("BridgeId", live.bridge_id),
            ]))  # fmt: skip
        complete = [("EventList", "Complete"), ("ListItems", str(len(items)))]
        session.send(event("CoreShowChannelsComplete", None, _aid(aid), complete))

    def _getvar(self, session: _Session, action: AmiMessage, aid: str | None) -> None:
        name = action.get("Variable")
        if not name:
            session.send(reply("Error", aid, [("Message", "No variable specified")]))
            return
        value = ""
        channel = action.get("Channel")
        if channel:
            live = self._registry.get(channel)
            if live is None:
                session.send(reply("Error", aid, [("Message", "No such channel")]))
                return
            value = live.variables.get(name.lstrip("_"), "")
        session.send(reply("Success", aid, [("Variable", name), ("Value", value)]))

    def _status(self, session: _Session, aid: str | None) -> None:
        start = [("EventList", "start"), ("Message", "Channel status will follow")]
        session.send(reply("Success", aid, start))
        now = self._clock()
        items = self._registry.newest_first()
        for live in items:
            session.send(event("Status", "Call", _aid(aid), live.snapshot_headers(), [
                ("Type", live.snapshot.get("Channel", "").split("/", 1)[0]),
                ("DNID", ""),
                ("EffectiveConnectedLineNum", live.snapshot.get("ConnectedLineNum", "")),
                ("EffectiveConnectedLineName", live.snapshot.get("ConnectedLineName", "")),
                ("TimeToHangup", "0"),
                ("BridgeID", live.bridge_id),
                ("Application", live.application),
                ("Data", live.application_data),
                ("Nativeformats", "(ulaw)"),
                ("Readformat", "ulaw"),
                ("Readtrans", ""),
                ("Writeformat", "ulaw"),
                ("Writetrans", ""),
                ("Callgroup", "0"),
                ("Pickupgroup", "0"),
                ("Seconds", str(int(now - live.created_at))),
            ]))  # fmt: skip
        session.send(event("StatusComplete", None, _aid(aid), [
            ("EventList", "Complete"), ("ListItems", str(len(items))), ("Items", str(len(items))),
        ]))  # fmt: skip


def _aid(aid: str | None) -> list[tuple[str, str]]:
    return [] if aid is None else [("ActionID", aid)]
