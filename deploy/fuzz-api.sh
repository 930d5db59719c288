#!/usr/bin/env bash
# Fuzzes Wharf's Docker Engine API with schemathesis, from moby's published swagger for the API
# version Wharf advertises (tests/data/moby-api-v1.45.yaml), and checks that:
#   - no request gets a 5xx answer and none hangs (each must answer within --request-timeout);
#   - the API still answers /_ping afterwards;
#   - no container process is left that `GET /containers/json?all=1` does not list (shims and
#     container directories under the stack's data root against the API's list), and removing
#     every container through the API leaves no shim and no container directory behind.
#
#   deploy/fuzz-api.sh                                  # starts its own `wharf up` (target/debug/wharf)
#   deploy/fuzz-api.sh --url http://127.0.0.1:PORT --data-root DIR    # a running stack's TCP listener
#   deploy/fuzz-api.sh --install-only                   # only install schemathesis (deploy/test.sh)
#
# Longer runs: FUZZ_MAX_EXAMPLES (per operation, default 25), FUZZ_SEED (default: random),
# FUZZ_PHASES (default examples,coverage,fuzzing,stateful), FUZZ_REQUEST_TIMEOUT (s, default 20).
# schemathesis goes into a virtualenv, $WHARF_FUZZ_VENV (default /var/tmp/wharf-fuzz-venv);
# python3-venv comes from apt when missing (as root).
#
# Exit status: 0 clean; 1 a 5xx, a hang, a leak or a broken run; 3 schemathesis could not be
# installed (no python3/venv/PyPI): the e2e test skips then, saying so.
#
# Operations left out, and why (docs/security.md, "Fuzzing"):
#   ImageCreate (pull; fromSrc=URL)   downloads from registries and URLs: none reachable in CI,
#                                     and random registry names only time out
#   ImagePush, ImageSearch,           talk to registries (dockerd answers 500 when they are
#   SystemAuth, DistributionInspect   unreachable, so a 5xx is the expected answer there)
#   ImageBuild                        runs builds (random `remote` URLs, long RUN steps)
#   SystemEvents, ContainerWait       a stream, a wait, that legitimately last until the client
#                                     leaves or a container stops (the hooks also keep stats,
#                                     logs and attach finite: stream=0, follow=0, and execs
#                                     detached)
#   NetworkCreate                     makes host bridges, routes and firewall rules from random
#                                     subnets; network routes are fuzzed on a fixture network
#   ImageLoad                         an application/x-tar body schemathesis cannot generate;
#                                     `docker load` has its own property test
#                                     (services/image-store/tests/hostile_archives.rs)
#   /nodes, /swarm, /services,        answered as by a dockerd in no swarm: 503, a 5xx by design
#   /tasks, /secrets, /configs        (gateway/src/routes/swarm.rs)
#   /plugins, /session                not implemented by Wharf: every one answers 404
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$(pwd)
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

SCHEMATHESIS_VERSION=4.32.5
venv=${WHARF_FUZZ_VENV:-/var/tmp/wharf-fuzz-venv}
spec=$repo/tests/data/moby-api-v1.45.yaml
url=
data_root=
install_only=
while [ $# -gt 0 ]; do
    case "$1" in
        --url) url=$2; shift 2 ;;
        --data-root) data_root=$2; shift 2 ;;
        --install-only) install_only=1; shift ;;
        *) echo "deploy/fuzz-api.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

log() { printf '=== fuzz-api: %s\n' "$*"; }

# ---------------------------------------------------------------------------------------------
# schemathesis, in a virtualenv of its own (Debian's pip refuses system-wide installs).
install_schemathesis() {
    if [ -x "$venv/bin/schemathesis" ] \
        && "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
        return 0
    fi
    command -v python3 >/dev/null || { echo "python3 is not installed" >&2; return 1; }
    log "installing schemathesis $SCHEMATHESIS_VERSION into $venv"
    rm -rf "$venv"
    # Debian's python3 needs python3-venv for `python3 -m venv` (ensurepip).
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
        rm -rf "$venv"
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            log "installing python3-venv"
            export DEBIAN_FRONTEND=noninteractive
            apt-get install -y -qq --no-install-recommends python3-venv >/dev/null 2>&1 \
                || { apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-venv >/dev/null; } \
                || return 1
            python3 -m venv "$venv" || return 1
        else
            echo "python3 -m venv fails: install python3-venv" >&2
            return 1
        fi
    fi
    "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" || return 1
}

if ! install_schemathesis; then
    echo "deploy/fuzz-api.sh: schemathesis could not be installed" >&2
    exit 3
fi
[ -n "$install_only" ] && exit 0

work=$(mktemp -d /tmp/wharf-fuzz-api.XXXXXX)
stack_pid=
cleanup() {
    if [ -n "$stack_pid" ]; then
        kill -TERM "$stack_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$stack_pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$stack_pid" 2>/dev/null || true
        nft delete table ip wharf_fuzz 2>/dev/null || true
        ip link delete wharffuzz0 2>/dev/null || true
        # The network's accept chain in iptables' FORWARD (the runtime's network::forward).
        if command -v iptables >/dev/null 2>&1; then
            iptables -w -D FORWARD -j WHARF-wharffuzz0 2>/dev/null || true
            iptables -w -F WHARF-wharffuzz0 2>/dev/null || true
            iptables -w -X WHARF-wharffuzz0 2>/dev/null || true
        fi
    fi
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# ---------------------------------------------------------------------------------------------
# The stack: the one given, or a `wharf up` of our own.
if [ -z "$url" ]; then
    wharf=${WHARF_BIN:-$repo/target/debug/wharf}
    [ -x "$wharf" ] || { echo "deploy/fuzz-api.sh: $wharf is missing (cargo build)" >&2; exit 1; }
    port=$(free_port)
    data_root=$work/data
    echo '{}' > "$work/daemon.json"
    log "starting wharf up (data root $data_root, API on 127.0.0.1:$port)"
    setsid "$wharf" up -H "unix://$work/docker.sock" -H "tcp://127.0.0.1:$port" \
        --data-root "$data_root" --nats-listen "127.0.0.1:$(free_port)" \
        --bridge wharffuzz0 --fixed-cidr 10.232.252.0/24 --firewall-table wharf_fuzz \
        --config-file "$work/daemon.json" > "$work/wharf.log" 2>&1 &
    stack_pid=$!
    url=http://127.0.0.1:$port
    for _ in $(seq 1 300); do
        curl -fsS "$url/_ping" >/dev/null 2>&1 && break
        kill -0 "$stack_pid" 2>/dev/null || { tail -40 "$work/wharf.log"; exit 1; }
        sleep 0.2
    done
fi
[ -n "$data_root" ] || { echo "deploy/fuzz-api.sh: --url needs --data-root" >&2; exit 2; }
api=$url/v1.45
curl -fsS "$api/_ping" >/dev/null || { echo "deploy/fuzz-api.sh: $url does not answer" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# Fixtures: an image (busybox as a one-layer import, also tagged as the swagger's example
# `ubuntu`), two running containers (one restarting when killed, one with a TTY) and a created
# one, an exec, a volume and a network. The fuzzer may delete or change any of them; that is
# part of the exercise.
busybox=$(command -v busybox || echo /bin/busybox)
[ -x "$busybox" ] || { echo "deploy/fuzz-api.sh: busybox is missing (busybox-static)" >&2; exit 1; }
mkdir -p "$work/rootfs/bin" "$work/rootfs/tmp"
cp "$busybox" "$work/rootfs/bin/busybox"
for applet in sh sleep true cat echo ls; do ln -s busybox "$work/rootfs/bin/$applet"; done
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
post() { curl -fsS -X POST -H 'Content-Type: application/json' "$@"; }
curl -fsS -X POST --data-binary @"$work/rootfs.tar" -H 'Content-Type: application/x-tar' \
    "$api/images/create?fromSrc=-&repo=fuzz&tag=latest" >/dev/null
curl -fsS -X POST "$api/images/fuzz:latest/tag?repo=ubuntu&tag=latest" >/dev/null
image_id=$(curl -fsS "$api/images/fuzz:latest/json" | json '["Id"]')
# PID 1 ends on SIGTERM (as PID 1, `sleep` would ignore it), so a stop does not wait its timeout.
cmd='["sh","-c","trap \"exit 0\" TERM; while :; do sleep 1; done"]'
running=$(post -d "{\"Image\":\"fuzz:latest\",\"Cmd\":$cmd,\"HostConfig\":{\"RestartPolicy\":{\"Name\":\"always\"}}}" \
    "$api/containers/create?name=fuzz-running" | json '["Id"]')
post "$api/containers/$running/start" >/dev/null
post -d "{\"Image\":\"fuzz:latest\",\"Cmd\":$cmd,\"Tty\":true,\"OpenStdin\":true}" \
    "$api/containers/create?name=fuzz-tty" >/dev/null
post "$api/containers/fuzz-tty/start" >/dev/null
created=$(post -d '{"Image":"fuzz:latest","Cmd":["true"]}' "$api/containers/create?name=fuzz-created" | json '["Id"]')
exec_id=$(post -d '{"Cmd":["sleep","1"],"AttachStdout":true}' "$api/containers/$running/exec" | json '["Id"]')
post -d '{"Name":"fuzz-volume"}' "$api/volumes/create" >/dev/null
post -d '{"Name":"fuzz-network","IPAM":{"Config":[{"Subnet":"10.232.253.0/24"}]}}' "$api/networks/create" >/dev/null

cat > "$work/schemathesis.toml" <<EOF
[dictionaries.containers]
values = ["fuzz-running", "$running", "fuzz-tty", "fuzz-created", "${created:0:12}"]
[dictionaries.images]
values = ["fuzz:latest", "ubuntu", "$image_id"]
[dictionaries.execs]
values = ["$exec_id"]
[dictionaries.volumes]
values = ["fuzz-volume"]
[dictionaries.networks]
values = ["fuzz-network", "bridge"]

# Half of the identifiers name things that exist. Streams that last as long as a container runs
# (attach, logs, stats, wait) keep random identifiers.
[[operations]]
include-operation-id = ["ContainerInspect", "ContainerTop", "ContainerChanges", "ContainerExport", "ContainerResize", "ContainerStart", "ContainerStop", "ContainerRestart", "ContainerKill", "ContainerUpdate", "ContainerRename", "ContainerPause", "ContainerUnpause", "ContainerDelete", "ContainerArchiveInfo", "ContainerArchive", "PutContainerArchive", "ContainerExec"]
parameters = { "path.id" = { dictionary = "containers", probability = 0.5 } }

[[operations]]
include-operation-id = ["ImageInspect", "ImageHistory", "ImageTag", "ImageDelete", "ImageGet"]
parameters = { "path.name" = { dictionary = "images", probability = 0.5 } }

[[operations]]
include-operation-id = ["ExecInspect", "ExecResize", "ExecStart"]
parameters = { "path.id" = { dictionary = "execs", probability = 0.5 } }

[[operations]]
include-operation-id = ["ImageCommit"]
parameters = { "query.container" = { dictionary = "containers", probability = 0.5 } }

[[operations]]
include-operation-id = ["VolumeInspect", "VolumeDelete", "VolumeUpdate"]
parameters = { "path.name" = { dictionary = "volumes", probability = 0.5 } }

[[operations]]
include-operation-id = ["NetworkInspect", "NetworkDelete", "NetworkConnect", "NetworkDisconnect"]
parameters = { "path.id" = { dictionary = "networks", probability = 0.5 } }
EOF
cp "$repo/deploy/fuzz-api-hooks.py" "$work/wharf_fuzz_hooks.py"

# ---------------------------------------------------------------------------------------------
# The run.
seed=${FUZZ_SEED:-$(( (RANDOM << 15) | RANDOM ))}
max_examples=${FUZZ_MAX_EXAMPLES:-25}
phases=${FUZZ_PHASES:-examples,coverage,fuzzing,stateful}
request_timeout=${FUZZ_REQUEST_TIMEOUT:-20}
log "schemathesis against $api: seed $seed, $max_examples examples per operation, phases $phases"
started=$(date +%s)
status=0
# One worker: schemathesis's threads trip a CPython AST race (Runtime Error, not Wharf's fault).
(cd "$work" && SCHEMATHESIS_HOOKS=wharf_fuzz_hooks PYTHONPATH="$work" WHARF_FUZZ_IMAGE=fuzz:latest \
    "$venv/bin/schemathesis" --config-file "$work/schemathesis.toml" run "$spec" \
    --url "$api" --checks not_a_server_error --request-timeout "$request_timeout" \
    --max-examples "$max_examples" --phases "$phases" --seed "$seed" --workers 1 --no-color \
    --suppress-health-check all --generation-database none \
    --exclude-path-regex '^/(plugins|nodes|swarm|services|tasks|secrets|configs|session|distribution)' \
    --exclude-operation-id ImageCreate --exclude-operation-id ImagePush \
    --exclude-operation-id ImageSearch --exclude-operation-id SystemAuth \
    --exclude-operation-id ImageBuild --exclude-operation-id SystemEvents \
    --exclude-operation-id ContainerWait \
    --exclude-operation-id NetworkCreate --exclude-operation-id ImageLoad) || status=$?
log "schemathesis finished with status $status in $(( $(date +%s) - started ))s"

failed=0
if [ "$status" -ne 0 ]; then
    echo "FAIL: schemathesis reported failures or errors (5xx, timeouts, broken run): see above; seed $seed" >&2
    failed=1
fi
if ! curl -fsS --max-time 10 "$api/_ping" >/dev/null; then
    echo "FAIL: the API no longer answers /_ping" >&2
    failed=1
fi

# ---------------------------------------------------------------------------------------------
# Leaks: every shim and container directory under the data root belongs to a listed container.
containers_dir=$data_root/runtime/containers
listed() { curl -fsS --max-time 30 "$api/containers/json?all=1" | python3 -c 'import json,sys; [print(c["Id"]) for c in json.load(sys.stdin)]' | sort; }
shims() {
    for proc in /proc/[0-9]*; do
        args=$( { tr '\0' '\n' < "$proc/cmdline"; } 2>/dev/null) || continue
        prog=$(printf '%s\n' "$args" | sed -n 1p)
        dir=$(printf '%s\n' "$args" | sed -n 2p)
        case "$prog" in *wharf-shim) ;; *) continue ;; esac
        case "$dir" in "$containers_dir"/*) basename "$dir" ;; esac
    done | sort -u
}
dirs() { [ -d "$containers_dir" ] && ls "$containers_dir" | sort || true; }
if ! list=$(listed); then
    echo "FAIL: GET /containers/json?all=1 failed" >&2
    failed=1
    list=
fi
unlisted_shims=$(comm -23 <(shims) <(printf '%s\n' "$list" | sed '/^$/d'))
unlisted_dirs=$(comm -23 <(dirs) <(printf '%s\n' "$list" | sed '/^$/d'))
log "$(printf '%s\n' "$list" | sed '/^$/d' | wc -l) containers listed, $(shims | sed '/^$/d' | wc -l) shims running"
if [ -n "$unlisted_shims" ]; then
    echo "FAIL: shims of containers the API does not list: $unlisted_shims" >&2
    failed=1
fi
if [ -n "$unlisted_dirs" ]; then
    echo "FAIL: container directories the API does not list: $unlisted_dirs" >&2
    failed=1
fi
# Removing everything through the API leaves nothing behind.
for id in $list; do
    curl -sS --max-time 60 -X DELETE "$api/containers/$id?force=1&v=1" >/dev/null || true
done
for _ in $(seq 1 50); do
    [ -z "$(shims)" ] && [ -z "$(dirs)" ] && break
    sleep 0.2
done
if [ -n "$(shims)" ] || [ -n "$(dirs)" ]; then
    echo "FAIL: after removing every container: shims [$(shims | tr '\n' ' ')] directories [$(dirs | tr '\n' ' ')]" >&2
    failed=1
fi
curl -sS --max-time 60 -X POST "$api/networks/prune" >/dev/null || true
curl -sS --max-time 60 -X POST "$api/volumes/prune?filters=%7B%22all%22%3A%5B%22true%22%5D%7D" >/dev/null || true

if [ "$failed" -ne 0 ]; then
    [ -f "$work/wharf.log" ] && { echo "--- wharf up log (tail)"; tail -60 "$work/wharf.log"; }
    log "FAILED (seed $seed)"
    exit 1
fi
log "passed: no 5xx, no hang, no leak (seed $seed)"
