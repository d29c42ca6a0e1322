"""``digitaltwin sites add`` / ``assets add`` on existing registrations change only the options given,
never move an asset to another site, and check countries against ``holidays``; on both real databases."""

from __future__ import annotations

from digitaltwin.config import Settings
from digitaltwin.domain.assets import Asset, AssetKind, Site
from digitaltwin.storage.repository import Repository
from tests.integration.test_cli_forecast import _run


def test_reregistering_a_site_keeps_what_is_not_given(settings: Settings, repo: Repository) -> None:
    _run(settings, "sites", "add", "s", "--timezone", "Europe/Berlin", "--name", "Site S", "--country", "DE")
    assert "updated" in _run(settings, "sites", "add", "s", "--timezone", "Europe/Paris")
    assert repo.get_site("s") == Site("s", "Site S", "Europe/Paris", "DE")
    _run(settings, "sites", "add", "s", "--country", "fr")  # no --timezone needed for an existing site
    assert repo.get_site("s") == Site("s", "Site S", "Europe/Paris", "FR")
    out = _run(settings, "sites", "add", "s", "--country", "XX", exit_code=2)
    assert "country" in out and "holidays" in out
    assert repo.get_site("s").country == "FR"
    assert "timezone" in _run(settings, "sites", "add", "new-site", exit_code=2)


def test_reregistering_an_asset_keeps_metadata_and_refuses_a_site_move(settings: Settings, repo: Repository) -> None:
    repo.create_site(Site("s1", "S1", "Europe/Berlin", "DE"))
    repo.create_site(Site("other-site", "Other", "Europe/Berlin", "DE"))
    exog = {"forecast_exog": [{"asset_id": "weather", "quantity": "temperature"}]}
    repo.create_asset(Asset("weather", "s1", "Weather", AssetKind.WEATHER))
    repo.create_asset(Asset("nc-m1", "s1", "Main meter", AssetKind.METER))
    repo.create_asset(Asset("nc-m5", "s1", "Press 5", AssetKind.MACHINE, "nc-m1", 250.0, exog))
    repo.create_asset(Asset("child", "s1", "Child", AssetKind.METER, "nc-m5"))

    assert "updated" in _run(settings, "assets", "add", "nc-m5", "--site", "s1")
    assert repo.get_asset("nc-m5") == Asset("nc-m5", "s1", "Press 5", AssetKind.MACHINE, "nc-m1", 250.0, exog)
    _run(settings, "assets", "add", "nc-m5", "--site", "s1", "--rated-power-kw", "300", "--name", "Press five")
    assert repo.get_asset("nc-m5") == Asset("nc-m5", "s1", "Press five", AssetKind.MACHINE, "nc-m1", 300.0, exog)

    out = _run(settings, "assets", "add", "nc-m1", "--site", "other-site", exit_code=2)
    assert "--site" in out and "s1" in out
    assert repo.get_asset("nc-m1").site_id == "s1" and repo.get_asset("nc-m5").parent_id == "nc-m1"

    out = _run(settings, "assets", "add", "nc-m1", "--site", "s1", "--parent", "child", exit_code=2)  # m1 -> child -> m5 -> m1
    assert "parent_id" in out
    assert repo.get_asset("nc-m1").parent_id is None

    assert "created" in _run(settings, "assets", "add", "fresh", "--site", "s1")
    assert repo.get_asset("fresh") == Asset("fresh", "s1", "fresh", AssetKind.METER)


def test_cli_registration_refuses_what_the_api_would(settings: Settings, repo: Repository) -> None:
    """An infinite rated power or an empty name stored by the CLI made every API listing a 500."""
    repo.create_site(Site("s1", "S1", "Europe/Berlin", "DE"))
    repo.create_asset(Asset("m1", "s1", "Meter", AssetKind.METER, rated_power_kw=50.0))
    for value in ("inf", "nan", "-5", "1e12"):
        out = _run(settings, "assets", "add", "m1", "--site", "s1", "--rated-power-kw", value, exit_code=2)
        assert "--rated-power-kw" in out, (value, out)
    assert "--rated-power-kw" in _run(settings, "assets", "add", "m2", "--site", "s1", "--rated-power-kw", "inf", exit_code=2)
    assert "--name" in _run(settings, "assets", "add", "m1", "--site", "s1", "--name", "", exit_code=2)
    assert "--name" in _run(settings, "sites", "add", "s1", "--name", "x" * 201, exit_code=2)
    assert repo.get_asset("m1").rated_power_kw == 50.0 and repo.get_asset("m1").name == "Meter"
    assert repo.get_site("s1").name == "S1" and not repo.known_asset_ids(["m2"])
