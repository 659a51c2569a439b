"""One FastAGI socket's bytes as an `asyncio.Protocol`: a buffer read up to a separator, writes.

Why not StreamReader/StreamWriter: a dialogue is ten short round trips on a fresh socket, and the
streams' layers (a protocol, a reader and a writer object per connection, their checks on every
read and `drain`) were a measurable part of a dialogue's CPU. This is the little of them a
dialogue uses.

Rules (those of StreamReader, which the channel was written against):
- `readuntil(separator)` returns the bytes up to and including the separator. EOF before it
  raises `asyncio.IncompleteReadError` with what was read; a separator not found within `limit`
  bytes (or found beyond them) raises `asyncio.LimitOverrunError`; a connection lost with an
  error raises that error. One reader at a time (one dialogue per connection).
- Reading pauses while more than twice `limit` bytes wait unread (a peer that floods while the
  dialogue waits on the store cannot grow the buffer), and resumes when the buffer is read.
- `write(data)` writes; `drain()` waits while the transport asks to pause writing (`must_drain`:
  a dialogue's few hundred bytes never make it, so a command costs no extra await). After the
  connection was lost both raise ConnectionResetError (as `StreamWriter.drain` does).
- A peer's EOF does not close the transport (half-closed: what the server still writes may be
  read); `close()` then `wait_closed()` end it, the latter when the transport has let go.
- `connection_made` calls `on_connect(self)` once, the server's hook (allow-list, task).
- `exchange(lines)` runs a line-driven exchange (channel.py's commands) from the protocol's own
  callbacks: each complete line is handed to it as it arrives, and what it answers is written
  at once, without waking the dialogue's task between a reply and the next command (a task
  wake-up per round trip was most of a command's Python cost). Its lines are read by the rules
  of `readuntil(b"\n")` and fail as it does; its writes fail as `write` does. They never wait
  for `drain`: each is one short command written after the peer answered the one before, so
  the peer never has more than one command unread. The awaiting task ends it early by being
  cancelled (the dialogue's budget); what arrives after is left in the buffer, as after a
  cancelled `readuntil`. One exchange or `readuntil` at a time.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
from collections.abc import Callable
from typing import Any, Protocol, cast

LINE_END = b"\n"
# What one read takes from the socket at most. A dialogue's lines are short; an `asyncio.Protocol`
# is handed a new bytes object per read that the transport allocates at 256 KiB and shrinks (with
# glibc, often an mmap, mremap and munmap per read: measured, most of a read's cost).
READ_CHUNK = 4096
# Linux's `struct tcp_info` (include/uapi/linux/tcp.h): eight one-byte fields, then u32s, of
# which the twelfth, `tcpi_last_data_recv`, counts the milliseconds since data last came in
# (skipped: 8 bytes and 11 u32s).
TCP_INFO_LAST_DATA_RECV = struct.Struct("=52xI")
KERNEL_WAIT_READABLE = sys.platform == "linux" and hasattr(socket, "TCP_INFO")


class Lines(Protocol):
    """A line-driven exchange (`AgiConnection.exchange`)."""

    @property
    def done(self) -> bool: ...

    def line(self, raw: bytes) -> bytes | None:
        """Take one line read (its LF included); the bytes to write next, if any."""


class AgiConnection(asyncio.BufferedProtocol):
    def __init__(self, limit: int, on_connect: Callable[[AgiConnection], None]) -> None:
        self._limit = limit
        self._on_connect = on_connect
        self._buffer = bytearray()
        self._chunk = memoryview(bytearray(READ_CHUNK))
        self._eof = False
        self._error: BaseException | None = None
        self._lost = False
        self._paused_reading = False
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._write_paused = False
        self._closed: asyncio.Future[None] | None = None
        self._lines: Lines | None = None
        self._lines_done: asyncio.Future[None] | None = None
        self.transport: asyncio.Transport | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self._closed = asyncio.get_running_loop().create_future()
        self._on_connect(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._chunk

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._chunk[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        self._buffer += data
        if self._lines is not None:
            self._drive()
        self._wake()
        if not self._paused_reading and len(self._buffer) > 2 * self._limit:
            assert self.transport is not None
            self.transport.pause_reading()
            self._paused_reading = True

    def eof_received(self) -> bool:
        self._eof = True
        self._drive()
        self._wake()
        return True  # keep the transport: the server may still write (and then closes)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = self._eof = True
        if exc is not None:
            self._error = exc
        self._drive()
        self._wake()
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_exception(ConnectionResetError("Connection lost"))
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    # -- the dialogue's side -------------------------------------------------------------------

    def peername(self) -> Any:
        return None if self.transport is None else self.transport.get_extra_info("peername")

    def since_data_s(self) -> float | None:
        """Seconds since the peer's last bytes reached this host (Linux's TCP_INFO), None where
        that cannot be read. Asked right after those bytes were read, it is how long they
        waited for this process."""
        sock = None if self.transport is None else self.transport.get_extra_info("socket")
        if sock is None or not KERNEL_WAIT_READABLE:
            return None
        size = TCP_INFO_LAST_DATA_RECV.size
        try:
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, size)
        except OSError:
            return None
        if len(info) < size:
            return None
        milliseconds: int = TCP_INFO_LAST_DATA_RECV.unpack(info)[0]
        return milliseconds / 1000

    async def readuntil(self, separator: bytes) -> bytes:
        while True:
            chunk = self._take(separator)
            if chunk is not None:
                return chunk
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def exchange(self, lines: Lines, first: bytes) -> None:
        """Write `first`, then hand `lines` each line read and write its answers, until it is
        done (see the module's rules)."""
        self.write(first)
        self._lines = lines
        self._lines_done = done = asyncio.get_running_loop().create_future()
        try:
            self._drive()  # what is buffered already
            await done
        finally:
            self._lines = self._lines_done = None

    def write(self, data: bytes) -> None:
        """Hand `data` to the transport; await `drain()` after it while `must_drain`."""
        if self._lost or self.transport is None:
            raise ConnectionResetError("Connection lost")
        self.transport.write(data)

    @property
    def must_drain(self) -> bool:
        return self._write_paused

    async def drain(self) -> None:
        """Wait while the transport asks to pause writing."""
        if self._lost:
            raise ConnectionResetError("Connection lost")
        if self._write_paused:
            if self._drain is None or self._drain.done():
                self._drain = asyncio.get_running_loop().create_future()
            await self._drain

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    async def wait_closed(self) -> None:
        if self._closed is not None:
            await self._closed

    # -- internals -----------------------------------------------------------------------------

    def _take(self, separator: bytes) -> bytes | None:
        """The bytes up to and including `separator`, None until they are in; readuntil's
        errors."""
        buffer = self._buffer
        found = buffer.find(separator)
        if found >= 0:
            if found > self._limit:
                raise asyncio.LimitOverrunError(
                    "Separator is found, but chunk is longer than limit", found
                )
            end = found + len(separator)
            chunk = bytes(buffer[:end])
            del buffer[:end]
            self._maybe_resume_reading()
            return chunk
        seen = len(buffer) + 1 - len(separator)
        if seen > self._limit:
            raise asyncio.LimitOverrunError(
                "Separator is not found, and chunk exceed the limit", seen
            )
        if self._error is not None:
            raise self._error
        if self._eof:
            partial = bytes(buffer)
            buffer.clear()
            raise asyncio.IncompleteReadError(partial, None)
        self._maybe_resume_reading()
        return None

    def _drive(self) -> None:
        """Feed the exchange in progress the lines that are in; end it when it is done or fails."""
        lines, done = self._lines, self._lines_done
        if lines is None or done is None or done.done():
            return
        try:
            while not lines.done:
                raw = self._take(LINE_END)
                if raw is None:
                    return
                answer = lines.line(raw)
                if answer is not None:
                    self.write(answer)
        except Exception as exc:  # the awaiting task raises it: readuntil's and write's errors
            done.set_exception(exc)
            return
        done.set_result(None)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _maybe_resume_reading(self) -> None:
        if self._paused_reading and len(self._buffer) <= self._limit:
            assert self.transport is not None
            self._paused_reading = False
            self.transport.resume_reading()
