#!/usr/bin/env bash
# Deploy and operate the production stack (docker-compose.prod.yml); docs/deployment.md.
#
#   scripts/deploy.sh production        build IMAGE_TAG, wait for db/redis, back up, migrate, roll out,
#                                       smoke-test /healthz /readyz /docs; on failure roll back
#   scripts/deploy.sh rollback          return the API and ingest worker to the previous image tag
#   scripts/deploy.sh status            containers, image tags, readiness
#   scripts/deploy.sh logs [SERVICE]    follow the logs (all services, or one)
#   scripts/deploy.sh backup [KIND]     scripts/backup.sh KIND (database|models|config|all; default all)
#   scripts/deploy.sh restore KIND FILE stop API and ingest, scripts/restore.sh KIND FILE --yes, start, smoke-test
#
# Settings (environment or .env): IMAGE_TAG (default: git short commit), BACKEND_REPLICAS (2),
# SMOKE_URL (https://SERVER_NAME, reached on this host), SMOKE_INSECURE=1 to accept a self-signed certificate,
# DEPLOY_STATE_DIR (.deploy: current and previous tag), WAIT_SECONDS (120).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
load_env

STATE_DIR=${DEPLOY_STATE_DIR:-$ROOT_DIR/.deploy}
# nginx answers only for SERVER_NAME (its first name here); without SMOKE_URL the smoke test asks
# for that name on this host (curl --resolve), so it works before DNS points here.
SMOKE_HOST=${SERVER_NAME:-localhost}
SMOKE_HOST=${SMOKE_HOST%% *}
SMOKE_URL=${SMOKE_URL:-https://$SMOKE_HOST}
WAIT_SECONDS=${WAIT_SECONDS:-120}
REPLICAS=${BACKEND_REPLICAS:-2}

usage() { usage_of "$0"; }

current_tag() { cat "$STATE_DIR/current" 2>/dev/null || true; }
previous_tag() { cat "$STATE_DIR/previous" 2>/dev/null || true; }

wait_until() {  # wait_until DESCRIPTION COMMAND...
  local what=$1 waited=0; shift
  until "$@" >/dev/null 2>&1; do
    ((waited >= WAIT_SECONDS)) && die "$what not ready after ${WAIT_SECONDS}s"
    sleep 2; waited=$((waited + 2))
  done
  log "$what ready"
}

wait_for_dependencies() {
  compose up -d db redis mqtt
  # shellcheck disable=SC2016  # expanded inside the container
  wait_until "PostgreSQL" compose exec -T db sh -c 'pg_isready -U "$POSTGRES_USER" -d "$POSTGRES_DB"'
  wait_until "Redis" compose exec -T redis sh -c 'redis-cli ping | grep -q PONG'
}

smoke_test() {
  local curl_opts=(--fail --silent --show-error --max-time 10 --output /dev/null)
  [[ ${SMOKE_INSECURE:-0} == 1 ]] && curl_opts+=(--insecure)
  [[ $SMOKE_URL == "https://$SMOKE_HOST" ]] && curl_opts+=(--resolve "$SMOKE_HOST:${HTTPS_PORT:-443}:127.0.0.1")
  local path ok
  for path in /healthz /readyz /docs; do
    ok=no
    for _ in $(seq 1 $((WAIT_SECONDS / 5))); do
      if curl "${curl_opts[@]}" "$SMOKE_URL$path"; then ok=yes; break; fi
      sleep 5
    done
    [[ $ok == yes ]] || { log "smoke test failed: $SMOKE_URL$path"; return 1; }
    log "smoke test ok: $SMOKE_URL$path"
  done
}

roll_out() {  # roll_out TAG
  IMAGE_TAG=$1 compose up -d --no-build --remove-orphans --scale backend="$REPLICAS"
}

record() {  # record NEW_CURRENT NEW_PREVIOUS
  mkdir -p "$STATE_DIR"
  printf '%s\n' "$1" >"$STATE_DIR/current"
  [[ -n $2 ]] && printf '%s\n' "$2" >"$STATE_DIR/previous"
  return 0
}

deploy_production() {
  [[ -f ${ENV_FILE:-$ROOT_DIR/.env} ]] || die "no .env: cp .env.example .env and fill it in (docs/configuration.md)"
  local tag previous
  tag=${IMAGE_TAG:-$(git -C "$ROOT_DIR" rev-parse --short HEAD)}
  previous=$(current_tag)
  log "deploying image tag $tag (previous: ${previous:-none})"
  IMAGE_TAG=$tag compose build backend
  wait_for_dependencies
  if [[ -n $previous ]]; then
    log "pre-deploy database backup"
    "$ROOT_DIR/scripts/backup.sh" database
  fi
  log "running migrations"
  IMAGE_TAG=$tag compose run --rm --no-deps backend digitaltwin migrate
  roll_out "$tag"
  if smoke_test; then
    record "$tag" "$previous"
    log "deployed $tag"
    return 0
  fi
  if [[ -z $previous ]]; then
    die "first deployment of $tag failed its smoke test; nothing to roll back to (scripts/deploy.sh logs backend)"
  fi
  log "rolling back to $previous"
  roll_out "$previous"
  smoke_test || die "rollback to $previous failed its smoke test too"
  die "deployment of $tag failed; running $previous again"
}

rollback() {
  local current previous
  current=$(current_tag)
  previous=$(previous_tag)
  [[ -n $previous ]] || die "no previous tag recorded in $STATE_DIR"
  log "rolling back from ${current:-unknown} to $previous"
  roll_out "$previous"
  smoke_test || die "rollback to $previous failed its smoke test"
  record "$previous" "$current"
  log "running $previous"
}

status() {
  compose ps
  log "current tag: $(current_tag) previous tag: $(previous_tag)"
  local curl_opts=(--silent --show-error --max-time 10)
  [[ ${SMOKE_INSECURE:-0} == 1 ]] && curl_opts+=(--insecure)
  [[ $SMOKE_URL == "https://$SMOKE_HOST" ]] && curl_opts+=(--resolve "$SMOKE_HOST:${HTTPS_PORT:-443}:127.0.0.1")
  curl "${curl_opts[@]}" "$SMOKE_URL/readyz" || true
  echo
}

restore() {
  [[ $# -ge 2 ]] || { usage >&2; exit 2; }
  compose stop backend ingest
  "$ROOT_DIR/scripts/restore.sh" "$1" "$2" --yes
  roll_out "$(current_tag)"
  smoke_test
}

case ${1:-} in
  production) deploy_production ;;
  rollback) rollback ;;
  status) status ;;
  logs) shift; compose logs --tail=200 --follow "$@" ;;
  backup) shift; "$ROOT_DIR/scripts/backup.sh" "${1:-all}" ;;
  restore) shift; restore "$@" ;;
  -h|--help) usage ;;
  *) usage >&2; exit 2 ;;
esac
