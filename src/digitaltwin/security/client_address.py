"""The client's address, reading ``X-Forwarded-For`` only from trusted proxies.

Rule (the one nginx's ``real_ip_recursive on`` and Werkzeug's ``ProxyFix`` implement): when
the TCP peer is in ``TRUSTED_PROXIES``, walk ``X-Forwarded-For`` from the right, skipping
trusted proxies; the first address that is not one is the client. A header from an untrusted
peer is ignored, so a client cannot pick its own rate-limit key by sending the header, and
a fake hop prepended by the client is never reached because its real address, appended by the
proxy, comes first from the right.

This is the only place the header is read: ``digitaltwin serve`` runs uvicorn with
``proxy_headers=False``, because uvicorn's own handling (on by default, trusting
``FORWARDED_ALLOW_IPS``) replaced the TCP peer with a header entry before this rule ran.
Every address returned is one :mod:`ipaddress` parsed, in its canonical form (at most 39
characters plus a zone), or ``unknown``: a header value never reaches the rate limiter's keys
or the audit log as it was written.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: The address of a request whose peer is not an IP address.
UNKNOWN = "unknown"


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
        The address in canonical form, or ``unknown`` without a peer or when the peer is not an
        IP address (e.g. a test client's name).
    """
    peer_ip = _ip(peer) if peer else None
    if peer_ip is None:
        return UNKNOWN
    if not proxies or not _trusted(peer_ip, proxies):
        return str(peer_ip)
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",") if hop.strip()]
    chosen = str(peer_ip)
    for hop in reversed(hops):
        address = _ip(hop)
        if address is None:
            break  # garbage where the proxy chain should be: keep the last trustworthy hop
        chosen = str(address)
        if not _trusted(address, proxies):
            break
    return chosen


def normalise_address(value: str | None) -> str | None:
    """``value`` in canonical IP form; ``unknown`` for anything else that is not None.

    Used on every address written to the audit log (whose column holds 64 characters), so a
    caller passing a raw header or peer name cannot make that write fail.
    """
    if value is None:
        return None
    address = _ip(value)
    return str(address) if address is not None else UNKNOWN


def forwarded_scheme(peer: str | None, forwarded_proto: str | None, proxies: Sequence[IPNetwork]) -> str | None:
    """``http`` or ``https`` from a trusted proxy's ``X-Forwarded-Proto`` (the last value), else None."""
    if not forwarded_proto or not proxies or not _trusted(_ip(peer) if peer else None, proxies):
        return None
    scheme = forwarded_proto.split(",")[-1].strip().lower()
    return scheme if scheme in ("http", "https") else None
