#!/usr/bin/env bash
# Backups of Digital Twin Energy (docs/operations.md#backups).
#
#   scripts/backup.sh database   pg_dump (custom format) of the product database   (daily, 02:00)
#   scripts/backup.sh models     tar.gz of the model registry (MODELS_DIR)          (weekly, Sunday 03:00)
#   scripts/backup.sh config     tar.gz of .env, compose files, deploy/, nginx/ssl/ (monthly, 1st 04:00)
#   scripts/backup.sh all        all three
#
# Files go to BACKUP_DIR/<kind>/ with a .sha256 next to each; files older than the kind's
# retention are removed (BACKUP_RETENTION_DAYS_DATABASE=30, _MODELS=90, _CONFIG=365).
# Prints the path of every backup written on stdout. See scripts/lib.sh for BACKUP_MODE.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
load_env
umask 077

STAMP=$(date -u +%Y%m%dT%H%M%SZ)

prune() {  # prune KIND DAYS
  find "$BACKUP_DIR/$1" -maxdepth 1 -type f -name "$1-*" -mtime +"$2" -print -delete | while read -r old; do
    log "removed expired backup $old"
  done
}

backup_database() {
  local dir=$BACKUP_DIR/database file
  mkdir -p "$dir"
  file=$dir/database-$(db_name)-$STAMP.dump
  log "dumping database $(db_name) to $file"
  pg_tool pg_dump --format=custom --compress=6 --no-owner --no-privileges >"$file.partial"
  # A dump that pg_restore cannot list is no backup.
  pg_restore --list "$file.partial" >/dev/null || die "dump $file is not readable by pg_restore"
  mv "$file.partial" "$file"
  sha256_write "$file"
  prune database "${BACKUP_RETENTION_DAYS_DATABASE:-30}"
  printf '%s\n' "$file"
}

backup_models() {
  local dir=$BACKUP_DIR/models file
  mkdir -p "$dir"
  file=$dir/models-$STAMP.tar.gz
  log "archiving models to $file"
  models_tar_out >"$file.partial"
  tar -tzf "$file.partial" >/dev/null || die "model archive $file is not readable"
  mv "$file.partial" "$file"
  sha256_write "$file"
  prune models "${BACKUP_RETENTION_DAYS_MODELS:-90}"
  printf '%s\n' "$file"
}

backup_config() {
  local dir=$BACKUP_DIR/config file items=()
  mkdir -p "$dir"
  file=$dir/config-$STAMP.tar.gz
  for item in .env docker-compose.prod.yml docker-compose.yml deploy nginx/ssl; do
    [[ -e $ROOT_DIR/$item ]] && items+=("$item")
  done
  log "archiving configuration (${items[*]}) to $file (holds secrets: keep it private)"
  tar -czf "$file" -C "$ROOT_DIR" "${items[@]}"
  sha256_write "$file"
  prune config "${BACKUP_RETENTION_DAYS_CONFIG:-365}"
  printf '%s\n' "$file"
}

case ${1:-} in
  database) backup_database ;;
  models) backup_models ;;
  config) backup_config ;;
  all) backup_database; backup_models; backup_config ;;
  -h|--help) usage_of "$0"; exit 0 ;;
  *) usage_of "$0" >&2; exit 2 ;;
esac
