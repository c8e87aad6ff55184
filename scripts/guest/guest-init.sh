#!/bin/bash
# PID 1 of the cgroup v2 test guest (scripts/guest/run.sh boots it; the
# initramfs switch_roots into it with /bin/bash of the host's root). Not for
# running on the host.
#
# Sets the guest up: /proc, /sys, /dev (pts, shm, mqueue), the cgroup v2
# hierarchy alone at /sys/fs/cgroup with every controller enabled for the
# root's children, writable dirs over the read-only 9p root, hostname,
# loopback, module autoloading. Then runs the command run.sh left on the
# results share, with its stdout and stderr in files there and mirrored to
# the console, writes its exit status there and powers off.
#
# With tether.pid1=systemd on the kernel command line, it hands PID 1 over
# to systemd once set up (scripts/guest/systemd-boot.sh), and systemd's
# tether-test.service runs `guest-init.sh --run-command`: the command part
# only.
#
# The results share (9p tag "results", read-write, mounted at $results) holds:
#   in:  argv      the command, NUL-separated
#        env       NAME=VALUE entries for it, NUL-separated
#        cwd       its working directory (falls back to /)
#        expose    host paths to keep visible at their own paths although
#                  under a dir made writable below (/tmp, /var/tmp, /var/lib,
#                  /var/log), NUL-separated: a checkout in /tmp, say
#        modules   modules to load first, space-separated
#   out: started   created just before the command starts
#        stdout, stderr
#        status    the exit status (absent: the guest failed)
#        memory    "used-at-end-MB peak-MB" (MemTotal - MemAvailable)
#
# Writable in the guest (everything else is the host's root, read-only):
#   /run, /dev/shm             tmpfs
#   /mnt                       the scratch disk (ext4 on virtio-blk)
#   /tmp, /var/tmp, /var/lib, /var/log
#                              bind mounts of dirs on the scratch disk
#   /mnt/peers                 $TETHER_PEERS_DIR: symlinks to the host's
#                              /var/cache/tether-peers entries, so the lock
#                              files of scripts/peers.sh and the like can be
#                              created while the builds are found read-only
set -uo pipefail
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
results=/run/tether-guest
scratch=/mnt
here="$(cd "$(dirname "$0")" && pwd)"

# Progress on the console, stamped with the guest's uptime.
say() {
    local up
    read -r up _ </proc/uptime 2>/dev/null || up="?"
    echo "guest: [$up] $*" >/dev/console
}

power_off() {
    sync
    # busybox's poweroff -f is reboot(RB_POWER_OFF); sysrq is the fallback.
    /bin/busybox poweroff -f
    echo o >/proc/sysrq-trigger
    sleep 10
}

fail() {
    say "setup failed: $*"
    power_off
}

mnt() { mount "$@" || fail "mount $*"; }

# The guest's setup, as PID 1.
setup_guest() {
# --- the basic filesystems
mnt -t proc -o nosuid,nodev,noexec proc /proc
say "init started"
mnt -t sysfs -o nosuid,nodev,noexec sysfs /sys
mnt -t devtmpfs -o nosuid,mode=755 devtmpfs /dev
mkdir -p /dev/pts /dev/shm /dev/mqueue
mnt -t devpts -o nosuid,noexec,gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mnt -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /dev/shm
mnt -t mqueue -o nosuid,nodev,noexec mqueue /dev/mqueue
rm -f /dev/ptmx
{ cd /dev && ln -s pts/ptmx ptmx && ln -s /proc/self/fd fd && ln -s fd/0 stdin &&
    ln -s fd/1 stdout && ln -s fd/2 stderr && cd /; } || fail "cannot make the /dev links"

# --- cgroup v2 only (the kernel runs with cgroup_no_v1=all,named)
mnt -t cgroup2 -o nosuid,nodev,noexec,nsdelegate cgroup2 /sys/fs/cgroup
read -r -a controllers </sys/fs/cgroup/cgroup.controllers || true
for c in "${controllers[@]}"; do
    echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control || say "cannot enable the $c controller"
done

# --- writable places over the read-only root
mnt -t tmpfs -o nosuid,nodev,mode=755 tmpfs /run
mkdir -p "$results"
mnt -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=none results "$results"
# noinit_itable: the disk is new and thrown away after the run; zeroing its
# inode tables in the background would only cost CPU.
mnt -t ext4 -o noatime,noinit_itable /dev/vda "$scratch"
# Host paths the command needs (its working directory, these scripts, the
# test binaries) that the writable dirs would hide: held here first, put back
# at their own paths after.
exposed=()
if [[ -s $results/expose ]]; then
    while IFS= read -r -d '' p; do
        case "$p" in
            /tmp/* | /var/tmp/* | /var/lib/* | /var/log/*) [[ -d $p ]] || continue ;;
            *) continue ;;
        esac
        mkdir -p "/run/expose/${#exposed[@]}"
        mnt --bind "$p" "/run/expose/${#exposed[@]}"
        exposed+=("$p")
    done <"$results/expose"
fi
mkdir -p "$scratch"/{tmp,var-tmp,var-lib,var-log,peers} /run/lock /run/user
chmod 1777 "$scratch/tmp" "$scratch/var-tmp"
mnt --bind "$scratch/tmp" /tmp
mnt --bind "$scratch/var-tmp" /var/tmp
mnt --bind "$scratch/var-lib" /var/lib
mnt --bind "$scratch/var-log" /var/log
for i in "${!exposed[@]}"; do
    mkdir -p "${exposed[$i]}"
    mnt --bind "/run/expose/$i" "${exposed[$i]}"
done
peers=(/var/cache/tether-peers/*)
[[ -e ${peers[0]} ]] && ln -s "${peers[@]}" "$scratch/peers/"

say "filesystems mounted"
# --- the rest of the system
hostname tether-guest 2>/dev/null || /bin/busybox hostname tether-guest
ip link set lo up 2>/dev/null || /bin/busybox ip link set lo up || say "cannot bring lo up"
# The kernel's module requests (fs-overlay, rtnl-link-veth, nft, ...) go
# to a helper that loads from the unpacked Debian kernel's modules.
# (A wrapper in /run, so that the repo file needs no execute bit.)
printf '#!/bin/sh\nexec /bin/sh %q "$@"\n' "$here/modprobe.sh" >/run/modprobe
chmod 755 /run/modprobe
echo /run/modprobe >/proc/sys/kernel/modprobe
if [[ -s $results/modules ]]; then
    read -r -a preload <"$results/modules"
    /run/modprobe -a "${preload[@]}" || say "cannot load all of the modules ${preload[*]}"
fi

say "modules loaded"
}

if [[ ${1:-} == --run-command ]]; then
    # Under systemd: tether-test.service runs the command (the guest is set
    # up); its SuccessAction/FailureAction power the guest off.
    under_systemd=1
else
    under_systemd=0
    setup_guest
    if grep -qw 'tether.pid1=systemd' /proc/cmdline; then
        say "handing over to systemd"
        exec /bin/bash "$here/systemd-boot.sh" "$results"
    fi
fi

# --- the command
mapfile -d '' argv <"$results/argv"
((${#argv[@]})) || fail "no command in $results/argv"
envs=(PATH="/root/.cargo/bin:$PATH" HOME=/root USER=root LOGNAME=root SHELL=/bin/bash
    TERM=dumb LANG=C.UTF-8 TMPDIR=/tmp TETHER_PEERS_DIR="$scratch/peers")
[[ -s $results/env ]] && mapfile -d '' -O "${#envs[@]}" envs <"$results/env"
cwd="$(cat "$results/cwd" 2>/dev/null)"
cd "${cwd:-/}" 2>/dev/null || cd /

# Memory in use (MemTotal - MemAvailable), sampled each second for a peak.
memory_used() {
    awk '/^MemTotal:/ {t = $2} /^MemAvailable:/ {a = $2} END {printf "%d\n", (t - a) / 1024}' /proc/meminfo
}
(
    peak=0
    while :; do
        used="$(memory_used)"
        if ((used > peak)); then
            peak=$used
            echo "$peak" >/run/memory-peak
        fi
        sleep 1
    done
) &
sampler=$!

exec 3> >(tee "$results/stdout" >/dev/console)
tee_out=$!
exec 4> >(tee "$results/stderr" >/dev/console)
tee_err=$!
say "running ${argv[*]}"
: >"$results/started"
env -i "${envs[@]}" "${argv[@]}" </dev/null >&3 2>&4 3>&- 4>&-
status=$?
exec 3>&- 4>&-
wait "$tee_out" "$tee_err"
kill "$sampler" 2>/dev/null
wait "$sampler" 2>/dev/null
used="$(memory_used)"
peak="$(cat /run/memory-peak 2>/dev/null || echo 0)"
echo "$used $((peak > used ? peak : used))" >"$results/memory"
echo "$status" >"$results/status"
say "exit status $status"
((under_systemd)) && exit 0
power_off
