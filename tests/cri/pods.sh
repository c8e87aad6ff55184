#!/usr/bin/env bash
# The single-quoted scripts below are run by a container's sh or by eval, on purpose:
# shellcheck disable=SC2016
# CRI pod checks through crictl, run by tests/cri_pods.rs as
#   scripts/critest.sh --containerd 2.3.7 --exec -- bash tests/cri/pods.sh
# (it needs the environment critest.sh --exec sets: CRICTL, CRI_CONFIG_FILE,
# CRI_TMP, CRI_BUSYBOX_IMAGE, CRI_SHIM, CONTAINERD_BIN, CONTAINERD_STATE,
# CRI_RESTART ...).
#
# Each check runs for handler `tether` and for handler `runc`, so a difference
# shows; one line a check and handler: `PASS|FAIL HANDLER CHECK [why]`, then
# a per-handler line `HANDLER: N passed, M failed` and, last, the total
# `N passed, M failed`. Exit status 0 when nothing failed.
#
# CRI_PODS_CHECKS (default "pods crun options restart") selects groups: pods
# (the first six checks below), crun, options, restart, output. CRI_PODS_HANDLERS (default
# "tether runc") the handlers of the pods and restart groups.
# Note: Debian's crun 1.8.1 refuses a config.json whose ociVersion is not
# 1.0.x ("unknown version specified"), and containerd 2.x writes 1.2.x, so
# the crun group needs containerd 1.6/1.7 (critest.sh --containerd system).
#
#   one-shim-per-pod  a pod with two containers: one shim process serves the
#                     pod (exe = the handler's shim binary, cwd = one of the
#                     pod's bundles); it exits after stopp + rmp
#   oom               a container with a 32 MiB limit that allocates more
#                     ends with reason OOMKilled
#   exec-timeout      exec --sync --timeout 2 CID sleep 10 fails within ~2 s
#   exec-status       exec --sync CID sh -c 'exit 3' reports exit status 3
#   logs              crictl logs shows the container's stdout and stderr
#   stats             crictl stats / statsp have entries for container / pod
#   crun              (handler tether-crun only) the container runs and its
#                     output appears; runtime.json names crun and
#                     `crun state` knows the container
#   options           (handler tether-wrapped only) the handler's BinaryName
#                     (a wrapper that logs and runs runc) is what the shim
#                     runs: its log has the create, runtime.json names it
#   restart           containerd SIGKILLed and restarted (CRI_RESTART) with a
#                     pod of each handler running: pod Ready, container
#                     Running with the same PID, exec --sync works
#   output-away       (group output, not in the default) containerd SIGKILLed
#                     for 30 s while a pod of each handler writes a numbered
#                     line every ~1 ms: no write took over 100 ms, and the CRI
#                     log holds every line in order (see check_output_away)
set -uo pipefail

: "${CRICTL:?run through scripts/critest.sh --exec}" "${CRI_TMP:?}" "${CRI_BUSYBOX_IMAGE:?}"
export CRI_CONFIG_FILE="${CRI_CONFIG_FILE:-$CRI_TMP/crictl.yaml}"
read -r -a handlers <<<"${CRI_PODS_HANDLERS:-tether runc}"
img="$CRI_BUSYBOX_IMAGE"
work="$CRI_TMP/pods"
mkdir -p "$work"
tasks="$CONTAINERD_STATE/io.containerd.runtime.v2.task/k8s.io"
crictl() { "$CRICTL" "$@"; }

declare -A npass nfail
total_pass=0 total_fail=0
pass() { echo "PASS $1 $2"; npass[$1]=$(( ${npass[$1]:-0} + 1 )); total_pass=$((total_pass + 1)); }
fail() { echo "FAIL $1 $2: $3"; nfail[$1]=$(( ${nfail[$1]:-0} + 1 )); total_fail=$((total_fail + 1)); }
note() { echo "     $*" >&2; }

seq_n=0
# run_pod HANDLER NAME: prints the pod id; the pod config is $work/NAME.pod.json
run_pod() {
    local h="$1" name="$2"
    seq_n=$((seq_n + 1))
    mkdir -p "$work/logs/$name"
    cat >"$work/$name.pod.json" <<EOF
{
  "metadata": {"name": "$name", "namespace": "tether-pods", "uid": "uid-$name-$seq_n", "attempt": 0},
  "hostname": "$name",
  "log_directory": "$work/logs/$name",
  "linux": {"cgroup_parent": "/k8s.io/tether-pods-$name"}
}
EOF
    crictl runp --runtime "$h" "$work/$name.pod.json"
}
# start_ctr POD PODNAME CNAME MEM_BYTES CMD...: prints the container id
start_ctr() {
    local pod="$1" pname="$2" cname="$3" mem="$4"; shift 4
    local cmd
    cmd="$(printf '%s\n' "$@" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read().splitlines()))')"
    local res='{}'
    [[ "$mem" != 0 ]] && res="{\"memory_limit_in_bytes\": $mem}"
    cat >"$work/$pname.$cname.json" <<EOF
{
  "metadata": {"name": "$cname", "attempt": 0},
  "image": {"image": "$img"},
  "command": $cmd,
  "log_path": "$cname.log",
  "linux": {"resources": $res}
}
EOF
    local cid
    cid="$(crictl create "$pod" "$work/$pname.$cname.json" "$work/$pname.pod.json")" || return 1
    crictl start "$cid" >/dev/null || return 1
    echo "$cid"
}
# rm_pod POD: stop and remove it and its parent cgroup (named after the pod)
rm_pod() {
    local name
    name="$(crictl inspectp "$1" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"]["metadata"]["name"])' 2>/dev/null)"
    crictl stopp "$1" >/dev/null 2>&1
    crictl rmp -f "$1" >/dev/null 2>&1
    [[ -n "$name" ]] && find /sys/fs/cgroup -maxdepth 3 -type d -name "tether-pods-$name" -exec rmdir {} + 2>/dev/null
    return 0
}
ctr_field() { crictl inspect "$1" 2>/dev/null | python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$2"; }
# wait_for SECONDS CMD...: until CMD succeeds
wait_for() {
    local end=$((SECONDS + $1)); shift
    until "$@"; do
        [[ $SECONDS -ge $end ]] && return 1
        sleep 0.2
    done
}
shim_exe() {
    case "$1" in
        runc) realpath "$(dirname "$CONTAINERD_BIN")/containerd-shim-runc-v2" ;;
        *) realpath "$CRI_SHIM" ;;
    esac
}
# shims_of EXE ID...: the PIDs of processes running EXE whose cwd is the
# bundle of one of the IDs
shims_of() {
    local exe="$1" p cwd id; shift
    for p in /proc/[0-9]*; do
        [[ "$(readlink "$p/exe" 2>/dev/null)" == "$exe" ]] || continue
        cwd="$(readlink "$p/cwd" 2>/dev/null)" || continue
        for id in "$@"; do
            if [[ "$cwd" == "$tasks/$id" ]]; then echo "${p#/proc/}"; break; fi
        done
    done
}
gone() { ! kill -0 "$1" 2>/dev/null; }
is_state() { [[ "$(ctr_field "$1" "d['status']['state']")" == "$2" ]]; }

check_one_shim() {
    local h="$1" pod c1 c2 shims
    pod="$(run_pod "$h" "shim-$h")" || { fail "$h" one-shim-per-pod "runp failed"; return; }
    { c1="$(start_ctr "$pod" "shim-$h" c1 0 sleep 1000)" &&
        c2="$(start_ctr "$pod" "shim-$h" c2 0 sleep 1000)"; } || { fail "$h" one-shim-per-pod "create/start failed"; rm_pod "$pod"; return; }
    mapfile -t shims < <(shims_of "$(shim_exe "$h")" "$pod" "$c1" "$c2")
    note "$h shims for pod ${pod:0:12}: ${shims[*]:-none}"
    if [[ ${#shims[@]} != 1 ]]; then
        fail "$h" one-shim-per-pod "${#shims[@]} shim processes (${shims[*]:-}) for a pod with two containers"
        rm_pod "$pod"; return
    fi
    local both=1 c
    for c in "$c1" "$c2"; do is_state "$c" CONTAINER_RUNNING || both=0; done
    [[ $both == 1 ]] || { fail "$h" one-shim-per-pod "containers not both running"; rm_pod "$pod"; return; }
    { crictl stopp "$pod" >/dev/null && crictl rmp "$pod" >/dev/null; } || { fail "$h" one-shim-per-pod "stopp/rmp failed"; rm_pod "$pod"; return; }
    find /sys/fs/cgroup -maxdepth 3 -type d -name "tether-pods-shim-$h" -exec rmdir {} + 2>/dev/null
    if wait_for 15 gone "${shims[0]}"; then
        pass "$h" one-shim-per-pod
    else
        fail "$h" one-shim-per-pod "shim ${shims[0]} still alive 15 s after stopp + rmp"
    fi
}

check_oom() {
    local h="$1" pod c reason code
    pod="$(run_pod "$h" "oom-$h")" || { fail "$h" oom "runp failed"; return; }
    # A shell variable doubling in size until the 32 MiB limit kills it.
    c="$(start_ctr "$pod" "oom-$h" hog $((32 << 20)) sh -c 'a=xxxxxxxxxxxxxxxx; while :; do a="$a$a"; done')" ||
        { fail "$h" oom "create/start failed"; rm_pod "$pod"; return; }
    if ! wait_for 30 is_state "$c" CONTAINER_EXITED; then
        fail "$h" oom "still $(ctr_field "$c" "d['status']['state']") after 30 s"; rm_pod "$pod"; return
    fi
    reason="$(ctr_field "$c" "d['status']['reason']")"
    code="$(ctr_field "$c" "d['status']['exitCode']")"
    if [[ "$reason" == OOMKilled ]]; then
        pass "$h" oom
    else
        fail "$h" oom "reason '$reason', exit code $code (want OOMKilled)"
    fi
    rm_pod "$pod"
}

check_exec_logs_stats() {
    local h="$1" pod c t0 el rc out
    pod="$(run_pod "$h" "exec-$h")" || { fail "$h" exec-timeout "runp failed"; return; }
    c="$(start_ctr "$pod" "exec-$h" main 0 sh -c 'echo out-line-1; echo err-line-1 >&2; echo out-line-2; exec sleep 1000')" ||
        { fail "$h" exec-timeout "create/start failed"; rm_pod "$pod"; return; }

    # exec-timeout
    t0=$(date +%s%N)
    timeout 30 "$CRICTL" exec --sync --timeout 2 "$c" sleep 10 >"$work/exec-timeout-$h.out" 2>&1
    rc=$?
    el=$(( ($(date +%s%N) - t0) / 1000000 ))
    note "$h exec --timeout 2 sleep 10: exit $rc after $el ms: $(tr '\n' ' ' <"$work/exec-timeout-$h.out" | cut -c1-200)"
    if [[ $rc != 0 && $el -lt 6000 ]]; then
        pass "$h" exec-timeout
    else
        fail "$h" exec-timeout "exit $rc after $el ms (want failure within ~2 s)"
    fi

    # exec-status
    # (crictl 1.34 exits 1 on any non-zero status; it names the status in
    # its message: "command 'sh -c exit 3' exited with 3")
    out="$(crictl exec --sync "$c" sh -c 'exit 3' 2>&1)"
    rc=$?
    if [[ $rc != 0 && "$out" == *"exited with 3"* ]]; then pass "$h" exec-status; else fail "$h" exec-status "exit $rc: $out (want 'exited with 3')"; fi

    # logs
    if wait_for 10 eval '[[ "$(crictl logs "$c" 2>&1)" == *out-line-2* ]]'; then :; fi
    out="$(crictl logs "$c" 2>&1)"
    local lf
    lf="$(ctr_field "$c" "d['status']['logPath']")"
    if [[ "$out" == *out-line-1* && "$out" == *err-line-1* && "$out" == *out-line-2* ]] &&
        grep -q ' stderr F err-line-1$' "$lf" && grep -q ' stdout F out-line-1$' "$lf"; then
        pass "$h" logs
    else
        fail "$h" logs "crictl logs: $(tr '\n' '|' <<<"$out"); log file $lf: $(tr '\n' '|' <"$lf" 2>/dev/null)"
    fi

    # stats
    local s sp
    s="$(crictl stats -o json --id "$c" 2>&1)"
    sp="$(crictl statsp -o json --id "$pod" 2>&1)"
    if python3 - "$c" "$pod" "$s" "$sp" <<'PY'
import json, sys
c, pod, s, sp = sys.argv[1:]
s = [x for x in json.loads(s).get("stats", []) if x["attributes"]["id"] == c]
sp = [x for x in json.loads(sp).get("stats", []) if x["attributes"]["id"] == pod]
assert s and sp, "no entry"
assert int(s[0]["memory"]["workingSetBytes"]["value"]) > 0, "container workingSetBytes 0"
assert "cpu" in s[0] and "usageCoreNanoSeconds" in s[0]["cpu"], "no container cpu"
assert "linux" in sp[0] and sp[0]["linux"].get("cpu"), "no pod cpu"
PY
    then
        pass "$h" stats
    else
        fail "$h" stats "stats: $(tr '\n' ' ' <<<"$s" | cut -c1-400); statsp: $(tr '\n' ' ' <<<"$sp" | cut -c1-400)"
    fi
    rm_pod "$pod"
}

check_crun() {
    local h=tether-crun pod c out
    pod="$(run_pod "$h" "crun")" || { fail "$h" crun "runp failed"; return; }
    c="$(start_ctr "$pod" crun main 0 sh -c 'echo hello-from-crun; exec sleep 1000')" ||
        { fail "$h" crun "create/start failed"; rm_pod "$pod"; return; }
    wait_for 10 eval '[[ "$(crictl logs "$c" 2>&1)" == *hello-from-crun* ]]'
    out="$(crictl logs "$c" 2>&1)"
    local rt="$tasks/$c/runtime.json" root st
    root="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["root"])' "$rt" 2>/dev/null)"
    st="$(crun --root "${root:-/run/containerd/runc/k8s.io}" state "$c" 2>&1)"
    note "tether-crun runtime.json: $(cat "$rt" 2>/dev/null)"
    if [[ "$out" == *hello-from-crun* ]] && is_state "$c" CONTAINER_RUNNING && grep -q crun "$rt" 2>/dev/null &&
        grep -q '"status": *"running"' <<<"$st"; then
        pass "$h" crun
    else
        fail "$h" crun "logs: $out; runtime.json: $(cat "$rt" 2>/dev/null); crun state: $(tr '\n' ' ' <<<"$st" | cut -c1-300)"
    fi
    rm_pod "$pod"
}

check_options() {
    local h=tether-wrapped pod c out
    : "${CRI_WRAPPED_LOG:?}"
    pod="$(run_pod "$h" "options")" || { fail "$h" options "runp failed"; return; }
    c="$(start_ctr "$pod" options main 0 sh -c 'echo hello-from-wrapped; exec sleep 1000')" ||
        { fail "$h" options "create/start failed"; rm_pod "$pod"; return; }
    wait_for 10 eval '[[ "$(crictl logs "$c" 2>&1)" == *hello-from-wrapped* ]]'
    out="$(crictl logs "$c" 2>&1)"
    local rt="$tasks/$c/runtime.json"
    if [[ "$out" == *hello-from-wrapped* ]] && grep -q runc-wrapped "$rt" 2>/dev/null &&
        grep -q "create .*$c" "$CRI_WRAPPED_LOG" 2>/dev/null; then
        pass "$h" options
    else
        fail "$h" options "logs: $out; runtime.json: $(cat "$rt" 2>/dev/null); wrapper log: $(tail -n 3 "$CRI_WRAPPED_LOG" 2>/dev/null)"
    fi
    rm_pod "$pod"
}

check_restart() {
    local h pod c
    declare -A rpod rctr rpid
    for h in "${handlers[@]}"; do
        pod="$(run_pod "$h" "restart-$h")" || { fail "$h" restart "runp failed"; continue; }
        c="$(start_ctr "$pod" "restart-$h" main 0 sleep 1000)" || { fail "$h" restart "create/start failed"; rm_pod "$pod"; continue; }
        rpod[$h]="$pod" rctr[$h]="$c" rpid[$h]="$(ctr_field "$c" "d['info']['pid']")"
    done
    local new
    if ! new="$("$CRI_RESTART")"; then
        for h in "${!rpod[@]}"; do fail "$h" restart "containerd did not come back"; done
        return
    fi
    note "containerd restarted: pid $new"
    for h in "${handlers[@]}"; do
        [[ -n "${rpod[$h]:-}" ]] || continue
        pod="${rpod[$h]}" c="${rctr[$h]}"
        local ps cs pid out why=""
        ps="$(crictl inspectp "$pod" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"]["state"])')"
        cs="$(ctr_field "$c" "d['status']['state']")"
        pid="$(ctr_field "$c" "d['info']['pid']")"
        out="$(crictl exec --sync "$c" echo exec-after-restart 2>&1)"
        [[ "$ps" == SANDBOX_READY ]] || why+="pod $ps; "
        [[ "$cs" == CONTAINER_RUNNING ]] || why+="container $cs; "
        [[ "$pid" == "${rpid[$h]}" && -n "$pid" ]] || why+="pid ${rpid[$h]} -> $pid; "
        [[ "$out" == *exec-after-restart* ]] || why+="exec: $out; "
        if [[ -z "$why" ]]; then pass "$h" restart; else fail "$h" restart "$why"; fi
        rm_pod "$pod"
    done
}

# The writer of output-away: ARG lines "line N", one about every millisecond
# (a 1 ms read timeout on a FIFO nobody writes: no fork), timing each echo
# (the write(2) into the container's stdout) with $EPOCHREALTIME; last, a
# summary line with the longest write in microseconds and how many took
# over 100 ms.
# (One line: start_ctr passes each line as an argument.)
writer='d=$(mktemp -d); mkfifo $d/tick; exec 3<>$d/tick; n=$1; i=1; max=0; slow=0; '\
'while [ $i -le $n ]; do t0=${EPOCHREALTIME/./}; echo "line $i"; t1=${EPOCHREALTIME/./}; '\
'g=$((t1-t0)); [ $g -gt $max ] && max=$g; [ $g -gt 100000 ] && slow=$((slow+1)); '\
'read -t 0.001 x <&3; i=$((i+1)); done; '\
'echo "writer done: $n lines; longest write $max us; writes over 100 ms: $slow"'

# output-away: a pod of each handler writes a numbered line every ~1 ms;
# containerd is SIGKILLed, stays away CRI_AWAY_SECONDS (30) and is started
# again while they write. Each container's writes must never have taken
# over 100 ms (its own measure), and its CRI log file must hold every line,
# in order, then the writer's summary. For the handlers other than tether
# (the Go shim) the result is printed as SEEN, not counted: their writes
# block once the pipe and the FIFO are full.
check_output_away() {
    local h pod c n="${CRI_OUTPUT_LINES:-50000}" away="${CRI_AWAY_SECONDS:-30}"
    declare -A opod octr
    for h in "${handlers[@]}"; do
        pod="$(run_pod "$h" "output-$h")" || { fail "$h" output-away "runp failed"; continue; }
        c="$(start_ctr "$pod" "output-$h" main 0 sh -c "$writer" writer "$n")" ||
            { fail "$h" output-away "create/start failed"; rm_pod "$pod"; continue; }
        opod[$h]="$pod" octr[$h]="$c"
    done
    for h in "${!octr[@]}"; do
        local lf
        lf="$(ctr_field "${octr[$h]}" "d['status']['logPath']")"
        wait_for 30 eval '[[ $(wc -l <"$lf" 2>/dev/null || echo 0) -ge 1000 ]]' ||
            note "$h: fewer than 1000 lines logged after 30 s"
    done
    local old
    old="$(cat "$CRI_TMP/containerd.pid")"
    [[ "$(readlink "/proc/$old/exe" 2>/dev/null)" == "$(realpath "$CONTAINERD_BIN")" ]] && kill -KILL "$old"
    note "containerd $old SIGKILLed; away for $away s"
    sleep "$away"
    local new
    if ! new="$("$CRI_RESTART" --no-kill)"; then
        for h in "${!opod[@]}"; do fail "$h" output-away "containerd did not come back"; done
        return
    fi
    note "containerd restarted: pid $new"
    for h in "${handlers[@]}"; do
        [[ -n "${octr[$h]:-}" ]] || continue
        c="${octr[$h]}" pod="${opod[$h]}"
        local lf why
        wait_for 300 is_state "$c" CONTAINER_EXITED || note "$h: still $(ctr_field "$c" "d['status']['state']") after 300 s"
        lf="$(ctr_field "$c" "d['status']['logPath']")"
        why="$(python3 - "$lf" "$n" <<'PY'
import re, sys
path, n = sys.argv[1], int(sys.argv[2])
want, summary, problems = 1, None, []
for raw in open(path, errors="replace"):
    parts = raw.rstrip("\n").split(" ", 3)
    if len(parts) < 4 or parts[1] != "stdout":
        continue
    text = parts[3]
    if text.startswith("writer done:"):
        summary = text
        continue
    m = re.fullmatch(r"line (\d+)", text)
    if not m or int(m.group(1)) != want:
        problems.append(f"line {want} expected, got {text[:40]!r}")
        break
    want += 1
if want != n + 1:
    problems.append(f"{want - 1} of {n} lines in order")
if summary is None:
    problems.append("no writer summary")
else:
    m = re.search(r"longest write (\d+) us; writes over 100 ms: (\d+)", summary)
    if not m or int(m.group(1)) > 100000:
        problems.append(summary)
print("; ".join(problems) if problems else "ok: " + (summary or ""))
PY
)"
        if [[ "$why" == ok:* ]]; then
            note "$h: ${why#ok: }"
            if [[ "$h" == tether* ]]; then pass "$h" output-away; else echo "SEEN $h output-away: ok"; fi
        elif [[ "$h" == tether* ]]; then
            fail "$h" output-away "$why"
        else
            echo "SEEN $h output-away: $why"
        fi
        rm_pod "$pod"
    done
}

want() { [[ " $checks " == *" $1 "* ]]; }
checks=" ${CRI_PODS_CHECKS:-pods crun options restart} "
crictl pull "$img" >/dev/null || { echo "0 passed, 1 failed (could not pull $img)"; exit 1; }
if want pods; then
    for h in "${handlers[@]}"; do
        check_one_shim "$h"
        check_oom "$h"
        check_exec_logs_stats "$h"
    done
fi
want crun && check_crun
want options && check_options
want restart && check_restart
want output && check_output_away

for h in "${handlers[@]}" tether-crun tether-wrapped; do
    [[ -n "${npass[$h]:-}${nfail[$h]:-}" ]] && echo "$h: ${npass[$h]:-0} passed, ${nfail[$h]:-0} failed"
done
echo "$total_pass passed, $total_fail failed"
[[ $total_fail == 0 ]]
