#!/usr/bin/env bash
# Runs the CRI validation suite (critest, from cri-tools) against a private
# containerd that has three runtime handlers: `runc` (io.containerd.runc.v2),
# `tether` (io.containerd.tether.v2, this repository's shim, running runc) and
# `tether-crun` (the same shim with BinaryName = "crun", /usr/bin/crun) and
# `tether-wrapped` (BinaryName = a wrapper that logs its calls and runs runc,
# $CRI_WRAPPED_LOG). On containerd 1.6 the tether handlers' options are in a
# TOML file named by ConfigPath (see the config below).
#
#   scripts/critest.sh --handler NAME [--containerd VERSION] [--runc VERSION]
#                      [--shim PATH] [--focus REGEX] [--skip REGEX] [--parallel N]
#                      [--results DIR] [--keep]
#   scripts/critest.sh [--handler NAME] [--containerd VERSION] [--runc VERSION]
#                      [--shim PATH] [--results DIR] [--keep] [--images DIR]
#                      [--default-runtime NAME] [--containerd-cgroup NAME]
#                      --exec -- CMD [ARGS...]
#
#   --handler NAME       runc, tether or tether-crun: the runtime handler
#                        critest uses (in --exec mode only passed on as
#                        CRI_HANDLER; default tether)
#   --containerd VERSION system (Debian's, /usr/bin/containerd; the default) or
#                        a version scripts/peers.sh builds, e.g. 2.3.7
#   --runc VERSION       system (Debian's 1.1.5 in /usr/bin; the default) or a
#                        version scripts/peers.sh builds, e.g. 1.5.3: every
#                        handler (containerd's Go shim and tether alike, and
#                        the wrapper) runs it, as `runc` first in containerd's
#                        PATH
#   --shim PATH          the tether shim; default: target/release/
#                        containerd-shim-tether-v2, built with
#                        `cargo build --release` (when that fails, an already
#                        built binary is used, with a warning)
#   --focus/--skip REGEX ginkgo focus / skip on the spec names
#   --parallel N         critest nodes (default $CRITEST_PARALLEL or 2)
#   --results DIR        where results go (default /tmp/tether-critest-results/
#                        CONTAINERD-HANDLER-TIME); printed
#   --keep               keep the private temp dir (containerd root, logs)
#   --images DIR         more stand-in images for the registry: an OCI layout
#                        with an images.txt as scripts/cri/mkimages.py writes
#                        (pushed after the built-in ones, so its names win)
#   --default-runtime NAME  containerd's default runtime (the one a pod
#                        without a runtime handler gets; default runc), and a
#                        runtime handler `test-handler` configured as NAME
#                        (only with containerd 2.x)
#   --containerd-cgroup NAME  start containerd in the cgroup /NAME of every
#                        cgroup hierarchy (made for the run, removed after
#                        containerd is stopped; NAME must not exist)
#   --exec -- CMD...     the same setup, but run CMD instead of critest (its
#                        stdin, stdout and stderr are the script's), then clean
#                        up as usual and exit with CMD's status. CMD's
#                        environment describes the setup:
#     CRI_ENDPOINT        unix://SOCKET, containerd's CRI (and its API socket)
#     CONTAINERD_ADDRESS  SOCKET (for ctr; CONTAINERD_NAMESPACE is k8s.io)
#     CRICTL, CTR         the crictl and ctr binaries to use (CRI_CONFIG_FILE
#                         names a crictl.yaml with the endpoints)
#     CONTAINERD_PID, CONTAINERD_BIN, CONTAINERD_CONFIG, CONTAINERD_LOG,
#     CONTAINERD_ROOT, CONTAINERD_STATE, CONTAINERD_VERSION (e.g. v2.3.7)
#     RUNC_BIN, RUNC_VERSION the runc every handler runs, and its version (e.g.
#                         1.5.3)
#     CRI_TMP             the private temp dir (removed afterwards)
#     CRI_RESULTS         the results dir (kept: containerd.log, config.toml)
#     CRI_BUSYBOX_IMAGE   an image crictl can pull, with /bin/sh and the
#                         busybox applets (registry.k8s.io/e2e-test-images/
#                         busybox:1.29-2, served by the local registry)
#     CRI_PAUSE_IMAGE     the sandbox image
#     CRI_HANDLERS        "runc tether tether-crun"; CRI_HANDLER: --handler
#     CONTAINERD_CGROUP   /NAME of --containerd-cgroup (or empty)
#     CRI_SHIM            the tether shim binary
#     CRI_RESTART         scripts/cri/restart-containerd.sh: SIGKILLs the
#                         current containerd and starts a new one (same
#                         binary, config, log), waits for its CRI, prints the
#                         new PID. The current PID is always in
#                         $CRI_TMP/containerd.pid, which the cleanup reads, so
#                         a containerd restarted that way is stopped too.
#                         (Restart containerd only that way.)
#                         The last line printed in this mode is CMD's own
#                         (the script's messages go to stderr).
#
# Everything runs privately: containerd's root, state and socket in a temp dir,
# a local registry (docker-registry on 127.0.0.1, a free port) seeded with
# stand-ins for the images critest pulls (scripts/cri/mkimages.py), served as
# registry.k8s.io and gcr.io through containerd's hosts.toml, and a CNI bridge
# network of its own (unique bridge name and 10.88.X.0/24 subnet). Runs are
# serialised with a lock, as critest uses fixed host ports (12000-12003).
# Everything started is stopped by PID on exit, failure included.
#
# Results dir: critest.log, junit.xml, report.json (ginkgo), results.tsv
# (STATE<TAB>SECONDS<TAB>spec name, one line a spec), failures.txt (each failed
# spec with its failure message), skipped.txt (why specs skipped themselves),
# containerd.log, config.toml. Compare two runs with
#   scripts/cri/report.py --compare RUNC_DIR/results.tsv TETHER_DIR/results.tsv
# (the specs that passed in the first and not in the second).
#
# Environment: CRI_TOOLS_VERSION (default v1.34.0; scripts/cri/build-cri-tools.sh
# builds and caches it), CRITEST_PARALLEL, TETHER_PEERS_DIR (the cache,
# default /var/cache/tether-peers).
# Last line printed: `critest NAME: P passed, F failed, S skipped`.
# Exit status: 0 when nothing failed, 1 when a spec failed, 2 when the run
# could not be set up.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
cache="${TETHER_PEERS_DIR:-/var/cache/tether-peers}"
cri_tools_version="${CRI_TOOLS_VERSION:-v1.34.0}"

handler="" containerd_version="system" runc_version="system" shim="" focus="" skip="" keep=0 results=""
exec_cmd=() exec_mode=0 extra_images="" default_runtime="" containerd_cgroup="" cgroup_dirs=()
parallel="${CRITEST_PARALLEL:-2}"
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2; exit 2; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --handler) handler="${2:?}"; shift 2 ;;
        --containerd) containerd_version="${2:?}"; shift 2 ;;
        --runc) runc_version="${2:?}"; shift 2 ;;
        --shim) shim="${2:?}"; shift 2 ;;
        --focus) focus="${2:?}"; shift 2 ;;
        --skip) skip="${2:?}"; shift 2 ;;
        --parallel) parallel="${2:?}"; shift 2 ;;
        --results) results="${2:?}"; shift 2 ;;
        --keep) keep=1; shift ;;
        --images) extra_images="$(realpath "${2:?}")"; shift 2 ;;
        --default-runtime) default_runtime="${2:?}"; shift 2 ;;
        --containerd-cgroup) containerd_cgroup="${2:?}"; shift 2 ;;
        --exec)
            shift
            [[ "${1:-}" == -- ]] && shift
            [[ $# -gt 0 ]] || { echo "critest.sh: --exec needs a command" >&2; usage; }
            exec_mode=1 exec_cmd=("$@")
            break ;;
        -h|--help) usage ;;
        *) echo "critest.sh: unknown argument $1" >&2; usage ;;
    esac
done
if [[ $exec_mode == 1 ]]; then handler="${handler:-tether}"; fi
[[ -n "$handler" ]] || usage
case "$handler" in runc|tether|tether-crun|tether-wrapped) ;; *) echo "critest.sh: handler must be runc, tether, tether-crun or tether-wrapped" >&2; exit 2 ;; esac
case "${default_runtime:-runc}" in runc|tether|tether-crun|tether-wrapped) ;; *) echo "critest.sh: --default-runtime must be runc, tether, tether-crun or tether-wrapped" >&2; exit 2 ;; esac
if [[ -n "$containerd_cgroup" && ! "$containerd_cgroup" =~ ^[A-Za-z0-9._-]+$ ]]; then
    echo "critest.sh: --containerd-cgroup takes a plain name" >&2; exit 2
fi

log() { echo "[critest.sh] $*" >&2; }

# ---------------------------------------------------------------- state ----
tmp="" registry_pid="" containerd_pid="" critest_pid="" bridge="" sock=""
ip_forward_before="" chains_before="" shm_before="" ctr_bin="" crictl_bin=""
cgroups_before="" runc_root_before="" cni_cache_before=""
passed=0 failed=0 skipped=0 status=2 tail_pid="" exec_pid="" containerd_bin=""

# shellcheck source=lib/procs.sh
source "$here/scripts/lib/procs.sh"   # descendants

cleanup() {
    set +e
    trap - EXIT INT TERM HUP
    if [[ -n "$critest_pid" ]] && kill -0 "$critest_pid" 2>/dev/null; then
        # critest, the ginkgo CLI it runs for -parallel and its nodes.
        local tree
        tree="$(descendants "$critest_pid")"
        log "stopping critest (pids $critest_pid $tree)"
        kill -TERM "$critest_pid" $tree 2>/dev/null
        for _ in $(seq 20); do kill -0 "$critest_pid" 2>/dev/null || break; sleep 0.5; done
        kill -KILL "$critest_pid" $tree 2>/dev/null
        wait "$critest_pid" 2>/dev/null
    fi
    if [[ -n "$tail_pid" ]]; then
        kill "$tail_pid" 2>/dev/null
        wait "$tail_pid" 2>/dev/null
    fi
    if [[ -n "$exec_pid" ]] && kill -0 "$exec_pid" 2>/dev/null; then
        # The --exec command (interrupted) and its descendants.
        local etree
        etree="$(descendants "$exec_pid")"
        log "stopping the --exec command (pids $exec_pid $etree)"
        kill -TERM "$exec_pid" $etree 2>/dev/null
        for _ in $(seq 20); do kill -0 "$exec_pid" 2>/dev/null || break; sleep 0.5; done
        kill -KILL "$exec_pid" $etree 2>/dev/null
        wait "$exec_pid" 2>/dev/null
    fi
    if [[ -n "$tmp" && -s "$tmp/containerd.pid" && -n "$containerd_bin" ]]; then
        # containerd restarted by scripts/cri/restart-containerd.sh: the
        # current PID is in the pid file (checked to be this containerd).
        local cpid
        cpid="$(cat "$tmp/containerd.pid" 2>/dev/null)"
        if [[ "$cpid" =~ ^[0-9]+$ && "$cpid" != "$containerd_pid" ]] &&
            [[ "$(readlink "/proc/$cpid/exe" 2>/dev/null)" == "$(realpath "$containerd_bin")" ]] &&
            tr '\0' ' ' <"/proc/$cpid/cmdline" 2>/dev/null | grep -qF -- "$tmp/config.toml"; then
            if [[ -n "$containerd_pid" ]] && kill -0 "$containerd_pid" 2>/dev/null; then
                kill -KILL "$containerd_pid" 2>/dev/null
                wait "$containerd_pid" 2>/dev/null
            fi
            containerd_pid="$cpid"
        fi
    fi
    if [[ -n "$containerd_pid" ]] && kill -0 "$containerd_pid" 2>/dev/null; then
        # Let containerd tear down what critest left: pods (their CNI
        # networks, netns and shims), then any container or task.
        if [[ -n "$crictl_bin" ]]; then
            timeout 120 "$crictl_bin" --timeout 60s -r "unix://$sock" rmp -fa >/dev/null 2>&1
            timeout 60 "$crictl_bin" --timeout 30s -r "unix://$sock" rm -fa >/dev/null 2>&1
        fi
        for ns in $(timeout 20 "$ctr_bin" --address "$sock" ns ls -q 2>/dev/null); do
            for t in $(timeout 20 "$ctr_bin" --address "$sock" -n "$ns" t ls -q 2>/dev/null); do
                timeout 20 "$ctr_bin" --address "$sock" -n "$ns" t kill -s SIGKILL "$t" >/dev/null 2>&1
                timeout 20 "$ctr_bin" --address "$sock" -n "$ns" t rm -f "$t" >/dev/null 2>&1
            done
            for c in $(timeout 20 "$ctr_bin" --address "$sock" -n "$ns" c ls -q 2>/dev/null); do
                timeout 20 "$ctr_bin" --address "$sock" -n "$ns" c rm "$c" >/dev/null 2>&1
            done
        done
        log "stopping containerd (pid $containerd_pid)"
        kill -TERM "$containerd_pid" 2>/dev/null
        # (gone or a zombie: a restarted containerd is not this shell's child)
        for _ in $(seq 40); do
            [[ "$(awk '{print $3}' "/proc/$containerd_pid/stat" 2>/dev/null)" =~ ^(Z|)$ ]] && break
            sleep 0.25
        done
        kill -KILL "$containerd_pid" 2>/dev/null
        wait "$containerd_pid" 2>/dev/null
        for _ in $(seq 20); do
            [[ "$(awk '{print $3}' "/proc/$containerd_pid/stat" 2>/dev/null)" =~ ^(Z|)$ ]] && break
            sleep 0.25
        done
    fi
    if [[ -n "$sock" ]]; then
        # Shims outlive containerd: find the ones of this containerd (their
        # command line names its private socket) and stop them by PID.
        local pids=() p
        for p in /proc/[0-9]*; do
            p="${p#/proc/}"
            [[ "$p" == "$$" ]] && continue
            if { tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null | grep -qF -- "$sock"; then pids+=("$p"); fi
        done
        if [[ ${#pids[@]} -gt 0 ]]; then
            log "stopping leftover shims: ${pids[*]}"
            kill -KILL "${pids[@]}" 2>/dev/null
            sleep 0.5
        fi
    fi
    if [[ ${#cgroup_dirs[@]} -gt 0 ]]; then
        # containerd's own cgroup (--containerd-cgroup), now that it and its
        # shims are gone.
        local d
        for d in "${cgroup_dirs[@]}"; do
            for _ in $(seq 20); do [[ -d "$d" ]] || break; rmdir "$d" 2>/dev/null && break; sleep 0.25; done
            [[ -d "$d" ]] && log "could not remove the cgroup $d"
        done
    fi
    if [[ -n "$sock" && -f "${results:-}/containerd.log" ]]; then
        # Shim sockets left in /run/containerd/s by a shim that could not
        # remove its own: containerd names them sha256(ADDRESS/NAMESPACE/ID).
        python3 - "$sock" "$results/containerd.log" <<'PY'
import hashlib, os, re, sys
sock, log = sys.argv[1], open(sys.argv[2], errors="replace").read()
for i in set(re.findall(r"\b[0-9a-f]{64}\b", log)):
    for suffix in ("", "/debug"):
        p = "/run/containerd/s/" + hashlib.sha256((sock + "/k8s.io/" + i + suffix).encode()).hexdigest()
        if os.path.exists(p):
            os.remove(p)
PY
    fi
    # libcni's result cache (containerd's CNI library keeps it in /var/lib/cni,
    # not configurable), if this run made it and it is empty again.
    if [[ "$cni_cache_before" == absent ]]; then
        rmdir /var/lib/cni/results /var/lib/cni 2>/dev/null
    fi
    # The namespace's runc state dir, if this run made it (and it is empty).
    if [[ "$runc_root_before" == absent ]]; then rmdir /run/containerd/runc/k8s.io 2>/dev/null; fi
    # Parent cgroups containerd made for the pods (cgroupfs: /k8s.io/ID on
    # containerd 2.x, system.slice/ID with 1.6): remove the empty ones that
    # did not exist before this run.
    if [[ -n "$cgroups_before" ]]; then
        local cg
        for cg in /sys/fs/cgroup/*/k8s.io /sys/fs/cgroup/*/system.slice /sys/fs/cgroup/k8s.io /sys/fs/cgroup/system.slice; do
            [[ -d "$cg" ]] || continue
            grep -qxF "$cg" <<<"$cgroups_before" && continue
            find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null
        done
    fi
    if [[ -n "$registry_pid" ]]; then
        kill -TERM "$registry_pid" 2>/dev/null
        wait "$registry_pid" 2>/dev/null
    fi
    if [[ -n "$tmp" && -d "$tmp" ]]; then
        # Unmount whatever is left under the temp dir (rootfs overlays, shm,
        # netns bind mounts), deepest first.
        local m
        while read -r m; do
            umount -l "$m" 2>/dev/null || umount -f "$m" 2>/dev/null
        done < <(awk -v t="$tmp" 'index($5, t) == 1 {print $5}' /proc/self/mountinfo | sort -r)
    fi
    if [[ -n "$bridge" ]] && ip link show "$bridge" >/dev/null 2>&1; then
        ip link del "$bridge" 2>/dev/null
    fi
    # The portmap plugin's iptables chains, when this run created them.
    if [[ -n "$chains_before" ]]; then
        local table chain
        for table in nat filter; do
            for chain in $(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^CNI-/ {print $2}'); do
                grep -qx "$table $chain" <<<"$chains_before" && continue
                # iptables -S quotes its words as a shell would: eval them.
                iptables -t "$table" -S 2>/dev/null | awk -v c="$chain" '$1 == "-A" && $2 != c {for (i = 1; i <= NF; i++) if ($i == "-j" && $(i + 1) == c) {print; break}}' |
                    while read -r rule; do eval "iptables -t \"\$table\" -D ${rule#-A }" 2>/dev/null; done
                iptables -t "$table" -F "$chain" 2>/dev/null
            done
            for chain in $(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^CNI-/ {print $2}'); do
                grep -qx "$table $chain" <<<"$chains_before" && continue
                iptables -t "$table" -X "$chain" 2>/dev/null
            done
        done
    fi
    if [[ -n "$ip_forward_before" ]] && [[ "$(cat /proc/sys/net/ipv4/ip_forward)" != "$ip_forward_before" ]]; then
        echo "$ip_forward_before" >/proc/sys/net/ipv4/ip_forward
    fi
    # critest's HostIPC specs make 1 MiB System V shm segments on the host
    # (ipcmk) and leave them: remove the unattached ones this run made.
    if [[ -n "$shm_before" ]]; then
        local id
        for id in $(awk 'NR > 1 && $4 == 1048576 && $7 == 0 {print $2}' /proc/sysvipc/shm); do
            grep -qx "$id" <<<"$shm_before" || ipcrm -m "$id" 2>/dev/null
        done
    fi
    if [[ -n "$tmp" && -d "$tmp" ]]; then
        if [[ $keep == 1 ]]; then
            log "kept $tmp"
        else
            rm -rf "$tmp" 2>/dev/null || log "could not remove all of $tmp"
        fi
    fi
    [[ -n "${results:-}" ]] && log "results: $results"
    # The summary is the very last line (in --exec mode, CMD's own last line
    # stays the last one on stdout).
    if [[ $exec_mode == 1 ]]; then
        log "exec: exit $status"
    else
        echo "critest $handler: $passed passed, $failed failed, $skipped skipped"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'status=2; exit 2' INT TERM HUP

# ------------------------------------------------------------- tooling -----
mkdir -p "$cache" /run/lock
exec 8>/run/lock/tether-critest.lock
if ! flock -n 8; then
    log "another critest.sh run holds /run/lock/tether-critest.lock; waiting"
    flock 8
fi

started=$SECONDS
t0=$SECONDS
cri_bin="$(bash "$here/scripts/cri/build-cri-tools.sh" "$cri_tools_version")"
log "cri-tools $cri_tools_version: $cri_bin ($((SECONDS - t0)) s)"
crictl_bin="$cri_bin/crictl"

if [[ "$containerd_version" == system ]]; then
    cd_bin=/usr/bin
    containerd_bin=/usr/bin/containerd
    ctr_bin=/usr/bin/ctr
else
    cd_bin="$(bash "$here/scripts/peers.sh" containerd "$containerd_version")"
    containerd_bin="$cd_bin/containerd"
    ctr_bin="$cd_bin/ctr"
fi
[[ -x "$containerd_bin" ]] || { log "no containerd at $containerd_bin"; exit 2; }
if [[ "$runc_version" == system ]]; then
    runc_bin=/usr/bin/runc
else
    runc_bin="$(bash "$here/scripts/peers.sh" runc "$runc_version")/runc" ||
        { log "building runc $runc_version failed"; exit 2; }
fi
[[ -x "$runc_bin" ]] || { log "no runc at $runc_bin"; exit 2; }
runc_version="$("$runc_bin" --version | awk 'NR == 1 {print $3}')"
log "runc $runc_version: $runc_bin"
cd_version="$("$containerd_bin" --version | awk '{print $3}')"
case "$cd_version" in
    v2.*|2.*) cd_major=2 ;;
    v1.*|1.*) cd_major=1 ;;
    *) log "unknown containerd version $cd_version"; exit 2 ;;
esac

if [[ -z "$shim" ]]; then
    shim="$here/target/release/containerd-shim-tether-v2"
    if [[ "$handler" != runc || $exec_mode == 1 ]]; then
        log "cargo build --release --bin containerd-shim-tether-v2"
        if ! (cd "$here" && cargo build --release --bin containerd-shim-tether-v2 >&2); then
            if [[ -x "$shim" ]]; then
                log "WARNING: cargo build failed; using the already built $shim ($(date -r "$shim" -u +%FT%TZ))"
            else
                log "cargo build failed and there is no built shim at $shim"
                exit 2
            fi
        fi
    fi
fi
if [[ ( "$handler" != runc || $exec_mode == 1 ) && ! -x "$shim" ]]; then
    log "no tether shim at $shim"
    exit 2
fi
[[ -x "$shim" ]] && shim="$(realpath "$shim")"

# ---------------------------------------------------------------- images ---
# The busybox .deb (Debian's dynamically linked build) and the image layout are
# cached; the layout is rebuilt when any of its inputs changes.
prepare_images() {
    local debdir="$cache/cri-busybox" deb
    mkdir -p "$debdir"
    exec 7>"$cache/.cri-images.lock"
    flock 7
    deb="$(ls "$debdir"/busybox_*.deb 2>/dev/null | head -n1 || true)"
    if [[ -z "$deb" ]]; then
        log "apt-get download busybox"
        (cd "$debdir" && { apt-get download busybox >&2 || { apt-get update >&2 && apt-get download busybox >&2; }; })
        deb="$(ls "$debdir"/busybox_*.deb | head -n1)"
    fi
    local key
    key="$(cat "$here/scripts/cri/mkimages.py" "$here/tests/cri/images/pause.c" "$here/tests/cri/images/nginx.c" \
        "$here/tests/cri/images/nnp.c" \
        <(basename "$deb") <(gcc --version | head -n1) | sha256sum | cut -c1-16)"
    images_dir="$cache/cri-images-$key"
    if [[ ! -f "$images_dir/images.txt" ]]; then
        log "building the test images into $images_dir"
        local w="$images_dir.tmp.$$"
        rm -rf "$w"
        mkdir -p "$w/bb" "$w/bin"
        dpkg -x "$deb" "$w/bb"
        gcc -static -O2 -o "$w/bin/pause" "$here/tests/cri/images/pause.c"
        gcc -static -O2 -o "$w/bin/nginx" "$here/tests/cri/images/nginx.c"
        gcc -static -O2 -o "$w/bin/nnp" "$here/tests/cri/images/nnp.c"
        python3 "$here/scripts/cri/mkimages.py" --out "$w/oci" --busybox-root "$w/bb" \
            --pause "$w/bin/pause" --nginx "$w/bin/nginx" --nnp "$w/bin/nnp"
        mv "$w/oci" "$images_dir"
        rm -rf "$w"
        local old
        for old in "$cache"/cri-images-*; do
            [[ "$old" == "$images_dir" ]] || rm -rf "$old"
        done
    fi
    exec 7>&-
}
images_dir=""
prepare_images

tmp="$(mktemp -d /tmp/tether-critest.XXXXXX)"
chmod 755 "$tmp"
id="$(basename "$tmp" | sed 's/.*\.//' | tr 'A-Z' 'a-z')"
if [[ -z "$results" ]]; then
    results="/tmp/tether-critest-results/$containerd_version-$([[ $exec_mode == 1 ]] && echo exec || echo "$handler")-$(date -u +%Y%m%dT%H%M%SZ)"
fi
mkdir -p "$results"
results="$(realpath "$results")"
log "results: $results; temp dir: $tmp"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# -------------------------------------------------------------- registry ---
mkdir -p "$tmp/registry/storage"
reg_port="$(free_port)"
cat >"$tmp/registry/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $tmp/registry/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$reg_port
  secret: tether-critest-$id
EOF
/usr/bin/docker-registry serve "$tmp/registry/config.yml" >"$results/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$reg_port/v2/" >/dev/null 2>&1 && break
    kill -0 "$registry_pid" 2>/dev/null || { log "registry exited"; cat "$results/registry.log" >&2; exit 2; }
    sleep 0.1
done
echo '{"default": [{"type": "insecureAcceptAnything"}]}' >"$tmp/registry/policy.json"
t0=$SECONDS
while read -r ref name; do
    skopeo --policy "$tmp/registry/policy.json" copy -q --dest-tls-verify=false \
        "oci:$images_dir:$ref" "docker://127.0.0.1:$reg_port/$name" >&2
done <"$images_dir/images.txt"
if [[ -n "$extra_images" ]]; then
    [[ -f "$extra_images/images.txt" ]] || { log "no images.txt in $extra_images"; exit 2; }
    while read -r ref name; do
        skopeo --policy "$tmp/registry/policy.json" copy -q --dest-tls-verify=false \
            "oci:$extra_images:$ref" "docker://127.0.0.1:$reg_port/$name" >&2
    done <"$extra_images/images.txt"
fi
log "registry 127.0.0.1:$reg_port (pid $registry_pid) seeded in $((SECONDS - t0)) s"

# containerd resolves registry.k8s.io and gcr.io to the local registry over
# plain http; the server itself is the local one too, so nothing is ever
# tried on the internet. Image names stay the upstream ones, which critest's
# image specs compare with the names it asked for.
for host in registry.k8s.io gcr.io; do
    mkdir -p "$tmp/certs.d/$host"
    cat >"$tmp/certs.d/$host/hosts.toml" <<EOF
server = "http://127.0.0.1:$reg_port"

[host."http://127.0.0.1:$reg_port"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
EOF
done
sandbox_image="registry.k8s.io/pause:3.10"

# ------------------------------------------------------------------- CNI ---
bridge="tcri-$id"
bridge="${bridge:0:15}"
subnet=""
for _ in $(seq 50); do
    n=$(( (RANDOM % 200) + 20 ))
    if ! ip -4 route show | grep -q "^10\.88\.$n\."; then subnet="10.88.$n"; break; fi
done
[[ -n "$subnet" ]] || { log "no free 10.88.X.0/24 subnet"; exit 2; }
ip_forward_before="$(cat /proc/sys/net/ipv4/ip_forward)"
chains_before="$(for t in nat filter; do iptables -t "$t" -S 2>/dev/null | awk -v t="$t" '$1 == "-N" {print t " " $2}'; done)"
chains_before="${chains_before:-none}"
cgroups_before="$(ls -d /sys/fs/cgroup/*/k8s.io /sys/fs/cgroup/*/system.slice /sys/fs/cgroup/k8s.io /sys/fs/cgroup/system.slice 2>/dev/null || true)"
cgroups_before="${cgroups_before:-none}"
runc_root_before="$([[ -d /run/containerd/runc/k8s.io ]] && echo present || echo absent)"
cni_cache_before="$([[ -d /var/lib/cni ]] && echo present || echo absent)"
shm_before="$(awk 'NR > 1 {print $2}' /proc/sysvipc/shm)"
shm_before="${shm_before:-none}"
mkdir -p "$tmp/cni/net.d" "$tmp/cni/ipam"
cat >"$tmp/cni/net.d/10-tether-critest.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "tether-critest-$id",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$tmp/cni/ipam",
        "ranges": [[{"subnet": "$subnet.0/24"}]]
      }
    },
    {
      "type": "portmap",
      "capabilities": {"portMappings": true}
    }
  ]
}
EOF
# (containerd adds the loopback plugin, /usr/lib/cni/loopback, itself.)

# ------------------------------------------------------------ containerd ---
mkdir -p "$tmp/bin" "$tmp/root" "$tmp/state" "$tmp/opt"
sock="$tmp/containerd.sock"
# The runc every handler runs: `runc` first in containerd's PATH.
ln -s "$runc_bin" "$tmp/bin/runc"
# The tether handler's shim, found in containerd's PATH (1.x) or by
# runtime_path (2.x).
if [[ -x "$shim" ]]; then
    ln -s "$shim" "$tmp/bin/containerd-shim-tether-v2"
    # A runtime binary that proves the handler's BinaryName reaches the shim:
    # it logs each call and runs runc.
    cat >"$tmp/bin/runc-wrapped" <<WRAP
#!/bin/sh
echo "\$*" >>"$tmp/runc-wrapped.log"
exec runc "\$@"
WRAP
    chmod 0755 "$tmp/bin/runc-wrapped"
    # containerd 1.6 gives a runtime type other than io.containerd.runc.* its
    # options table as runtimeoptions.v1.Options, of which only ConfigPath
    # survives: the options then live in that TOML file.
    printf 'BinaryName = "runc"\nSystemdCgroup = false\n' >"$tmp/tether-options.toml"
    printf 'BinaryName = "crun"\nSystemdCgroup = false\n' >"$tmp/tether-crun-options.toml"
    printf 'BinaryName = "%s"\nSystemdCgroup = false\n' "$tmp/bin/runc-wrapped" >"$tmp/tether-wrapped-options.toml"
fi
if [[ $cd_major == 1 ]]; then
    cat >"$tmp/config.toml" <<EOF
version = 2
root = "$tmp/root"
state = "$tmp/state"

[grpc]
  address = "$sock"

[debug]
  level = "info"

[plugins."io.containerd.internal.v1.opt"]
  path = "$tmp/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$sandbox_image"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.tether]
      runtime_type = "io.containerd.tether.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.tether.options]
        ConfigPath = "$tmp/tether-options.toml"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.tether-crun]
      runtime_type = "io.containerd.tether.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.tether-crun.options]
        ConfigPath = "$tmp/tether-crun-options.toml"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.tether-wrapped]
      runtime_type = "io.containerd.tether.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.tether-wrapped.options]
        ConfigPath = "$tmp/tether-wrapped-options.toml"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$tmp/cni/net.d"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$tmp/certs.d"
EOF
else
    cat >"$tmp/config.toml" <<EOF
version = 3
root = "$tmp/root"
state = "$tmp/state"

[grpc]
  address = "$sock"

[debug]
  level = "info"

[plugins."io.containerd.internal.v1.opt"]
  path = "$tmp/opt"

[plugins."io.containerd.nri.v1.nri"]
  disable = true

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "$sandbox_image"
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "$tmp/certs.d"

[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  enable_cdi = false
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        SystemdCgroup = false
    # No options table for tether (its defaults are runc from PATH and
    # cgroupfs): containerd 2.x hands a runtime type other than
    # io.containerd.runc.* its options as runtimeoptions.v1.Options, and for a
    # user-namespaced pod its client then fails to read them as runc's
    # (WithUIDOwner: "can't unmarshal type runtimeoptions.v1.Options").
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.tether]
      runtime_type = "io.containerd.tether.v2"
      runtime_path = "$tmp/bin/containerd-shim-tether-v2"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.tether-crun]
      runtime_type = "io.containerd.tether.v2"
      runtime_path = "$tmp/bin/containerd-shim-tether-v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.tether-crun.options]
        BinaryName = "crun"
        SystemdCgroup = false
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.tether-wrapped]
      runtime_type = "io.containerd.tether.v2"
      runtime_path = "$tmp/bin/containerd-shim-tether-v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.tether-wrapped.options]
        BinaryName = "$tmp/bin/runc-wrapped"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "$tmp/cni/net.d"
    max_conf_num = 1

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
EOF
fi
if [[ -n "$default_runtime" ]]; then
    [[ $cd_major == 2 ]] || { log "--default-runtime needs containerd 2.x"; exit 2; }
    # The default runtime, and `test-handler` as a copy of its table.
    sed -i "s/^    default_runtime_name = \"runc\"\$/    default_runtime_name = \"$default_runtime\"/" "$tmp/config.toml"
    awk -v rt="$default_runtime" '
        $0 ~ "^    \\[plugins\\.\"io\\.containerd\\.cri\\.v1\\.runtime\"\\.containerd\\.runtimes\\." rt "(\\.options)?\\]$" { copy = 1 }
        copy && /^    \[/ && $0 !~ "runtimes\\." rt "(\\.options)?\\]$" { copy = 0 }
        /^  \[/ { copy = 0 }
        copy { sub("runtimes\\." rt, "runtimes.test-handler"); print }
    ' "$tmp/config.toml" >"$tmp/test-handler.toml"
    [[ -s "$tmp/test-handler.toml" ]] || { log "no runtime $default_runtime in the config"; exit 2; }
    # Inserted before the CNI table, inside the runtime plugin's section.
    awk -v f="$tmp/test-handler.toml" '
        /^  \[plugins\."io\.containerd\.cri\.v1\.runtime"\.cni\]$/ { while ((getline l < f) > 0) print l }
        { print }' "$tmp/config.toml" >"$tmp/config.toml.new"
    mv "$tmp/config.toml.new" "$tmp/config.toml"
fi
cp "$tmp/config.toml" "$results/config.toml"

if [[ -n "$containerd_cgroup" ]]; then
    # containerd in a cgroup of its own in every hierarchy (v1 and v2).
    for d in $(awk '$9 == "cgroup" || $9 == "cgroup2" {print $5}' /proc/self/mountinfo); do
        [[ -e "$d/$containerd_cgroup" ]] && { log "the cgroup $d/$containerd_cgroup exists already"; exit 2; }
        mkdir "$d/$containerd_cgroup"
        cgroup_dirs+=("$d/$containerd_cgroup")
        # (a new v1 cpuset cgroup has no CPUs nor memory nodes)
        for f in cpuset.cpus cpuset.mems; do
            [[ -f "$d/$containerd_cgroup/$f" && -z "$(cat "$d/$containerd_cgroup/$f")" ]] && cat "$d/$f" >"$d/$containerd_cgroup/$f"
        done
    done
fi

(
    # (this subshell moves itself to containerd's cgroup, then becomes it)
    for d in "${cgroup_dirs[@]}"; do echo "$BASHPID" >"$d/cgroup.procs"; done
    exec env -u CONTAINERD_ADDRESS -u CONTAINERD_NAMESPACE \
        PATH="$tmp/bin:$cd_bin:$PATH" \
        "$containerd_bin" --config "$tmp/config.toml"
) </dev/null >"$results/containerd.log" 2>&1 &
containerd_pid=$!
echo "$containerd_pid" >"$tmp/containerd.pid"
ready=0
for _ in $(seq 120); do
    kill -0 "$containerd_pid" 2>/dev/null || { log "containerd exited"; tail -n 30 "$results/containerd.log" >&2; exit 2; }
    if [[ -S "$sock" ]] && "$crictl_bin" --timeout 2s -r "unix://$sock" info >"$results/cri-info.json" 2>/dev/null; then
        ready=1
        break
    fi
    sleep 0.25
done
[[ $ready == 1 ]] || { log "containerd's CRI did not answer"; tail -n 30 "$results/containerd.log" >&2; exit 2; }
log "containerd $cd_version (pid $containerd_pid) on $sock; bridge $bridge, $subnet.0/24; handler $handler${shim:+, shim $shim}"
log "setup took $((SECONDS - started)) s"

# ------------------------------------------------------------------ exec ---
if [[ $exec_mode == 1 ]]; then
    log "exec: ${exec_cmd[*]}"
    # crictl reads its endpoints from CRI_CONFIG_FILE (and warns without one).
    printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 30\n' "$sock" "$sock" >"$tmp/crictl.yaml"
    t0=$SECONDS
    (
        export CRI_ENDPOINT="unix://$sock" CONTAINERD_ADDRESS="$sock" CONTAINERD_NAMESPACE=k8s.io \
            CRICTL="$crictl_bin" CTR="$ctr_bin" CONTAINER_RUNTIME_ENDPOINT="unix://$sock" \
            IMAGE_SERVICE_ENDPOINT="unix://$sock" \
            CONTAINERD_PID="$containerd_pid" CONTAINERD_BIN="$containerd_bin" \
            CONTAINERD_CONFIG="$tmp/config.toml" CONTAINERD_LOG="$results/containerd.log" \
            CONTAINERD_ROOT="$tmp/root" CONTAINERD_STATE="$tmp/state" CONTAINERD_VERSION="$cd_version" \
            RUNC_BIN="$runc_bin" RUNC_VERSION="$runc_version" \
            CONTAINERD_PATH="$tmp/bin:$cd_bin:$PATH" \
            CRI_TMP="$tmp" CRI_RESULTS="$results" CRI_CONFIG_FILE="$tmp/crictl.yaml" \
            CRI_BUSYBOX_IMAGE="registry.k8s.io/e2e-test-images/busybox:1.29-2" \
            CRI_PAUSE_IMAGE="$sandbox_image" \
            CRI_HANDLERS="runc tether tether-crun tether-wrapped" CRI_WRAPPED_LOG="$tmp/runc-wrapped.log" CRI_HANDLER="$handler" CRI_SHIM="$shim" \
            CRI_RESTART="$here/scripts/cri/restart-containerd.sh" \
            CONTAINERD_CGROUP="${containerd_cgroup:+/$containerd_cgroup}"
        exec "${exec_cmd[@]}"
    ) &
    exec_pid=$!
    set +e
    wait "$exec_pid"
    status=$?
    set -e
    exec_pid=""
    log "exec: exit $status after $((SECONDS - t0)) s; the whole run $((SECONDS - started)) s"
    exit "$status"
fi

# ---------------------------------------------------------------- critest --
mkdir -p "$tmp/critest-tmp"
args=(
    -runtime-endpoint "unix://$sock"
    -image-endpoint "unix://$sock"
    -runtime-handler "$handler"
    -parallel "$parallel"
    -ginkgo.no-color
    -ginkgo.junit-report "$results/junit.xml"
    -ginkgo.json-report "$results/report.json"
)
[[ -n "$focus" ]] && args+=(-ginkgo.focus "$focus")
[[ -n "$skip" ]] && args+=(-ginkgo.skip "$skip")
log "critest ${args[*]}"
: >"$results/critest.log"
t0=$SECONDS
(
    cd "$results"
    export TMPDIR="$tmp/critest-tmp" PATH="$cri_bin:$PATH"
    exec "$cri_bin/critest" "${args[@]}"
) </dev/null >"$results/critest.log" 2>&1 &
critest_pid=$!
tail --pid="$critest_pid" -n +1 -f "$results/critest.log" &
tail_pid=$!
set +e
wait "$critest_pid"
critest_rc=$?
wait "$tail_pid"
set -e
critest_pid="" tail_pid=""
critest_secs=$((SECONDS - t0))

# ---------------------------------------------------------------- results --
if [[ -f "$results/report.json" ]]; then
    read -r passed failed skipped < <(python3 "$here/scripts/cri/report.py" "$results/report.json" "$results")
    status=$(( failed > 0 ? 1 : 0 ))
    if [[ $critest_rc != 0 && $failed == 0 ]]; then status=1; fi
else
    log "critest wrote no report (exit $critest_rc)"
    status=2
fi
log "critest took $critest_secs s (exit $critest_rc); the whole run $((SECONDS - started)) s"
# The exit trap stops everything and prints the summary line last.
exit "$status"
