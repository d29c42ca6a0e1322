"""Readings storage options: no ``readings_ts_idx`` on hypertables, and the series check of
readings as one statement-level check instead of one foreign-key lookup per row.

* ``create_hypertable`` used to add an index ``readings_ts_idx (ts DESC)`` beside the primary
  key (series_id, ts). Every query of readings names its series (ranges, latest, extent, energy
  and forecast frames), which the primary key serves, so the index only cost write time and
  disk. New databases never get it (0001 passes ``create_default_indexes => false``); this
  drops it from existing ones.
* On plain PostgreSQL the foreign key ``readings.series_id -> series.id`` checked each inserted
  row with its own lookup: a ``COPY`` of 35,040 readings took 160 ms with it and 40 ms without
  (measured on the steel file; bench/import_throughput.py). It is replaced by two statement-level
  triggers with the same effect: an insert or update whose rows name a missing series fails
  with a foreign-key violation (one anti-join over the statement's new rows, about 20 ms for the
  same COPY), and deleting series deletes their readings. TimescaleDB does not support such
  triggers (transition tables) on hypertables, so a hypertable keeps the foreign key.

SQLite keeps its foreign key: nothing happens there.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

FK_NAME = "fk_readings_series_id_series"


def _is_hypertable(bind: sa.Connection) -> bool:
    if bind.execute(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")).scalar() is None:
        return False
    return bind.execute(sa.text(
        "SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = 'readings'"
    )).scalar() is not None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS readings_ts_idx")
    if _is_hypertable(bind):
        return
    op.execute(f"ALTER TABLE readings DROP CONSTRAINT IF EXISTS {FK_NAME}")
    op.execute(
        """
        CREATE OR REPLACE FUNCTION readings_check_series() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE missing integer;
        BEGIN
          SELECT n.series_id INTO missing FROM (SELECT DISTINCT series_id FROM new_rows) n
            WHERE NOT EXISTS (SELECT 1 FROM series s WHERE s.id = n.series_id) LIMIT 1;
          IF FOUND THEN
            RAISE foreign_key_violation USING MESSAGE = format(
              'insert or update on table "readings" violates foreign key constraint "%s"', 'fk_readings_series_id_series'),
              DETAIL = format('Key (series_id)=(%s) is not present in table "series".', missing);
          END IF;
          RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE OR REPLACE FUNCTION series_delete_readings() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          DELETE FROM readings WHERE series_id IN (SELECT id FROM gone);
          RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER readings_series_insert AFTER INSERT ON readings REFERENCING NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION readings_check_series()"
    )
    op.execute(
        "CREATE TRIGGER readings_series_update AFTER UPDATE ON readings REFERENCING NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION readings_check_series()"
    )
    op.execute(
        "CREATE TRIGGER series_readings_delete AFTER DELETE ON series REFERENCING OLD TABLE AS gone "
        "FOR EACH STATEMENT EXECUTE FUNCTION series_delete_readings()"
    )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql" or _is_hypertable(bind):
        return
    op.execute("DROP TRIGGER IF EXISTS readings_series_insert ON readings")
    op.execute("DROP TRIGGER IF EXISTS readings_series_update ON readings")
    op.execute("DROP TRIGGER IF EXISTS series_readings_delete ON series")
    op.execute("DROP FUNCTION IF EXISTS readings_check_series()")
    op.execute("DROP FUNCTION IF EXISTS series_delete_readings()")
    op.execute(f"ALTER TABLE readings ADD CONSTRAINT {FK_NAME} FOREIGN KEY (series_id) REFERENCES series (id) ON DELETE CASCADE")
