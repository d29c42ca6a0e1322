"""Which addresses an alarm webhook may reach.

A webhook URL is chosen by an administrator, but the server is what connects to it, from inside
the deployment's network. Without a check, a URL such as ``http://169.254.169.254/`` (a cloud
provider's instance metadata), ``http://127.0.0.1:6379/`` or ``http://postgres:5432/`` makes the
server send requests to services that are not meant to be reachable from outside (server-side
request forgery, OWASP SSRF Prevention Cheat Sheet). So a webhook may only reach *globally
routable* addresses (``ipaddress``'s ``is_global``: not loopback, private, link-local, shared
address space, reserved, unspecified or multicast), plus the networks the operator allows
explicitly with ``WEBHOOK_ALLOWED_NETWORKS`` (e.g. an on-premises alert gateway on ``10.20.0.0/16``).

The check runs when a webhook is created (a 422 naming ``url``) and again before every delivery
attempt, on the addresses the host name resolves to at that moment, so a name that later resolves
to a forbidden address is refused too (recorded as a failed delivery, not retried). Every resolved
address must be allowed, not just one.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]


class ForbiddenTarget(ValueError):
    """The URL's host is, or resolves to, an address webhooks may not reach."""


def resolve(host: str, port: int) -> list[str]:
    """Addresses ``host`` resolves to (the system resolver, as the HTTP client will use it).

    Raises:
        OSError: the name does not resolve.
    """
    return sorted({info[4][0] for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)})


class TargetPolicy:
    """Allows globally routable addresses and the ``allowed`` networks.

    Args:
        allowed: networks allowed besides the global ones (``WEBHOOK_ALLOWED_NETWORKS``).
        resolver: ``(host, port) -> addresses``; :func:`resolve` by default.
    """

    def __init__(self, allowed: Sequence[IPNetwork] = (), *, resolver: Resolver = resolve) -> None:
        self.allowed = tuple(allowed)
        self.resolver = resolver

    def address_allowed(self, address: IPAddress) -> bool:
        """True for a global unicast address or one inside an allowed network."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
        if any(address in network for network in self.allowed):
            return True
        return address.is_global and not address.is_multicast

    def check(self, url: str, *, unresolved_ok: bool = False) -> None:
        """Refuse ``url`` when its host is, or resolves to, a forbidden address.

        Args:
            url: an ``http``/``https`` URL.
            unresolved_ok: accept a host name that does not resolve now (at creation: DNS may be
                down or the receiver not yet deployed; the delivery checks again).

        Raises:
            ForbiddenTarget: with the address and the setting that would allow it; or a host that
                does not resolve when ``unresolved_ok`` is false.
        """
        parts = urlsplit(url)
        host = parts.hostname or ""
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            addresses = [literal]
        else:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            try:
                addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in self.resolver(host, port)]
            except OSError as exc:
                if unresolved_ok:
                    return
                raise ForbiddenTarget(f"host {host!r} does not resolve: {exc}") from None
        for address in addresses:
            if not self.address_allowed(address):
                shown = host if literal is not None else f"{host!r} ({address})"
                raise ForbiddenTarget(
                    f"webhooks may not reach {shown}: not a public address; "
                    "allow its network with WEBHOOK_ALLOWED_NETWORKS"
                )
