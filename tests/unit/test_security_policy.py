"""Client address behind proxies and the route policy; no I/O."""

from __future__ import annotations

import pytest

from digitaltwin.security.client_address import client_address, parse_networks
from digitaltwin.security.policy import Requirement, access, requirement
from digitaltwin.security.roles import Role

PROXIES = parse_networks(["10.0.0.2", "10.1.0.0/16"])


@pytest.mark.parametrize(
    ("peer", "xff", "expected"),
    [
        ("203.0.113.7", ["1.1.1.1"], "203.0.113.7"),  # untrusted peer: header ignored
        ("10.0.0.2", ["198.51.100.1"], "198.51.100.1"),
        ("10.0.0.2", ["9.9.9.1, 198.51.100.3"], "198.51.100.3"),  # fake hop prepended by the client
        ("10.0.0.2", ["198.51.100.4, 10.1.2.3"], "198.51.100.4"),  # two trusted proxies in a row
        ("10.0.0.2", ["9.9.9.9", "198.51.100.5"], "198.51.100.5"),  # several header lines
        ("10.0.0.2", [], "10.0.0.2"),
        ("10.0.0.2", ["garbage"], "10.0.0.2"),
        ("10.0.0.2", ["[2001:db8::1]:443"], "2001:db8::1"),
        (None, [], "unknown"),
    ],
)
def test_client_address(peer: str | None, xff: list[str], expected: str) -> None:
    assert client_address(peer, xff, PROXIES) == expected


def test_no_trusted_proxies_means_the_peer() -> None:
    assert client_address("10.0.0.2", ["198.51.100.1"], ()) == "10.0.0.2"


def test_bad_proxy_entry_names_the_setting() -> None:
    with pytest.raises(ValueError, match="TRUSTED_PROXIES: 'nope'"):
        parse_networks(["nope"])


def test_policy_defaults_and_declarations() -> None:
    assert requirement("/healthz", "GET").public
    assert requirement("/api/v1/sites", "GET") == Requirement(Role.VIEWER, "read")
    assert requirement("/api/v1/assets/{asset_id}/train", "POST") == Requirement(Role.OPERATOR, None)
    assert requirement("/api/v1/readings", "POST") == Requirement(Role.OPERATOR, "ingest")
    assert requirement("/api/v1/sites/{site_id}", "PUT") == Requirement(Role.ADMIN, None)
    assert requirement("/api/v1/models/{model_id}/activate", "POST") == Requirement(Role.ADMIN, None)
    assert requirement("/api/v1/users/{username}", "GET") == Requirement(Role.ADMIN, None)
    assert requirement("/api/v1/predict", "POST", access(Role.VIEWER, api_key_scope="read")) == Requirement(Role.VIEWER, "read")
    assert requirement("/api/v1/auth/me", "GET", access(Role.VIEWER, mfa_enrolment=True)) == Requirement(Role.VIEWER, None, True)
    assert requirement("/api/v1/auth/token", "POST", access("public")).public
    assert Role.ADMIN.allows(Role.OPERATOR) and not Role.VIEWER.allows(Role.OPERATOR)


@pytest.mark.parametrize(
    ("peer", "xff", "expected"),
    [
        ("testclient", ["198.51.100.1"], "unknown"),  # a peer that is not an address is never written anywhere
        ("10.0.0.2", ["2001:db8:" + "0" * 71], "10.0.0.2"),  # 80 characters of garbage: the proxy is the client
        ("10.0.0.2", ["2001:DB8:0:0::1"], "2001:db8::1"),  # canonical form
    ],
)
def test_addresses_are_parsed_never_copied(peer: str, xff: list[str], expected: str) -> None:
    assert client_address(peer, xff, PROXIES) == expected


def test_delays_grow_from_the_free_failures_up_to_the_maximum() -> None:
    from datetime import UTC, datetime

    from sqlalchemy import create_engine

    from digitaltwin.security.login_throttle import LoginThrottle

    throttle = LoginThrottle(create_engine("sqlite://"), key=b"k", free_failures=3, max_delay_s=60, clock=lambda: datetime.now(UTC))
    assert [throttle.delay_s(n) for n in range(10)] == [0, 0, 0, 1, 2, 4, 8, 16, 32, 60]
    assert throttle.delay_s(10_000) == 60
    assert throttle.account_hash("Ada") == throttle.account_hash("ada") != throttle.account_hash("ada2")
