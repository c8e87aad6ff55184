# shellcheck shell=bash
# shellcheck disable=SC2154 # repo, peers, cd_bin, tool, testenv: set by systemd-suite.sh before it sources this
# Helpers of scripts/guest/systemd-suite.sh (sourced): reporting, ctr and
# crictl against the node's containerd.service, the containerd config, and
# the check groups (checks.sh, cri.sh, restart.sh, sourced from here).

sock=/run/containerd/containerd.sock
passed=0 failed=0

say() { echo "systemd-suite: $*" >&2; }
pass() { # SHIM RUNC NAME
    echo "ok $1 $2 $3"
    passed=$((passed + 1))
}
fail() { # SHIM RUNC NAME [DETAIL]
    echo "FAIL $1 $2 $3${4:+ ($4)}"
    failed=$((failed + 1))
    # What ran then, for the post-mortem (stderr: the console).
    # shellcheck disable=SC2009 # a forest of every process, not a search for one
    ps -eo pid,ppid,stat,etime,args --forest 2>/dev/null | grep -v -e '\[.*\]$' | tail -n 40 | sed 's/^/systemd-suite:   /' >&2
}
check() { # SHIM RUNC NAME EXPECTED ACTUAL
    if [[ $4 == "$5" ]]; then
        pass "$1" "$2" "$3"
    else
        fail "$1" "$2" "$3" "expected '$4', got '$5'"
    fi
}
summary() {
    echo "$passed passed, $failed failed"
    ((failed == 0))
}

# ctr and crictl calls are bounded: a hung call fails its check (and says
# what was running) instead of hanging the suite.
c() { timeout -k 5 120 "$cd_bin/ctr" --address "$sock" --namespace systemd-suite "$@"; }
crictl() {
    timeout -k 5 120 "$peers/cri-tools-1.34.0/bin/crictl" --config /dev/null --runtime-endpoint "unix://$sock" \
        --image-endpoint "unix://$sock" --timeout 60s "$@"
}

wait_containerd() {
    local _
    for _ in $(seq 600); do
        c version >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

# waitfor SECONDS CMD...: until CMD succeeds (every 0.1 s).
waitfor() {
    local n=$(($1 * 10)) _
    shift
    for _ in $(seq "$n"); do
        "$@" && return 0
        sleep 0.1
    done
    return 1
}

# The containerd config, from `testenv config --system` (the testenv crate
# writes every containerd config of the repository): containerd's own root,
# state and socket, the CRI handlers tether, tether-debian (tether with
# Debian's runc), runc and runc-debian (the Go shim), all with
# SystemdCgroup = true, the shims of tether's in tether-shims.slice and the
# Go shim's in go-shims.slice (ShimCgroup); the sandbox image is the suite's.
write_containerd_config() { # RUNC-NEWEST RUNC-DEBIAN DIR (gets config.toml)
    local args=(config --system --containerd "$cd_bin/containerd" --cri
        --sandbox-image tether.local/node:1 --default-handler runc)
    local name type bin slice
    for name in tether tether-debian runc runc-debian; do
        type=io.containerd.runc.v2 slice=/go-shims.slice bin="$1"
        [[ $name == tether* ]] && type=io.containerd.tether.v2 slice=/tether-shims.slice
        [[ $name == *-debian ]] && bin="$2"
        args+=(--handler "$name=$type::$bin,SystemdCgroup=true,ShimCgroup=$slice")
    done
    "$testenv" "${args[@]}" "$3" >/dev/null
}

# A rootfs dir for ctr --rootfs: Debian's busybox-static and its applets.
mkroot() { # DIR
    local a
    mkdir -p "$1"/{bin,dev,proc,sys,etc,tmp,run}
    cp /bin/busybox "$1/bin/busybox"
    for a in sh cat sleep ls grep head tail tty echo true seq; do
        ln -sf busybox "$1/bin/$a"
    done
}

# rt SHIM RUNC-BIN: the ctr options selecting the shim, the runc and the
# systemd driver (the Go shim takes runc options; tether reads a runtime
# config file with the same keys).
rt() {
    if [[ $1 == go ]]; then
        echo "--runtime io.containerd.runc.v2 --runc-binary $2 --runc-systemd-cgroup"
    else
        local cfg
        cfg="$SUITE_WORK/tether-$(basename "$(dirname "$(dirname "$2")")").toml"
        printf 'BinaryName = "%s"\nSystemdCgroup = true\n' "$2" >"$cfg"
        echo "--runtime io.containerd.tether.v2 --runtime-config-path $cfg"
    fi
}

# The scope runc makes for `--cgroup system.slice:systemd-suite:ID`.
scope_of() { echo "/sys/fs/cgroup/system.slice/systemd-suite-$1.scope"; }

# task_pid ID: the task's init pid, from ctr.
task_pid() { c task ls 2>/dev/null | awk -v id="$1" '$1 == id {print $2}'; }
task_status() { c task ls 2>/dev/null | awk -v id="$1" '$1 == id {print $3}'; }
ppid_of() { awk '/^PPid:/ {print $2}' "/proc/$1/status" 2>/dev/null; }
cgroup_of() { sed -n 's/^0:://p' "/proc/$1/cgroup" 2>/dev/null; }

# cleanup_task ID: the task and container gone, whatever their state.
cleanup_task() {
    c task kill -s KILL "$1" >/dev/null 2>&1
    waitfor 20 stopped_or_gone "$1"
    c task delete -f "$1" >/dev/null 2>&1
    c container delete "$1" >/dev/null 2>&1
}
stopped_or_gone() { local s; s="$(task_status "$1")"; [[ -z $s || $s == STOPPED ]]; }

here_sd="$(dirname "${BASH_SOURCE[0]}")"
# shellcheck source=scripts/guest/systemd/checks.sh
source "$here_sd/checks.sh"
# shellcheck source=scripts/guest/systemd/cri.sh
source "$here_sd/cri.sh"
# shellcheck source=scripts/guest/systemd/restart.sh
source "$here_sd/restart.sh"
