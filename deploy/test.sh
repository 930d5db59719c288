#!/usr/bin/env bash
# The test command of Wharf: installs what the end-to-end tests need (Debian 12), builds the
# workspace and runs every test. CI runs it through .ci/run, as root, on a clean clone.
#
#   deploy/test.sh                 # everything
#   deploy/test.sh -E 'binary(api)' # extra arguments go to cargo nextest (or cargo test)
#
# The tests start their own nats-server, registries and `wharf up` stacks on loopback ports; they
# never use a system dockerd (one test starts a private dockerd of its own to compare with).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Tools the engine and its tests run (nats-server, ip, nft, dockerd) live in the sbin directories,
# which a non-login root shell may not have on PATH.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
started=$(date +%s)

log() { printf '\n=== %s\n' "$*"; }

# ---------------------------------------------------------------------------------------------
# Packages
missing=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }
have nats-server || missing+=(nats-server)
[ -x /usr/bin/docker-registry ] || missing+=(docker-registry)
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || missing+=(busybox-static)
have skopeo || missing+=(skopeo)
have htpasswd || missing+=(apache2-utils)
# The runtime's tests build network namespaces, bridges and nftables rules.
have ip || missing+=(iproute2)
have nft || missing+=(nftables)
# `docker run --init` bind-mounts tini's static build; `docker top` runs ps.
[ -x /usr/bin/tini-static ] || [ -x /usr/bin/docker-init ] || missing+=(tini)
have ps || missing+=(procps)
# The runtime links libseccomp (containers' seccomp filters): its headers and .so link name.
[ -e /usr/include/seccomp.h ] || missing+=(libseccomp-dev)
# docker.io brings the docker CLI when there is none, and the dockerd that tests/dockerd_parity.rs
# runs privately to compare Wharf with.
{ have docker || [ -x /usr/local/bin/docker ]; } && have dockerd || missing+=(docker.io)
# tests/compose.rs runs Debian's docker-compose (1.29.2, docker-py underneath) against a stack.
[ -x /usr/bin/docker-compose ] || missing+=(docker-compose)
# tests/fuzz_api.rs runs deploy/fuzz-api.sh: schemathesis from PyPI, in a virtualenv; curl.
have curl || missing+=(curl)
have python3 || missing+=(python3)
dpkg-query -W -f='${Status}' python3-venv 2>/dev/null | grep -q 'ok installed' || missing+=(python3-venv)

if [ ${#missing[@]} -gt 0 ]; then
    log "installing: ${missing[*]}"
    if [ "$(id -u)" != 0 ]; then
        echo "deploy/test.sh: need root to install ${missing[*]} (or install them first)" >&2
        exit 2
    fi
    export DEBIAN_FRONTEND=noninteractive
    # Keep package scripts from starting daemons (dockerd, the registry, nats-server): the tests
    # start what they need themselves.
    policy_added=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        policy_added=1
    fi
    trap '[ -n "$policy_added" ] && rm -f /usr/sbin/policy-rc.d' EXIT
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [ -n "$policy_added" ]; then rm -f /usr/sbin/policy-rc.d; policy_added=; fi
fi

# schemathesis for tests/fuzz_api.rs (it skips, saying so, when this fails).
deploy/fuzz-api.sh --install-only \
    || echo "deploy/test.sh: schemathesis could not be installed; tests/fuzz_api.rs will skip" >&2

docker_cli=$(command -v docker || echo /usr/local/bin/docker)
log "tools"
echo "nats-server:     $( (nats-server --version || /usr/sbin/nats-server --version) 2>&1 | head -1)"
echo "docker-registry: $(/usr/bin/docker-registry --version 2>&1 | head -1)"
echo "skopeo:          $(skopeo --version 2>&1 | head -1)"
echo "docker CLI:      $("$docker_cli" --version 2>&1 | head -1) ($docker_cli)"
echo "busybox:         $(/bin/busybox 2>&1 | head -1)"
echo "schemathesis:    $("${WHARF_FUZZ_VENV:-/var/tmp/wharf-fuzz-venv}/bin/schemathesis" --version 2>&1 | head -1)"

# ---------------------------------------------------------------------------------------------
# Build, then test
log "building the workspace and its tests"
cargo build --workspace --tests
cargo build --workspace

# Each end-to-end test runs a whole stack; a few at a time suit a 2-core machine.
threads=${WHARF_TEST_THREADS:-3}
status=0
if cargo nextest --version >/dev/null 2>&1; then
    log "cargo nextest run --workspace (test threads: $threads)"
    timeout --signal=TERM --kill-after=60 1500 \
        cargo nextest run --workspace --no-fail-fast --test-threads "$threads" \
        --failure-output final "$@" || status=$?
else
    log "cargo test --workspace (test threads: $threads)"
    timeout --signal=TERM --kill-after=60 1500 \
        cargo test --workspace --no-fail-fast "$@" -- --test-threads "$threads" || status=$?
fi

# Doctests, which nextest does not run (the bus contract's compile_fail examples among them);
# only for a whole run, as extra arguments are nextest's.
if [ $# -eq 0 ]; then
    log "cargo test --workspace --doc"
    cargo test --workspace --doc || status=$?
fi

elapsed=$(( $(date +%s) - started ))
if [ "$status" -eq 0 ]; then
    log "deploy/test.sh: all tests passed (${elapsed}s)"
else
    log "deploy/test.sh: FAILED (exit $status, ${elapsed}s)"
fi
exit "$status"
