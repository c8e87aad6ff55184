#!/usr/bin/env bash
# Smoke test of containers under cgroup v2, for running in the test guest:
#
#   scripts/guest-test.sh -- bash scripts/guest/smoke-container.sh [CONTAINERD-BIN-DIR]
#
# Starts a private containerd (default Debian's, /usr/bin; its config from
# `testenv config`: root, state and socket under $TMPDIR, the CRI plugin
# off), then with its ctr:
#   1. runs a container on a plain rootfs dir (busybox-static and symlinks)
#      with --memory-limit, and checks from outside that its cgroup v2 dir
#      has memory.max set, and from inside that its cgroup has that limit;
#   2. imports a one-layer OCI image built here from the same rootfs and
#      runs it, which goes through the overlayfs snapshotter on the scratch
#      disk (ext4).
# Prints what it checks; exit status 0 when every check passes.
# Needs root, runc, busybox-static, and the testenv binary: $TESTENV, else
# target/debug/testenv of this repository (or of $CARGO_TARGET_DIR), which
# `cargo build -p testenv` or a plain `cargo test` builds; refuses to run
# outside cgroup v2.
set -euo pipefail
bindir="${1:-/usr/bin}"
repo="$(cd "$(dirname "$0")/../.." && pwd)"
testenv="${TESTENV:-${CARGO_TARGET_DIR:-$repo/target}/debug/testenv}"
[[ -x $testenv ]] || { echo "smoke: no testenv at $testenv (cargo build -p testenv, or set TESTENV)" >&2; exit 1; }
containerd="$bindir/containerd" ctr="$bindir/ctr"
[[ -x $containerd && -x $ctr ]] || { echo "smoke: no containerd/ctr in $bindir" >&2; exit 1; }
[[ "$(stat -fc %T /sys/fs/cgroup)" == cgroup2fs ]] || { echo "smoke: /sys/fs/cgroup is not cgroup v2" >&2; exit 1; }

dir="$(mktemp -d "${TMPDIR:-/tmp}/smoke.XXXXXX")"
pid=""
# shellcheck disable=SC2317 # run by the EXIT trap only
cleanup() {
    if [[ -n $pid ]]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    # Leftover overlay mounts of the snapshotter would keep rm from working.
    grep -o " $dir/[^ ]*" /proc/mounts | sort -r | xargs -r umount 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
failed=0
check() { # NAME EXPECTED ACTUAL
    if [[ $2 == "$3" ]]; then
        echo "ok: $1 ($3)"
    else
        echo "FAILED: $1: expected '$2', got '$3'"
        failed=1
    fi
}

# --- the rootfs
rootfs="$dir/rootfs"
mkdir -p "$rootfs"/{bin,dev,proc,sys,etc,tmp,run}
cp /bin/busybox "$rootfs/bin/busybox"
for applet in sh cat sleep ls grep head; do
    ln -s busybox "$rootfs/bin/$applet"
done

# --- a private containerd
# The config for its version (2 for 1.x, 3 for 2.x): root, state, opt and
# containerd.sock under $dir (the ttrpc socket is containerd's default, the
# gRPC socket's path plus .ttrpc), the CRI off.
config="$("$testenv" config --containerd "$containerd" "$dir")"
# Its own containerd-shim-runc-v2 first in PATH (a 2.x containerd cannot use
# Debian's 1.6 shim).
PATH="$bindir:$PATH" "$containerd" --config "$config" </dev/null >"$dir/containerd.log" 2>&1 &
pid=$!
c() { "$ctr" --address "$dir/containerd.sock" --namespace smoke "$@"; }
for _ in $(seq 600); do
    c version >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { cat "$dir/containerd.log"; exit 1; }
    sleep 0.1
done
c version | sed -n 's/^ *Version: */containerd: /p' | tail -n 1

# --- 1. a rootfs container with a memory limit
limit=$((64 * 1024 * 1024))
c run -d --memory-limit "$limit" --env PATH=/bin --rootfs "$rootfs" c1 /bin/sleep 300 >/dev/null
cg=/sys/fs/cgroup/smoke/c1
for _ in $(seq 50); do [[ -d $cg ]] && break; sleep 0.1; done
check "the container's cgroup $cg exists" yes "$([[ -d $cg ]] && echo yes || echo no)"
check "memory.max of $cg" "$limit" "$(cat "$cg/memory.max" 2>/dev/null)"
check "the task is in $cg" 1 "$(wc -l <"$cg/cgroup.procs" 2>/dev/null)"
c task kill -s KILL c1
for _ in $(seq 50); do [[ "$(c task ls 2>/dev/null | awk '$1 == "c1" {print $3}')" == STOPPED ]] && break; sleep 0.1; done
c task delete c1 >/dev/null 2>&1 || true
c container delete c1
check "the cgroup goes with the task" no "$([[ -d $cg ]] && echo yes || echo no)"
# ctr's default spec has neither a cgroup namespace nor a /sys/fs/cgroup
# mount: the container's /proc/self/cgroup names its cgroup from the root,
# and the host's hierarchy, bound in read-only, has its memory.max.
cgmount=(--mount "type=bind,src=/sys/fs/cgroup,dst=/sys/fs/cgroup,options=rbind:ro")
# shellcheck disable=SC2016 # the container's sh expands these
inside='p=$(cut -d: -f3 /proc/self/cgroup); echo "$p"; cat "/sys/fs/cgroup$p/memory.max"'
out="$(c run --rm --memory-limit "$limit" "${cgmount[@]}" --env PATH=/bin --rootfs "$rootfs" c2 /bin/sh -c "$inside" 2>&1 |
    tr -d '\r' | paste -sd ' ' || true)"
check "inside: its cgroup and memory.max there" "/smoke/c2 $limit" "$out"

# --- 2. an image, through the overlayfs snapshotter
img="$dir/image"
mkdir -p "$img/blobs/sha256"
tar -C "$rootfs" -cf "$dir/layer.tar" .
blob() { # FILE -> moves it into the blob store, prints "DIGEST SIZE"
    local d s
    d="$(sha256sum "$1" | cut -d' ' -f1)"
    s="$(stat -c %s "$1")"
    mv "$1" "$img/blobs/sha256/$d"
    echo "$d $s"
}
read -r layer_digest layer_size < <(blob "$dir/layer.tar")
printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$layer_digest" >"$dir/config.json"
read -r config_digest config_size < <(blob "$dir/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
    "$config_digest" "$config_size" "$layer_digest" "$layer_size" >"$dir/manifest.json"
read -r manifest_digest manifest_size < <(blob "$dir/manifest.json")
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"smoke.local/busybox:latest","org.opencontainers.image.ref.name":"latest"},"platform":{"architecture":"amd64","os":"linux"}}]}' \
    "$manifest_digest" "$manifest_size" >"$img/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' >"$img/oci-layout"
tar -C "$img" -cf "$dir/image.tar" .
c images import "$dir/image.tar" >/dev/null
out="$(c run --rm --memory-limit "$limit" "${cgmount[@]}" smoke.local/busybox:latest c3 sh -c \
    "$inside; grep -c '^overlay / overlay ' /proc/mounts" 2>&1 | tr -d '\r' | paste -sd ' ' || true)"
check "image container: its cgroup, memory.max, an overlay root" "/smoke/c3 $limit 1" "$out"

((failed == 0)) && echo "smoke: all checks passed"
exit "$failed"
