"""The operations documentation exists and every alert's runbook link points at a real section."""

from __future__ import annotations

import re

import yaml

from tests.ops.tools import DEPLOY, REPO_ROOT

DOCS = REPO_ROOT / "docs"


def _anchors(markdown: str) -> set[str]:
    """GitHub-style heading anchors."""
    headings = re.findall(r"^#+\s+(.+)$", markdown, re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_the_five_pages_exist() -> None:
    for page in ("deployment", "configuration", "operations", "api", "architecture"):
        assert (DOCS / f"{page}.md").read_text().startswith("# "), page


def test_every_runbook_link_resolves() -> None:
    anchors = _anchors((DOCS / "operations.md").read_text())
    groups = yaml.safe_load((DEPLOY / "prometheus" / "rules" / "digitaltwin.yml").read_text())["groups"]
    for rule in (r for g in groups for r in g["rules"] if "alert" in r):
        page, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert page == "docs/operations.md" and anchor in anchors, rule["alert"]


def test_backup_schedule_is_documented() -> None:
    text = (DOCS / "operations.md").read_text()
    for line in ("0 2 * * *  cd /srv/digitaltwin && scripts/backup.sh database",
                 "0 3 * * 0  cd /srv/digitaltwin && scripts/backup.sh models",
                 "0 4 1 * *  cd /srv/digitaltwin && scripts/backup.sh config"):
        assert line in text
