# shellcheck shell=bash
# shellcheck disable=SC2154 # repo, peers, cd_bin, tool: set by systemd-suite.sh before it sources this
# The ctr checks of scripts/guest/systemd-suite.sh (sourced through lib.sh):
# one shim with one runc, SystemdCgroup on, every container in a transient
# scope `systemd-suite-ID.scope` of system.slice (ctr --cgroup
# system.slice:systemd-suite:ID).

checks() { # SHIM(tether|go) RUNC-LABEL RUNC-BIN
    local shim_kind="$1" label="$2" runc_bin="$3"
    local tag="$shim_kind-${label//[^A-Za-z0-9]/-}"
    local id="$tag" opts root out status scope pid
    read -r -a opts <<<"$(rt "$shim_kind" "$runc_bin")"
    root="$SUITE_WORK/root-$id"
    mkroot "$root"
    # ctr's --rootfs is a flag: the rootfs dir is the first argument.
    run_opts=("${opts[@]}" --env PATH=/bin)
    say "checks: $shim_kind with runc $label"

    # Exit codes, through a foreground ctr run.
    out="$(c run --rm "${run_opts[@]}" --cgroup "system.slice:systemd-suite:$id-x" --rootfs "$root" "$id-x" sh -c 'echo hello; exit 7' 2>&1)"
    status=$?
    check "$shim_kind" "$label" "run: output and exit code" "hello 7" "$(tr -d '\r' <<<"$out" | paste -sd ' ') $status"

    # A long-running container: its scope, exec, a terminal, metrics,
    # Update, pause.
    id="$tag-l"
    scope="$(scope_of "$id")"
    if ! c run -d "${run_opts[@]}" --cgroup "system.slice:systemd-suite:$id" --rootfs "$root" "$id" sleep 600 >/dev/null 2>&1; then
        fail "$shim_kind" "$label" "run -d" "ctr run failed"
        cleanup_task "$id"
        return
    fi
    pid="$(task_pid "$id")"
    check "$shim_kind" "$label" "the container is in its scope" \
        "/system.slice/systemd-suite-$id.scope" "$(cgroup_of "$pid")"
    check "$shim_kind" "$label" "systemd knows the scope" active \
        "$(systemctl is-active "systemd-suite-$id.scope" 2>&1)"

    out="$(c task exec --exec-id e1 "$id" sh -c 'echo from-exec; exit 3' 2>&1)"
    status=$?
    check "$shim_kind" "$label" "exec: output and exit code" "from-exec 3" "$(tr -d '\r' <<<"$out" | paste -sd ' ') $status"
    # ctr -t needs a terminal of its own: script(1) gives it one.
    out="$(script -qec "$cd_bin/ctr --address $sock --namespace systemd-suite task exec -t --exec-id e2 $id tty" /dev/null 2>&1 </dev/null)"
    check "$shim_kind" "$label" "exec with a terminal" "/dev/pts/0" "$(tr -d '\r' <<<"$out" | grep -o '/dev/pts/[0-9]*' | head -n1)"

    metrics_check "$shim_kind" "$label" "$id" "$scope"
    update_check "$shim_kind" "$label" "$id" "$scope"

    c task pause "$id" >/dev/null 2>&1
    check "$shim_kind" "$label" "pause: frozen, PAUSED" "frozen 1 PAUSED" \
        "$(grep '^frozen' "$scope/cgroup.events" 2>/dev/null) $(task_status "$id")"
    c task resume "$id" >/dev/null 2>&1
    check "$shim_kind" "$label" "resume: thawed, RUNNING" "frozen 0 RUNNING" \
        "$(grep '^frozen' "$scope/cgroup.events" 2>/dev/null) $(task_status "$id")"

    # Kill: SIGKILL, and the exit status through a foreground ctr.
    cleanup_task "$id"
    id="$tag-k"
    c run --rm "${run_opts[@]}" --cgroup "system.slice:systemd-suite:$id" --rootfs "$root" "$id" sleep 600 >/dev/null 2>&1 &
    local fg=$!
    waitfor 30 test -n "$(task_pid "$id")"
    c task kill -s KILL "$id" >/dev/null 2>&1
    wait "$fg"
    status=$?
    check "$shim_kind" "$label" "kill -s KILL: exit status 137" 137 "$status"
    waitfor 10 test ! -d "$(scope_of "$id")"
    check "$shim_kind" "$label" "the scope goes with the task" gone \
        "$([[ -d $(scope_of "$id") ]] && echo there || echo gone)"

    oom_check "$shim_kind" "$label" "$id-oom" "$root"
}

# Metrics against the scope's own files: pids and the memory limit exactly,
# memory usage and CPU time as the files had them around the call.
metrics_check() { # SHIM LABEL ID SCOPE
    local json got
    json="$(c task metrics --format json "$3" 2>&1)"
    got="$(METRICS="$json" python3 - "$4" 2>&1 <<'EOF'
import json, os, sys
scope = sys.argv[1]
try:
    m = json.loads(os.environ["METRICS"])
except ValueError:
    print("ctr task metrics: " + os.environ["METRICS"][:300].replace("\n", " "))
    sys.exit()
def f(name):
    return open(f"{scope}/{name}").read().split()
pids = m.get("pids", {}).get("current")
mem = m.get("memory", {})
usage = mem.get("usage")
limit = mem.get("usage_limit")
cpu = m.get("cpu", {}).get("usage_usec")
cur = int(f("memory.current")[0])
mx = f("memory.max")[0]
mx = 2**64 - 1 if mx == "max" else int(mx)
stat = dict(zip(*[iter(open(f"{scope}/cpu.stat").read().split())] * 2))
problems = []
if pids != int(f("pids.current")[0]):
    problems.append(f"pids {pids} vs {f('pids.current')[0]}")
if usage is None or abs(usage - cur) > max(cur // 4, 4 << 20):
    problems.append(f"memory usage {usage} vs memory.current {cur}")
if limit is None or (limit != mx and not (mx == 2**64 - 1 and limit >= 2**62)):
    problems.append(f"memory limit {limit} vs memory.max {mx}")
if cpu is None or cpu <= 0 or cpu > int(stat["usage_usec"]):
    problems.append(f"cpu usage_usec {cpu} vs cpu.stat {stat['usage_usec']}")
print("; ".join(problems) or "consistent")
EOF
)"
    check "$1" "$2" "metrics match the scope's files" consistent "$got"
}

# Update of memory.max, cpu.max and pids.max through the Task API (ctr 2.x
# has no `task update`; the test binary's update_through_the_task_api sends
# it to the shim), read back from the scope.
update_check() { # SHIM LABEL ID SCOPE
    local err
    err="$(task_update "$3" '{"memory": {"limit": 67108864}, "cpu": {"quota": 50000, "period": 100000}, "pids": {"limit": 77}}' 2>&1)" || true
    check "$1" "$2" "update: memory.max, cpu.max, pids.max" "67108864 50000 100000 77" \
        "$(cat "$4/memory.max" "$4/cpu.max" "$4/pids.max" 2>/dev/null | paste -sd ' ')${err:+ ($(tail -n 3 <<<"$err" | paste -sd ' '))}"
}
# task_update ID RESOURCES-JSON: Update straight to the task's shim.
task_update() {
    local b=/run/containerd/io.containerd.runtime.v2.task/systemd-suite/$1 address
    address="$(cat "$b/address" 2>/dev/null)"
    [[ -n $address ]] || address="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["address"])' "$b/bootstrap.json")"
    local out
    out="$(TETHER_UPDATE_ADDRESS="$address" TETHER_UPDATE_ID="$1" TETHER_UPDATE_RESOURCES="$2" \
        timeout 60 "$tool" --ignored --exact update_through_the_task_api --quiet 2>&1)" && return 0
    grep -A2 -m1 -E "panicked" <<<"$out" | paste -sd ' ' | grep . || tail -n 3 <<<"$out"
    return 1
}

# The OOM check alone, N times (SYSTEMD_SUITE_OOM_ONLY).
oom_checks() { # SHIM RUNC-LABEL RUNC-BIN N
    local tag="$1-${2//[^A-Za-z0-9]/-}" opts root i
    read -r -a opts <<<"$(rt "$1" "$3")"
    root="$SUITE_WORK/root-$tag-oom"
    mkroot "$root"
    run_opts=("${opts[@]}" --env PATH=/bin)
    for ((i = 1; i <= $4; i++)); do
        oom_check "$1" "$2" "$tag-oom$i" "$root"
    done
}

# OOM: /tasks/oom once for the container, before its /tasks/exit, and the
# exit status 137.
oom_check() { # SHIM LABEL ID ROOTFS
    local events="$SUITE_WORK/events-$3" ev status root="$4"
    c events >"$events" 2>&1 &
    ev=$!
    sleep 1
    # shellcheck disable=SC2016 # expanded by the container's sh
    c run --rm "${run_opts[@]}" --memory-limit 33554432 --cgroup "system.slice:systemd-suite:$3" --rootfs "$root" "$3" \
        sh -c 'x=0123456789; while :; do x=$x$x; done' >/dev/null 2>&1
    status=$?
    sleep 1
    kill "$ev" 2>/dev/null
    wait "$ev" 2>/dev/null
    local order
    # Lines: TIME NAMESPACE TOPIC EVENT (TIME has spaces).
    order="$(grep -F "\"$3\"" "$events" | grep -oE ' /tasks/(oom|exit) ' | tr -d ' ' | paste -sd ' ')"
    check "$1" "$2" "OOM: exit 137, one /tasks/oom before /tasks/exit" "137 /tasks/oom /tasks/exit" "$status $order"
    # The events and what containerd's journal says of the container, for
    # the post-mortem.
    [[ "$status $order" == "137 /tasks/oom /tasks/exit" ]] ||
        { grep -F "\"$3\"" "$events"; journalctl -u containerd -o short-monotonic --no-pager | grep -F "$3" | tail -n 30; } |
        sed 's/^/systemd-suite: /' >&2
    c container delete "$3" >/dev/null 2>&1
}
