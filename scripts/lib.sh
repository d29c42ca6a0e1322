#!/usr/bin/env bash
# Shared helpers of deploy.sh, backup.sh and restore.sh (sourced, not run).
#
# BACKUP_MODE selects where PostgreSQL and the model folder are reached:
#   compose (default)  through the compose stack: `docker compose exec db ...`, the models volume
#   local              directly: DATABASE_URL (libpq URL) with the host's pg_dump/pg_restore/psql,
#                      and the MODELS_DIR folder (bare-metal installs, and the test suite)

# shellcheck disable=SC2034  # variables used by the scripts that source this file
ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
COMPOSE_FILE=${COMPOSE_FILE:-$ROOT_DIR/docker-compose.prod.yml}
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-digitaltwin}
BACKUP_MODE=${BACKUP_MODE:-compose}
BACKUP_DIR=${BACKUP_DIR:-$ROOT_DIR/backups}

# The comment block at the top of a script, as its usage text.
usage_of() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$1"; }

log() { printf '%s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Whether a `pg_restore --list` listing on stdin holds the TimescaleDB extension (exit 0) or not (1).
# It reads the whole listing: `grep -q` exits at the first match, pg_restore then dies of SIGPIPE
# (141) and under `set -o pipefail` the pipeline counts as failed, so the check said "no" on most
# real dumps and the restore skipped timescaledb_pre_restore().
listing_has_timescaledb() { awk '/EXTENSION - timescaledb/ { found = 1 } END { exit !found }'; }

# Load .env (if present) without overriding variables already set in the environment.
load_env() {
  local file=${ENV_FILE:-$ROOT_DIR/.env} line key
  [[ -f $file ]] || return 0
  while IFS= read -r line || [[ -n $line ]]; do
    [[ $line =~ ^[[:space:]]*(#|$) ]] && continue
    key=${line%%=*}
    [[ $key =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || continue
    [[ -n ${!key+x} ]] && continue
    export "$key=${line#*=}"
  done <"$file"
}

compose() {
  if docker compose version >/dev/null 2>&1; then
    docker compose -f "$COMPOSE_FILE" "$@"
  elif command -v docker-compose >/dev/null 2>&1; then
    docker-compose -f "$COMPOSE_FILE" "$@"
  else
    die "neither 'docker compose' nor 'docker-compose' is installed"
  fi
}

# libpq URL of the database in local mode (postgresql+psycopg:// and postgres:// accepted).
local_db_url() {
  local url=${DATABASE_URL:?DATABASE_URL must be set when BACKUP_MODE=local}
  url=${url/postgresql+psycopg:\/\//postgresql://}
  url=${url/postgres:\/\//postgresql://}
  printf '%s' "$url"
}

# The same server's maintenance database (RESTORE_ADMIN_DB, default postgres), for DROP/CREATE DATABASE.
admin_db_url() {
  local url base query
  url=$(local_db_url)
  base=${url%%\?*}
  query=${url#"$base"}
  printf '%s/%s%s' "${base%/*}" "${RESTORE_ADMIN_DB:-postgres}" "$query"
}

db_name() {
  if [[ $BACKUP_MODE == local ]]; then
    local base
    base=$(local_db_url)
    base=${base%%\?*}
    printf '%s' "${base##*/}"
  else
    printf '%s' "${POSTGRES_DB:-digitaltwin}"
  fi
}

# Run a tool of the PostgreSQL client suite against the product's database (stdin/stdout passed through).
pg_tool() {  # pg_tool pg_dump|pg_restore|psql ARGS...
  local tool=$1; shift
  if [[ $BACKUP_MODE == local ]]; then
    "$tool" --dbname="$(local_db_url)" "$@"
  else
    compose exec -T db sh -c "exec $tool -U \"\$POSTGRES_USER\" --dbname=\"\$POSTGRES_DB\" \"\$@\"" "$tool" "$@"
  fi
}

# psql on the maintenance database (for DROP/CREATE DATABASE).
psql_admin() {
  if [[ $BACKUP_MODE == local ]]; then
    psql --dbname="$(admin_db_url)" -v ON_ERROR_STOP=1 -X -q "$@"
  else
    compose exec -T db sh -c "exec psql -U \"\$POSTGRES_USER\" --dbname=${RESTORE_ADMIN_DB:-postgres} -v ON_ERROR_STOP=1 -X -q \"\$@\"" psql "$@"
  fi
}

# Write a tar.gz of the model folder to stdout / extract one from stdin into it.
models_tar_out() {
  if [[ $BACKUP_MODE == local ]]; then
    tar -czf - -C "${MODELS_DIR:?MODELS_DIR must be set when BACKUP_MODE=local}" .
  else
    compose run --rm --no-deps -T --entrypoint sh backend -c 'exec tar -czf - -C /app/models .'
  fi
}

models_tar_in() {
  if [[ $BACKUP_MODE == local ]]; then
    local dir=${MODELS_DIR:?MODELS_DIR must be set when BACKUP_MODE=local}
    mkdir -p "$dir"
    find "$dir" -mindepth 1 -delete
    tar -xzf - -C "$dir"
  else
    compose run --rm --no-deps -T --entrypoint sh backend \
      -c 'find /app/models -mindepth 1 -delete && exec tar -xzf - -C /app/models'
  fi
}

sha256_write() { (cd "$(dirname "$1")" && sha256sum "$(basename "$1")" >"$(basename "$1").sha256"); }
sha256_check() {
  if [[ -f $1.sha256 ]]; then
    (cd "$(dirname "$1")" && sha256sum --quiet -c "$(basename "$1").sha256") || die "checksum mismatch: $1"
  else
    log "warning: no checksum file for $1"
  fi
}
