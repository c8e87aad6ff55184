#!/bin/sh
# modprobe for the cgroup v2 test guest: guest-init.sh makes it the kernel's
# module loader (/proc/sys/kernel/modprobe), and calls it for the modules it
# preloads. Not for running on the host.
#
#   scripts/guest/modprobe.sh [MODPROBE-OPTIONS] MODULE-OR-ALIAS...
#
# The guest's root is the host's, which has no /lib/modules for the guest's
# kernel (and no kmod). The modules are in the unpacked Debian kernel that
# scripts/guest/kernel.sh caches; the kernel command line names that dir
# (tether.modules=DIR, DIR/VERSION/modules.dep). busybox's modprobe only
# reads /lib/modules, so it runs in a private mount namespace where a small
# tmpfs over /usr/lib holds a bind mount of DIR as /usr/lib/modules; busybox
# is static, so hiding /usr/lib does not hurt it.
set -eu
dir=""
read -r cmdline </proc/cmdline
# Split into words on purpose: one kernel parameter each.
for arg in $cmdline; do
    case "$arg" in
        tether.modules=*) dir="${arg#*=}" ;;
    esac
done
if [ -z "$dir" ] || [ ! -d "$dir" ]; then
    echo "modprobe.sh: no tether.modules=DIR on the kernel command line" >&2
    exit 1
fi
# shellcheck disable=SC2016 # expanded by the inner shell
exec /bin/busybox unshare -m /bin/busybox sh -c '
    set -e
    /bin/busybox mount -t tmpfs -o size=64k,mode=755 tmpfs /usr/lib
    /bin/busybox mkdir /usr/lib/modules
    /bin/busybox mount --bind "$0" /usr/lib/modules
    exec /bin/busybox modprobe "$@"' "$dir" "$@"
