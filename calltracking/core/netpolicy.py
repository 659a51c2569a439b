"""Which network peers and targets the tracker's edges accept.

Rules kept here (CONTRACT.md v1.1, `CALLTRACKING_WEBHOOK_ALLOW_PRIVATE`, `CALLTRACKING_AGI_ALLOW`):
- A webhook target must be a public address: loopback, private, link-local, multicast,
  unspecified, reserved and other non-global ranges are refused (an IPv4 address mapped into IPv6
  is judged as the IPv4 address it carries). Otherwise a tenant could make the tracker POST to
  services that trust the machine's own network (a blind SSRF).
- At settings time only what the URL itself says can be judged: a literal address, or the names
  `localhost` and `*.localhost`. Names are judged again on the address actually connected to.
- The FastAGI allow-list is a comma-separated list of addresses or networks (IPv4 or IPv6);
  empty allows every peer. A peer's address is compared as an address, so `::ffff:10.0.0.1`
  matches `10.0.0.0/8`.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_address(text: str) -> Address | None:
    """The address `text` spells (an IPv6 zone dropped), or None when it is not an address."""
    host = text.strip().strip("[]").split("%", 1)[0]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def address_refusal(address: Address) -> str | None:
    """Why a webhook may not go to `address`, or None when it is a public address."""
    for kind, flag in (
        ("a loopback", address.is_loopback),
        ("the unspecified", address.is_unspecified),
        ("a link-local", address.is_link_local),
        ("a multicast", address.is_multicast),
        ("a private", address.is_private),
        ("a reserved", address.is_reserved),
    ):
        if flag:
            return f"{address} is {kind} address"
    if not address.is_global:
        return f"{address} is not a public address"
    return None


def url_refusal(url: str) -> str | None:
    """Why a webhook URL names a non-public target by itself, or None (names are judged later)."""
    try:
        host = (urlsplit(url).hostname or "").rstrip(".").lower()
    except ValueError:
        return "the URL has no valid host"
    if not host:
        return "the URL has no host"
    if host == "localhost" or host.endswith(".localhost"):
        return f"{host} is a loopback name"
    address = parse_address(host)
    if address is None and host.isdigit():
        # `http://2130706433/` is 127.0.0.1 to the resolver.
        try:
            address = ipaddress.IPv4Address(int(host))
        except ValueError:
            return None
    return address_refusal(address) if address is not None else None


def parse_networks(text: str) -> tuple[Network, ...]:
    """Networks of a comma-separated allow-list (`10.0.0.5, 192.168.1.0/24, fd00::/8`).

    Raises ValueError naming the first item that is neither an address nor a network.
    """
    networks: list[Network] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an address or a network") from None
    return tuple(networks)


def allowed_peer(host: str, networks: tuple[Network, ...]) -> bool:
    """Whether a peer at `host` may connect: any peer when `networks` is empty."""
    if not networks:
        return True
    address = parse_address(host)
    if address is None:
        return False
    return any(address.version == net.version and address in net for net in networks)
