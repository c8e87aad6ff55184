#!/usr/bin/env bash
# Runs Kubernetes' node e2e suite (e2e_node.test, under the ginkgo CLI) once,
# for scripts/node-conformance.sh, which runs this script as the command of
# `scripts/critest.sh --exec` inside a private mount namespace where
# /usr/bin/systemd-run is hidden (e2e_node then starts the kubelet directly,
# not through systemd). Not meant to be run on its own.
#
# Environment: that of critest.sh --exec (CRI_ENDPOINT, CRICTL, CRI_TMP,
# CONTAINERD_CGROUP ...) plus NODE_BIN (scripts/node/build.sh's dir),
# KUBE_BIN (scripts/kube/build.sh's dir, for the kubelet), NODE_RESULTS (the
# results dir), NODE_FOCUS, NODE_SKIP (ginkgo regexes), NODE_PROCS (ginkgo
# parallel processes).
#
# The suite starts its own services: an in-process etcd and kube-apiserver
# (127.0.0.1:6443) and the kubelet from $KUBE_BIN as a child (ports 10250,
# 10255, 10248; root dir /var/lib/kubelet; pod logs in /var/log/pods; the
# cgroupfs driver; --runtime-cgroups is containerd's own cgroup; no
# --system-cgroups, so the kubelet moves no host process). On exit, failure
# included, this stops what it started by PID and puts back what the kubelet
# changes on the host: its cgroups (kubepods, kubelet) in every hierarchy,
# /var/lib/kubelet, /var/log/pods, /var/log/containers and /run/kubernetes
# (the apiserver's cert dir) when they did not exist before, the sysctls it sets, its KUBE-* iptables chains, the
# apiserver's key files and what specs leave in /tmp.
# Writes to $NODE_RESULTS: ginkgo.log, report.json and junit.xml (ginkgo),
# kubelet.log and services.log (e2e_node's), host-diff.txt (what was left).
# Exit status: ginkgo's (0 when every spec passed), 2 when it could not start.
set -euo pipefail

log() { echo "[node/run.sh] $*" >&2; }
for v in NODE_BIN KUBE_BIN NODE_RESULTS CRI_ENDPOINT CRI_TMP CRICTL CONTAINERD_CGROUP; do
    [[ -n "${!v:-}" ]] || { log "$v is not set"; exit 2; }
done
work="$CRI_TMP/node"
mkdir -p "$work" "$NODE_RESULTS"

# ------------------------------------------------------------ host state ---
ports=(6443 10250 10255 10248)
for p in "${ports[@]}"; do
    if [[ -n "$(ss -Hltn "sport = :$p")" ]]; then log "port $p is in use"; exit 2; fi
done
dirs_before=""
for d in /var/lib/kubelet /var/log/pods /var/log/containers /run/kubernetes; do
    [[ -e "$d" ]] && dirs_before+="$d "
done
# For those that exist already (another kubelet's leftovers): their entries,
# so that only what this run adds is removed.
entries_before="$(for d in $dirs_before; do find "$d" -mindepth 1 -maxdepth 1; done)"
cg_names=(kubepods kubelet system)
cgroups_before="$(for n in "${cg_names[@]}"; do ls -d /sys/fs/cgroup/*/"$n" /sys/fs/cgroup/"$n" 2>/dev/null; done || true)"
sysctl_keys=(vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops
    kernel/keys/root_maxkeys kernel/keys/root_maxbytes)
sysctls_before=""
for k in "${sysctl_keys[@]}"; do sysctls_before+="$k=$(cat "/proc/sys/$k" 2>/dev/null) "; done
chains_before="$(for t in filter nat mangle; do iptables -t "$t" -S 2>/dev/null | awk -v t="$t" '$1 == "-N" {print t " " $2}'; done)"
# Files some specs leave in the host's /tmp (HostPath's /tmp/test-file, the
# device plugin specs' sockets dirs) and the apiserver's keys.
# (patterns, expanded when used)
tmp_globs='/tmp/insecure_test_key* /tmp/test-file /tmp/device-plugin-failures-*'
# shellcheck disable=SC2086
tmp_keys_before="$(ls -d $tmp_globs 2>/dev/null || true)"
snapshot() { printf '%s\n' /tmp/* /var/lib/* /var/log/* /etc/* /run/* | grep -v "^$CRI_TMP" || true; }
snapshot >"$work/host-before.txt"

ginkgo_pid=""
# shellcheck source=../lib/procs.sh
source "$(dirname "$0")/../lib/procs.sh"   # descendants

# shellcheck disable=SC2317 # run by the EXIT trap only
cleanup() {
    set +e
    trap - EXIT INT TERM HUP
    if [[ -n "$ginkgo_pid" ]] && kill -0 "$ginkgo_pid" 2>/dev/null; then
        # ginkgo stops its processes, which stop their services (SIGTERM
        # to the kubelet and the services child): give them time, then the
        # whole tree by PID.
        local tree
        tree="$(descendants "$ginkgo_pid")"
        log "stopping ginkgo (pids $ginkgo_pid $tree)"
        kill -TERM "$ginkgo_pid" 2>/dev/null
        for _ in $(seq 60); do kill -0 "$ginkgo_pid" 2>/dev/null || break; sleep 0.5; done
        tree="$tree $(descendants "$ginkgo_pid")"
        # shellcheck disable=SC2086 # a list of pids, split on purpose
        kill -TERM $tree 2>/dev/null
        sleep 2
        # shellcheck disable=SC2086 # as above
        kill -KILL "$ginkgo_pid" $tree 2>/dev/null
        wait "$ginkgo_pid" 2>/dev/null
    fi
    # Stragglers started from the suite (a kubelet whose parent died):
    # any process whose executable is our kubelet or e2e_node.test.
    local p exe
    for p in /proc/[0-9]*; do
        exe="$(readlink "$p/exe" 2>/dev/null)" || continue
        if [[ "$exe" == "$(realpath "$KUBE_BIN/kubelet")" || "$exe" == "$(realpath "$NODE_BIN/e2e_node.test")" ]]; then
            log "stopping leftover ${exe##*/} (pid ${p#/proc/})"
            kill -KILL "${p#/proc/}" 2>/dev/null
        fi
    done
    # The pods the kubelet left, through containerd (their cgroups go with
    # them), then the kubelet's own cgroups.
    timeout 180 "$CRICTL" --timeout 60s rmp -fa >/dev/null 2>&1
    local cg
    for n in "${cg_names[@]}"; do
        for cg in /sys/fs/cgroup/*/"$n" /sys/fs/cgroup/"$n"; do
            [[ -d "$cg" ]] || continue
            grep -qxF "$cg" <<<"$cgroups_before" && continue
            for _ in $(seq 20); do
                find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null
                [[ -d "$cg" ]] || break
                sleep 0.5
            done
            [[ -d "$cg" ]] && log "could not remove the cgroup $cg"
        done
    done
    local d m
    for d in /var/lib/kubelet /var/log/pods /var/log/containers /run/kubernetes; do
        [[ -e "$d" ]] || continue
        if [[ " $dirs_before " == *" $d "* ]]; then
            find "$d" -mindepth 1 -maxdepth 1 | grep -vxF -f <(echo "${entries_before:-//none//}") | while read -r m; do rm -rf "$m"; done
            continue
        fi
        while read -r m; do umount -l "$m" 2>/dev/null; done < <(awk -v t="$d" 'index($5, t) == 1 {print $5}' /proc/self/mountinfo | sort -r)
        rm -rf "$d"
    done
    local kv
    for kv in $sysctls_before; do
        [[ -n "${kv#*=}" ]] && echo "${kv#*=}" >"/proc/sys/${kv%%=*}" 2>/dev/null
    done
    local t c
    for t in filter nat mangle; do
        for c in $(iptables -t "$t" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ {print $2}'); do
            grep -qx "$t $c" <<<"$chains_before" && continue
            iptables -t "$t" -S 2>/dev/null | awk -v c="$c" '$1 == "-A" && $2 != c {for (i = 1; i <= NF; i++) if ($i == "-j" && $(i + 1) == c) {print; break}}' |
                while read -r rule; do eval "iptables -t \"\$t\" -D ${rule#-A }" 2>/dev/null; done
            iptables -t "$t" -F "$c" 2>/dev/null
        done
        for c in $(iptables -t "$t" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ {print $2}'); do
            grep -qx "$t $c" <<<"$chains_before" && continue
            iptables -t "$t" -X "$c" 2>/dev/null
        done
    done
    # shellcheck disable=SC2086
    for d in $tmp_globs; do
        [[ -e "$d" ]] || continue
        grep -qxF "$d" <<<"$tmp_keys_before" || rm -rf "$d"
    done
    snapshot >"$work/host-after.txt"
    diff "$work/host-before.txt" "$work/host-after.txt" >"$NODE_RESULTS/host-diff.txt"
    [[ -s "$NODE_RESULTS/host-diff.txt" ]] && log "host paths that changed: $(tr '\n' ' ' <"$NODE_RESULTS/host-diff.txt")"
    for p in "${ports[@]}"; do
        [[ -z "$(ss -Hltn "sport = :$p")" ]] || log "port $p is still in use"
    done
    exit "$status"
}
status=2
trap cleanup EXIT
trap 'status=2; exit 2' INT TERM HUP

# ------------------------------------------------------------------ run ---
kubelet_flags=(
    --cgroups-per-qos=true --cgroup-root=/
    "--runtime-cgroups=$CONTAINERD_CGROUP" --system-cgroups=
    --cluster-domain=cluster.local
    # cAdvisor (/metrics/cadvisor, part of /stats/summary) names containers
    # by asking containerd, at its default socket unless told.
    "--containerd=$CONTAINERD_ADDRESS" --containerd-namespace=k8s.io
)
ginkgo_args=(
    --procs "${NODE_PROCS:-3}" --timeout 3h --no-color
    --output-dir "$NODE_RESULTS" --json-report report.json --junit-report junit.xml
    --focus "$NODE_FOCUS"
)
[[ -n "${NODE_SKIP:-}" ]] && ginkgo_args+=(--skip "$NODE_SKIP")
test_args=(
    "--container-runtime-endpoint=$CRI_ENDPOINT" "--image-service-endpoint=$CRI_ENDPOINT"
    --prepull-images=false "--k8s-bin-dir=$KUBE_BIN" "--node-name=$(hostname)"
    "--report-dir=$NODE_RESULTS" --dns-domain=cluster.local
    "--kubelet-flags=${kubelet_flags[*]}"
)
log "ginkgo ${ginkgo_args[*]} e2e_node.test -- ${test_args[*]}"
t0=$SECONDS
(
    cd "$work"
    export TMPDIR="$work/tmp"
    mkdir -p "$TMPDIR"
    exec "$NODE_BIN/ginkgo" run "${ginkgo_args[@]}" "$NODE_BIN/e2e_node.test" -- "${test_args[@]}"
) </dev/null >"$NODE_RESULTS/ginkgo.log" 2>&1 &
ginkgo_pid=$!
set +e
wait "$ginkgo_pid"
status=$?
set -e
ginkgo_pid=""
log "ginkgo: exit $status after $((SECONDS - t0)) s"
[[ -f "$NODE_RESULTS/report.json" ]] || status=2
exit "$status"
