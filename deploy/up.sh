#!/usr/bin/env bash
# Builds Wharf and starts the whole stack on this machine (Debian/Ubuntu), installing what is
# missing. Without --nats-url, `wharf up` starts its own nats-server.
#
#   deploy/up.sh                      # API on unix:///run/wharf/docker.sock, data in /var/lib/wharf
#   deploy/up.sh --nats-url nats://nats.example:4222 -H tcp://127.0.0.1:2375
#
# Every argument goes to `wharf up` (see `wharf up --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
# Tools the engine and its tests run (nats-server, ip, nft, dockerd) live in the sbin directories,
# which a non-login root shell may not have on PATH.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "deploy/up.sh: run as root (the engine manages mounts, namespaces and a root-owned socket)" >&2
    exit 1
  fi
}
need_root

missing=()
uses_private_nats=1
for a in "$@"; do
  case "$a" in --nats-url|--nats-url=*) uses_private_nats=0 ;; esac
done
if [ -n "${WHARF_NATS_URL:-}" ]; then uses_private_nats=0; fi
if [ "$uses_private_nats" = 1 ] && ! command -v nats-server >/dev/null 2>&1; then
  missing+=(nats-server)
fi
command -v cc >/dev/null 2>&1 || missing+=(gcc)
# The runtime: nftables (libnftables for published ports), iproute2, tini for `run --init`,
# procps for `docker top`.
{ command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ]; } || missing+=(nftables)
{ command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ]; } || missing+=(iproute2)
{ [ -x /usr/bin/tini-static ] || [ -x /usr/bin/docker-init ]; } || missing+=(tini)
command -v ps >/dev/null 2>&1 || missing+=(procps)
# The runtime links libseccomp (containers' seccomp filters).
[ -e /usr/include/seccomp.h ] || missing+=(libseccomp-dev)
if [ ${#missing[@]} -gt 0 ]; then
  echo "Installing ${missing[*]}..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "deploy/up.sh: cargo not found: Wharf needs Rust 1.85 or newer (install it with rustup)" >&2
  exit 1
fi

cargo build --release --locked -p wharf -p wharf-runtime --bins
exec ./target/release/wharf up "$@"
