#!/usr/bin/env bash
# Checks every NATS config in this directory with `nats-server -t`. The configs read passwords from
# the environment and (cluster) TLS files from /etc/wharf/nats/tls; this script supplies throwaway
# values for both in a temporary directory, so it runs on any machine with nats-server and openssl.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for v in GATEWAY IMAGE_STORE REGISTRY_SYNC BUILDER RUNTIME SYNC OPS SYS; do
  export "WHARF_NATS_${v}_PASSWORD=\"check-only\""
done

tls=$work/tls
mkdir -p "$tls"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=wharf-check-ca \
  -keyout "$tls/ca-key.pem" -out "$tls/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=nats-a.wharf.internal \
  -keyout "$tls/server-key.pem" -out "$work/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:nats-a.wharf.internal,DNS:nats-b.wharf.internal,DNS:nats-c.wharf.internal\nextendedKeyUsage=serverAuth,clientAuth\n' >"$work/ext"
openssl x509 -req -in "$work/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca-key.pem" \
  -CAcreateserial -days 1 -extfile "$work/ext" -out "$tls/server.pem" 2>/dev/null

status=0
check() { # config file, directory of its copy
  local conf=$1 dir=$2
  if out=$(cd "$dir" && nats-server -t -c "$(basename "$conf")" 2>&1); then
    echo "ok   ${conf#"$here"/}: $out"
  else
    echo "FAIL ${conf#"$here"/}: $out"
    status=1
  fi
}

mkdir -p "$work/single" "$work/cluster"
cp "$here/nats-server.conf" "$here/accounts.conf" "$work/single/"
check "$here/nats-server.conf" "$work/single"
cp "$here/accounts.conf" "$work/cluster/"
for f in "$here"/cluster/node-*.conf "$here/cluster/common.conf"; do
  sed "s#/etc/wharf/nats/tls#$tls#g" "$f" >"$work/cluster/$(basename "$f")"
done
for f in "$here"/cluster/node-*.conf; do
  check "$f" "$work/cluster"
done
exit $status
