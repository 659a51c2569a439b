"""Recording files: map Asterisk's path into our recordings folder and wait for the file.

Rules (CONTRACT.md, PBX side):
- A path is absolute, or relative to Asterisk's monitor folder. A path under
  `asterisk_monitor_dir` maps to the same relative path under `recordings_dir` (which may be a
  mount of that folder on another host). A path outside it, or climbing out with `..`, is not
  ours to read: it is named but never confirmed.
- The file is looked for when the call ends and for `wait_s` (60 s) after, every poll: MixMonitor
  closes it late. It is confirmed when it is larger than a bare WAV header (44 bytes) and its size
  did not change between two polls (still being written otherwise), or at the deadline.
- File checks run in a thread: a stalled network mount must not stall the event loop.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath

from calltracking.core.records import CallKey

WAV_HEADER_BYTES = 44
_FORGET_UNENDED = timedelta(hours=24)


def asterisk_path(raw: str, monitor_dir: str) -> str:
    """The absolute path as Asterisk sees it."""
    path = PurePosixPath(raw)
    return str(path if path.is_absolute() else PurePosixPath(monitor_dir) / path)


def local_path(path: str, monitor_dir: str, recordings_dir: Path) -> Path | None:
    """Where this process reads Asterisk's `path`; None when it is outside the monitor folder."""
    try:
        relative = PurePosixPath(path).relative_to(PurePosixPath(monitor_dir))
    except ValueError:
        return None
    if ".." in relative.parts or not relative.parts:
        return None
    return recordings_dir.joinpath(*relative.parts)


@dataclass(slots=True)
class _Pending:
    local: Path | None
    named_at: datetime
    deadline: datetime | None = None  # set when the call ended
    last_size: int = -1


class RecordingWatcher:
    def __init__(self, monitor_dir: str, recordings_dir: Path, wait_s: float) -> None:
        self._monitor_dir = monitor_dir
        self._recordings_dir = recordings_dir
        self._wait = timedelta(seconds=wait_s)
        self._pending: dict[CallKey, _Pending] = {}

    def named(self, key: CallKey, path: str, now: datetime) -> Path | None:
        local = local_path(path, self._monitor_dir, self._recordings_dir)
        self._pending[key] = _Pending(local, now)
        return local

    def call_ended(self, key: CallKey, now: datetime) -> None:
        pending = self._pending.get(key)
        if pending is not None and pending.deadline is None:
            pending.deadline = now + self._wait

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, key: object) -> bool:
        return key in self._pending

    async def last_written(self, key: CallKey) -> datetime | None:
        """When the call's recording file was last written (MixMonitor closes it at hangup), or
        None when there is no such file."""
        pending = self._pending.get(key)
        if pending is None or pending.local is None:
            return None
        stamp = await asyncio.to_thread(_mtime, pending.local)
        return None if stamp is None else datetime.fromtimestamp(stamp, UTC)

    async def poll(self, now: datetime) -> tuple[list[tuple[CallKey, int]], list[CallKey]]:
        """Check ended calls' files: (confirmed with their sizes, given up)."""
        found: list[tuple[CallKey, int]] = []
        given_up: list[CallKey] = []
        for key, pending in list(self._pending.items()):
            if pending.deadline is None:
                if now - pending.named_at > _FORGET_UNENDED:
                    del self._pending[key]
                continue
            size = -1 if pending.local is None else await asyncio.to_thread(_size, pending.local)
            if self._pending.get(key) is not pending:
                continue  # another poll settled it (or it was renamed) while we read the size
            late = now >= pending.deadline
            if size > WAV_HEADER_BYTES and (size == pending.last_size or late):
                found.append((key, size))
                del self._pending[key]
            elif late:
                given_up.append(key)
                del self._pending[key]
            else:
                pending.last_size = size
        return found, given_up


def _mtime(path: Path) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return -1
