#!/usr/bin/env bash
# Benchmark (not a test): containers against Wharf and, side by side, a reference engine.
#
#   deploy/bench-run.sh                                # Wharf only
#   deploy/bench-run.sh --dockerd                      # and a private dockerd (Debian's docker.io,
#                                                      # its own containerd, its own bridge)
#   deploy/bench-run.sh unix:///tmp/cmp-docker.sock    # and an engine that is already running
#
# Per engine, with a tiny busybox image pulled from a loopback registry beforehand:
#   1. `docker run --rm IMAGE /bin/true`, wall time (median of RUNS, after one untimed run)
#   2. `docker run -d IMAGE sleep 3600`, wall time (median of RUNS; those containers are removed)
#   3. IDLE_N idle containers (`run -d ... sleep 3600`): memory per container, (a) host used memory
#      (MemTotal - MemAvailable) after minus before, over N; (b) Pss of the per-container shims
#      (wharf-shim; containerd-shim-runc-v2) over N, the containers' own `sleep` not counted, and
#      the growth of the daemons' RSS (Wharf's runtime service and whole stack; dockerd+containerd)
#   4. `docker ps` and `docker ps -a` with those N running (median of RUNS); `rm -f` of all N.
#      Also the engine's part alone (GET /containers/json with curl), and the docker CLI's own
#      floor: `docker ps` and `docker run -d` against a python3 stand-in that answers at once
#      (with the engine's recorded ps body): what no engine can go below.
#   5. BIG=1: `docker pull` then the first `docker run --rm` of bench-pull.sh's 534 MB image with a
#      busybox layer on top (BIG_RUNS, default 3; every Wharf run on an empty data root, the
#      reference's copy removed before each run)
#   6. BUILD=1: `docker build` (legacy builder) of a 7-step Dockerfile (FROM busybox, ENV, COPY
#      1 MiB, RUN, COPY two 1 MiB files, RUN, WORKDIR, CMD): cold (`--no-cache`) and warm (every
#      step cached), RUNS each; with a private dockerd also its BuildKit, through the docker.io
#      CLI (/usr/bin/docker, which has BuildKit built in). ONLY=build skips phases 1-5.
#   7. PUSH=1: `docker push` of phase 6's image (busybox and 3 MiB of noise in two layers) to an
#      empty registry (cold: every layer uploads) and again (warm: every layer exists), RUNS each,
#      every run on a new registry; with BIG=1 also the big image, pulled then pushed to an empty
#      registry (BIG_RUNS). For Wharf also `wharf sync` of the pushed repository to another empty
#      registry, and again (nothing to copy). ONLY=push skips phases 1-6.
#
# Env: RUNS (default 10), IDLE_N (default 50), SETTLE (seconds before memory is read, default 3),
# BIG, BIG_RUNS, BENCH_CACHE (default /var/tmp/wharf-bench, shared with bench-pull.sh), KEEP=1 (keep
# the run directory with the engines' data; by default only the logs stay).
# The registry listens on 127.0.0.1, which dockerd treats as insecure (plain HTTP) by default.
# Wharf runs from copies of target/release/{wharf,wharf-shim} in the run directory, so a rebuild
# during the run changes nothing and its shims are told apart by their executable's path.
# Against an already running reference engine only the containers this script made are removed;
# its `docker ps` figures then include whatever else it runs.
set -Eeuo pipefail
# ip, nft and iptables (the network this script removes) live in the sbin directories, which a
# non-login root shell may not have on PATH.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
export LC_ALL=C

cd "$(dirname "${BASH_SOURCE[0]}")/.."
reference=
private_dockerd=
case "${1:-}" in
    "") ;;
    --dockerd) private_dockerd=1 ;;
    unix://* | tcp://*) reference=$1 ;;
    -h | --help) sed -n '2,/^set -Eeuo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: $0 [--dockerd | unix:///path/docker.sock]" >&2; exit 2 ;;
esac
runs=${RUNS:-10}
idle_n=${IDLE_N:-50}
settle=${SETTLE:-3}
big=${BIG:-}
big_runs=${BIG_RUNS:-3}
build=${BUILD:-}
push=${PUSH:-}
only=${ONLY:-}
cache=${BENCH_CACHE:-/var/tmp/wharf-bench}
docker_cli=$(command -v docker || echo /usr/local/bin/docker)
mkdir -p "$cache"
trap 'echo "FAILED (line $LINENO): $BASH_COMMAND" >&2' ERR

free_port() {
    local p
    while :; do
        p=$(( 20000 + RANDOM % 40000 ))
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
}

run_dir=$(mktemp -d /tmp/wharf-bench.XXXXXX)
export DOCKER_CONFIG=$run_dir/docker-config # no credential helpers or plugins of the user's
mkdir -p "$DOCKER_CONFIG"

pids=()
# Engines whose containers are removed at exit: "host private|external".
engines_up=()
bridge_made=
stop_pid() {
    kill -TERM "$1" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.2; done
    kill -KILL "$1" 2>/dev/null || true
}
# The stack's default network is its own (wharfbench0, 10.232.251.0/24, table wharf_bench), so that
# another engine's bridge is left alone; it outlives `wharf up` (as dockerd's networks outlive
# dockerd) and goes with this script.
wharf_net_args=(--bridge wharfbench0 --fixed-cidr 10.232.251.0/24 --firewall-table wharf_bench)
remove_wharf_net() {
    nft delete table ip wharf_bench 2>/dev/null || true
    ip link delete wharfbench0 2>/dev/null || true
    iptables -w -D FORWARD -j WHARF-wharfbench0 2>/dev/null || true
    iptables -w -F WHARF-wharfbench0 2>/dev/null || true
    iptables -w -X WHARF-wharfbench0 2>/dev/null || true
}
cleanup() {
    local status=$? e
    trap - ERR
    for e in "${engines_up[@]}"; do remove_containers ${e} || true; done
    if [ "$status" -ne 0 ]; then
        for log in wharf.log dockerd.log; do
            [ -s "$run_dir/$log" ] && { echo "--- last lines of $run_dir/$log" >&2; tail -25 "$run_dir/$log" >&2; }
        done
    fi
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do stop_pid "$pid"; done
    remove_wharf_net
    [ -n "$bridge_made" ] && ip link delete "$bridge_made" 2>/dev/null || true
    if [ -z "${KEEP:-}" ]; then
        rm -rf "$run_dir/data" "$run_dir/dockerd" "$run_dir/dexec" "$run_dir/bin" 2>/dev/null ||
            echo "note: could not remove all of $run_dir (mounts left behind?)" >&2
    fi
    echo "(logs in $run_dir)" >&2
}
trap cleanup EXIT

now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", b - a}'; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }
used_kib() { awk '/^MemTotal:/ {t=$2} /^MemAvailable:/ {a=$2} END {print t - a}' /proc/meminfo; }
rss_kib() { awk '/^VmRSS:/ {print $2; f=1} END {if (!f) print 0}' "/proc/$1/status" 2>/dev/null || echo 0; }
children_of() { # direct children of PID $1
    local p
    for p in /proc/[0-9]*; do
        [ "$(awk '{print $4}' "$p/stat" 2>/dev/null)" = "$1" ] && echo "${p#/proc/}"
    done
    return 0
}
sum_rss() { local s=0 p; for p in "$@"; do s=$(( s + $(rss_kib "$p") )); done; echo "$s"; }

# Pss (KiB) of the shims of our containers: processes whose executable matches the glob $1 and,
# when file $2 is given, whose command line holds one of the container IDs listed in it.
# Prints "count sum". Only the shims themselves: their children (the containers) are not counted.
shim_pss() {
    local pattern=$1 ids=${2:-} count=0 sum=0 p exe cmd id pss ok
    local -A want=()
    if [ -n "$ids" ]; then while read -r id; do want[$id]=1; done < "$ids"; fi
    for p in /proc/[0-9]*; do
        exe=$(readlink "$p/exe" 2>/dev/null) || continue
        exe=${exe% (deleted)}
        # shellcheck disable=SC2053
        [[ $exe == $pattern ]] || continue
        if [ -n "$ids" ]; then
            cmd=$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null) || continue
            ok=
            for id in $(grep -oE '[0-9a-f]{64}' <<<"$cmd" || true); do [ -n "${want[$id]:-}" ] && ok=1; done
            [ -n "$ok" ] || continue
        fi
        pss=$(awk '/^Pss:/ {print $2}' "$p/smaps_rollup" 2>/dev/null) || continue
        [ -n "$pss" ] || continue
        count=$(( count + 1 ))
        sum=$(( sum + pss ))
    done
    echo "$count $sum"
}

# The docker CLI's own share: a stand-in engine (python3) that answers from memory at once,
# with a recorded `containers/json` body. `docker ps` / `docker run -d` against it is the
# floor any engine's figure sits on (the CLI's start-up, decoding and table formatting).
stand_in_pid=
stand_in_sock=$run_dir/stand-in.sock
start_stand_in() { # $1 = file holding a containers/json body
    rm -f "$stand_in_sock"
    python3 - "$stand_in_sock" "$1" > "$run_dir/stand-in.log" 2>&1 <<'PY' &
import os, socketserver, sys
sock, ps = sys.argv[1], open(sys.argv[2], 'rb').read()
class H(socketserver.StreamRequestHandler):
    def handle(self):
        while True:
            line = self.rfile.readline()
            if not line:
                return
            req, n, chunked = line.decode(), 0, False
            while True:
                h = self.rfile.readline()
                if h.lower().startswith(b'content-length:'):
                    n = int(h.split(b':')[1])
                if h.lower().startswith(b'transfer-encoding:') and b'chunked' in h.lower():
                    chunked = True
                if h in (b'\r\n', b'\n', b''):
                    break
            if n:
                self.rfile.read(n)
            while chunked:  # a build context, streamed by the CLI
                size = int(self.rfile.readline().split(b';')[0], 16)
                self.rfile.read(size + 2)
                if size == 0:
                    break
            hdr = b'Api-Version: 1.45\r\nContent-Type: application/json\r\n'
            if '/wait' in req:  # held open, as an engine holds it until the exit
                self.wfile.write(b'HTTP/1.1 200 OK\r\n' + hdr + b'Transfer-Encoding: chunked\r\n\r\n')
                self.wfile.flush()
                while self.rfile.read(1):
                    pass
                return
            if '/_ping' in req:
                code, body = b'200 OK', b'OK'
            elif '/containers/create' in req:
                code, body = b'201 Created', b'{"Id":"' + b'a' * 64 + b'","Warnings":[]}'
            elif '/start' in req:
                code, body = b'204 No Content', None
            elif '/containers/json' in req:
                code, body = b'200 OK', ps
            elif '/build' in req:
                code, body = b'200 OK', b'{"stream":"sha256:' + b'b' * 64 + b'\\n"}\r\n'
            else:
                code, body = b'404 Not Found', b'{"message":"not in the stand-in"}'
            out = b'HTTP/1.1 ' + code + b'\r\n' + hdr
            if body is not None:
                out += b'Content-Length: %d\r\n' % len(body)
            out += b'\r\n'
            if body is not None and not req.startswith('HEAD'):
                out += body
            self.wfile.write(out)
            self.wfile.flush()
class S(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
S(sock, H).serve_forever()
PY
    stand_in_pid=$!
    pids+=("$stand_in_pid")
    for _ in $(seq 1 100); do [ -S "$stand_in_sock" ] && return 0; sleep 0.05; done
    echo "the stand-in engine did not start" >&2
    exit 1
}
stop_stand_in() { stop_pid "$stand_in_pid"; stand_in_pid=; }

# remove_containers HOST private|external: every container on a private engine; on an external
# one only those this script recorded.
remove_containers() {
    local host=$1 kind=$2 ids
    if [ "$kind" = private ]; then
        ids=$(DOCKER_HOST=$host timeout 60 "$docker_cli" ps -aq 2>/dev/null || true)
    else
        ids=$(cat "$run_dir"/ids.* 2>/dev/null | sort -u || true)
    fi
    [ -z "$ids" ] && return 0
    # shellcheck disable=SC2086
    DOCKER_HOST=$host timeout 600 "$docker_cli" rm -f $ids >/dev/null 2>&1 || true
    [ "$kind" = external ] && rm -f "$run_dir"/ids.*
    return 0
}

echo "== building wharf and wharf-shim (release)"
cargo build --release -p wharf -p wharf-runtime --bins
mkdir -p "$run_dir/bin"
cp target/release/wharf target/release/wharf-shim "$run_dir/bin/"
wharf=$run_dir/bin/wharf
wharf_shim=$run_dir/bin/wharf-shim

case "$(uname -m)" in
    x86_64) arch=amd64 ;;
    aarch64) arch=arm64 ;;
    *) arch=$(uname -m) ;;
esac

# -------------------------------------------------------------------------------------------
# The busybox image: an OCI layout made once from busybox-static's /bin/busybox, kept in the cache.
[ -x /bin/busybox ] || { echo "/bin/busybox is missing (apt-get install busybox-static)" >&2; exit 1; }
small=$cache/oci-busybox
applets=(sh true sleep cat echo ls ps env)
small_spec="busybox $(sha256sum /bin/busybox | cut -c1-16) ${applets[*]} $arch"
blob() { # moves file $1 into layout $2, prints its digest
    local d
    d=$(sha256sum "$1" | cut -d' ' -f1)
    mv "$1" "$2/blobs/sha256/$d"
    echo "$d"
}
if [ ! -f "$small/index.json" ] || [ "$(cat "$small/.spec" 2>/dev/null)" != "$small_spec" ]; then
    echo "== making the busybox image in $small (once)"
    work=$cache/build-busybox
    rm -rf "$work" "$small"
    mkdir -p "$work/root/bin" "$small/blobs/sha256"
    for d in dev proc sys tmp etc root; do mkdir -p "$work/root/$d"; done
    chmod 1777 "$work/root/tmp"
    cp /bin/busybox "$work/root/bin/busybox"
    for a in "${applets[@]}"; do ln -s busybox "$work/root/bin/$a"; done
    tar -C "$work/root" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf "$work/layer.tar" .
    diff=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
    gzip -n -6 -c "$work/layer.tar" > "$work/layer.tar.gz"
    lsize=$(stat -c %s "$work/layer.tar.gz")
    ldigest=$(blob "$work/layer.tar.gz" "$small")
    printf '{"architecture":"%s","os":"linux","created":"2024-05-01T12:00:00Z","config":{"Env":["PATH=/bin"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"busybox-static"}]}' \
        "$arch" "$diff" > "$work/config.json"
    csize=$(stat -c %s "$work/config.json")
    cdigest=$(blob "$work/config.json" "$small")
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
        "$cdigest" "$csize" "$ldigest" "$lsize" > "$work/manifest.json"
    msize=$(stat -c %s "$work/manifest.json")
    mdigest=$(blob "$work/manifest.json" "$small")
    printf '{"imageLayoutVersion":"1.0.0"}' > "$small/oci-layout"
    printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"bench"}}]}' \
        "$mdigest" "$msize" > "$small/index.json"
    rm -rf "$work"
    echo "$small_spec" > "$small/.spec"
fi

# -------------------------------------------------------------------------------------------
# BIG=1: bench-pull.sh's image (same generation code, same cache, so either script reuses the
# other's), plus the busybox layer on top so that it can run /bin/true.
if [ -n "$big" ]; then
    command -v jq >/dev/null || { echo "BIG=1 needs jq" >&2; exit 1; }
    layout=$cache/oci
    # Keep in step with deploy/bench-pull.sh (the spec string is the cache key of both scripts).
    layer_mib=(220 170 119)
    spec="layers ${layer_mib[*]} MiB, 60/128 random"
    if [ ! -f "$layout/index.json" ] || [ "$(cat "$layout/.spec" 2>/dev/null)" != "$spec" ]; then
        echo "== generating the big benchmark image in $layout (once)"
        work=$cache/build
        rm -rf "$work" "$layout"
        mkdir -p "$work" "$layout/blobs/sha256"
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
            d=$(blob "$work/layer$i.tar.gz" "$layout")
            layers_json+="${layers_json:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$d\",\"size\":$size}"
            diff_ids+="${diff_ids:+,}\"sha256:$diff\""
            rm -f "$work/layer$i.tar"
        done
        printf '{"architecture":"amd64","os":"linux","created":"2024-05-01T12:00:00Z","config":{"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":[%s]},"history":[{"created_by":"layer 0"},{"created_by":"layer 1"},{"created_by":"layer 2"}]}' \
            "$diff_ids" > "$work/config.json"
        csize=$(stat -c %s "$work/config.json")
        cdigest=$(blob "$work/config.json" "$layout")
        printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[%s]}' \
            "$cdigest" "$csize" "$layers_json" > "$work/manifest.json"
        msize=$(stat -c %s "$work/manifest.json")
        mdigest=$(blob "$work/manifest.json" "$layout")
        printf '{"imageLayoutVersion":"1.0.0"}' > "$layout/oci-layout"
        printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"bench"}}]}' \
            "$mdigest" "$msize" > "$layout/index.json"
        rm -rf "$work" "$cache/registry"
        echo "$spec" > "$layout/.spec"
    fi
    # The runnable variant: the big image's layers (hard links), then the busybox layer.
    bigrun=$cache/oci-bigrun
    bigrun_spec="$spec + $small_spec"
    if [ ! -f "$bigrun/index.json" ] || [ "$(cat "$bigrun/.spec" 2>/dev/null)" != "$bigrun_spec" ]; then
        echo "== making the runnable big image in $bigrun (once)"
        rm -rf "$bigrun"
        mkdir -p "$bigrun/blobs/sha256"
        bmf=$(jq -r '.manifests[0].digest | sub("sha256:"; "")' "$layout/index.json")
        smf=$(jq -r '.manifests[0].digest | sub("sha256:"; "")' "$small/index.json")
        bcfg=$(jq -r '.config.digest | sub("sha256:"; "")' "$layout/blobs/sha256/$bmf")
        scfg=$(jq -r '.config.digest | sub("sha256:"; "")' "$small/blobs/sha256/$smf")
        for d in $(jq -r '.layers[].digest | sub("sha256:"; "")' "$layout/blobs/sha256/$bmf"); do
            ln -f "$layout/blobs/sha256/$d" "$bigrun/blobs/sha256/$d" 2>/dev/null || cp "$layout/blobs/sha256/$d" "$bigrun/blobs/sha256/$d"
        done
        sl=$(jq -r '.layers[0].digest | sub("sha256:"; "")' "$small/blobs/sha256/$smf")
        cp "$small/blobs/sha256/$sl" "$bigrun/blobs/sha256/$sl"
        tmpd=$(mktemp -d "$cache/bigrun.XXXXXX")
        jq -c --slurpfile s "$small/blobs/sha256/$scfg" --arg arch "$arch" \
            '.architecture = $arch | .config = $s[0].config | .rootfs.diff_ids += $s[0].rootfs.diff_ids | .history += $s[0].history' \
            "$layout/blobs/sha256/$bcfg" > "$tmpd/config.json"
        csize=$(stat -c %s "$tmpd/config.json")
        cdigest=$(blob "$tmpd/config.json" "$bigrun")
        jq -c --slurpfile s "$small/blobs/sha256/$smf" --arg cd "sha256:$cdigest" --argjson cs "$csize" \
            '.config.digest = $cd | .config.size = $cs | .layers += $s[0].layers' \
            "$layout/blobs/sha256/$bmf" > "$tmpd/manifest.json"
        msize=$(stat -c %s "$tmpd/manifest.json")
        mdigest=$(blob "$tmpd/manifest.json" "$bigrun")
        printf '{"imageLayoutVersion":"1.0.0"}' > "$bigrun/oci-layout"
        printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"bench"}}]}' \
            "$mdigest" "$msize" > "$bigrun/index.json"
        rm -rf "$tmpd"
        echo "$bigrun_spec" > "$bigrun/.spec"
    fi
fi

# -------------------------------------------------------------------------------------------
# Registry
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
image=127.0.0.1:$rport/bench/busybox:latest
echo "== pushing $image"
skopeo --insecure-policy copy --quiet --dest-tls-verify=false "oci:$small:bench" "docker://$image"
if [ -n "$big" ]; then
    big_image=127.0.0.1:$rport/bench/bigrun:latest
    echo "== pushing $big_image"
    skopeo --insecure-policy copy --quiet --dest-tls-verify=false "oci:$bigrun:bench" "docker://$big_image"
fi

# -------------------------------------------------------------------------------------------
# Engines
wharf_pid=
wharf_host=unix://$run_dir/docker.sock
start_wharf() { # a stack on an empty data root
    local nport
    nport=$(free_port)
    rm -rf "$run_dir/data"
    "$wharf" up --data-root "$run_dir/data" -H "$wharf_host" --nats-listen "127.0.0.1:$nport" \
        "${wharf_net_args[@]}" >> "$run_dir/wharf.log" 2>&1 &
    wharf_pid=$!
    pids+=("$wharf_pid")
    for _ in $(seq 1 600); do
        if DOCKER_HOST=$wharf_host "$docker_cli" version >/dev/null 2>&1; then
            engines_up+=("$wharf_host private")
            return 0
        fi
        kill -0 "$wharf_pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "wharf up did not answer" >&2
    exit 1
}
stop_wharf() { # containers outlive `wharf up` (live-restore): remove them first
    remove_containers "$wharf_host" private
    stop_pid "$wharf_pid"
    engines_up=()
    wharf_pid=
}

dockerd_pid=
dockerd_host=unix://$run_dir/dockerd.sock
start_dockerd() {
    local bin octet
    bin=$(command -v dockerd || echo /usr/sbin/dockerd)
    [ -x "$bin" ] || { echo "dockerd is missing (apt-get install docker.io)" >&2; exit 1; }
    if [ -S /run/containerd/containerd.sock ]; then
        echo "note: /run/containerd/containerd.sock exists: dockerd 20.10 uses that system containerd instead of its own" >&2
    fi
    # Its own bridge, never docker0 (another dockerd on this host may own that one, and --bip
    # would re-address it), on a /16 no route uses yet (IDLE_N=500 needs more than a /24).
    dockerd_bridge=wbd${run_dir##*.}
    for octet in 29 28 27 26 25 24; do
        ip route show | grep -q "^172\.$octet\." || break
        octet=
    done
    [ -n "$octet" ] || { echo "no free 172.24-29.0.0/16 for dockerd's bridge" >&2; exit 1; }
    ip link add "$dockerd_bridge" type bridge
    bridge_made=$dockerd_bridge
    ip addr add "172.$octet.0.1/16" dev "$dockerd_bridge"
    ip link set "$dockerd_bridge" up
    # --iptables=false: dockerd would set the FORWARD policy to DROP host-wide (Wharf's and the
    # tests' bridges too); nothing here needs NAT.
    "$bin" --data-root "$run_dir/dockerd" --exec-root "$run_dir/dexec" --pidfile "$run_dir/dockerd.pid" \
        -H "$dockerd_host" --bridge "$dockerd_bridge" --iptables=false --ip6tables=false \
        > "$run_dir/dockerd.log" 2>&1 &
    dockerd_pid=$!
    pids+=("$dockerd_pid")
    for _ in $(seq 1 600); do
        if DOCKER_HOST=$dockerd_host "$docker_cli" version >/dev/null 2>&1; then
            engines_up+=("$dockerd_host private")
            return 0
        fi
        kill -0 "$dockerd_pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "dockerd did not start" >&2
    exit 1
}
stop_dockerd() {
    remove_containers "$dockerd_host" private
    stop_pid "$dockerd_pid"
    engines_up=()
    dockerd_pid=
}

# The daemons' processes of an engine (not the shims, not the containers).
daemon_pids() { # $1 = wharf|dockerd|external
    local p
    case $1 in
        wharf)
            echo "$wharf_pid"
            for p in $(children_of "$wharf_pid"); do
                [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$wharf_shim" ] || echo "$p"
            done
            ;;
        dockerd)
            echo "$dockerd_pid"
            children_of "$dockerd_pid"
            ;;
        external)
            # The process listening on the socket, and its containerd if it has one as a child.
            p=$(ss -xlpn 2>/dev/null | grep -F " ${reference#unix://} " | grep -oE 'pid=[0-9]+' | head -1 | cut -d= -f2 || true)
            [ -n "$p" ] && { echo "$p"; children_of "$p"; }
            ;;
    esac
    return 0
}
runtime_pid() { # Wharf's runtime service: the child `wharf runtime ...` of `wharf up`
    local p
    for p in $(children_of "$wharf_pid"); do
        [ "$(tr '\0' '\n' < "/proc/$p/cmdline" 2>/dev/null | sed -n 2p)" = runtime ] && { echo "$p"; return 0; }
    done
    return 0
}

declare -A R=()
dk() { DOCKER_HOST=$host "$docker_cli" "$@"; }
# time_runs KEY LABEL CMD...: runs CMD $runs times (its stdout appended to $time_out, default
# /dev/null), prints LABEL and the times, and keeps the median in R[KEY].
time_out=/dev/null
time_runs() {
    local key=$1 label=$2 t0 t1 r
    shift 2
    local times=()
    for r in $(seq 1 "$runs"); do
        t0=$(now); "$@" >> "$time_out"; t1=$(now)
        times+=("$(elapsed "$t0" "$t1")")
    done
    echo "   ${label:+$label: }${times[*]}"
    R[$key]=$(printf '%s\n' "${times[@]}" | median)
}

# measure NAME HOST KIND(wharf|dockerd|external): phases 1-4 against a running engine.
measure() {
    local name=$1 host=$2 kind=$3 t0 t1 times id i ids_file before_used after_used
    local before_daemons after_daemons before_rt=0 after_rt=0 rt shims pattern running
    echo "== $name: pulling $image"
    dk pull -q "$image" >/dev/null
    dk run --rm "$image" /bin/true # untimed: the first run may set up a snapshot or network

    echo "== $name: docker run --rm IMAGE /bin/true ($runs runs)"
    time_runs "$name.run_rm" "" dk run --rm "$image" /bin/true

    echo "== $name: docker run -d IMAGE sleep 3600 ($runs runs)"
    ids_file=$run_dir/ids.$name.detached
    time_out=$ids_file time_runs "$name.run_d" "" dk run -d "$image" sleep 3600
    # shellcheck disable=SC2046
    dk rm -f $(cat "$ids_file") >/dev/null
    rm -f "$ids_file"

    echo "== $name: $idle_n idle containers"
    sleep "$settle"
    before_used=$(used_kib)
    mapfile -t dpids < <(daemon_pids "$kind")
    before_daemons=$(sum_rss "${dpids[@]}")
    if [ "$kind" = wharf ]; then rt=$(runtime_pid); before_rt=$(rss_kib "${rt:?no runtime service under wharf up}"); fi
    ids_file=$run_dir/ids.$name.idle
    t0=$(now)
    for i in $(seq 1 "$idle_n"); do
        dk run -d "$image" sleep 3600 >> "$ids_file"
    done
    t1=$(now)
    R[$name.idle_start]=$(elapsed "$t0" "$t1")
    sleep "$settle"
    running=$(dk ps -q --no-trunc | grep -cFf "$ids_file" || true)
    if [ "$running" -ne "$idle_n" ]; then
        echo "$name: only $running of $idle_n idle containers are running" >&2
        dk ps -a --no-trunc | grep -Ff "$ids_file" | grep -v ' Up ' | head -5 >&2 || true
        exit 1
    fi
    after_used=$(used_kib)
    after_daemons=$(sum_rss "${dpids[@]}")
    if [ "$kind" = wharf ]; then
        after_rt=$(rss_kib "$rt")
        shims=$(shim_pss "$wharf_shim")
    else
        shims=$(shim_pss '*/containerd-shim*' "$ids_file")
    fi
    R[$name.mem_host]=$(( (after_used - before_used) / idle_n ))
    R[$name.shim_count]=${shims% *}
    R[$name.shim_pss]=$(( ${shims#* } / idle_n ))
    R[$name.daemons_growth]=$(( after_daemons - before_daemons ))
    R[$name.rt_growth]=$(( after_rt - before_rt ))
    echo "   started in ${R[$name.idle_start]}s; host used memory +$(( after_used - before_used )) KiB;" \
        "${R[$name.shim_count]} shims, Pss ${shims#* } KiB; daemons RSS $before_daemons -> $after_daemons KiB" \
        "$([ "$kind" = wharf ] && echo "(runtime $before_rt -> $after_rt KiB)")"
    [ "${R[$name.shim_count]}" -eq "$idle_n" ] ||
        echo "   note: found ${R[$name.shim_count]} shim processes for $idle_n containers" >&2

    echo "== $name: docker ps / ps -a with $idle_n running ($runs runs each)"
    time_runs "$name.ps" ps dk ps
    time_runs "$name.ps_a" ps_a dk ps -a
    # The engine's part: the API call `docker ps` makes, alone (unix sockets only).
    if [[ $host != unix://* ]] || ! command -v curl >/dev/null || ! command -v python3 >/dev/null; then
        echo "   (API alone and the CLI's floor need a unix socket, curl and python3: skipped)"
    else
        time_runs "$name.ps_api" "GET /containers/json" \
            curl -sf --unix-socket "${host#unix://}" -o "$run_dir/ps.$name.json" http://engine/containers/json
        # The CLI's floor with this engine's answer.
        start_stand_in "$run_dir/ps.$name.json"
        host=unix://$stand_in_sock time_runs "$name.ps_floor" \
            "docker ps against a stand-in answering at once with that body" dk ps
        host=unix://$stand_in_sock time_runs "$name.run_d_floor" \
            "docker run -d against the stand-in" dk run -d "$image" sleep 3600
        stop_stand_in
    fi

    echo "== $name: docker rm -f of the $idle_n"
    t0=$(now)
    # shellcheck disable=SC2046
    dk rm -f $(cat "$ids_file") >/dev/null
    t1=$(now)
    rm -f "$ids_file"
    R[$name.rm_all]=$(elapsed "$t0" "$t1")
}

# measure_big NAME HOST KIND: pull then first run of the big image, BIG_RUNS times, each cold.
measure_big() {
    local name=$1 host=$2 kind=$3 pulls=() firsts=() totals=() t0 t1 t2
    echo "== $name: docker pull + first docker run --rm of the big image ($big_runs runs)"
    for r in $(seq 1 "$big_runs"); do
        if [ "$kind" = wharf ]; then
            stop_wharf
            start_wharf
        else
            dk rmi -f "$big_image" "$image" >/dev/null 2>&1 || true
        fi
        t0=$(now); dk pull -q "$big_image" >/dev/null; t1=$(now)
        dk run --rm "$big_image" /bin/true; t2=$(now)
        pulls+=("$(elapsed "$t0" "$t1")"); firsts+=("$(elapsed "$t1" "$t2")"); totals+=("$(elapsed "$t0" "$t2")")
        echo "   run $r: pull ${pulls[-1]}s, first run ${firsts[-1]}s"
    done
    [ "$kind" = wharf ] || dk rmi -f "$big_image" >/dev/null 2>&1 || true
    R[$name.big_pull]=$(printf '%s\n' "${pulls[@]}" | median)
    R[$name.big_first]=$(printf '%s\n' "${firsts[@]}" | median)
    R[$name.big_total]=$(printf '%s\n' "${totals[@]}" | median)
}

# The build context of phase 6, made once per run: three 1 MiB files of noise.
build_ctx=$run_dir/build-ctx
make_build_ctx() {
    mkdir -p "$build_ctx"
    for f in one two three; do head -c 1048576 /dev/urandom > "$build_ctx/$f.bin"; done
    cat > "$build_ctx/Dockerfile" <<'DOCKERFILE'
FROM busybox
ENV APP=/app
COPY one.bin /app/
RUN echo built > /app/marker
COPY two.bin three.bin /app/data/
RUN cat /app/marker > /app/data/marker
WORKDIR /app/data
CMD ["ls","-l"]
DOCKERFILE
}

# measure_build NAME HOST KIND: phase 6. With KIND=dockerd also BuildKit (key prefix NAME_bk).
measure_build() {
    local name=$1 host=$2 kind=$3 bk_cli=/usr/bin/docker
    echo "== $name: docker build, 7 steps, cold (--no-cache) and warm ($runs runs each)"
    dk pull -q "$image" >/dev/null
    dk tag "$image" busybox:latest
    export DOCKER_BUILDKIT=0 # the legacy builder, Wharf's API
    # (without the CLI's deprecation notice on stderr)
    dkq() { dk "$@" 2>/dev/null; }
    dkq build -q -t bench-build "$build_ctx" >/dev/null
    time_runs "$name.build_cold" "cold" dkq build -q --no-cache -t bench-build "$build_ctx"
    dkq build -q -t bench-build "$build_ctx" >/dev/null
    time_runs "$name.build_warm" "warm" dkq build -q -t bench-build "$build_ctx"
    if [ "$kind" = wharf ] && command -v python3 >/dev/null; then
        # The CLI's own share: it tars and sends the same context to a stand-in that answers at once.
        start_stand_in /dev/null
        host=unix://$stand_in_sock time_runs "$name.build_floor" \
            "docker build against a stand-in answering at once" dkq build -q -t bench-build "$build_ctx"
        stop_stand_in
    fi
    unset DOCKER_BUILDKIT
    if [ "$kind" = dockerd ] && [ -x "$bk_cli" ]; then
        bk() { DOCKER_BUILDKIT=1 DOCKER_HOST=$host "$bk_cli" "$@"; }
        bk build -q -t bench-build-bk "$build_ctx" >/dev/null 2>&1
        time_runs "$name.bk_build_cold" "BuildKit cold" bk build -q --no-cache -t bench-build-bk "$build_ctx"
        bk build -q -t bench-build-bk "$build_ctx" >/dev/null 2>&1
        time_runs "$name.bk_build_warm" "BuildKit warm" bk build -q -t bench-build-bk "$build_ctx"
    fi
    dk rmi -f bench-build bench-build-bk busybox:latest >/dev/null 2>&1 || true
}
# start_scratch_registry: an empty registry for phase 7; sets sport and spid.
start_scratch_registry() {
    sport=$(free_port)
    local dir=$run_dir/scratch-$sport
    mkdir -p "$dir"
    printf 'version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
        "$dir/data" "$sport" > "$dir/registry.yml"
    /usr/bin/docker-registry serve "$dir/registry.yml" > "$dir/registry.log" 2>&1 &
    spid=$!
    pids+=("$spid")
    for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$sport") 2>/dev/null && break; sleep 0.1; done
}
stop_scratch_registry() { stop_pid "$spid"; rm -rf "$run_dir/scratch-$sport"; }

# measure_push NAME HOST KIND: phase 7.
measure_push() {
    local name=$1 host=$2 kind=$3 cold=() warm=() scold=() swarm=() bigs=() t0 t1 r target first
    echo "== $name: docker push, cold (empty registry) and warm ($runs runs each)"
    dk pull -q "$image" >/dev/null
    dk tag "$image" busybox:latest
    DOCKER_BUILDKIT=0 dk build -q -t bench-push "$build_ctx" >/dev/null 2>&1
    for r in $(seq 1 "$runs"); do
        start_scratch_registry
        target=127.0.0.1:$sport/bench/push:v1
        dk tag bench-push "$target"
        t0=$(now); dk push -q "$target" >/dev/null; t1=$(now)
        cold+=("$(elapsed "$t0" "$t1")")
        t0=$(now); dk push -q "$target" >/dev/null; t1=$(now)
        warm+=("$(elapsed "$t0" "$t1")")
        if [ "$kind" = wharf ]; then
            first=$sport
            start_scratch_registry
            t0=$(now)
            "$wharf" sync -q --data-root "$run_dir/data" "127.0.0.1:$first/bench/push" "127.0.0.1:$sport/bench/push" >/dev/null
            t1=$(now)
            scold+=("$(elapsed "$t0" "$t1")")
            t0=$(now)
            "$wharf" sync -q --data-root "$run_dir/data" "127.0.0.1:$first/bench/push" "127.0.0.1:$sport/bench/push" >/dev/null
            t1=$(now)
            swarm+=("$(elapsed "$t0" "$t1")")
            stop_scratch_registry
            sport=$first
        fi
        dk rmi "$target" >/dev/null
        stop_scratch_registry
    done
    echo "   cold: ${cold[*]}"; echo "   warm: ${warm[*]}"
    R[$name.push_cold]=$(printf '%s\n' "${cold[@]}" | median)
    R[$name.push_warm]=$(printf '%s\n' "${warm[@]}" | median)
    if [ "$kind" = wharf ]; then
        echo "   sync cold: ${scold[*]}"; echo "   sync warm: ${swarm[*]}"
        R[$name.sync_cold]=$(printf '%s\n' "${scold[@]}" | median)
        R[$name.sync_warm]=$(printf '%s\n' "${swarm[@]}" | median)
    fi
    if [ -n "$big" ]; then
        echo "== $name: docker push of the big image to an empty registry ($big_runs runs)"
        dk pull -q "$big_image" >/dev/null
        for r in $(seq 1 "$big_runs"); do
            start_scratch_registry
            target=127.0.0.1:$sport/bench/big:v1
            dk tag "$big_image" "$target"
            t0=$(now); dk push -q "$target" >/dev/null; t1=$(now)
            bigs+=("$(elapsed "$t0" "$t1")")
            echo "   run $r: ${bigs[-1]}s"
            dk rmi "$target" >/dev/null
            stop_scratch_registry
        done
        R[$name.push_big]=$(printf '%s\n' "${bigs[@]}" | median)
        dk rmi -f "$big_image" >/dev/null 2>&1 || true
    fi
    dk rmi -f bench-push busybox:latest >/dev/null 2>&1 || true
}
skip_containers() { [ "$only" = build ] || [ "$only" = push ]; }
{ [ -n "$build" ] || [ -n "$push" ]; } && make_build_ctx

start_wharf
skip_containers || measure wharf "$wharf_host" wharf
[ -n "$big" ] && ! skip_containers && measure_big wharf "$wharf_host" wharf
[ -n "$build" ] && [ "$only" != push ] && measure_build wharf "$wharf_host" wharf
[ -n "$push" ] && measure_push wharf "$wharf_host" wharf
stop_wharf

ref_name=
if [ -n "$private_dockerd" ]; then
    ref_name=dockerd
    start_dockerd
    ref_version=$(DOCKER_HOST=$dockerd_host "$docker_cli" version -f '{{.Server.Version}}')
    skip_containers || measure dockerd "$dockerd_host" dockerd
    [ -n "$big" ] && ! skip_containers && measure_big dockerd "$dockerd_host" dockerd
    [ -n "$build" ] && [ "$only" != push ] && measure_build dockerd "$dockerd_host" dockerd
    [ -n "$push" ] && measure_push dockerd "$dockerd_host" dockerd
    stop_dockerd
elif [ -n "$reference" ]; then
    ref_name=reference
    ref_version=$(DOCKER_HOST=$reference "$docker_cli" version -f '{{.Server.Version}}')
    engines_up+=("$reference external")
    skip_containers || measure reference "$reference" external
    [ -n "$big" ] && ! skip_containers && measure_big reference "$reference" external
    [ -n "$build" ] && [ "$only" != push ] && measure_build reference "$reference" external
    [ -n "$push" ] && measure_push reference "$reference" external
    DOCKER_HOST=$reference "$docker_cli" rmi -f "$image" >/dev/null 2>&1 || true
    engines_up=()
fi

# -------------------------------------------------------------------------------------------
echo
echo "================ bench-run summary ================"
echo "$(nproc) cores, $(awk '/^MemTotal:/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo); RUNS=$runs IDLE_N=$idle_n; medians unless noted"
[ -n "$ref_name" ] && echo "reference: $ref_name ${ref_version:-} (${reference:-$dockerd_host})"
row() { # label key unit
    local w=${R[wharf.$2]:-} r=
    [ -n "$ref_name" ] && r=${R[$ref_name.$2]:-}
    if [ -n "$ref_name" ]; then
        printf '%-46s %12s %12s %8s\n' "$1" "$w" "$r" \
            "$(awk -v a="$w" -v b="$r" 'BEGIN {if (a != "" && b != "" && b + 0 != 0) printf "%.2f", a / b; else print "-"}')"
    else
        printf '%-46s %12s\n' "$1" "$w"
    fi
}
if [ -n "$ref_name" ]; then
    printf '%-46s %12s %12s %8s\n' "" Wharf "$ref_name" ratio
else
    printf '%-46s %12s\n' "" Wharf
fi
if ! skip_containers; then
    row "run --rm IMAGE /bin/true (s)" run_rm
    row "run -d IMAGE sleep 3600 (s)" run_d
    row "  same, CLI against an instant stand-in (s)" run_d_floor
    row "start $idle_n idle containers, total (s)" idle_start
    row "idle: host used memory / container (KiB)" mem_host
    echo "  (host-wide MemTotal-MemAvailable: anything else running on the host shows up in it)"
    row "idle: shim Pss / container (KiB)" shim_pss
    row "idle: shim processes found" shim_count
    row "idle: daemons' RSS growth, total (KiB)" daemons_growth
    [ -n "$ref_name" ] && echo "  (daemons: Wharf = wharf up + its services + nats-server; dockerd = dockerd + its containerd)"
    printf '%-46s %12s\n' "idle: Wharf runtime service RSS growth (KiB)" "${R[wharf.rt_growth]:-}"
    row "docker ps, $idle_n running (s)" ps
    row "docker ps -a, $idle_n running (s)" ps_a
    row "  GET /containers/json alone (s)" ps_api
    row "  docker ps, instant stand-in, same body (s)" ps_floor
    row "rm -f of the $idle_n, total (s)" rm_all
fi
if [ -n "$build" ]; then
    row "build, 7 steps, cold --no-cache (s)" build_cold
    row "build, 7 steps, warm, all cached (s)" build_warm
    row "  same, CLI against an instant stand-in (s)" build_floor
    if [ -n "${R[dockerd.bk_build_cold]:-}" ]; then
        printf '%-46s %12s %12s %8s\n' "  BuildKit in the same dockerd, cold (s)" "" "${R[dockerd.bk_build_cold]}" \
            "$(awk -v a="${R[wharf.build_cold]}" -v b="${R[dockerd.bk_build_cold]}" 'BEGIN {printf "%.2f", a / b}')"
        printf '%-46s %12s %12s %8s\n' "  BuildKit in the same dockerd, warm (s)" "" "${R[dockerd.bk_build_warm]}" \
            "$(awk -v a="${R[wharf.build_warm]}" -v b="${R[dockerd.bk_build_warm]}" 'BEGIN {printf "%.2f", a / b}')"
    fi
fi
if [ -n "$push" ]; then
    row "push, 2 new layers (3 MiB), empty registry (s)" push_cold
    row "push again, every layer there (s)" push_warm
    [ -n "$big" ] && row "push of the big image, empty registry (s)" push_big
    printf '%-46s %12s\n' "wharf sync of that repository (s)" "${R[wharf.sync_cold]:-}"
    printf '%-46s %12s\n' "wharf sync again, nothing to copy (s)" "${R[wharf.sync_warm]:-}"
fi
if [ -n "$big" ] && ! skip_containers; then
    row "big image: pull (s)" big_pull
    row "big image: first run --rm /bin/true (s)" big_first
    row "big image: pull + first run (s)" big_total
fi
