#!/usr/bin/env bash
# The main job on a fresh machine: install runc and busybox-static when
# missing, build tether, run a container through a tether shim with
# tetherctl, and show that it outlives a killed tetherctl. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for p in runc busybox-static; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi
echo "== building tether: the shim and tetherctl, two crates of the workspace (about 2 minutes the first time)"
cargo build --release --quiet -p tether -p tetherctl
bin=$PWD/target/release

work=$(mktemp -d /tmp/tether-demo.XXXXXX)
export TETHER_STATE_DIR=$work/state
ctl() { "$bin/tetherctl" "$@"; }
cleanup() {
    ctl rm -f demo >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# A root filesystem: busybox-static and its applets.
mkdir -p "$work/rootfs/bin" "$work/rootfs/"{proc,dev,sys,tmp}
cp /bin/busybox "$work/rootfs/bin/"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$work/rootfs/bin/$a"; done

echo "== a container through a tether shim, in the foreground"
# shellcheck disable=SC2016 # expanded by the container's shell, not this one
ctl run --rm --rootfs "$work/rootfs" hello sh -c 'echo "hello from $(hostname), pid $$"; exit 3' || echo "exit status: $?"

echo "== a foreground tetherctl, killed after 1 s: the container goes on"
ctl run --rootfs "$work/rootfs" demo sh -c 'for i in 1 2 3; do sleep 1; done; exit 42' >/dev/null &
fg=$!
sleep 1
kill -9 "$fg"
wait "$fg" 2>/dev/null || true
echo "tetherctl (pid $fg) killed; the container:"
ctl ps
echo "== tetherctl wait, from a new tetherctl"
status=0
ctl wait demo || status=$?
echo "the container exited with $status, as it said it would (42)"
ctl rm demo
test "$status" = 42
