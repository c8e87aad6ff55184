#!/usr/bin/env bash
# Boots a KVM guest whose only cgroup hierarchy is cgroup v2, runs one command
# in it and hands back the command's output and exit status.
#
#   scripts/guest/run.sh [OPTIONS] -- CMD [ARGS...]
#   scripts/guest/run.sh --check      only check that the guest can run here
#                                     (exit status 0 or 2, with the reason)
#
#   --mem MB          guest memory (default 4096)
#   --cpus N          guest CPUs (default 2)
#   --scratch-mb MB   size of the scratch disk, a sparse file (default 20480)
#   --env NAME=VALUE  set NAME for CMD (repeatable); CMD otherwise gets PATH,
#                     HOME=/root, TMPDIR=/tmp, TETHER_PEERS_DIR and a few more
#                     (scripts/guest/guest-init.sh)
#   --expose PATH     keep the host's PATH visible in the guest although it is
#                     under /tmp, /var/tmp, /var/lib or /var/log, which the
#                     guest makes writable (repeatable; the working directory
#                     and this repository always are)
#   --module NAME     load a kernel module before CMD starts (repeatable;
#                     default: $GUEST_MODULES, "overlay loop br_netfilter");
#                     others load on demand
#   --init bash|systemd
#                     PID 1 once the guest is set up: guest-init.sh itself
#                     (bash, the default), or systemd (systemd-boot.sh), which
#                     runs CMD as tether-test.service
#
# CMD runs as root in the guest, in the caller's working directory (the
# guest's root is the host's, read-only; see guest-init.sh for what is
# writable), with stdin from /dev/null.
#
# Output: CMD's stdout on stdout once the guest is down. stderr streams the
# guest's serial console live (guest-init's progress, CMD's stdout and stderr
# as they come; kernel messages too with GUEST_VERBOSE=1), then one
# "guest-run:" summary line with the boot time, CMD's time and the guest's
# memory use. With GUEST_CONSOLE=0 nothing streams and CMD's stderr is
# printed at the end instead.
#
# Exit status: CMD's; 2 when the guest cannot run here (no /dev/kvm to use,
# no qemu) or on a usage error; 124 when GUEST_TIMEOUT (seconds, default
# 1800) runs out; 125 when the guest died without an exit status (its run dir
# is kept for a post-mortem and named on stderr).
#
# Environment: GUEST_TIMEOUT, GUEST_CONSOLE, GUEST_VERBOSE, GUEST_MODULES,
# GUEST_ACCEL (auto, the default: KVM, or TCG emulation where KVM is PVM-only
# and cannot boot Debian's kernel; kvm: KVM or fail; tcg: always emulate),
# GUEST_KEEP=1 (keep the run dir), GUEST_RUN_DIR (parent of the run dirs,
# default $TMPDIR or /tmp), TETHER_PEERS_DIR (the kernel cache, default
# /var/cache/tether-peers).
#
# qemu is stopped (by its PID) on every way out: CMD's end, a failure, the
# timeout, SIGINT/SIGTERM; it also gets SIGKILL should this script be
# SIGKILLed (setpriv --pdeathsig).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
qemu="qemu-system-x86_64"

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
    exit 2
}
unusable() {
    echo "guest-run: cannot run the cgroup v2 guest here: $*" >&2
    exit 2
}

mem=4096 cpus=2 scratch_mb=20480 init=bash
envs=()
expose=("$PWD" "$(cd "$here/../.." && pwd)")
read -r -a modules <<<"${GUEST_MODULES-overlay loop br_netfilter}"
modules_given=0
check_only=0
while (($#)); do
    case "$1" in
        --mem) mem="${2:?--mem MB}"; shift 2 ;;
        --cpus) cpus="${2:?--cpus N}"; shift 2 ;;
        --scratch-mb) scratch_mb="${2:?--scratch-mb MB}"; shift 2 ;;
        --env) [[ ${2:-} == *=* ]] || usage; envs+=("$2"); shift 2 ;;
        --expose) expose+=("$(realpath -m "${2:?--expose PATH}")"); shift 2 ;;
        --module)
            ((modules_given)) || modules=()
            modules_given=1
            modules+=("${2:?--module NAME}")
            shift 2
            ;;
        --init)
            init="${2:?--init bash|systemd}"
            [[ $init == bash || $init == systemd ]] || usage
            shift 2
            ;;
        --check) check_only=1; shift ;;
        --) shift; break ;;
        -h | --help) usage ;;
        *) echo "guest-run: unknown option $1" >&2; usage ;;
    esac
done
(($# || check_only)) || usage
[[ $mem =~ ^[0-9]+$ && $cpus =~ ^[0-9]+$ && $scratch_mb =~ ^[0-9]+$ ]] || usage
timeout="${GUEST_TIMEOUT:-1800}"
[[ $timeout =~ ^[0-9]+$ ]] || unusable "GUEST_TIMEOUT=$timeout is not a number of seconds"

# --- can the guest run here at all? Never skip silently.
command -v "$qemu" >/dev/null || unusable "$qemu is missing (apt-get install qemu-system-x86)"
# KVM when it can boot Debian's kernel. A KVM whose only backend is PVM (the
# pagetable-based VM of some nested sandboxes, such as the machines tether
# is developed on) runs PVM-enabled guest kernels only: Debian's kernel crawls
# through early boot for minutes under it and then stops with "KVM internal
# error ... emulation failure". There "auto" emulates with TCG instead, and
# says so; where /dev/kvm is missing or closed it fails.
kvm_problem() {
    [[ -e /dev/kvm ]] || { echo "/dev/kvm is missing (no KVM: enable virtualisation, or nested virtualisation in the VM this runs in; GUEST_ACCEL=tcg emulates instead, far slower)"; return; }
    [[ -c /dev/kvm ]] || { echo "/dev/kvm is not a character device"; return; }
    { : <>/dev/kvm; } 2>/dev/null || { echo "/dev/kvm cannot be opened read-write by $(id -un) (permissions, or the kvm group)"; return; }
    if [[ -d /sys/module/kvm_pvm && ! -d /sys/module/kvm_intel && ! -d /sys/module/kvm_amd ]]; then
        echo "pvm"
    fi
}
accel_mode="${GUEST_ACCEL:-auto}"
problem="$(kvm_problem)"
case "$accel_mode" in
    auto | kvm)
        if [[ $problem == pvm ]]; then
            [[ $accel_mode == kvm ]] && unusable "this host's KVM is PVM-only (kvm_pvm, no kvm_intel or kvm_amd), which cannot boot Debian's kernel; run on a host with hardware virtualisation (VT-x/AMD-V, nested if in a VM), or set GUEST_ACCEL=tcg or auto to emulate"
            echo "guest-run: this host's KVM is PVM-only (kvm_pvm), which cannot boot Debian's kernel: emulating with TCG (about 5-10 times slower)" >&2
            accel_mode=tcg
        elif [[ -n $problem ]]; then
            unusable "$problem"
        else
            accel_mode=kvm
        fi
        ;;
    tcg) echo "guest-run: GUEST_ACCEL=tcg: the guest is emulated in software (about 5-10 times slower)" >&2 ;;
    *) unusable "GUEST_ACCEL=${GUEST_ACCEL} is none of auto, kvm, tcg" ;;
esac
if [[ $accel_mode == kvm ]]; then
    accel=(-enable-kvm -cpu host)
else
    accel=(-accel "tcg,thread=multi,tb-size=512" -cpu max)
fi
command -v mkfs.ext4 >/dev/null || unusable "mkfs.ext4 is missing (apt-get install e2fsprogs)"
[[ -x /bin/busybox ]] || unusable "/bin/busybox is missing (apt-get install busybox-static)"
((check_only)) && exit 0

# --- kernel and initramfs (cached)
mapfile -t kernel < <(bash "$here/kernel.sh")
kdir="${kernel[0]:-}" initramfs="${kernel[1]:-}"
[[ -f "$kdir/vmlinuz" && -f $initramfs ]] || { echo "guest-run: scripts/guest/kernel.sh failed" >&2; exit 125; }
# The uncompressed kernel boots faster (PVH entry: no real mode, no
# decompressor).
vmlinux="$kdir/vmlinux"
[[ -f $vmlinux ]] || vmlinux="$kdir/vmlinuz"

# --- the run dir: the results share, the scratch disk, the logs
parent="${GUEST_RUN_DIR:-${TMPDIR:-/tmp}}"
mkdir -p "$parent"
run="$(mktemp -d "$parent/tether-guest.XXXXXX")"
share="$run/share"
mkdir -p "$share"
qpid="" tailpid="" sleeppid="" keep="${GUEST_KEEP:-0}"

# shellcheck disable=SC2317 # run by the EXIT trap only
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $qpid ]] && kill -0 "$qpid" 2>/dev/null; then
        kill -TERM "$qpid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$qpid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$qpid" 2>/dev/null || true
        wait "$qpid" 2>/dev/null || true
    fi
    for p in $sleeppid $tailpid; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    rm -f "$run/scratch.img"
    if [[ $keep == 1 ]]; then
        echo "guest-run: run dir kept: $run" >&2
    else
        rm -rf "$run"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "guest-run: interrupted" >&2; exit 130' INT
trap 'echo "guest-run: terminated" >&2; exit 143' TERM

printf '%s\0' "$@" >"$share/argv"
: >"$share/env"
((${#envs[@]})) && printf '%s\0' "${envs[@]}" >"$share/env"
pwd >"$share/cwd"
printf '%s\0' "${expose[@]}" >"$share/expose"
echo "${modules[*]}" >"$share/modules"

truncate -s "${scratch_mb}M" "$run/scratch.img"
mkfs.ext4 -q -F -m 0 -O ^has_journal -E lazy_itable_init=1,nodiscard -L scratch "$run/scratch.img"

append=(console=ttyS0 panic=-1 "cgroup_no_v1=all,named" rdinit=/init
    "tether.init=$here/guest-init.sh" "tether.modules=$kdir/lib/modules")
if [[ ${GUEST_VERBOSE:-0} == 1 ]]; then
    append+=(loglevel=7)
else
    append+=(quiet)
fi
if [[ $init == systemd ]]; then
    append+=(tether.pid1=systemd systemd.unified_cgroup_hierarchy=1)
    if [[ ${GUEST_VERBOSE:-0} == 1 ]]; then
        append+=(systemd.show_status=1 systemd.log_level=debug)
    else
        append+=(systemd.show_status=error)
    fi
fi

: >"$run/console.log"
start="$EPOCHREALTIME"
# The guest's root is the host's "/", read-only (multidevs=remap keeps inode
# numbers unique across the host's mounts). The results share is read-write.
setpriv --pdeathsig KILL -- "$qemu" -name tether-guest "${accel[@]}" \
    -machine q35 -smp "$cpus" -m "$mem" \
    -nodefaults -no-user-config -display none -no-reboot \
    -kernel "$vmlinux" -initrd "$initramfs" -append "${append[*]}" \
    -chardev "file,id=console,path=$run/console.log,append=on" -serial chardev:console \
    -fsdev local,id=hostroot,path=/,security_model=passthrough,readonly=on,multidevs=remap \
    -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot \
    -fsdev "local,id=results,path=$share,security_model=passthrough" \
    -device virtio-9p-pci,fsdev=results,mount_tag=results \
    -drive "file=$run/scratch.img,format=raw,if=virtio,cache=unsafe,discard=unmap" \
    -pidfile "$run/qemu.pid" \
    </dev/null >"$run/qemu.log" 2>&1 &
qpid=$!

if [[ ${GUEST_CONSOLE:-1} == 1 ]]; then
    # The serial line ends lines with \r\n. (sed -u: line by line, where
    # tr would hold back a block.)
    tail -n +1 -s 0.2 -F --pid="$qpid" "$run/console.log" 2>/dev/null | sed -u 's/\r$//' >&2 &
    tailpid=$!
fi

setpriv --pdeathsig KILL -- sleep "$timeout" &
sleeppid=$!
wait -n "$qpid" "$sleeppid" || true
timed_out=0
if kill -0 "$qpid" 2>/dev/null; then
    timed_out=1
    echo "guest-run: GUEST_TIMEOUT ($timeout s) ran out; stopping the guest" >&2
    kill -TERM "$qpid" 2>/dev/null || true
fi
wait "$qpid" 2>/dev/null || true
qpid=""
kill "$sleeppid" 2>/dev/null || true
wait "$sleeppid" 2>/dev/null || true
sleeppid=""
if [[ -n $tailpid ]]; then
    wait "$tailpid" 2>/dev/null || true
    tailpid=""
fi
end="$EPOCHREALTIME"

if [[ ! -s "$share/status" ]]; then
    # qemu refusing KVM (or dying on it) before the guest got anywhere is
    # "cannot run here" too.
    if ((!timed_out)) && [[ ! -e "$share/started" ]] && grep -qi 'kvm' "$run/qemu.log"; then
        cat "$run/qemu.log" >&2
        unusable "qemu could not use KVM (above)"
    fi
    keep=1
    echo "guest-run: the guest stopped without an exit status for the command" >&2
    [[ -s "$run/qemu.log" ]] && sed 's/^/qemu: /' "$run/qemu.log" >&2
    if [[ ${GUEST_CONSOLE:-1} != 1 ]]; then
        echo "guest-run: the end of its console:" >&2
        tail -n 40 "$run/console.log" | tr -d '\r' >&2
    fi
    ((timed_out)) && exit 124
    exit 125
fi

cat "$share/stdout"
[[ ${GUEST_CONSOLE:-1} == 1 ]] || cat "$share/stderr" >&2
status="$(cat "$share/status")"
read -r mem_end mem_peak <"$share/memory" || mem_end="?" mem_peak="?"
started="$(stat -c %.9Y "$share/started")"
finished="$(stat -c %.9Y "$share/status")"
awk -v s="$start" -v b="$started" -v f="$finished" -v e="$end" -v me="$mem_end" -v mp="$mem_peak" \
    -v st="$status" 'BEGIN {
        printf "guest-run: boot %.2f s (qemu start to command start), command %.2f s, total %.2f s; guest memory used %s MB at the end, %s MB peak; exit status %s\n",
            b - s, f - b, e - s, me, mp, st
    }' >&2
exit "$status"
