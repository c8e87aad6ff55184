#!/bin/bash
# Hands PID 1 of the test guest over to systemd (guest-init.sh execs this
# when the kernel command line has tether.pid1=systemd; scripts/guest/run.sh
# --init systemd puts it there). Not for running on the host.
#
#   systemd-boot.sh RESULTS-DIR
#
# The guest is set up already (guest-init.sh: /proc, /sys, /dev, cgroup v2,
# /run, the writable /tmp, /var/tmp, /var/lib and /var/log, the results
# share). systemd keeps those mounts. What it and the tests must write besides
# is made writable here, by overlays with their upper dirs on the scratch
# disk:
#   /etc                  units and drop-ins in /etc/systemd/system (the
#                         operator's place for them), containerd's config,
#                         the CNI dir containerd's CRI makes
#   /usr/local/bin        where the README installs the shim
# In that copy, the host's units that a test node does not need are masked
# (timers, getty, timesyncd, pstore, binfmt, the host's own services), and
# two units are added:
#   tether-test.target    what systemd boots: basic.target and the test
#   tether-test.service   runs `guest-init.sh --run-command` (the command
#                         run.sh left on the results share, its output and
#                         exit status written there), then powers off
# containerd.service is not started at boot: the command installs the
# drop-in and config the way an operator does and starts it.
set -uo pipefail
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
: "${1:?results dir}"
here="$(cd "$(dirname "$0")" && pwd)"
scratch=/mnt

say() {
    local up
    read -r up _ </proc/uptime 2>/dev/null || up="?"
    echo "guest: [$up] $*" >/dev/console
}
fail() {
    say "systemd boot failed: $*"
    sync
    /bin/busybox poweroff -f
    echo o >/proc/sysrq-trigger
    sleep 10
}

for d in /etc /usr/local/bin; do
    [[ -d $d ]] || fail "$d is missing from the host's root"
    w="$scratch/rw${d//\//-}"
    mkdir -p "$w/upper" "$w/work"
    mount -t overlay overlay -o "lowerdir=$d,upperdir=$w/upper,workdir=$w/work" "$d" ||
        fail "cannot make $d writable"
done

units=/etc/systemd/system
for u in systemd-timesyncd.service systemd-pstore.service timers.target getty.target \
    serial-getty@ttyS0.service systemd-firstboot.service proc-sys-fs-binfmt_misc.automount \
    systemd-binfmt.service e2scrub_reap.service postgresql.service docker-registry.service \
    systemd-logind.service remote-fs.target; do
    rm -f "$units/$u"
    ln -s /dev/null "$units/$u"
done

cat >"$units/tether-test.target" <<'EOF'
[Unit]
Description=tether guest test run
Requires=basic.target
After=basic.target
Wants=tether-test.service
AllowIsolate=yes
EOF
cat >"$units/tether-test.service" <<EOF
[Unit]
Description=tether guest test command
After=basic.target dbus.socket
SuccessAction=poweroff-force
FailureAction=poweroff-force

[Service]
Type=oneshot
ExecStart=/bin/bash $here/guest-init.sh --run-command
StandardInput=null
StandardOutput=journal+console
StandardError=journal+console
# The command makes cgroups of its own (tests) below its unit.
Delegate=yes
# scripts/guest/run.sh's GUEST_TIMEOUT is the limit.
TimeoutStartSec=infinity
EOF

say "exec systemd"
# An empty $container tells systemd it is not in a container (otherwise the
# host root's /.dockerenv, seen through 9p, says docker).
exec env container= /usr/lib/systemd/systemd --unit=tether-test.target
