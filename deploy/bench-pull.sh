#!/usr/bin/env bash
# Benchmark (not a test): how long `docker pull` of a 3-layer image (~255 MB compressed, ~534 MB
# unpacked) takes against Wharf, and optionally against a reference engine.
#
#   deploy/bench-pull.sh                                # Wharf only
#   deploy/bench-pull.sh unix:///tmp/cmp-docker.sock    # and the same pull against that engine
#
# Env: RUNS (default 5), BENCH_CACHE (default /var/tmp/wharf-bench: the generated image, reused).
# The registry listens on 127.0.0.1, which dockerd treats as insecure (plain HTTP) by default.
set -euo pipefail
# ip, nft and iptables (the network this script removes) live in the sbin directories, which a
# non-login root shell may not have on PATH.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

cd "$(dirname "${BASH_SOURCE[0]}")/.."
reference=${1:-}
runs=${RUNS:-5}
cache=${BENCH_CACHE:-/var/tmp/wharf-bench}
docker_cli=$(command -v docker || echo /usr/local/bin/docker)
mkdir -p "$cache"

free_port() {
    local p
    while :; do
        p=$(( 20000 + RANDOM % 40000 ))
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
}

pids=()
# The stack's default network is its own (wharfpull0, 10.232.250.0/24, table wharf_pull), so that
# another engine's bridge is left alone; it outlives `wharf up` (as dockerd's networks outlive
# dockerd) and goes with this script.
wharf_net_args=(--bridge wharfpull0 --fixed-cidr 10.232.250.0/24 --firewall-table wharf_pull)
remove_wharf_net() {
    nft delete table ip wharf_pull 2>/dev/null || true
    ip link delete wharfpull0 2>/dev/null || true
    iptables -w -D FORWARD -j WHARF-wharfpull0 2>/dev/null || true
    iptables -w -F WHARF-wharfpull0 2>/dev/null || true
    iptables -w -X WHARF-wharfpull0 2>/dev/null || true
}
cleanup() {
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    remove_wharf_net
}
trap cleanup EXIT

echo "== building wharf (release)"
cargo build --release -p wharf
wharf=$PWD/target/release/wharf

# -------------------------------------------------------------------------------------------
# The image: an OCI layout generated once and kept in the cache.
layout=$cache/oci
# 509 MiB (~534 MB) unpacked in three layers; the cache is rebuilt when this changes.
layer_mib=(220 170 119)
spec="layers ${layer_mib[*]} MiB, 60/128 random"
if [ ! -f "$layout/index.json" ] || [ "$(cat "$layout/.spec" 2>/dev/null)" != "$spec" ]; then
    echo "== generating the benchmark image in $layout (once)"
    work=$cache/build
    rm -rf "$work" "$layout"
    mkdir -p "$work" "$layout/blobs/sha256"
    blob() { # moves file $1 into the layout, prints its digest
        local d
        d=$(sha256sum "$1" | cut -d' ' -f1)
        mv "$1" "$layout/blobs/sha256/$d"
        echo "$d"
    }
    # Blocks of 60 KiB random + 68 KiB zeros: gzip keeps ~48% of it.
    layers_json=""
    diff_ids=""
    for i in 0 1 2; do
        dir=$work/layer$i/data/layer$i
        mkdir -p "$dir"
        files=$(( layer_mib[i] / 16 ))
        rest=$(( layer_mib[i] - files * 16 ))
        for f in $(seq 1 "$files"); do
            for _ in $(seq 1 128); do head -c 61440 /dev/urandom; head -c 69632 /dev/zero; done > "$dir/file$f.bin"
        done
        if [ "$rest" -gt 0 ]; then
            for _ in $(seq 1 $(( rest * 8 ))); do head -c 61440 /dev/urandom; head -c 69632 /dev/zero; done > "$dir/rest.bin"
        fi
        tar -C "$work/layer$i" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf "$work/layer$i.tar" .
        diff=$(sha256sum "$work/layer$i.tar" | cut -d' ' -f1)
        gzip -n -6 -c "$work/layer$i.tar" > "$work/layer$i.tar.gz"
        size=$(stat -c %s "$work/layer$i.tar.gz")
        d=$(blob "$work/layer$i.tar.gz")
        layers_json+="${layers_json:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$d\",\"size\":$size}"
        diff_ids+="${diff_ids:+,}\"sha256:$diff\""
        rm -f "$work/layer$i.tar"
    done
    printf '{"architecture":"amd64","os":"linux","created":"2024-05-01T12:00:00Z","config":{"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":[%s]},"history":[{"created_by":"layer 0"},{"created_by":"layer 1"},{"created_by":"layer 2"}]}' \
        "$diff_ids" > "$work/config.json"
    csize=$(stat -c %s "$work/config.json")
    cdigest=$(blob "$work/config.json")
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[%s]}' \
        "$cdigest" "$csize" "$layers_json" > "$work/manifest.json"
    msize=$(stat -c %s "$work/manifest.json")
    mdigest=$(blob "$work/manifest.json")
    printf '{"imageLayoutVersion":"1.0.0"}' > "$layout/oci-layout"
    printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"bench"}}]}' \
        "$mdigest" "$msize" > "$layout/index.json"
    rm -rf "$work" "$cache/registry"
    echo "$spec" > "$layout/.spec"
fi
compressed=$(du -cb "$layout"/blobs/sha256/* | tail -1 | cut -f1)
echo "== image: $(( compressed / 1000000 )) MB compressed"

# -------------------------------------------------------------------------------------------
# Registry and Wharf
run_dir=$(mktemp -d /tmp/wharf-bench.XXXXXX)
rport=$(free_port)
cat > "$run_dir/registry.yml" <<YAML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $cache/registry
http:
  addr: 127.0.0.1:$rport
YAML
/usr/bin/docker-registry serve "$run_dir/registry.yml" > "$run_dir/registry.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$rport") 2>/dev/null && break; sleep 0.1; done
image=127.0.0.1:$rport/bench/big:latest
echo "== pushing to $image"
skopeo --insecure-policy copy --quiet --dest-tls-verify=false "oci:$layout:bench" "docker://$image"

# A fresh stack (empty data root) before every Wharf run: image-store keeps unreferenced blobs for a
# grace period after `rmi` (the lease rule, docs/decisions.md), so a re-pull into the same store
# would find its layers still there and not measure a cold pull.
wharf_pid=
wharf_host=
fresh_wharf() {
    if [ -n "$wharf_pid" ]; then
        kill -TERM "$wharf_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$wharf_pid" 2>/dev/null || break; sleep 0.1; done
        rm -rf "$run_dir/data"
    fi
    local sock=$run_dir/docker.sock nport
    nport=$(free_port)
    "$wharf" up --data-root "$run_dir/data" -H "unix://$sock" --nats-listen "127.0.0.1:$nport" \
        "${wharf_net_args[@]}" >> "$run_dir/wharf.log" 2>&1 &
    wharf_pid=$!
    pids+=("$wharf_pid")
    wharf_host=unix://$sock
    for _ in $(seq 1 600); do
        DOCKER_HOST=$wharf_host "$docker_cli" version >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    tail -30 "$run_dir/wharf.log" >&2
    exit 1
}

# Times `docker pull` against $1 (or a fresh Wharf when $1 is "wharf"), $runs times, the image
# removed before each; prints the median.
bench() {
    local host=$1 name=$2 times=() t0 t1
    for r in $(seq 1 "$runs"); do
        if [ "$host" = wharf ]; then
            fresh_wharf
            host_now=$wharf_host
        else
            host_now=$host
            DOCKER_HOST=$host "$docker_cli" rmi -f "$image" >/dev/null 2>&1 || true
        fi
        t0=$(date +%s.%N)
        DOCKER_HOST=$host_now "$docker_cli" pull -q "$image" >/dev/null
        t1=$(date +%s.%N)
        times+=("$(echo "$t1 $t0" | awk '{printf "%.3f", $1 - $2}')")
        echo "   $name run $r: ${times[-1]}s" >&2
    done
    DOCKER_HOST=$host_now "$docker_cli" rmi -f "$image" >/dev/null 2>&1 || true
    # bench runs in a subshell: stop its last stack here, the EXIT trap cannot see its PID.
    if [ "$host" = wharf ]; then
        kill -TERM "$wharf_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$wharf_pid" 2>/dev/null || break; sleep 0.1; done
    fi
    printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'
}

echo "== docker pull against Wharf ($runs runs)"
wharf_median=$(bench wharf wharf)
echo "Wharf median: ${wharf_median}s"
if [ -n "$reference" ]; then
    echo "== docker pull against $reference ($runs runs)"
    ref_median=$(bench "$reference" reference)
    echo "Reference median: ${ref_median}s"
    echo "$wharf_median $ref_median" | awk '{printf "Ratio Wharf/reference: %.2f\n", $1 / $2}'
fi
