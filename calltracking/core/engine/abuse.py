"""Rules against visitors that would drain a pool (issue: tenants and bots may be hostile).

- Client addresses are grouped: IPv4 by address, IPv6 by /64 (one subscriber gets a whole /64,
  so counting single IPv6 addresses would let one machine look like millions).
- New visitors per address are rate limited by a token bucket: a burst passes (an office behind
  one NAT opening the site after a mail-out), a steady stream does not. A TV ad brings many
  addresses at once, so it never meets this limit.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime

HELLO_BURST = 60
# After the burst, two new visitors a second from one address: a carrier's NAT or an office
# opening the site stays well inside; 300 hellos in 9 s (a flood) do not.
HELLO_REFILL_PER_S = 2.0


# An IPv4 address already as `str(IPv4Address(..))` writes it (four decimal octets, no leading
# zeros): its own key, without building an address object (every hello asks, twice).
_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def address_key(address: str) -> str:
    """The group an address counts in: itself for IPv4, its /64 for IPv6."""
    if _CANONICAL_IPV4.fullmatch(address):
        return address
    return parsed_key(address)


def parsed_key(address: str) -> str:
    """`address_key` by parsing alone (the canonical IPv4 shortcut's reference)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


@dataclass(slots=True)
class Bucket:
    tokens: float
    at: datetime


class HelloRate:
    """Token buckets per address group, fed an explicit time."""

    def __init__(self, burst: int = HELLO_BURST, refill_per_s: float = HELLO_REFILL_PER_S) -> None:
        self.burst = burst
        self.refill_per_s = refill_per_s
        self._buckets: dict[str, Bucket] = {}

    def allow(self, address: str, now: datetime) -> bool:
        bucket = self._buckets.get(address)
        if bucket is None:
            bucket = self._buckets[address] = Bucket(float(self.burst), now)
        elapsed = max(0.0, (now - bucket.at).total_seconds())
        bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.refill_per_s)
        bucket.at = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def forget_full(self, now: datetime) -> None:
        """Drop buckets that have refilled (bounded memory under many addresses)."""
        full_after = self.burst / self.refill_per_s
        stale = [a for a, b in self._buckets.items() if (now - b.at).total_seconds() >= full_after]
        for address in stale:
            del self._buckets[address]

    def __len__(self) -> int:
        return len(self._buckets)
