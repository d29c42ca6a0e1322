#!/usr/bin/env bash
# Restore a backup written by scripts/backup.sh (docs/operations.md#restore).
#
#   scripts/restore.sh database FILE.dump [--yes]   recreate the database from a pg_dump archive
#   scripts/restore.sh models FILE.tar.gz [--yes]    replace the model registry's contents
#   scripts/restore.sh config FILE.tar.gz [--yes]    unpack configuration into the checkout
#
# The database is dropped and created again, then restored in one transaction; with TimescaleDB
# the documented timescaledb_pre_restore()/post_restore() calls wrap the restore. Stop the API
# and the ingest worker first (scripts/deploy.sh restore does). Without --yes it asks.
# See scripts/lib.sh for BACKUP_MODE.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
load_env

usage() { usage_of "$0"; }

confirm() {
  [[ ${ASSUME_YES:-no} == yes ]] && return 0
  local answer
  read -r -p "$1 [y/N] " answer
  [[ $answer == y || $answer == Y ]] || die "aborted"
}

restore_database() {
  local file=$1 name timescale=no
  name=$(db_name)
  [[ $name =~ ^[A-Za-z0-9_]+$ ]] || die "unsupported database name: $name"
  sha256_check "$file"
  pg_restore --list "$file" >/dev/null || die "$file is not a pg_dump archive"
  if pg_restore --list "$file" | listing_has_timescaledb; then timescale=yes; fi
  confirm "Drop database '$name' and restore it from $file?"
  log "recreating database $name"
  psql_admin -c "DROP DATABASE IF EXISTS \"$name\" WITH (FORCE)"
  psql_admin -c "CREATE DATABASE \"$name\""
  if [[ $timescale == yes ]]; then
    pg_tool psql -v ON_ERROR_STOP=1 -X -q -c "CREATE EXTENSION IF NOT EXISTS timescaledb" -c "SELECT timescaledb_pre_restore()"
  fi
  log "restoring $file"
  pg_tool pg_restore --no-owner --no-privileges --exit-on-error --single-transaction <"$file"
  if [[ $timescale == yes ]]; then
    pg_tool psql -v ON_ERROR_STOP=1 -X -q -c "SELECT timescaledb_post_restore()"
  fi
  pg_tool psql -v ON_ERROR_STOP=1 -X -q -c "ANALYZE"
  log "database $name restored"
}

restore_models() {
  local file=$1
  sha256_check "$file"
  tar -tzf "$file" >/dev/null || die "$file is not a tar.gz archive"
  confirm "Replace the model registry's contents with $file?"
  models_tar_in <"$file"
  log "models restored from $file"
}

restore_config() {
  local file=$1
  sha256_check "$file"
  tar -tzf "$file" >/dev/null || die "$file is not a tar.gz archive"
  confirm "Overwrite configuration files in $ROOT_DIR from $file?"
  tar -xzf "$file" -C "$ROOT_DIR"
  log "configuration restored from $file; redeploy with scripts/deploy.sh production"
}

kind=${1:-}
file=${2:-}
[[ ${3:-} == --yes ]] && ASSUME_YES=yes
case $kind in
  -h|--help) usage; exit 0 ;;
  database|models|config) ;;
  *) usage >&2; exit 2 ;;
esac
[[ -f $file ]] || die "backup file not found: ${file:-<none>}"
"restore_$kind" "$file"
