"""The asset hierarchy stays a forest on both backends, also through re-registration (``exist_ok``)."""

from __future__ import annotations

import pytest

from digitaltwin.domain.assets import Asset, AssetKind, Site
from digitaltwin.domain.errors import ValidationError
from digitaltwin.storage.repository import Repository


def test_reregistering_cannot_close_a_cycle(repo: Repository) -> None:
    repo.create_site(Site("plant", "Plant", "Europe/Berlin"))
    repo.create_asset(Asset("a", "plant", "A", AssetKind.METER))
    repo.create_asset(Asset("b", "plant", "B", AssetKind.METER, parent_id="a"))
    repo.create_asset(Asset("c", "plant", "C", AssetKind.METER, parent_id="b"))
    # `digitaltwin assets add a --parent c` re-registers a with exist_ok=True
    with pytest.raises(ValidationError) as raised:
        repo.create_asset(Asset("a", "plant", "A", AssetKind.METER, parent_id="c"), exist_ok=True)
    assert raised.value.field == "parent_id"
    with pytest.raises(ValidationError):
        repo.update_asset(Asset("b", "plant", "B", AssetKind.METER, parent_id="c"))
    assert repo.get_asset("a").parent_id is None
    repo.update_asset(Asset("c", "plant", "C", AssetKind.METER, parent_id="a", rated_power_kw=90.0))
    assert (repo.get_asset("c").parent_id, repo.get_asset("c").rated_power_kw) == ("a", 90.0)
