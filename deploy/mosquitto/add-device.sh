#!/usr/bin/env bash
# Add a device of the production broker: a password file entry and its ACL block.
#
#   deploy/mosquitto/add-device.sh SITE_ID ASSET_ID            # prompts for the password
#   printf '%s\n' "$PASSWORD" | deploy/mosquitto/add-device.sh SITE_ID ASSET_ID
#   deploy/mosquitto/add-device.sh --rekey SITE_ID ASSET_ID    # new password for an existing device
#
# The device logs in on the device listener with username ASSET_ID (which is also its client id:
# use_username_as_clientid) and may publish only to dt/SITE_ID/ASSET_ID/telemetry and read only
# its setpoints on dt/SITE_ID/ASSET_ID/setpoint.
# Refused: user names reserved for the services (MQTT_USERNAME, default digitaltwin, and every
# name starting with "digitaltwin", the prefix of the services' client ids; MQTT_CLIENT_ID when
# set), users of service.passwd, and existing devices (unless --rekey, for the same site).
# MOSQUITTO_DIR (default: this folder) holds passwd, acl and service.passwd. Then reload the broker:
#   docker compose -f docker-compose.prod.yml kill -s HUP mqtt
set -euo pipefail

rekey=false
if [ "${1:-}" = "--rekey" ]; then
  rekey=true
  shift
fi
if [ "$#" -ne 2 ]; then
  echo "usage: $0 [--rekey] SITE_ID ASSET_ID   (password on stdin or prompted)" >&2
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

lower=${asset,,}
service_user=${MQTT_USERNAME:-digitaltwin}
client_id=${MQTT_CLIENT_ID:-}
if [[ $lower == digitaltwin* || $asset == "$service_user" || ( -n $client_id && ( $asset == "$client_id" || $asset == "$client_id"-* ) ) ]]; then
  echo "error: '$asset' is reserved for the Digital Twin services (their user name or client ids); name the device otherwise" >&2
  exit 2
fi

passwd_file="$dir/passwd"
acl_file="$dir/acl"
service_passwd="$dir/service.passwd"
has_user() { [ -f "$1" ] && cut -d: -f1 "$1" | grep -qxF -- "$2"; }

if has_user "$service_passwd" "$asset"; then
  echo "error: '$asset' is a service account (service.passwd); name the device otherwise" >&2
  exit 2
fi

# The topic lines of user $asset's block in the ACL, one per line ("" when there is no block):
# what Mosquitto grants that user (a block runs from its "user" line to the next "user" line).
acl_topics() {
  [ -f "$acl_file" ] || return 0
  awk -v user="$asset" '
    /^[[:space:]]*#/ || /^[[:space:]]*$/ { next }
    $1 == "user" { inside = ($2 == user && NF == 2); next }
    inside { print }
  ' "$acl_file"
}
# A device publishes its telemetry and reads the setpoints the schedules publish for it (retained).
expected="topic write dt/$site/$asset/telemetry
topic read dt/$site/$asset/setpoint"

if ! [ -t 0 ]; then
  IFS= read -r password || true
  if [ "${#password}" -lt 12 ]; then
    echo "error: the password needs at least 12 characters" >&2
    exit 2
  fi
fi

if has_user "$passwd_file" "$asset" || [ -n "$(acl_topics)" ]; then
  if ! $rekey; then
    echo "error: device '$asset' exists already; use --rekey to give it a new password" >&2
    exit 2
  fi
  if [ "$(acl_topics)" != "$expected" ]; then
    echo "error: the ACL block of '$asset' is not exactly '$expected'; fix $acl_file by hand" >&2
    exit 2
  fi
elif $rekey; then
  echo "error: no device '$asset' to re-key" >&2
  exit 2
else
  [ -f "$acl_file" ] || { (umask 077; : > "$acl_file"); }
  printf '\nuser %s\n%s\n' "$asset" "$expected" >> "$acl_file"
  if [ "$(acl_topics)" != "$expected" ]; then   # e.g. another "user" line with this name
    echo "error: the ACL block written for '$asset' does not read back as '$expected'; check $acl_file" >&2
    exit 1
  fi
fi

[ -f "$passwd_file" ] || { (umask 077; : > "$passwd_file"); }
if [ -t 0 ]; then
  mosquitto_passwd "$passwd_file" "$asset"                  # interactive: the password never appears in ps
else
  mosquitto_passwd -b "$passwd_file" "$asset" "$password"   # briefly visible in the process list
fi
echo "device $asset may publish to dt/$site/$asset/telemetry and read dt/$site/$asset/setpoint; reload the broker (SIGHUP)"
