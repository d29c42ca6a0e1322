"""Which addresses webhooks may reach: public ones, and the networks an operator allows."""

from __future__ import annotations

import ipaddress

import pytest

from digitaltwin.config import Settings
from digitaltwin.services.webhook_targets import ForbiddenTarget, TargetPolicy


def resolver_to(*addresses: str):
    def resolve(host: str, port: int) -> list[str]:
        return list(addresses)

    return resolve


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/x", "http://127.8.9.10/x", "http://[::1]/x", "http://[::ffff:127.0.0.1]/x",
    "http://169.254.169.254/latest/meta-data", "http://[fe80::1]/x", "http://10.0.0.5/x", "http://172.16.3.4/x",
    "http://192.168.1.1/x", "http://100.64.0.1/x", "http://0.0.0.0/x", "http://224.0.0.1/x", "http://[fd00::1]/x",
    "http://240.0.0.1/x",
])
def test_non_public_literals_are_refused(url: str) -> None:
    with pytest.raises(ForbiddenTarget, match="WEBHOOK_ALLOWED_NETWORKS"):
        TargetPolicy().check(url)


def test_public_addresses_pass_and_allowed_networks_open_private_ones() -> None:
    TargetPolicy().check("https://8.8.8.8/hook")
    TargetPolicy().check("https://[2001:4860:4860::8888]/hook")
    allowed = TargetPolicy([ipaddress.ip_network("10.20.0.0/16")])
    allowed.check("http://10.20.1.2:8080/hook")
    with pytest.raises(ForbiddenTarget):
        allowed.check("http://10.21.1.2:8080/hook")


def test_a_name_is_judged_by_every_address_it_resolves_to() -> None:
    TargetPolicy(resolver=resolver_to("93.184.216.34")).check("https://hooks.example.com/x")
    with pytest.raises(ForbiddenTarget, match=r"'hooks.example.com' \(127.0.0.1\)"):
        TargetPolicy(resolver=resolver_to("93.184.216.34", "127.0.0.1")).check("https://hooks.example.com/x")


def test_an_unresolvable_name_passes_only_when_asked() -> None:
    def fails(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    TargetPolicy(resolver=fails).check("https://not-yet-deployed.example/x", unresolved_ok=True)
    with pytest.raises(ForbiddenTarget, match="does not resolve"):
        TargetPolicy(resolver=fails).check("https://not-yet-deployed.example/x")


def test_the_setting_is_parsed_and_a_bad_entry_named() -> None:
    settings = Settings(_env_file=None, WEBHOOK_ALLOWED_NETWORKS="10.0.0.0/8, 192.168.7.3")
    assert settings.webhook_allowed_networks == ["10.0.0.0/8", "192.168.7.3"]
    with pytest.raises(ValueError, match="WEBHOOK_ALLOWED_NETWORKS"):
        Settings(_env_file=None, WEBHOOK_ALLOWED_NETWORKS="10.0.0.0/8,intranet")
