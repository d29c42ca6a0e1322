#!/usr/bin/env bash
# Add (or re-key) a device of the production broker: a password file entry and its ACL block.
#
#   deploy/mosquitto/add-device.sh SITE_ID ASSET_ID            # prompts for the password
#   printf '%s\n' "$PASSWORD" | deploy/mosquitto/add-device.sh SITE_ID ASSET_ID
#
# The device logs in with username ASSET_ID and may publish only to dt/SITE_ID/ASSET_ID/telemetry.
# MOSQUITTO_DIR (default: this folder) holds passwd and acl. Then reload the broker:
#   docker compose -f docker-compose.prod.yml kill -s HUP mqtt
set -euo pipefail

if [ "$#" -ne 2 ]; then
  echo "usage: $0 SITE_ID ASSET_ID   (password on stdin or prompted)" >&2
  exit 2
fi
site=$1 asset=$2
dir=${MOSQUITTO_DIR:-$(cd "$(dirname "$0")" && pwd)}
slug='^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'  # the product's ids; no MQTT wildcards or separators
for value in "$site" "$asset"; do
  if ! [[ $value =~ $slug ]]; then
    echo "error: '$value' is not a valid site or asset id" >&2
    exit 2
  fi
done

passwd_file="$dir/passwd"
[ -f "$passwd_file" ] || { (umask 077; : > "$passwd_file"); }
if [ -t 0 ]; then
  mosquitto_passwd "$passwd_file" "$asset"                  # interactive: the password never appears in ps
else
  IFS= read -r password
  if [ "${#password}" -lt 12 ]; then
    echo "error: the password needs at least 12 characters" >&2
    exit 2
  fi
  mosquitto_passwd -b "$passwd_file" "$asset" "$password"   # briefly visible in the process list
fi

acl_file="$dir/acl"
if ! grep -qx "user $asset" "$acl_file"; then
  printf '\nuser %s\ntopic write dt/%s/%s/telemetry\n' "$asset" "$site" "$asset" >> "$acl_file"
fi
echo "device $asset may publish to dt/$site/$asset/telemetry; reload the broker (SIGHUP)"
