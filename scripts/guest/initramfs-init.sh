#!/bin/busybox sh
# shellcheck shell=dash
# /init of the cgroup v2 test guest's initramfs (scripts/guest/kernel.sh puts
# it there, with busybox and the modules listed in /lib/modules/load-order).
#
# Loads the modules, mounts the host's root (virtio-9p, mount tag hostroot)
# read-only at /newroot and switch_roots into the guest init named on the
# kernel command line:
#
#   tether.init=PATH        run as PID 1 by /bin/bash of the host's root
#                           (scripts/guest/guest-init.sh)
#   tether.rootcache=MODE   the 9p cache mode of the root (default loose)
#
# On any failure it says why on the console and powers the guest off (the
# host then finds no exit status and reports a failed boot).
/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

fail() {
    echo "initramfs: $*" >&2
    sync
    poweroff -f
    # Not reached; should poweroff fail, PID 1 exiting panics the kernel,
    # which the host's qemu (-no-reboot) turns into an exit too.
    exit 1
}

mount -t proc proc /proc || fail "cannot mount /proc"
mount -t sysfs sysfs /sys || fail "cannot mount /sys"
mount -t devtmpfs devtmpfs /dev || fail "cannot mount /dev"

release="$(uname -r)"
while read -r module; do
    insmod "/lib/modules/$release/$module" || fail "insmod $module failed"
done </lib/modules/load-order

init=""
rootcache=loose
read -r cmdline </proc/cmdline
# Split into words on purpose: one kernel parameter each.
for arg in $cmdline; do
    case "$arg" in
        tether.init=*) init="${arg#*=}" ;;
        tether.rootcache=*) rootcache="${arg#*=}" ;;
    esac
done
[ -n "$init" ] || fail "no tether.init= on the kernel command line"

# The virtio devices probe as their drivers load; allow them a moment.
tries=0
until mount -t 9p -o "ro,trans=virtio,version=9p2000.L,msize=262144,cache=$rootcache" hostroot /newroot 2>/dev/null; do
    tries=$((tries + 1))
    [ "$tries" -lt 50 ] || fail "cannot mount the host's root (9p tag hostroot)"
    sleep 0.1
done
[ -f "/newroot$init" ] || fail "the guest init $init is missing from the host's root"
[ -x /newroot/bin/bash ] || fail "/bin/bash is missing from the host's root"

umount /proc /sys /dev
exec switch_root /newroot /bin/bash "$init"
