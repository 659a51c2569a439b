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
- `LoopWatchdog.healthy()` is cheap enough for every connection.
- After `rest_after_s` without a session the tick rests, so that an idle tracker sleeps (a
  20 Hz tick alone cost 0.004 of a core, most of an idle process's CPU: the wake-ups, not the
  Python). A resting watchdog cannot see the loop's lag, so the first session after a rest is
  judged by its own wait instead: how long its header's last bytes lay in the kernel unread
  (`waited`, from TCP_INFO on Linux). Longer than `max_lag_s` means the loop was frozen when
  the session came: unhealthy, held for `hold_s`, as a late tick would be. That session starts
  the tick again. Without a way to read that wait (`rest_after_s=None`), it never rests.
- What a rest gives up: a freeze that ends before the next session reaches the tracker is not
  seen, so that session is trusted where a tick would have held it off for `hold_s`. Sessions
  that came during the freeze are not: the first one's wait shows it, and the hold covers the
  others accepted with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


class LoopWatchdog:
    def __init__(
        self,
        max_lag_s: float,
        *,
        interval_s: float = 0.05,
        hold_s: float = 0.5,
        rest_after_s: float | None = None,
    ) -> None:
        if max_lag_s <= 0 or interval_s <= 0:
            raise ValueError("max_lag_s and interval_s must be positive")
        if rest_after_s is not None and rest_after_s <= 0:
            raise ValueError("rest_after_s must be positive")
        self.max_lag_s = max_lag_s
        self._interval = interval_s
        self._hold = hold_s
        self._rest_after = rest_after_s
        self._last_tick: float | None = None
        self._last_session = 0.0
        self._unhealthy_until = 0.0
        self._resting = False
        self._woken = asyncio.Event()
        self.worst_lag_s = 0.0  # since start, for logs and metrics
        self.ticks = 0  # since start: a resting watchdog adds none
        self._task: asyncio.Task[None] | None = None

    @property
    def resting(self) -> bool:
        return self._resting

    def start(self) -> None:
        if self._task is None:
            self._last_tick = self._last_session = asyncio.get_running_loop().time()
            self._resting = False
            self._task = asyncio.create_task(self._run(), name="agi-loop-watchdog")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def healthy(self, waited: Callable[[], float | None] | None = None) -> bool:
        """Whether a session may be served now. `waited` tells how long the session's bytes
        waited unread (None: unknown); it is asked only after a rest."""
        if self._last_tick is None:
            return True  # not started: nothing measured, nothing to refuse on
        now = asyncio.get_running_loop().time()
        self._last_session = now
        if self._resting:
            self._wake(now)
            wait_s = waited() if waited is not None else None
            if wait_s is not None and wait_s > self.max_lag_s:
                self._late(wait_s, now)
            return now >= self._unhealthy_until
        stalled = now - self._last_tick > self._interval + self.max_lag_s
        return not stalled and now >= self._unhealthy_until

    def _quiet(self, now: float) -> bool:
        return self._rest_after is not None and now - self._last_session >= self._rest_after

    def _wake(self, now: float) -> None:
        self._resting = False
        self._last_tick = now
        self._woken.set()

    def _late(self, lag: float, now: float) -> None:
        self.worst_lag_s = max(self.worst_lag_s, lag)
        self._unhealthy_until = now + self._hold
        log.warning(
            "FastAGI: the event loop was %.2f s late; answering calls at once "
            "(no attribution) for %.1f s",
            lag,
            self._hold,
        )

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self._quiet(loop.time()):
                self._resting = True
                self._woken.clear()
                await self._woken.wait()
                continue
            expected = loop.time() + self._interval
            await asyncio.sleep(self._interval)
            now = loop.time()
            lag = now - expected
            self._last_tick = now
            self.ticks += 1
            self.worst_lag_s = max(self.worst_lag_s, lag)
            if lag > self.max_lag_s:
                self._late(lag, now)
