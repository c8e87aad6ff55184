#!/usr/bin/env bash
# Kubernetes checks on a one-node cluster (scripts/kube/cluster.sh), run by
# scripts/kube-e2e.sh inside `scripts/critest.sh --exec` (a private containerd
# with the CRI plugin and the runtime handlers runc, tether and
# tether-sandbox). Needs
# KUBE_BIN (scripts/kube/build.sh's bin dir) and critest.sh's environment.
#
# Every check runs for the RuntimeClass `tether` (handler tether, this
# repository's shim), `tether-sandbox` (the same shim as the pods' sandbox:
# no pause) and `runc` (containerd's Go shim), each in a namespace of its
# own, in the same run:
#
#   running          a pod reaches Running, and its container is run by the
#                    handler's shim (CRI's runtimeType and the shim's exe)
#   describe         `kubectl describe pod` of that pod has the fields, states,
#                    conditions and events (type, reason, source) of the runc
#                    handler's pod (for runc: it describes at all)
#   logs             `kubectl logs` shows its stdout and stderr lines
#   exec             `kubectl exec` returns the command's exit code (7) and output
#   liveness         an exec liveness probe that starts failing restarts the
#                    container (restart count goes up)
#   oom              a container over its 32 MiB limit ends with reason OOMKilled
#   job              a Job whose pod exits 0 completes
#   exit-code        a pod that exits 3 shows exit code 3
#   two-containers   a pod with two containers: one shim process serves the
#                    pod, and both containers' init processes are its children
#   containerd-restart  containerd SIGKILLed and restarted while the pods run:
#                    the pod stays Running and Ready with the same container
#                    PID and restart count, and `kubectl exec` still works
#   graceful-delete  `kubectl delete pod` (grace period 30 s): SIGTERM reaches
#                    the container, whose trap writes to a hostPath file, and
#                    the pod is gone well within the grace period
#   userns           a `hostUsers: false` pod (user namespaces: runc 1.2+,
#                    which the handler's `-info` features advertise): its
#                    /proc/self/uid_map maps uid 0 to a host uid other than 0,
#                    it reads its ConfigMap volume's file and writes and reads
#                    its emptyDir, its init runs as that host uid, and
#                    `kubectl exec` works in it and sees the same mapping
#
# Output: `PASS|FAIL HANDLER CHECK [why]` a line, then `N passed, M failed`
# as the last line. Exit status 0 when nothing failed, 2 when the cluster
# could not be set up.
set -uo pipefail
: "${KUBE_BIN:?}" "${CRI_TMP:?run through scripts/critest.sh --exec}" "${CRICTL:?}" "${CRI_BUSYBOX_IMAGE:?}"
here="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=cluster.sh
source "$here/scripts/kube/cluster.sh"
export CRI_CONFIG_FILE="${CRI_CONFIG_FILE:-$CRI_TMP/crictl.yaml}"
read -r -a handlers <<<"${KUBE_HANDLERS:-tether tether-sandbox runc}"
img="$CRI_BUSYBOX_IMAGE"
tasks="$CONTAINERD_STATE/io.containerd.runtime.v2.task/k8s.io"
# Where containerd puts a shim sandbox's bundle (handler tether-sandbox).
sandboxes="$CONTAINERD_STATE/io.containerd.sandbox.controller.v1.shim/k8s.io"
crictl() { "$CRICTL" "$@"; }

total_pass=0 total_fail=0
pass() { echo "PASS $1 $2"; total_pass=$((total_pass + 1)); }
fail() { echo "FAIL $1 $2: $3"; total_fail=$((total_fail + 1)); }

finish() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ ${#kube_pids[@]} -gt 0 ]]; then
        # Pods first (graceful, through the kubelet), then the components.
        local h
        for h in "${handlers[@]}"; do kubectl delete namespace "e2e-$h" --wait=false >/dev/null 2>&1; done
        for h in "${handlers[@]}"; do
            timeout 90 "$KUBE_BIN/kubectl" --kubeconfig "$kube_dir/admin.kubeconfig" wait --for=delete "namespace/e2e-$h" --timeout=80s >/dev/null 2>&1 ||
                klog "namespace e2e-$h not gone after 80 s"
        done
        cluster_down
    fi
    echo "$total_pass passed, $total_fail failed"
    # (an EXIT trap that does not call exit keeps the script's status)
    if [[ $rc == 2 ]]; then exit 2; fi
    if [[ $total_fail != 0 ]]; then exit 1; fi
    exit 0
}
trap finish EXIT
trap 'exit 2' INT TERM

runtime_type() { case "$1" in runc) echo io.containerd.runc.v2 ;; *) echo io.containerd.tether.v2 ;; esac; }
shim_exe() {
    case "$1" in
        runc) realpath "$(dirname "$CONTAINERD_BIN")/containerd-shim-runc-v2" ;;
        *) realpath "$CRI_SHIM" ;;
    esac
}
# jsonpath NS POD EXPR: kubectl get pod -o jsonpath
jp() { kubectl -n "$1" get pod "$2" -o "jsonpath=$3" 2>/dev/null; }
# cid NS POD [INDEX]: the containerd id of the pod's INDEXth container
cid() { local id; id="$(jp "$1" "$2" "{.status.containerStatuses[${3:-0}].containerID}")"; echo "${id#containerd://}"; }
crictl_field() { crictl inspect "$1" 2>/dev/null | python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$2" 2>/dev/null; }
# wait_for SECONDS CMD...: until CMD succeeds
wait_for() {
    local end=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        [[ $SECONDS -ge $end ]] && return 1
        sleep 0.5
    done
}
ready() { [[ "$(jp "$1" "$2" '{.status.conditions[?(@.type=="Ready")].status}')" == True ]]; }
terminated() { [[ -n "$(jp "$1" "$2" '{.status.containerStatuses[0].state.terminated.reason}')" ]]; }
restarted() { [[ "$(jp "$1" "$2" '{.status.containerStatuses[0].restartCount}')" -ge 1 ]]; }
job_complete() { [[ "$(kubectl -n "$1" get job "$2" -o 'jsonpath={.status.conditions[?(@.type=="Complete")].status}' 2>/dev/null)" == True ]]; }

manifests() { # HANDLER
    local h="$1" ns="e2e-$1"
    cat <<EOF
apiVersion: v1
kind: Namespace
metadata: {name: $ns}
---
apiVersion: v1
kind: Pod
metadata: {name: hello, namespace: $ns}
spec:
  runtimeClassName: $h
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: $img
    command: [sh, -c, 'echo hello-from-$h; echo to-stderr-$h >&2; exec sleep 3600']
---
apiVersion: v1
kind: Pod
metadata: {name: liveness, namespace: $ns}
spec:
  runtimeClassName: $h
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: $img
    command: [sh, -c, 'touch /tmp/healthy; sleep 6; rm -f /tmp/healthy; exec sleep 3600']
    livenessProbe:
      exec: {command: [cat, /tmp/healthy]}
      initialDelaySeconds: 1
      periodSeconds: 2
      failureThreshold: 1
---
apiVersion: v1
kind: Pod
metadata: {name: oom, namespace: $ns}
spec:
  runtimeClassName: $h
  restartPolicy: Never
  containers:
  - name: hog
    image: $img
    command: [sh, -c, 'a=xxxxxxxxxxxxxxxx; while :; do a="\$a\$a"; done']
    resources:
      limits: {memory: 32Mi}
---
apiVersion: v1
kind: Pod
metadata: {name: exit3, namespace: $ns}
spec:
  runtimeClassName: $h
  restartPolicy: Never
  containers:
  - name: main
    image: $img
    command: [sh, -c, 'echo bye; exit 3']
---
apiVersion: batch/v1
kind: Job
metadata: {name: ok, namespace: $ns}
spec:
  backoffLimit: 0
  template:
    spec:
      runtimeClassName: $h
      restartPolicy: Never
      containers:
      - name: main
        image: $img
        command: [sh, -c, 'echo job-done; exit 0']
---
apiVersion: v1
kind: Pod
metadata: {name: two, namespace: $ns}
spec:
  runtimeClassName: $h
  terminationGracePeriodSeconds: 1
  containers:
  - name: a
    image: $img
    command: [sleep, "3600"]
  - name: b
    image: $img
    command: [sleep, "3600"]
---
apiVersion: v1
kind: Pod
metadata: {name: term, namespace: $ns}
spec:
  runtimeClassName: $h
  terminationGracePeriodSeconds: 30
  volumes:
  - name: out
    hostPath: {path: $kube_dir/term-$h, type: DirectoryOrCreate}
  containers:
  - name: main
    image: $img
    volumeMounts: [{name: out, mountPath: /out}]
    command: [sh, -c, 'trap "echo TERM >/out/term; exit 0" TERM; echo up >/out/up; while :; do sleep 0.2; done']
---
apiVersion: v1
kind: ConfigMap
metadata: {name: userns-data, namespace: $ns}
data: {greeting: hello-userns-$h}
---
apiVersion: v1
kind: Pod
metadata: {name: userns, namespace: $ns}
spec:
  runtimeClassName: $h
  hostUsers: false
  terminationGracePeriodSeconds: 1
  volumes:
  - name: cfg
    configMap: {name: userns-data}
  - name: scratch
    emptyDir: {}
  containers:
  - name: main
    image: $img
    volumeMounts: [{name: cfg, mountPath: /cfg}, {name: scratch, mountPath: /scratch}]
    command: [sh, -c, 'echo "map \$(head -n1 /proc/self/uid_map)"; echo "cfg \$(cat /cfg/greeting)"; echo w-$h >/scratch/f && echo "scratch \$(cat /scratch/f)"; exec sleep 3600']
EOF
}

check_running() {
    local h="$1" ns="e2e-$1" c rt shims
    if ! wait_for 180 ready "$ns" hello; then
        fail "$h" running "not Ready after 180 s: $(jp "$ns" hello '{.status.phase} {.status.containerStatuses[0].state}')"
        return
    fi
    c="$(cid "$ns" hello)"
    rt="$(crictl_field "$c" "d['info']['runtimeType']")"
    shims="$(shim_pids "$(shim_exe "$h")" "$c" "$(pod_sandbox "$ns" hello)")"
    if [[ "$rt" != "$(runtime_type "$h")" ]]; then
        fail "$h" running "runtimeType $rt, want $(runtime_type "$h")"
    elif [[ -z "$shims" ]]; then
        fail "$h" running "no $(shim_exe "$h") process for the pod"
    else
        pass "$h" running
    fi
}

# pod_sandbox NS POD: the pod's sandbox id
# (crictl's filters are regular expressions: anchored, or e2e-tether would
# match e2e-tether-sandbox too)
pod_sandbox() { crictl pods --namespace "^$1\$" --name "^$2\$" --state ready -q 2>/dev/null | head -n1; }
# shim_pids EXE ID...: processes running EXE whose cwd is one of the IDs'
# bundle (a task's, or for tether-sandbox the pod's sandbox bundle); the
# pods' holders (the same binary) are not shims
shim_pids() {
    local exe="$1" p cwd id; shift
    for p in /proc/[0-9]*; do
        [[ "$(readlink "$p/exe" 2>/dev/null)" == "$exe" ]] || continue
        [[ "$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null)" == *--tether-pod-holder* ]] && continue
        cwd="$(readlink "$p/cwd" 2>/dev/null)" || continue
        for id in "$@"; do
            [[ -n "$id" && ( "$cwd" == "$tasks/$id" || "$cwd" == "$sandboxes/$id" ) ]] &&
                { echo "${p#/proc/}"; break; }
        done
    done
}
ppid_of() { awk '{sub(/^.*\) /, ""); print $2}' "/proc/$1/stat" 2>/dev/null; }

# describe_shape NS POD: `kubectl describe pod` without what differs from
# pod to pod: each "Key:" line (indented as shown) with the value kept only
# for the state keys, and the events as "type reason from"
describe_shape() {
    kubectl -n "$1" describe pod "$2" 2>/dev/null | python3 -c '
import re, sys
keep = {"Status", "Ready", "State", "Reason", "Restart Count", "QoS Class",
        "Initialized", "ContainersReady", "PodScheduled", "PodReadyToStartContainers"}
events, seen = False, set()
for line in sys.stdin.read().splitlines():
    if line.startswith("Events:"):
        events = True
        continue
    if events:
        cols = line.split()
        if len(cols) >= 4 and cols[0] in ("Normal", "Warning"):
            # an age may read "5s (x3 over 10s)". Left out, as not the doing of
            # the runtime: events of the scheduler (pods made before the node
            # is ready) and of image pulls (the first pod pulls, and the pull
            # rate limit of the kubelet may fail one and retry)
            grouped = cols[3].startswith("(x") and len(cols) > 6
            source = cols[6] if grouped else cols[3]
            message = " ".join(cols[7:] if grouped else cols[4:])
            if source != "default-scheduler" and cols[1] != "Pulling" \
                    and "ImagePull" not in message and "pull image" not in message:
                seen.add(" ".join(["event", cols[0], cols[1], source]))
        continue
    line = re.sub(r"kube-api-access-[a-z0-9]+", "kube-api-access-*", line)
    m = re.match(r"^(\s*)([A-Za-z][\w ./*-]*?):(\s+(.*))?$", line)
    if m:
        value = (m.group(4) or "").strip()
        print(m.group(1) + m.group(2) + (": " + value if m.group(2) in keep else ""))
print("\n".join(sorted(seen)))
'
}

# check_describe HANDLER: `kubectl describe pod` of the handler's running pod
# has the same fields, states and events as the runc handler's (pause-based
# and shim-sandboxed pods look alike to Kubernetes)
check_describe() {
    local h="$1" mine want
    mine="$(describe_shape "e2e-$h" hello)"
    want="$(describe_shape e2e-runc hello)"
    if [[ -z "$mine" || -z "$want" ]]; then
        fail "$h" describe "kubectl describe pod gave nothing (${#mine}, runc ${#want} bytes)"
    elif [[ "$mine" != "$want" ]]; then
        fail "$h" describe "differs from the runc handler's pod: $(diff <(echo "$want") <(echo "$mine") | head -c 600 | tr '\n' '|') warnings: $(kubectl -n "e2e-$h" get events --field-selector involvedObject.name=hello,type=Warning -o 'jsonpath={range .items[*]}{.reason}: {.message}; {end}' 2>/dev/null | head -c 600)"
    else
        pass "$h" describe
    fi
}

check_logs_exec() {
    local h="$1" ns="e2e-$1" out rc
    ready "$ns" hello || { fail "$h" logs "pod not Ready"; fail "$h" exec "pod not Ready"; return; }
    out="$(kubectl -n "$ns" logs hello 2>&1)"
    if grep -qx "hello-from-$h" <<<"$out" && grep -qx "to-stderr-$h" <<<"$out"; then
        pass "$h" logs
    else
        fail "$h" logs "kubectl logs said: $(head -c 300 <<<"$out")"
    fi
    out="$(kubectl -n "$ns" exec hello -- sh -c 'echo in-exec; exit 7' 2>&1)"
    rc=$?
    if [[ $rc == 7 ]] && grep -qx in-exec <<<"$out"; then
        pass "$h" exec
    else
        fail "$h" exec "exit $rc, output: $(head -c 300 <<<"$out")"
    fi
}

check_liveness() {
    local h="$1" ns="e2e-$1" last lived events
    if ! wait_for 120 restarted "$ns" liveness; then
        fail "$h" liveness "restart count $(jp "$ns" liveness '{.status.containerStatuses[0].restartCount}') after 120 s"
        return
    fi
    # The restart came from the probe failing, not from a probe that never
    # worked: the first run was killed (137) after living through the probes
    # that found /tmp/healthy (about 6 s), and the kubelet says why.
    last="$(jp "$ns" liveness '{.status.containerStatuses[0].lastState.terminated}')"
    lived="$(python3 -c '
import json, sys
from datetime import datetime
t = json.loads(sys.argv[1])
f = lambda k: datetime.strptime(t[k], "%Y-%m-%dT%H:%M:%SZ")
print(t["exitCode"], int((f("finishedAt") - f("startedAt")).total_seconds()))
' "$last" 2>/dev/null)"
    events="$(kubectl -n "$ns" get events --field-selector involvedObject.name=liveness -o 'jsonpath={range .items[*]}{.reason}: {.message}{"\n"}{end}' 2>&1)"
    if [[ ${lived%% *} != 137 || ${lived##* } -lt 5 ]]; then
        fail "$h" liveness "first run ended (exit code, seconds) ${lived:-?}: $last"
    elif ! grep -q '^Unhealthy: Liveness probe failed' <<<"$events"; then
        fail "$h" liveness "no failed-probe event: $(head -c 300 <<<"$events")"
    else
        pass "$h" liveness
    fi
}

check_oom() {
    local h="$1" ns="e2e-$1" reason
    wait_for 120 terminated "$ns" oom
    reason="$(jp "$ns" oom '{.status.containerStatuses[0].state.terminated.reason}')"
    if [[ "$reason" == OOMKilled ]]; then
        pass "$h" oom
    else
        fail "$h" oom "reason '${reason:-none}': $(jp "$ns" oom '{.status.containerStatuses[0].state}')"
    fi
}

check_job_exit() {
    local h="$1" ns="e2e-$1" code
    if wait_for 120 job_complete "$ns" ok; then
        pass "$h" job
    else
        fail "$h" job "not Complete after 120 s: $(kubectl -n "$ns" get job ok -o 'jsonpath={.status}' 2>&1 | head -c 300)"
    fi
    wait_for 120 terminated "$ns" exit3
    code="$(jp "$ns" exit3 '{.status.containerStatuses[0].state.terminated.exitCode}')"
    if [[ "$code" == 3 ]]; then
        pass "$h" exit-code
    else
        fail "$h" exit-code "exit code '${code:-none}': $(jp "$ns" exit3 '{.status.containerStatuses[0].state}')"
    fi
}

check_two() {
    local h="$1" ns="e2e-$1" sb a b shims pa pb
    if ! wait_for 120 ready "$ns" two; then fail "$h" two-containers "not Ready after 120 s"; return; fi
    sb="$(pod_sandbox "$ns" two)" a="$(cid "$ns" two 0)" b="$(cid "$ns" two 1)"
    mapfile -t shims < <(shim_pids "$(shim_exe "$h")" "$sb" "$a" "$b")
    pa="$(crictl_field "$a" "d['info']['pid']")" pb="$(crictl_field "$b" "d['info']['pid']")"
    echo "     $h pod two: sandbox ${sb:0:12}, shims ${shims[*]:-none}, container pids $pa $pb (parents $(ppid_of "$pa") $(ppid_of "$pb"))" >&2
    if [[ ${#shims[@]} != 1 ]]; then
        fail "$h" two-containers "${#shims[@]} shim processes (${shims[*]:-}) for the pod"
    elif [[ "$(ppid_of "$pa")" != "${shims[0]}" || "$(ppid_of "$pb")" != "${shims[0]}" ]]; then
        fail "$h" two-containers "container init parents $(ppid_of "$pa") $(ppid_of "$pb"), shim ${shims[0]}"
    else
        pass "$h" two-containers
    fi
}

# The restart check, for all handlers at once: containerd SIGKILLed and
# restarted with every handler's `hello` pod running.
check_restart() {
    declare -A pid0 rc0 cid0 shim0
    local h ns c
    for h in "${handlers[@]}"; do
        ns="e2e-$h"
        c="$(cid "$ns" hello)"
        cid0[$h]="$c"
        pid0[$h]="$(crictl_field "$c" "d['info']['pid']")"
        shim0[$h]="$(ppid_of "${pid0[$h]}")"
        rc0[$h]="$(jp "$ns" hello '{.status.containerStatuses[0].restartCount}')"
    done
    if ! "$CRI_RESTART" >/dev/null; then
        for h in "${handlers[@]}"; do fail "$h" containerd-restart "containerd did not come back"; done
        return
    fi
    # Let the kubelet notice (PLEG relists every second; the node status
    # every 10 s) and act, if it were to act, before judging.
    sleep 20
    for h in "${handlers[@]}"; do
        ns="e2e-$h"
        local phase rc pid out c
        phase="$(jp "$ns" hello '{.status.phase}')"
        rc="$(jp "$ns" hello '{.status.containerStatuses[0].restartCount}')"
        c="$(cid "$ns" hello)"
        pid="$(crictl_field "$c" "d['info']['pid']")"
        out="$(kubectl -n "$ns" exec hello -- echo still-here 2>&1)"
        if [[ "$phase" != Running ]] || ! ready "$ns" hello; then
            fail "$h" containerd-restart "phase $phase, Ready $(jp "$ns" hello '{.status.conditions[?(@.type=="Ready")].status}')"
        elif [[ "$rc" != "${rc0[$h]}" || "$pid" != "${pid0[$h]}" || "$c" != "${cid0[$h]}" ]]; then
            fail "$h" containerd-restart "restart count ${rc0[$h]} -> $rc, container ${cid0[$h]:0:12} -> ${c:0:12}, pid ${pid0[$h]} -> $pid"
        elif [[ -z "${shim0[$h]}" || "$(ppid_of "$pid")" != "${shim0[$h]}" ]]; then
            # The same process, alive, still the child of the same shim.
            fail "$h" containerd-restart "container pid $pid: parent $(ppid_of "$pid" || true), shim before ${shim0[$h]:-none}"
        elif [[ "$out" != still-here ]]; then
            fail "$h" containerd-restart "kubectl exec said: $(head -c 300 <<<"$out")"
        else
            pass "$h" containerd-restart
        fi
    done
}

check_graceful() {
    local h="$1" ns="e2e-$1" t0 took
    if ! wait_for 120 ready "$ns" term || ! wait_for 30 test -f "$kube_dir/term-$h/up"; then
        fail "$h" graceful-delete "pod not Ready"; return
    fi
    t0=$(date +%s%N)
    kubectl -n "$ns" delete pod term --wait=true --timeout=90s >/dev/null 2>&1
    took=$(( ($(date +%s%N) - t0) / 1000000 ))
    echo "     $h graceful delete took $took ms" >&2
    if [[ "$(cat "$kube_dir/term-$h/term" 2>/dev/null)" != TERM ]]; then
        fail "$h" graceful-delete "the container's TERM trap did not run (took $took ms)"
    elif [[ $took -ge 20000 ]]; then
        fail "$h" graceful-delete "took $took ms of the 30 s grace period"
    elif jp "$ns" term '{.metadata.name}' | grep -q term; then
        fail "$h" graceful-delete "pod still there"
    else
        pass "$h" graceful-delete
    fi
}

check_userns() {
    local h="$1" ns="e2e-$1" out map inner host c pid uid in_exec
    if ! wait_for 120 ready "$ns" userns; then
        fail "$h" userns "not Ready after 120 s: $(jp "$ns" userns '{.status.phase} {.status.containerStatuses[0].state}') $(kubectl -n "$ns" get events --field-selector involvedObject.name=userns -o 'jsonpath={range .items[*]}{.reason}: {.message}{"\n"}{end}' 2>&1 | tail -n 3)"
        return
    fi
    wait_for 30 grep -q '^scratch ' <(kubectl -n "$ns" logs userns 2>/dev/null)
    out="$(kubectl -n "$ns" logs userns 2>&1)"
    # uid_map's first line: inside, outside, count.
    map="$(sed -n 's/^map //p' <<<"$out" | tr -s ' ' | sed 's/^ //')"
    read -r inner host _ <<<"$map"
    c="$(cid "$ns" userns)"
    pid="$(crictl_field "$c" "d['info']['pid']")"
    uid="$(awk '/^Uid:/ {print $2}' "/proc/$pid/status" 2>/dev/null)"
    in_exec="$(kubectl -n "$ns" exec userns -- sh -c 'head -n1 /proc/self/uid_map; id -u' 2>&1 | tr -s ' \n' '  ' | sed 's/^ //; s/ $//')"
    echo "     $h userns: uid_map '$map', init host uid ${uid:-?}, exec: '$in_exec'" >&2
    if [[ "$inner" != 0 || -z "$host" || "$host" == 0 ]]; then
        fail "$h" userns "uid_map '$map' is not a mapping of 0 to a non-zero host uid: $(head -c 300 <<<"$out")"
    elif ! grep -qx "cfg hello-userns-$h" <<<"$out"; then
        fail "$h" userns "ConfigMap file not read: $(head -c 300 <<<"$out")"
    elif ! grep -qx "scratch w-$h" <<<"$out"; then
        fail "$h" userns "emptyDir not writable: $(head -c 300 <<<"$out")"
    elif [[ "$uid" != "$host" ]]; then
        fail "$h" userns "init (pid $pid) runs as host uid ${uid:-?}, want $host"
    elif [[ "$in_exec" != "$map 0" ]]; then
        fail "$h" userns "kubectl exec said '$in_exec', want '$map 0'"
    else
        pass "$h" userns
    fi
}

cluster_up || exit 2
for h in "${handlers[@]}"; do
    manifests "$h" | kubectl apply -f - >&2 || fail "$h" running "kubectl apply failed"
done
t0=$SECONDS
for h in "${handlers[@]}"; do check_running "$h"; done
for h in "${handlers[@]}"; do
    check_describe "$h"
    check_logs_exec "$h"
    check_two "$h"
    check_job_exit "$h"
    check_oom "$h"
    check_liveness "$h"
    check_userns "$h"
done
check_restart
for h in "${handlers[@]}"; do check_graceful "$h"; done
klog "checks took $((SECONDS - t0)) s"
