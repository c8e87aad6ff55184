#!/usr/bin/env bash
# Runs the CRI validation suite (critest, from cri-tools) against a private
# containerd that has five runtime handlers: `runc` (io.containerd.runc.v2),
# `tether` (io.containerd.tether.v2, this repository's shim, running runc),
# `tether-crun` (the same shim with BinaryName = "crun", /usr/bin/crun),
# `tether-wrapped` (BinaryName = a wrapper that logs its calls to
# $CRI_WRAPPED_LOG and runs runc) and, on containerd 2.x only,
# `tether-sandbox` (the tether shim with sandboxer = "shim": it serves
# containerd's Sandbox API, so its pods have no pause container; on 2.4 and
# newer also disable_pause_image_pull = true: CRI pulls no pause image for
# its pods).
#
#   scripts/critest.sh --handler NAME [--containerd VERSION] [--runc VERSION]
#                      [--shim PATH] [--focus REGEX] [--skip REGEX] [--parallel N]
#                      [--results DIR] [--keep]
#   scripts/critest.sh [--handler NAME] [--containerd VERSION] [--runc VERSION]
#                      [--shim PATH] [--results DIR] [--keep] [--images DIR]
#                      [--default-runtime NAME] [--containerd-cgroup NAME]
#                      --exec -- CMD [ARGS...]
#
#   --handler NAME       runc, tether, tether-crun, tether-wrapped or
#                        tether-sandbox (containerd 2.x; refused with exit 2
#                        on 1.x): the handler critest uses (with --exec only
#                        passed on as CRI_HANDLER; default tether)
#   --containerd VERSION system (Debian's, /usr/bin/containerd; the default) or
#                        a version scripts/peers.sh builds, e.g. 2.3.7
#   --runc VERSION       system (Debian's 1.1.5; the default) or a version
#                        scripts/peers.sh builds, e.g. 1.5.3: every handler
#                        runs it, as `runc` first in containerd's PATH
#   --shim PATH          the tether shim; default: target/release/
#                        containerd-shim-tether-v2, built with `cargo build
#                        --release` (when that fails, an already built binary
#                        is used, with a warning)
#   --focus/--skip REGEX ginkgo focus / skip on the spec names
#   --parallel N         critest nodes (default $CRITEST_PARALLEL or 2)
#   --results DIR        where results go (default /tmp/tether-critest-results/
#                        CONTAINERD-HANDLER-TIME); printed
#   --keep               keep the environment's private dir
#   --images DIR         more stand-in images for the registry: an OCI layout
#                        with an images.txt as scripts/cri/mkimages.py writes
#                        (pushed after the built-in ones, so its names win)
#   --default-runtime NAME  containerd's default handler (default runc), and a
#                        handler `test-handler` configured as NAME (2.x only)
#   --containerd-cgroup NAME  containerd in the cgroup /NAME of every
#                        hierarchy, as the environment sees its cgroups
#   --exec -- CMD...     the same setup, but run CMD instead of critest, then
#                        tear down and exit with CMD's status. CMD runs inside
#                        the environment, with (scripts/cri/inside.sh):
#     CRI_ENDPOINT        unix://SOCKET, containerd's CRI (and its API socket)
#     CONTAINERD_ADDRESS  SOCKET (for ctr; CONTAINERD_NAMESPACE is k8s.io)
#     CRICTL, CTR         crictl and ctr (CRI_CONFIG_FILE names a crictl.yaml)
#     CONTAINERD_PID, CONTAINERD_BIN, CONTAINERD_CONFIG, CONTAINERD_LOG,
#     CONTAINERD_ROOT, CONTAINERD_STATE, CONTAINERD_VERSION (e.g. v2.3.7),
#     CONTAINERD_PATH     containerd's PATH
#     RUNC_BIN, RUNC_VERSION the runc every handler runs, and its version
#     CRI_TMP             the environment's private dir (removed afterwards)
#     CRI_RESULTS         the results dir (kept: containerd.log, config.toml)
#     CRI_BUSYBOX_IMAGE   an image with /bin/sh and the busybox applets
#                         (registry.k8s.io/e2e-test-images/busybox:1.29-2)
#     CRI_PAUSE_IMAGE     the sandbox image
#     CRI_HANDLERS        "runc tether tether-crun tether-wrapped", plus
#                         tether-sandbox on 2.x; CRI_HANDLER
#     CONTAINERD_CGROUP   /NAME of --containerd-cgroup (or empty)
#     CRI_SHIM            the tether shim binary
#     CRI_RESTART         scripts/cri/restart-containerd.sh: SIGKILLs
#                         containerd and starts it again (same binary,
#                         config, log), prints the new PID ($CRI_TMP/
#                         containerd.pid). The last line printed is CMD's own.
#
# The environment is `testenv exec` (the testenv crate): containerd with its
# CRI, a local registry (docker-registry on 127.0.0.1:5000) seeded with
# stand-ins for the images critest pulls (scripts/cri/mkimages.py), served as
# registry.k8s.io and gcr.io through containerd's hosts.toml, and a CNI
# bridge, all in a cgroup, mount, network, IPC and UTS namespaces of their
# own: teardown kills the cgroup, and the namespaces take the mounts, pod
# networks, iptables rules and shm segments with them.
#
# Results dir: critest.log, junit.xml, report.json (ginkgo), results.tsv
# (STATE<TAB>SECONDS<TAB>spec name, one line a spec), failures.txt, skipped.txt,
# containerd.log, config.toml. Compare two runs with
#   scripts/cri/report.py --compare RUNC_DIR/results.tsv TETHER_DIR/results.tsv
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
handler="" containerd_version="system" runc_version="system" shim="" focus="" skip=""
results="" keep=() images=() default_runtime="" containerd_cgroup="" mode=critest exec_cmd=()
parallel="${CRITEST_PARALLEL:-2}"
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2; exit 2; }
log() { echo "[critest.sh] $*" >&2; }
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
        --keep) keep=(--keep); shift ;;
        --images) images+=(--images "$(realpath "${2:?}")"); shift 2 ;;
        --default-runtime) default_runtime="${2:?}"; shift 2 ;;
        --containerd-cgroup) containerd_cgroup="${2:?}"; shift 2 ;;
        --exec)
            shift
            [[ "${1:-}" == -- ]] && shift
            [[ $# -gt 0 ]] || { log "--exec needs a command"; usage; }
            mode=exec exec_cmd=("$@")
            break ;;
        -h|--help) usage ;;
        *) log "unknown argument $1"; usage ;;
    esac
done
[[ $mode == exec ]] && handler="${handler:-tether}"
[[ -n "$handler" ]] || usage
handlers="runc tether tether-crun tether-wrapped tether-sandbox"
for h in "$handler" "${default_runtime:-runc}"; do
    [[ " $handlers " == *" $h "* ]] || { log "handler $h is not one of $handlers"; exit 2; }
done
if [[ -n "$containerd_cgroup" && ! "$containerd_cgroup" =~ ^[A-Za-z0-9._-]+$ ]]; then
    log "--containerd-cgroup takes a plain name"; exit 2
fi

# ------------------------------------------------------------- tooling -----
# One run at a time: nothing is shared any more, but two critest runs on a
# small machine make each other's timing-sensitive specs fail.
mkdir -p /run/lock
exec 8>/run/lock/tether-critest.lock
flock -n 8 || { log "another critest.sh run holds /run/lock/tether-critest.lock; waiting"; flock 8; }
started=$SECONDS
if [[ "$containerd_version" == system ]]; then
    cd_bin=/usr/bin
else
    cd_bin="$(bash "$here/scripts/peers.sh" containerd "$containerd_version")"
fi
if [[ "$runc_version" == system ]]; then
    runc_bin=/usr/bin/runc
else
    runc_bin="$(bash "$here/scripts/peers.sh" runc "$runc_version")/runc" ||
        { log "building runc $runc_version failed"; exit 2; }
fi
[[ -x "$runc_bin" ]] || { log "no runc at $runc_bin"; exit 2; }
runc_version="$("$runc_bin" --version | awk 'NR == 1 {print $3}')"
read -r major minor < <("$cd_bin/containerd" --version | awk '{sub(/^v/, "", $3); split($3, v, "."); print v[1], v[2]}')
if [[ -n "$default_runtime" && "$major" != 2 ]]; then
    log "--default-runtime needs containerd 2.x"; exit 2
fi
if [[ "$major" != 2 ]]; then
    if [[ "$handler" == tether-sandbox ]]; then
        log "handler tether-sandbox (sandboxer = \"shim\", the Sandbox API) needs containerd 2.x;" \
            "--containerd $containerd_version is $("$cd_bin/containerd" --version | awk '{print $3}')"
        exit 2
    fi
    handlers="${handlers% tether-sandbox}"
fi
cri_bin="$(bash "$here/scripts/cri/build-cri-tools.sh" "$cri_tools_version")"

build() { (cd "$here" && cargo build "$@" >&2); }
log "cargo build -p testenv"
build -p testenv --bin testenv || { log "building testenv failed"; exit 2; }
testenv="$here/target/debug/testenv"
if [[ -z "$shim" ]]; then
    shim="$here/target/release/containerd-shim-tether-v2"
    if [[ "$handler" != runc || $mode == exec ]]; then
        log "cargo build --release --bin containerd-shim-tether-v2"
        if ! build --release --bin containerd-shim-tether-v2; then
            [[ -x "$shim" ]] || { log "cargo build failed and there is no built shim at $shim"; exit 2; }
            log "WARNING: cargo build failed; using the already built $shim ($(date -r "$shim" -u +%FT%TZ))"
        fi
    fi
fi
[[ -x "$shim" ]] || { log "no tether shim at $shim"; exit 2; }
shim="$(realpath "$shim")"

# -------------------------------------------------------------- images -----
# The busybox .deb (Debian's dynamically linked build) and the image layout are
# cached; the layout is rebuilt when any of its inputs changes.
prepare_images() {
    local debdir="$cache/cri-busybox" deb key w old
    mkdir -p "$debdir"
    exec 7>"$cache/.cri-images.lock"
    flock 7
    deb="$(find "$debdir" -maxdepth 1 -name 'busybox_*.deb' | head -n1)"
    if [[ -z "$deb" ]]; then
        log "apt-get download busybox"
        (cd "$debdir" && { apt-get download busybox >&2 || { apt-get update >&2 && apt-get download busybox >&2; }; })
        deb="$(find "$debdir" -maxdepth 1 -name 'busybox_*.deb' | head -n1)"
    fi
    key="$(cat "$here/scripts/cri/mkimages.py" "$here/tests/cri/images/pause.c" "$here/tests/cri/images/nginx.c" \
        "$here/tests/cri/images/nnp.c" <(basename "$deb") <(gcc --version | head -n1) | sha256sum | cut -c1-16)"
    images_dir="$cache/cri-images-$key"
    if [[ ! -f "$images_dir/images.txt" ]]; then
        log "building the test images into $images_dir"
        w="$images_dir.tmp.$$"
        rm -rf "$w"
        mkdir -p "$w/bb" "$w/bin"
        dpkg -x "$deb" "$w/bb"
        for b in pause nginx nnp; do gcc -static -O2 -o "$w/bin/$b" "$here/tests/cri/images/$b.c"; done
        python3 "$here/scripts/cri/mkimages.py" --out "$w/oci" --busybox-root "$w/bb" \
            --pause "$w/bin/pause" --nginx "$w/bin/nginx" --nnp "$w/bin/nnp"
        mv "$w/oci" "$images_dir"
        rm -rf "$w"
        for old in "$cache"/cri-images-*; do
            [[ "$old" == "$images_dir" ]] || rm -rf "$old"
        done
    fi
    exec 7>&-
}
images_dir=""
prepare_images

if [[ -z "$results" ]]; then
    results="/tmp/tether-critest-results/$containerd_version-$([[ $mode == exec ]] && echo exec || echo "$handler")-$(date -u +%Y%m%dT%H%M%SZ)"
fi
mkdir -p "$results/bin"
results="$(realpath "$results")"
log "results: $results"

# A runtime binary that proves the handler's BinaryName reaches the shim: it
# logs each call and runs runc.
printf '#!/bin/sh\necho "$*" >>"%s"\nexec runc "$@"\n' "$results/runc-wrapped.log" >"$results/bin/runc-wrapped"
chmod 0755 "$results/bin/runc-wrapped"
tether="io.containerd.tether.v2:$shim"
args=(--containerd "$cd_bin/containerd" --runc "$runc_bin" --cri --cni --registry
    --images "$images_dir" "${images[@]}" --log "$results/containerd.log" "${keep[@]}"
    --handler runc=io.containerd.runc.v2 --handler "tether=$tether"
    --handler "tether-crun=$tether:crun" --handler "tether-wrapped=$tether:$results/bin/runc-wrapped")
sandbox="$tether,Sandboxer=shim"
# containerd 2.4 and newer can skip the pause image for these pods; 2.3 pulls it.
[[ "$major" == 2 && "$minor" -ge 4 ]] && sandbox+=",DisablePauseImagePull=true"
[[ "$major" == 2 ]] && args+=(--handler "tether-sandbox=$sandbox")
if [[ -n "$default_runtime" ]]; then
    case "$default_runtime" in
        runc) test_handler=io.containerd.runc.v2 ;;
        tether) test_handler="$tether" ;;
        tether-crun) test_handler="$tether:crun" ;;
        tether-sandbox) test_handler="$sandbox" ;;
        *) test_handler="$tether:$results/bin/runc-wrapped" ;;
    esac
    args+=(--default-handler "$default_runtime" --handler "test-handler=$test_handler")
fi
[[ -n "$containerd_cgroup" ]] && args+=(--containerd-cgroup "$containerd_cgroup")

export CRI_RESULTS="$results" CRICTL="$cri_bin/crictl" CTR="$cd_bin/ctr" CRI_BIN="$cri_bin" \
    RUNC_BIN="$runc_bin" RUNC_VERSION="$runc_version" CRI_SHIM="$shim" CRI_HANDLER="$handler" \
    CRI_HANDLERS="$handlers" CRI_WRAPPED_LOG="$results/runc-wrapped.log" \
    CRI_RESTART="$here/scripts/cri/restart-containerd.sh" CRI_PARALLEL="$parallel" \
    CRI_FOCUS="$focus" CRI_SKIP="$skip" CRI_STARTED="$started" \
    CONTAINERD_CGROUP="${containerd_cgroup:+/$containerd_cgroup}"
log "setup (tools, images) took $((SECONDS - started)) s; testenv ${args[*]}"
inside=(bash "$here/scripts/cri/inside.sh")
if [[ $mode == exec ]]; then
    exec "$testenv" exec "${args[@]}" -- "${inside[@]}" --exec "${exec_cmd[@]}"
fi
rm -f "$results/summary"
# In the background, so that TERM, INT or HUP sent to this script reach
# testenv, which then stops the environment.
"$testenv" exec "${args[@]}" -- "${inside[@]}" --critest &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null' TERM INT HUP
rc=0
wait "$pid" || rc=$?
while kill -0 "$pid" 2>/dev/null; do
    rc=0
    wait "$pid" || rc=$?
done
# inside.sh printed the summary line last; without one, nothing ran.
if [[ ! -f "$results/summary" ]]; then
    log "the run could not be set up (exit $rc)"
    echo "critest $handler: 0 passed, 0 failed, 0 skipped"
    exit 2
fi
exit "$rc"
