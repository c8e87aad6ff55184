#!/usr/bin/env bash
# The single-quoted scripts below are run by a container's sh or awk, on purpose:
# shellcheck disable=SC2016
# Pods without pause: CRI pod checks through crictl for the handler
# `tether-sandbox` (the tether shim with sandboxer = "shim": it serves
# containerd's Sandbox API, and a small holder process it forks holds the
# pod's namespaces) and, so that a difference shows, for the pause-based
# handler `tether`. Run by tests/cri_sandbox.rs as
#   scripts/critest.sh --containerd 2.3.7 --exec -- bash tests/cri/sandbox.sh
# and on 2.4.2 (it needs the environment critest.sh --exec sets: CRICTL, CTR,
# CRI_TMP, CRI_BUSYBOX_IMAGE, CRI_PAUSE_IMAGE, CRI_SHIM, CRI_RESTART,
# RUNC_BIN, CONTAINERD_ROOT, CONTAINERD_STATE ...).
#
# One line a check and handler: `PASS|FAIL HANDLER CHECK [why]`; `SEEN
# HANDLER CHECK ...` for what is only shown; then `HANDLER: N passed, M
# failed` and, last, `N passed, M failed`. Exit status 0 when nothing
# failed. CRI_SANDBOX_HANDLERS (default "tether-sandbox tether") the
# handlers, in that order: the first pod runs alone, so "no pause process"
# means what it says. CRI_SANDBOX_CHECKS (default "smoke restart
# shim-kill") the groups, run in this order: smoke (below), then restart,
# shim-kill and no-pause-pull (described in tests/cri/sandbox-groups.sh).
#
# smoke: one pod per handler (hostname, dns_config, pid namespace POD, a
# cgroup parent that does not exist yet, as runc makes it for pause) with
# two busybox containers: `main` (sleep 1000, in the pod's pid namespace)
# and `own` (sleep 1001, pid namespace CONTAINER):
#
#   run          runp, create + start of both containers, exec works
#   namespaces   main's net, ipc and uts namespaces are those of the pod's
#                sandbox pid (crictl inspectp's info.pid; for tether-sandbox
#                the holder found under the pod's shim when info has none),
#                and not the environment's; `hostname` is the pod's
#   files        /etc/resolv.conf has the dns_config lines, /etc/hosts and
#                /etc/hostname are CRI's files of the pod (under
#                $CONTAINERD_ROOT/io.containerd.grpc.v1.cri/sandboxes/ID),
#                /dev/shm is a tmpfs, the pod's (a file written there shows
#                in $CONTAINERD_STATE/io.containerd.grpc.v1.cri/sandboxes/ID/shm)
#   pid-share    main's /proc/1/cmdline is not its command but the sandbox
#                pid's (the holder, or pause); own's is its own command
#   no-pause     (tether-sandbox only; SEEN for the others) the pod is no
#                container (`ctr containers ls`) but a sandbox (`ctr
#                sandboxes ls`); no process of the environment runs pause;
#                one shim serves the pod and the sandbox pid is its holder
#                (a descendant whose command line has --tether-pod-holder)
#   stop-remove  stopp: inspectp says SANDBOX_NOTREADY at once and the
#                sandbox pid is gone; rmp: the pod is gone, so are its shim,
#                any holder, every mount made for it under containerd's root
#                and state dirs, its CRI dirs, bundles and cgroup
set -uo pipefail

: "${CRICTL:?run through scripts/critest.sh --exec}" "${CTR:?}" "${CRI_TMP:?}" "${CRI_BUSYBOX_IMAGE:?}"
: "${CRI_SHIM:?}" "${CONTAINERD_ROOT:?}" "${CONTAINERD_STATE:?}" "${CRI_RESTART:?}" "${RUNC_BIN:?}"
export CRI_CONFIG_FILE="${CRI_CONFIG_FILE:-$CRI_TMP/crictl.yaml}"
read -r -a handlers <<<"${CRI_SANDBOX_HANDLERS:-tether-sandbox tether}"
img="$CRI_BUSYBOX_IMAGE"
work="$CRI_TMP/sandbox"
mkdir -p "$work"
tasks="$CONTAINERD_STATE/io.containerd.runtime.v2.task/k8s.io"
sb_bundles="$CONTAINERD_STATE/io.containerd.sandbox.controller.v1.shim/k8s.io"
cri_root="$CONTAINERD_ROOT/io.containerd.grpc.v1.cri/sandboxes"
cri_state="$CONTAINERD_STATE/io.containerd.grpc.v1.cri/sandboxes"
runc_root=/run/containerd/runc/k8s.io
shim_exe="$(realpath "$CRI_SHIM")"
holder_flag=--tether-pod-holder
checks=(run namespaces files pid-share no-pause stop-remove)
crictl() { "$CRICTL" "$@"; }
ctr() { "$CTR" -n k8s.io "$@"; }

declare -A npass nfail
total_pass=0 total_fail=0
pass() { echo "PASS $1 $2"; npass[$1]=$(( ${npass[$1]:-0} + 1 )); total_pass=$((total_pass + 1)); }
fail() { echo "FAIL $1 $2: $3"; nfail[$1]=$(( ${nfail[$1]:-0} + 1 )); total_fail=$((total_fail + 1)); }
note() { echo "     $*" >&2; }
# verdict HANDLER CHECK WHY: PASS when WHY is empty
verdict() { if [[ -z "$3" ]]; then pass "$1" "$2"; else fail "$1" "$2" "${3%; }"; fi; }

# run_pod HANDLER NAME [PIDMODE]: prints the pod id; the config is
# $work/NAME.pod.json (PIDMODE: the pod's pid mode, 0 POD by default, 1
# CONTAINER as the kubelet asks without shareProcessNamespace)
run_pod() {
    local h="$1" name="$2" pidmode="${3:-0}"
    mkdir -p "$work/logs/$name"
    cat >"$work/$name.pod.json" <<EOF
{
  "metadata": {"name": "$name", "namespace": "tether-sandbox", "uid": "uid-$name-$$", "attempt": 0},
  "hostname": "$name-host",
  "log_directory": "$work/logs/$name",
  "dns_config": {"servers": ["192.0.2.53"], "searches": ["tether.test", "pods.tether.test"], "options": ["ndots:2"]},
  "linux": {"cgroup_parent": "/k8s.io/tether-sandbox-$name",
            "security_context": {"namespace_options": {"pid": $pidmode}}}
}
EOF
    crictl runp --runtime "$h" "$work/$name.pod.json"
}
# start_ctr POD PODNAME CNAME PIDMODE CMD...: prints the container id
# (PIDMODE: 0 the pod's pid namespace, 1 the container's own)
start_ctr() {
    local pod="$1" pname="$2" cname="$3" pidmode="$4" cmd cid; shift 4
    cmd="$(printf '%s\n' "$@" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read().splitlines()))')"
    cat >"$work/$pname.$cname.json" <<EOF
{
  "metadata": {"name": "$cname", "attempt": 0},
  "image": {"image": "$img"},
  "command": $cmd,
  "log_path": "$cname.log",
  "linux": {"security_context": {"namespace_options": {"pid": $pidmode}}}
}
EOF
    cid="$(crictl create "$pod" "$work/$pname.$cname.json" "$work/$pname.pod.json")" || return 1
    crictl start "$cid" >/dev/null || return 1
    echo "$cid"
}
# ex CID CMD...: the command's stdout in the container (exec --sync)
ex() { local c="$1"; shift; crictl exec --sync "$c" "$@" 2>/dev/null; }
pod_json() { crictl inspectp "$1" 2>/dev/null | python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$2" 2>/dev/null; }
ctr_json() { crictl inspect "$1" 2>/dev/null | python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$2" 2>/dev/null; }
# The pod's state in CRI's own store (crictl pods: what CRI's exit monitor,
# fed by WaitSandbox or the pause task's exit, last recorded), and live
# (crictl inspectp: the controller's SandboxStatus).
listed_state() { crictl pods --id "$1" -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["state"])' 2>/dev/null; }
listed_as() { [[ "$(listed_state "$1")" == "$2" ]]; }
live_as() { [[ "$(pod_json "$1" "d['status']['state']")" == "$2" ]]; }
runc_knows() { "$RUNC_BIN" --root "$runc_root" state "$1" >/dev/null 2>&1; }
cmdline() { tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline"; }
ppid_of() { ps -o ppid= -p "$1" 2>/dev/null | tr -d ' '; }
gone() { ! kill -0 "$1" 2>/dev/null; }
wait_for() {
    local end=$((SECONDS + $1)); shift
    until "$@"; do
        [[ $SECONDS -ge $end ]] && return 1
        sleep 0.2
    done
}
# The pod's shim processes: the tether shim (or containerd's runc shim)
# whose cwd is the pod's bundle (pause container or sandbox), not a holder.
pod_shims() {
    local pod="$1" p cwd exe
    for p in /proc/[0-9]*; do
        exe="$(readlink "$p/exe" 2>/dev/null)" || continue
        [[ "$exe" == "$shim_exe" || "$exe" == */containerd-shim-runc-v2 ]] || continue
        cwd="$(readlink "$p/cwd" 2>/dev/null)" || continue
        [[ "$cwd" == "$tasks/$pod" || "$cwd" == "$sb_bundles/$pod" ]] || continue
        [[ "$(cmdline "${p#/proc/}")" == *"$holder_flag"* ]] && continue
        echo "${p#/proc/}"
    done
}
# Every process of the environment (its cgroup namespace's root and below).
env_pids() {
    local top
    for top in /sys/fs/cgroup/pids /sys/fs/cgroup/memory /sys/fs/cgroup; do
        [[ -f "$top/cgroup.procs" ]] || continue
        find "$top" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -un
        return
    done
}
holders() { local p; for p in $(env_pids); do [[ "$(cmdline "$p")" == *"$holder_flag"* ]] && echo "$p"; done; }
# descends PID ANCESTOR: whether ANCESTOR is PID's parent, grandparent ...
descends() {
    local p="$1" _
    for _ in 1 2 3 4 5 6; do
        p="$(ppid_of "$p")"
        [[ -z "$p" || "$p" == 0 ]] && return 1
        [[ "$p" == "$2" ]] && return 0
    done
    return 1
}
# Mount points under containerd's root and state dirs.
state_mounts() {
    awk -v r="$CONTAINERD_ROOT/" -v s="$CONTAINERD_STATE/" \
        'index($5, r) == 1 || index($5, s) == 1 {print $5}' /proc/self/mountinfo | sort
}
# sandbox_pid HANDLER POD: crictl inspectp's info.pid (for tether-sandbox,
# from the verbose SandboxStatus's info), empty if there is none.
sandbox_pid() {
    local pid
    pid="$(pod_json "$2" "d.get('info', {}).get('pid', '')")"
    [[ -n "$pid" && "$pid" != 0 ]] || { note "$1: crictl inspectp has no info.pid"; return 0; }
    echo "$pid"
}
# left_behind POD NAME MOUNTS_BEFORE "SHIM..." "CID...": why the removed pod
# is not all gone (its shims, any holder, mounts made since MOUNTS_BEFORE
# under containerd's dirs, CRI dirs, bundles, runc state, cgroups); empty
# when nothing is left
left_behind() {
    local pod="$1" name="$2" before="$3" p f c left why=""
    for p in $4; do wait_for 15 gone "$p" || why+="shim $p alive 15 s after rmp; "; done
    [[ -z "$(holders)" ]] || why+="holder processes left: $(holders | tr '\n' ' '); "
    left="$(comm -13 <(echo "$before") <(state_mounts))"
    [[ -z "$left" ]] || why+="mounts left: $(tr '\n' ' ' <<<"$left"); "
    for f in "$cri_root/$pod" "$cri_state/$pod" "$sb_bundles/$pod" "$tasks/$pod"; do
        [[ ! -e "$f" ]] || why+="$f left; "
    done
    for c in $5; do
        [[ ! -e "$tasks/$c" ]] || why+="$tasks/$c left; "
        ! runc_knows "$c" || why+="runc still knows container ${c:0:12}; "
    done
    left="$(find /sys/fs/cgroup -maxdepth 4 -type d -path "*/tether-sandbox-$name/*" 2>/dev/null)"
    [[ -z "$left" ]] || why+="cgroups left: $(tr '\n' ' ' <<<"$left"); "
    printf '%s' "$why"
}
rm_pod() {
    crictl stopp "$1" >/dev/null 2>&1
    crictl rmp -f "$1" >/dev/null 2>&1
    find /sys/fs/cgroup -maxdepth 3 -type d -name "tether-sandbox-$2" -exec rmdir {} + 2>/dev/null
    return 0
}

check_handler() {
    local h="$1" name="sb-$1" pod main own spid why c
    local mounts_before
    mounts_before="$(state_mounts)"
    if ! pod="$(run_pod "$h" "$name" 2>"$work/$name.runp.err")"; then
        fail "$h" run "runp failed: $(grep -o 'desc = .*' "$work/$name.runp.err" | head -n1 | cut -c1-400)"
        for c in "${checks[@]:1}"; do fail "$h" "$c" "not reached (runp failed)"; done
        return
    fi
    note "$h: pod ${pod:0:12}"

    # run
    if ! { main="$(start_ctr "$pod" "$name" main 0 sleep 1000)" && own="$(start_ctr "$pod" "$name" own 1 sleep 1001)"; }; then
        fail "$h" run "create/start failed"
        for c in "${checks[@]:1}"; do fail "$h" "$c" "not reached (create/start failed)"; done
        rm_pod "$pod" "$name"; return
    fi
    why=""
    [[ "$(ex "$main" echo exec-ok)" == exec-ok ]] || why+="exec in main failed; "
    [[ "$(ex "$own" echo exec-ok)" == exec-ok ]] || why+="exec in own failed; "
    verdict "$h" run "$why"

    spid="$(sandbox_pid "$h" "$pod")"
    note "$h: sandbox pid ${spid:-none}: $(cmdline "${spid:-0}")"

    # namespaces
    why=""
    [[ -n "$spid" && -d "/proc/$spid" ]] || why+="no live sandbox pid ('$spid'); "
    local ns theirs mine
    for ns in net ipc uts; do
        theirs="$(ex "$main" readlink "/proc/self/ns/$ns")"
        mine="$(readlink "/proc/${spid:-0}/ns/$ns" 2>/dev/null)"
        [[ -n "$theirs" && "$theirs" == "$mine" ]] || why+="$ns: container $theirs, sandbox pid $mine; "
        [[ "$theirs" != "$(readlink "/proc/self/ns/$ns")" ]] || why+="$ns: the environment's own; "
    done
    local hn
    hn="$(ex "$main" hostname)"
    [[ "$hn" == "$name-host" ]] || why+="hostname '$hn' (want $name-host); "
    verdict "$h" namespaces "$why"

    # files
    why=""
    local resolv line
    resolv="$(ex "$main" cat /etc/resolv.conf)"
    for line in "nameserver 192.0.2.53" "search tether.test pods.tether.test" "options ndots:2"; do
        grep -qxF "$line" <<<"$resolv" || why+="resolv.conf lacks '$line' ($(tr '\n' '|' <<<"$resolv")); "
    done
    # CRI's own text for a dns_config, byte for byte
    cmp -s "$cri_root/$pod/resolv.conf" \
        <(printf 'search tether.test pods.tether.test\nnameserver 192.0.2.53\noptions ndots:2\n') ||
        why+="CRI's resolv.conf is not the pause path's text; "
    local f
    for f in hosts hostname resolv.conf; do
        if [[ ! -s "$cri_root/$pod/$f" ]]; then
            why+="no $cri_root/${pod:0:12}.../$f; "
        elif [[ "$(ex "$main" cat "/etc/$f")" != "$(cat "$cri_root/$pod/$f")" ]]; then
            why+="/etc/$f is not the pod's; "
        fi
    done
    [[ "$(cat "$cri_root/$pod/hostname" 2>/dev/null)" == "$name-host" ]] || why+="CRI's hostname file is not $name-host; "
    local shm
    shm="$(ex "$main" awk '$2 == "/dev/shm" {print $3}' /proc/mounts)"
    [[ "$shm" == tmpfs ]] || why+="/dev/shm is '$shm', not tmpfs; "
    ex "$main" sh -c 'echo probe >/dev/shm/tether-sandbox-probe' >/dev/null
    [[ -f "$cri_state/$pod/shm/tether-sandbox-probe" ]] || why+="a file in main's /dev/shm is not in the pod's shm ($cri_state/${pod:0:12}.../shm); "
    verdict "$h" files "$why"

    # pid-share
    why=""
    local one own_one
    one="$(ex "$main" sh -c 'tr "\0" " " </proc/1/cmdline')"
    own_one="$(ex "$own" sh -c 'tr "\0" " " </proc/1/cmdline')"
    note "$h: /proc/1/cmdline in main: '$one'; in own: '$own_one'"
    [[ -n "$one" && "$one" != "sleep 1000 " ]] || why+="main's pid 1 is '$one'; "
    [[ "$one" == "$(cmdline "${spid:-0}")" ]] || why+="main's pid 1 is not the sandbox pid ('$(cmdline "${spid:-0}")'); "
    [[ "$own_one" == "sleep 1001 " ]] || why+="own's pid 1 is '$own_one', not its command; "
    verdict "$h" pid-share "$why"

    # no-pause
    why=""
    local listed sandboxes shims p pauses=""
    listed="$(ctr containers ls -q 2>&1)"
    sandboxes="$(ctr sandboxes ls 2>&1)"
    mapfile -t shims < <(pod_shims "$pod")
    for p in $(env_pids); do
        [[ "$(basename "$(cut -d ' ' -f1 <<<"$(cmdline "$p")")")" == pause ]] && pauses+="$p "
    done
    grep -qxF "$main" <<<"$listed" || why+="ctr containers ls lacks main ($(tr '\n' ' ' <<<"$listed" | cut -c1-200)); "
    ! grep -qxF "$pod" <<<"$listed" || why+="the pod is a container; "
    grep -qF "$pod" <<<"$sandboxes" || why+="ctr sandboxes ls lacks the pod ($(tr '\n' ' ' <<<"$sandboxes" | cut -c1-300)); "
    [[ -z "$pauses" ]] || why+="pause processes: $pauses; "
    [[ ${#shims[@]} == 1 ]] || why+="${#shims[@]} shims (${shims[*]:-}); "
    [[ "$(cmdline "${spid:-0}")" == *"$holder_flag"* ]] || why+="the sandbox pid is no holder; "
    [[ ${#shims[@]} == 1 ]] && ! descends "${spid:-0}" "${shims[0]}" && why+="the sandbox pid does not descend from the shim ${shims[0]}; "
    note "$h: ctr sandboxes ls: $(grep -F "$pod" <<<"$sandboxes" | tr -s ' ' | cut -c1-200)"
    if [[ "$h" == tether-sandbox ]]; then
        verdict "$h" no-pause "$why"
    else
        echo "SEEN $h no-pause: ${why:-no difference}"
    fi

    # stop-remove
    why=""
    crictl stopp "$pod" >/dev/null 2>&1 || why+="stopp failed; "
    local st
    st="$(pod_json "$pod" "d['status']['state']")"
    [[ "$st" == SANDBOX_NOTREADY ]] || why+="state '$st' right after stopp; "
    [[ -z "$spid" ]] || wait_for 10 gone "$spid" || why+="sandbox pid $spid alive 10 s after stopp; "
    crictl rmp "$pod" >/dev/null 2>&1 || why+="rmp failed; "
    crictl inspectp "$pod" >/dev/null 2>&1 && why+="inspectp still knows the pod; "
    grep -qF "$pod" <<<"$(ctr sandboxes ls 2>&1)" && why+="ctr sandboxes ls still lists it; "
    why+="$(left_behind "$pod" "$name" "$mounts_before" "${shims[*]}" "$main $own")"
    verdict "$h" stop-remove "$why"
    rm_pod "$pod" "$name"
}

# shellcheck source=tests/cri/sandbox-groups.sh
source "$(dirname "${BASH_SOURCE[0]}")/sandbox-groups.sh"
groups=" ${CRI_SANDBOX_CHECKS:-smoke restart shim-kill} "
want() { [[ "$groups" == *" $1 "* ]]; }
for g in $groups; do
    [[ " smoke restart shim-kill no-pause-pull " == *" $g "* ]] ||
        { echo "0 passed, 1 failed (no check group $g)"; exit 2; }
done
crictl pull "$img" >/dev/null || { echo "0 passed, 1 failed (could not pull $img)"; exit 1; }
if want smoke; then
    for h in "${handlers[@]}"; do check_handler "$h"; done
fi
if want restart; then
    for h in "${handlers[@]}"; do check_restart "$h"; done
fi
if want shim-kill; then
    for h in "${handlers[@]}"; do check_shim_kill "$h"; done
fi
# Last: it takes the pause image out of the registry.
want no-pause-pull && check_no_pause_pull
for h in "${handlers[@]}"; do
    [[ -n "${npass[$h]:-}${nfail[$h]:-}" ]] && echo "$h: ${npass[$h]:-0} passed, ${nfail[$h]:-0} failed"
done
echo "$total_pass passed, $total_fail failed"
[[ $total_fail == 0 ]]
