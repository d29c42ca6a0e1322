"""The client's address, reading ``X-Forwarded-For`` only from trusted proxies.

Rule (the one nginx's ``real_ip_recursive on`` and Werkzeug's ``ProxyFix`` implement): when
the TCP peer is in ``TRUSTED_PROXIES``, walk ``X-Forwarded-For`` from the right, skipping
trusted proxies; the first address that is not one is the client. A header from an untrusted
peer is ignored, so a client cannot pick its own rate-limit key by sending the header, and
a fake hop prepended by the client is never reached because its real address, appended by the
proxy, comes first from the right.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str], *, field: str = "TRUSTED_PROXIES") -> tuple[IPNetwork, ...]:
    """Networks of IPs or CIDRs (``10.0.0.2``, ``10.1.0.0/16``, ``::1``).

    Raises:
        ValueError: naming ``field`` and the bad entry.
    """
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{field}: {value!r} is not an IP address or network") from None
    return tuple(networks)


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    value = value.strip()
    if value.startswith("[") and "]" in value:  # [v6]:port
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # v4:port
        value = value.split(":", 1)[0]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address | None, proxies: Sequence[IPNetwork]) -> bool:
    return address is not None and any(address in network for network in proxies)


def client_address(peer: str | None, forwarded_for: Sequence[str], proxies: Sequence[IPNetwork]) -> str:
    """The client address of a request.

    Args:
        peer: the TCP peer's address (``scope["client"][0]``), or None.
        forwarded_for: every ``X-Forwarded-For`` header value, in order.
        proxies: trusted proxy networks.

    Returns:
        The address as a string (``unknown`` without a peer).
    """
    peer = peer or "unknown"
    if not proxies or not _trusted(_ip(peer), proxies):
        return peer
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",") if hop.strip()]
    chosen = peer
    for hop in reversed(hops):
        address = _ip(hop)
        if address is None:
            break  # garbage where the proxy chain should be: keep the last trustworthy hop
        chosen = str(address)
        if not _trusted(address, proxies):
            break
    return chosen
