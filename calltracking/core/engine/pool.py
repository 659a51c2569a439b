"""A site's pool in memory, indexed so that allocation costs the same for 20 numbers as for
20,000 (the order of `core.leases.allocate`, which stays the readable specification; a property
test proves both choose alike).

Indexes:
- idle numbers (not leased, not static) in a heap ordered never-used first, then released
  longest ago, then by number. Holds are a suffix of that order (every hold is `hold_s` long),
  so the heap's minimum is free exactly when any number is free, and otherwise it is the hold
  that yields first under pressure;
- leases in an insertion-ordered dict moved to the end on activity: its first item is the lease
  idle longest (pre-emption, idle revocation);
- leases per client address (the per-address cap, and who drained the pool).
Stale heap entries are skipped lazily (a version per number).
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(slots=True)
class Lease:
    lease_id: str
    e164: str
    visitor_id: str
    visit_id: str | None
    address: str
    assigned_at: datetime
    last_activity_at: datetime


@dataclass(slots=True)
class Number:
    e164: str
    static: bool = False
    lease: Lease | None = None
    last_visitor_id: str | None = None
    last_visit_id: str | None = None
    last_lease_id: str | None = None
    last_assigned_at: datetime | None = None
    released_at: datetime | None = None
    version: int = 0


_NEVER = 0.0


@dataclass(slots=True)
class Pool:
    numbers: dict[str, Number] = field(default_factory=dict)
    leases: dict[str, Lease] = field(default_factory=dict)  # visitor -> lease, by activity
    per_address: Counter[str] = field(default_factory=Counter)
    static_count: int = 0
    _idle: list[tuple[int, float, str, int]] = field(default_factory=list)

    # -- membership ---------------------------------------------------------------------------

    def add(self, number: Number) -> None:
        self.numbers[number.e164] = number
        self.static_count += number.static
        if not number.static and number.lease is None:
            self._push_idle(number)
        elif number.lease is not None:
            self._index_lease(number.lease)

    def remove(self, e164: str) -> Number | None:
        number = self.numbers.pop(e164, None)
        if number is not None:
            number.version += 1
            self.static_count -= number.static
            if number.lease is not None:
                self._unindex_lease(number.lease)
        return number

    def replace(self, e164: str, number: Number | None) -> None:
        """Put the store's copy of a number in place of this one (None: it left the pool).
        The copy's version continues the old one's, so the old copy's idle entries stay stale."""
        old = self.remove(e164)
        if number is not None:
            if old is not None:
                number.version = old.version
            self.add(number)

    def reorder_leases(self) -> None:
        """Leases back in activity order after some were replaced (appended) from the store;
        a stable sort keeps equally idle ones together, as `idlest` needs."""
        self.leases = dict(sorted(self.leases.items(), key=lambda item: item[1].last_activity_at))

    @property
    def leasable_count(self) -> int:
        return len(self.numbers) - self.static_count

    # -- idle numbers -------------------------------------------------------------------------

    def _push_idle(self, number: Number) -> None:
        number.version += 1
        released = number.released_at
        key = (0, _NEVER) if released is None else (1, released.timestamp())
        heapq.heappush(self._idle, (*key, number.e164, number.version))

    def first_idle(self) -> Number | None:
        """The idle number released longest ago (never-used first), or None."""
        while self._idle:
            _, _, e164, version = self._idle[0]
            number = self.numbers.get(e164)
            if number is not None and number.version == version and number.lease is None:
                return number
            heapq.heappop(self._idle)
        return None

    # -- leases -------------------------------------------------------------------------------

    def lease_number(self, number: Number, lease: Lease) -> None:
        number.version += 1  # drops its idle entry
        number.lease = lease
        self._index_lease(lease)

    def release(self, number: Number, at: datetime) -> Lease:
        lease = number.lease
        assert lease is not None
        number.lease = None
        number.last_visitor_id = lease.visitor_id
        number.last_visit_id = lease.visit_id
        number.last_lease_id = lease.lease_id
        number.last_assigned_at = lease.assigned_at
        number.released_at = at
        self._unindex_lease(lease)
        self._push_idle(number)
        return lease

    def touch(self, lease: Lease, at: datetime) -> None:
        lease.last_activity_at = at
        self.leases.pop(lease.visitor_id, None)
        self.leases[lease.visitor_id] = lease

    def idlest(self) -> Lease | None:
        """The lease idle longest; among equally idle ones the lowest number, as
        `core.leases` orders them (leases sit in activity order, so ties are at the front)."""
        best: Lease | None = None
        for lease in self.leases.values():
            if best is not None and lease.last_activity_at != best.last_activity_at:
                break
            if best is None or lease.e164 < best.e164:
                best = lease
        return best

    def top_address(self) -> tuple[str | None, int]:
        if not self.per_address:
            return None, 0
        address, count = self.per_address.most_common(1)[0]
        return address, count

    def idlest_of(self, address: str) -> Lease | None:
        return next((le for le in self.leases.values() if le.address == address), None)

    def _index_lease(self, lease: Lease) -> None:
        self.leases[lease.visitor_id] = lease
        self.per_address[lease.address] += 1

    def _unindex_lease(self, lease: Lease) -> None:
        self.leases.pop(lease.visitor_id, None)
        self.per_address[lease.address] -= 1
        if self.per_address[lease.address] <= 0:
            del self.per_address[lease.address]
