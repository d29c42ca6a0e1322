"""scripts/backup.sh and scripts/restore.sh on the real local PostgreSQL, plus shellcheck on every script.

The round trip: a database of our own, migrated and filled through the product (the steel plant's
first three weeks, a trained model), is dumped, dropped and restored; every row of every table
comes back (counts and an MD5 over the ordered rows). The model folder round-trips the same way
and the restored models load with their manifest checksums verified.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from digitaltwin.config import Settings
from digitaltwin.registry.store import ModelRegistry
from digitaltwin.services import demo as demo_service
from digitaltwin.services.forecasting import ForecastService
from digitaltwin.storage.db import make_engine, migrate
from digitaltwin.storage.repository import Repository
from tests.conftest import STEEL_CSV, _pg_admin_url, fresh_postgres_database
from tests.ops.tools import REPO_ROOT, require_tool, run

SCRIPTS = REPO_ROOT / "scripts"
ROWS = 2016  # three weeks of 15-minute readings


def test_shellcheck_passes_on_every_script() -> None:
    shellcheck = require_tool("shellcheck", package="shellcheck")
    scripts = sorted(str(p) for p in SCRIPTS.glob("*.sh"))
    assert len(scripts) >= 4
    run([shellcheck, "-x", "--severity=style", *scripts], cwd=REPO_ROOT)


@pytest.mark.parametrize("script", ["deploy.sh", "backup.sh", "restore.sh"])
def test_scripts_print_usage_and_reject_unknown_commands(script: str) -> None:
    assert "scripts/" in run([str(SCRIPTS / script), "--help"]).stdout
    assert run([str(SCRIPTS / script), "no-such-command"], check=False).returncode == 2


@pytest.fixture
def own_database() -> Iterator[str]:
    """URL (``postgresql://``) of a fresh database on the local server, dropped afterwards."""
    with fresh_postgres_database("dt_ops") as url:
        yield url


def fingerprint(url: str) -> dict[str, tuple[int, str]]:
    """Per table (alembic_version included): row count and MD5 of all rows in a stable order."""
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            tables = conn.execute(text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
            )).scalars().all()
            return {
                table: tuple(conn.execute(text(
                    f'SELECT count(*), coalesce(md5(string_agg(t::text, \'|\' ORDER BY t::text)), \'\') FROM "{table}" t'
                )).one())
                for table in tables
            }
    finally:
        engine.dispose()


def script_env(tmp_path: Path, url: str, models_dir: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "BACKUP_", "MODELS_"))},
        "BACKUP_MODE": "local",
        "ENV_FILE": "/dev/null",
        "DATABASE_URL": url,
        "MODELS_DIR": str(models_dir),
        "BACKUP_DIR": str(tmp_path / "backups"),
    }


@pytest.fixture
def filled(own_database: str, tmp_path: Path) -> tuple[str, Path, str]:
    """The steel plant's first three weeks and a trained seasonal-naive model; returns (url, models dir, model id)."""
    require_tool("pg_dump", package="postgresql-client")
    csv = tmp_path / "steel.csv"
    with STEEL_CSV.open() as source, csv.open("w") as sink:
        for number, line in enumerate(source):
            if number > ROWS:
                break
            sink.write(line)
    settings = Settings(_env_file=None, ENVIRONMENT="test", DATABASE_URL=own_database, DATA_DIR=tmp_path / "data",
                        MODELS_DIR=tmp_path / "models", LOG_DIR=tmp_path / "logs")
    engine = make_engine(settings)
    migrate(engine)
    repo = Repository(engine)
    report = demo_service.setup_and_import(repo, csv)
    assert report.readings_stored >= ROWS
    registry = ModelRegistry(settings.models_dir)
    trained = ForecastService(repo, registry, max_hold=settings.power_max_hold).train(
        demo_service.PLANT.id, "seasonal_naive_daily"
    )
    manifest = trained.manifest
    engine.dispose()
    return own_database, settings.models_dir, manifest.model_id


def test_database_backup_drop_restore_loses_no_row(filled: tuple[str, Path, str], tmp_path: Path) -> None:
    url, models_dir, _ = filled
    before = fingerprint(url)
    assert before["readings"][0] >= ROWS and before["alembic_version"][0] == 1
    env = script_env(tmp_path, url, models_dir)
    dump = Path(run([str(SCRIPTS / "backup.sh"), "database"], env=env).stdout.strip())
    assert dump.exists() and Path(f"{dump}.sha256").exists()

    admin = create_engine(_pg_admin_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE "{make_url(url).database}" WITH (FORCE)'))
    admin.dispose()

    run([str(SCRIPTS / "restore.sh"), "database", str(dump), "--yes"], env=env)
    assert fingerprint(url) == before


def test_a_corrupted_dump_is_refused_before_anything_is_dropped(filled: tuple[str, Path, str], tmp_path: Path) -> None:
    url, models_dir, _ = filled
    env = script_env(tmp_path, url, models_dir)
    dump = Path(run([str(SCRIPTS / "backup.sh"), "database"], env=env).stdout.strip())
    before = fingerprint(url)
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))
    result = run([str(SCRIPTS / "restore.sh"), "database", str(dump), "--yes"], env=env, check=False)
    assert result.returncode != 0 and "checksum mismatch" in result.stderr
    assert fingerprint(url) == before


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_model_backup_restores_loadable_models(filled: tuple[str, Path, str], tmp_path: Path) -> None:
    url, models_dir, model_id = filled
    before = _tree(models_dir)
    assert any(name.endswith("manifest.json") for name in before)
    env = script_env(tmp_path, url, models_dir)
    archive = Path(run([str(SCRIPTS / "backup.sh"), "models"], env=env).stdout.strip())
    for path in sorted(models_dir.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (models_dir / "stray.txt").write_text("not in the backup")
    run([str(SCRIPTS / "restore.sh"), "models", str(archive), "--yes"], env=env)
    assert _tree(models_dir) == before
    forecaster, manifest = ModelRegistry(models_dir).load(model_id)  # checksums verified on load
    assert manifest.model_id == model_id


def test_config_backup_holds_the_deployment_files(tmp_path: Path) -> None:
    env = {**os.environ, "ENV_FILE": "/dev/null", "BACKUP_DIR": str(tmp_path / "backups")}
    archive = Path(run([str(SCRIPTS / "backup.sh"), "config"], env=env).stdout.strip())
    names = run(["tar", "-tzf", str(archive)]).stdout.split()
    assert "docker-compose.prod.yml" in names
    assert "deploy/prometheus/prometheus.yml" in names
    assert oct(archive.stat().st_mode & 0o777) == "0o600"


# A listing like `pg_restore --list` of a TimescaleDB dump: the extension comes first, then far more
# than a pipe buffer (64 KiB) of entries, so a reader that stops at the first match kills the writer.
LONG_LISTING = (
    'printf "%s\\n" ";" "; Archive created at 2026-12-05" "5; 3079 17000 EXTENSION - timescaledb"; '
    'for i in $(seq 1 20000); do printf "%d; 1259 %d TABLE _timescaledb_internal _hyper_1_%d_chunk postgres\\n" "$i" "$i" "$i"; done'
)


@pytest.mark.parametrize(("listing", "expected"), [(LONG_LISTING, 0), ("seq 1 20000", 1)])
def test_timescaledb_detection_reads_a_long_listing_under_pipefail(listing: str, expected: int) -> None:
    script = f"set -euo pipefail; source {SCRIPTS / 'lib.sh'}; ({listing}) | listing_has_timescaledb"
    assert run(["bash", "-c", script], check=False).returncode == expected


def test_grep_q_on_the_same_listing_fails_the_pipeline() -> None:
    """The check the restore used before: the listing above is long enough to show its failure."""
    script = f"set -euo pipefail; ({LONG_LISTING}) | grep -q 'EXTENSION - timescaledb'"
    assert run(["bash", "-c", script], check=False).returncode == 141
