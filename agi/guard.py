"""The event-loop watchdog that lets FastAGI answer only while the process can keep its budget.

Asterisk has no FastAGI read timeout: once it has connected, a call waits inside `AGI()` for as
long as the tracker stays silent (20 s observed with a frozen tracker whose kernel still accepted
TCP). Nothing inside a frozen loop can answer, so the dialplan guards the wait (dialplan/README.md,
"A frozen tracker"); this module keeps a *slow* or *just-recovered* process from making it worse.

Rules:
- A tick runs every `interval_s` and measures how late it woke (the loop's lag). The loop is
  healthy when the last tick was at most `max_lag_s` late and the time since the last tick is at
  most `max_lag_s` (this catches sessions the loop accepts in the same turn it recovers in,
  before the tick has run).
- After an unhealthy tick the loop counts as unhealthy for `hold_s` more, so a loop that
  recovers for a moment between stalls is not trusted at once (half a second: long enough to
  see a second stall, short enough that one GC pause costs few calls their attribution).
- `LoopWatchdog.healthy()` is pure reading, cheap enough for every connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

log = logging.getLogger(__name__)


class LoopWatchdog:
    def __init__(self, max_lag_s: float, *, interval_s: float = 0.05, hold_s: float = 0.5) -> None:
        if max_lag_s <= 0 or interval_s <= 0:
            raise ValueError("max_lag_s and interval_s must be positive")
        self.max_lag_s = max_lag_s
        self._interval = interval_s
        self._hold = hold_s
        self._last_tick: float | None = None
        self._unhealthy_until = 0.0
        self.worst_lag_s = 0.0  # since start, for logs and metrics
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._last_tick = asyncio.get_running_loop().time()
            self._task = asyncio.create_task(self._run(), name="agi-loop-watchdog")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def healthy(self) -> bool:
        if self._last_tick is None:
            return True  # not started: nothing measured, nothing to refuse on
        now = asyncio.get_running_loop().time()
        stalled = now - self._last_tick > self._interval + self.max_lag_s
        return not stalled and now >= self._unhealthy_until

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + self._interval
            await asyncio.sleep(self._interval)
            now = loop.time()
            lag = now - expected
            self._last_tick = now
            self.worst_lag_s = max(self.worst_lag_s, lag)
            if lag > self.max_lag_s:
                self._unhealthy_until = now + self._hold
                log.warning(
                    "FastAGI: the event loop was %.2f s late; answering calls at once "
                    "(no attribution) for %.1f s",
                    lag,
                    self._hold,
                )
