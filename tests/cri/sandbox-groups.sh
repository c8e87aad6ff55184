# shellcheck shell=bash
# The single-quoted scripts below are run by a container's sh, on purpose;
# the variables and helpers are tests/cri/sandbox.sh's, which sources this:
# shellcheck disable=SC2016,SC2154
# The check groups of tests/cri/sandbox.sh beyond its smoke, one pod per
# handler and group (CRI_SANDBOX_HANDLERS), each removed before the next:
#
# restart (a pod with dns_config and hostname, and two containers: `main` in
# the pod's pid namespace, which writes a file to /dev/shm, and `own` in its
# own; containerd SIGKILLed and started again by CRI_RESTART):
#   restart       the pod is SANDBOX_READY, live (crictl inspectp) and in
#                 CRI's store (crictl pods), with the same sandbox pid;
#                 both containers run with their pids, exec into each works
#   restart-new   a container created after the restart has the pod's
#                 resolv.conf (dns_config, byte for byte), hosts, hostname
#                 (file and uts), the net/ipc/uts namespaces of the sandbox
#                 pid, and sees main's file in /dev/shm. CRI's restart
#                 clean-up removes the dirs of every sandbox that is no
#                 pause container; tether-sandbox puts them back (SEEN line
#                 `restart-cleanup` says what the restart left)
#   restart-stop  stopp: NOTREADY live at once and in CRI's store within 5 s
#                 (so WaitSandbox was armed again after the restart); rmp:
#                 nothing of the pod left (shim, holder, mounts, CRI dirs,
#                 bundles, runc state, cgroups)
# shim-kill (a pod whose pid mode is CONTAINER, as the kubelet's default,
# with one container in its own pid namespace, which the holder's death
# does not end; the pod's one shim SIGKILLed):
#   shim-kill     within 10 s the pod is NOTREADY live and in CRI's store,
#                 the sandbox pid, every holder and the container's process
#                 are gone and runc no longer knows the container
#                 (containerd runs the shim's `delete` on the sandbox bundle)
#   shim-kill-rm  rmp -f works (within 10 s); nothing of the pod left, as
#                 above
# For the handlers other than tether-sandbox the shim-kill checks are shown
# (SEEN), not counted: containerd 2.3.7 runs no `delete` for a container it
# reached through its pod's shim (containerd's runc shim included), so a
# pause-based pod's container in its own pid namespace outlives the shim.
# no-pause-pull (tether-sandbox only; containerd 2.4+, whose handler has
# disable_pause_image_pull): the pause image is taken out of containerd's
# image store and out of the registry; a pod with a container runs, and
# afterwards the image is still absent and `ctr events` showed no image or
# content created at all. (2.3.7 pulls it for every pod: there runp fails.)

# same_file PID PATH FILE: PATH in the container of process PID is FILE's
# bytes (read through /proc: crictl exec's output gains newlines)
same_file() { cmp -s "/proc/$1/root$2" "$3"; }
# counted HANDLER CHECK WHY: a verdict for tether-sandbox; for the others,
# references, what was seen
counted() {
    if [[ "$1" == tether-sandbox ]]; then verdict "$@"; else echo "SEEN $1 $2: ${3:-would pass}"; fi
}

check_restart() {
    local h="$1" name="rs-$1" pod main own new spid mounts_before shims why c
    local -A cpid
    mounts_before="$(state_mounts)"
    if ! pod="$(run_pod "$h" "$name" 2>"$work/$name.runp.err")"; then
        for c in restart restart-new restart-stop; do fail "$h" "$c" "runp failed: $(head -c 300 "$work/$name.runp.err")"; done
        return
    fi
    if ! { main="$(start_ctr "$pod" "$name" main 0 sleep 1000)" && own="$(start_ctr "$pod" "$name" own 1 sleep 1001)"; }; then
        for c in restart restart-new restart-stop; do fail "$h" "$c" "create/start failed"; done
        rm_pod "$pod" "$name"; return
    fi
    ex "$main" sh -c 'echo kept >/dev/shm/before-restart' >/dev/null
    spid="$(sandbox_pid "$h" "$pod")"
    for c in "$main" "$own"; do cpid[$c]="$(ctr_json "$c" "d['info']['pid']")"; done
    mapfile -t shims < <(pod_shims "$pod")
    local cd_pid
    if ! cd_pid="$("$CRI_RESTART")"; then
        for c in restart restart-new restart-stop; do fail "$h" "$c" "containerd did not come back"; done
        return
    fi
    # Before anything asks the controller again: what CRI's clean-up left.
    local dirs=kept
    [[ -e "$cri_root/$pod/resolv.conf" && -e "$cri_state/$pod/shm" ]] || dirs=removed
    echo "SEEN $h restart-cleanup: containerd restarted (pid $cd_pid); CRI's dirs of the pod $dirs"

    # restart
    why=""
    live_as "$pod" SANDBOX_READY || why+="inspectp says '$(pod_json "$pod" "d['status']['state']")'; "
    listed_as "$pod" SANDBOX_READY || why+="crictl pods says '$(listed_state "$pod")'; "
    if [[ -z "$spid" || "$(sandbox_pid "$h" "$pod")" != "$spid" ]] || gone "$spid"; then
        why+="sandbox pid $spid -> '$(sandbox_pid "$h" "$pod")'; "
    fi
    for c in "$main" "$own"; do
        [[ "$(ctr_json "$c" "d['status']['state']")" == CONTAINER_RUNNING ]] || why+="${c:0:12} not running; "
        [[ "$(ctr_json "$c" "d['info']['pid']")" == "${cpid[$c]}" ]] || why+="${c:0:12}'s pid changed; "
        [[ "$(ex "$c" echo exec-after-restart)" == exec-after-restart ]] || why+="exec into ${c:0:12} failed; "
    done
    verdict "$h" restart "$why"

    # restart-new
    why=""
    local npid
    if ! new="$(start_ctr "$pod" "$name" new 0 sleep 1002)"; then
        why="create/start of a new container failed"
    else
        npid="$(ctr_json "$new" "d['info']['pid']")"
        same_file "$npid" /etc/resolv.conf <(printf 'search tether.test pods.tether.test\nnameserver 192.0.2.53\noptions ndots:2\n') ||
            why+="resolv.conf is '$(tr '\n' '|' <"/proc/$npid/root/etc/resolv.conf")'; "
        if [[ ! -s "$cri_root/$pod/hosts" ]] || ! same_file "$npid" /etc/hosts "$cri_root/$pod/hosts"; then
            why+="/etc/hosts is not the pod's; "
        fi
        [[ "$(ex "$new" cat /etc/hostname)" == "$name-host" ]] || why+="/etc/hostname '$(ex "$new" cat /etc/hostname)'; "
        [[ "$(ex "$new" hostname)" == "$name-host" ]] || why+="hostname '$(ex "$new" hostname)'; "
        [[ "$(ex "$new" cat /dev/shm/before-restart)" == kept ]] || why+="main's /dev/shm file is not in new's /dev/shm; "
        local ns
        for ns in net ipc uts; do
            [[ "$(ex "$new" readlink "/proc/self/ns/$ns")" == "$(readlink "/proc/${spid:-0}/ns/$ns" 2>/dev/null)" ]] ||
                why+="$ns namespace is not the sandbox pid's; "
        done
    fi
    verdict "$h" restart-new "$why"

    # restart-stop
    why=""
    crictl stopp "$pod" >/dev/null 2>&1 || why+="stopp failed; "
    live_as "$pod" SANDBOX_NOTREADY || why+="inspectp says '$(pod_json "$pod" "d['status']['state']")' right after stopp; "
    wait_for 5 listed_as "$pod" SANDBOX_NOTREADY ||
        why+="crictl pods says '$(listed_state "$pod")' 5 s after stopp (no WaitSandbox answered); "
    [[ -z "$spid" ]] || wait_for 10 gone "$spid" || why+="sandbox pid $spid alive 10 s after stopp; "
    crictl rmp "$pod" >/dev/null 2>&1 || why+="rmp failed; "
    crictl inspectp "$pod" >/dev/null 2>&1 && why+="inspectp still knows the pod; "
    why+="$(left_behind "$pod" "$name" "$mounts_before" "${shims[*]}" "$main $own $new")"
    verdict "$h" restart-stop "$why"
    rm_pod "$pod" "$name"
}

check_shim_kill() {
    local h="$1" name="sk-$1" pod app cpid spid mounts_before shims why c t0
    mounts_before="$(state_mounts)"
    if ! pod="$(run_pod "$h" "$name" 1 2>"$work/$name.runp.err")"; then
        for c in shim-kill shim-kill-rm; do fail "$h" "$c" "runp failed: $(head -c 300 "$work/$name.runp.err")"; done
        return
    fi
    if ! app="$(start_ctr "$pod" "$name" app 1 sleep 1003)"; then
        for c in shim-kill shim-kill-rm; do fail "$h" "$c" "create/start failed"; done
        rm_pod "$pod" "$name"; return
    fi
    spid="$(sandbox_pid "$h" "$pod")"
    cpid="$(ctr_json "$app" "d['info']['pid']")"
    mapfile -t shims < <(pod_shims "$pod")
    if [[ ${#shims[@]} != 1 || -z "$spid" || -z "$cpid" ]]; then
        for c in shim-kill shim-kill-rm; do fail "$h" "$c" "not one shim (${shims[*]:-}), or no sandbox pid ($spid) or container pid ($cpid)"; done
        rm_pod "$pod" "$name"; return
    fi
    [[ "$(ex "$app" sh -c 'tr "\0" " " </proc/1/cmdline')" == "sleep 1003 " ]] ||
        note "$h: the container is not pid 1 of a pid namespace of its own"
    note "$h: SIGKILL to the pod's shim ${shims[0]} (sandbox pid $spid, container pid $cpid)"
    kill -KILL "${shims[0]}"
    t0=$SECONDS

    # shim-kill: all within 10 s of the SIGKILL
    why=""
    local end=$((SECONDS + 10))
    wait_for $((end - SECONDS)) live_as "$pod" SANDBOX_NOTREADY ||
        why+="inspectp says '$(pod_json "$pod" "d['status']['state']")' 10 s after; "
    wait_for $((end - SECONDS)) listed_as "$pod" SANDBOX_NOTREADY ||
        why+="crictl pods says '$(listed_state "$pod")' 10 s after; "
    note "$h: NOTREADY (live and in CRI's store) after $((SECONDS - t0)) s"
    wait_for $((end - SECONDS)) gone "$spid" || why+="sandbox pid $spid ($(cmdline "$spid")) alive 10 s after; "
    wait_for $((end - SECONDS)) gone "$cpid" ||
        why+="the container's process $cpid ($(cmdline "$cpid")) alive 10 s after; "
    wait_for $((end - SECONDS)) eval '! runc_knows "$app"' || why+="runc still knows the container; "
    [[ -z "$(holders)" ]] || why+="holder processes left: $(holders | tr '\n' ' '); "
    note "$h: the pod's processes gone after $((SECONDS - t0)) s"
    counted "$h" shim-kill "$why"

    # shim-kill-rm
    # (containerd's CRI, 2.3.7 and 2.4.2 alike and for its own runc shim
    # too, may count the container as running for a moment more: its exit
    # handler failed to delete the task through the dead shim and retries
    # after a back-off. The kubelet retries rmp, so this does.)
    why=""
    local tries=0 first=""
    wait_for 10 eval 'tries=$((tries + 1)); crictl rmp -f "$pod" >"$work/$name.rmp.err" 2>&1 ||
        { [[ -n "$first" ]] || first="$(grep -o "desc = .*" "$work/$name.rmp.err" | head -n1 | cut -c1-200)"; false; }' ||
        why+="rmp -f failed for 10 s: $(grep -o 'desc = .*' "$work/$name.rmp.err" | head -n1 | cut -c1-300); "
    note "$h: rmp -f: $tries tries${first:+; the first: $first}"
    crictl inspectp "$pod" >/dev/null 2>&1 && why+="inspectp still knows the pod; "
    grep -qF "$pod" <<<"$(ctr sandboxes ls 2>&1)" && why+="ctr sandboxes ls still lists it; "
    grep -qF "$app" <<<"$(ctr containers ls -q 2>&1)" && why+="ctr containers ls still lists the container; "
    why+="$(left_behind "$pod" "$name" "$mounts_before" "${shims[*]}" "$app")"
    counted "$h" shim-kill-rm "$why"
    rm_pod "$pod" "$name"
}

# The pause image's names in containerd's image store (tag, digest, id).
pause_images() {
    local id
    id="$(crictl inspecti -o json "$CRI_PAUSE_IMAGE" 2>/dev/null |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["status"]["id"])' 2>/dev/null)"
    ctr images ls -q 2>/dev/null | grep -F -e "${CRI_PAUSE_IMAGE%:*}" -e "${id:-pause-image-id}"
}
# registry_manifest delete|get: deletes the pause image's manifest from the
# environment's registry (which serves registry.k8s.io), or exits 0 if
# it is still there.
registry_manifest() {
    local ref="${CRI_PAUSE_IMAGE#*/}"
    python3 - "$1" "${ref%:*}" "${ref##*:}" <<'PY'
import sys, urllib.error, urllib.request
op, repo, tag = sys.argv[1:]
url = f"http://127.0.0.1:5000/v2/{repo}/manifests/"
accept = ", ".join("application/vnd." + t for t in (
    "oci.image.index.v1+json", "oci.image.manifest.v1+json",
    "docker.distribution.manifest.list.v2+json", "docker.distribution.manifest.v2+json"))
web = urllib.request.build_opener(urllib.request.ProxyHandler({}))
def call(method, what):
    return web.open(urllib.request.Request(url + what, method=method, headers={"Accept": accept}), timeout=10)
try:
    digest = call("HEAD", tag).headers["Docker-Content-Digest"]
except urllib.error.HTTPError as e:
    sys.exit(1 if e.code == 404 else 2)
if op == "delete":
    call("DELETE", digest)
PY
}

check_no_pause_pull() {
    local h=tether-sandbox name=np pod app why="" ev evpid names
    mapfile -t names < <(pause_images)
    ((${#names[@]} == 0)) || ctr images rm "${names[@]}" >/dev/null 2>&1
    registry_manifest delete
    [[ -z "$(pause_images)" ]] || why+="the pause image is still in containerd's store; "
    registry_manifest get && why+="the registry still has the pause image; "
    if [[ -n "$why" ]]; then fail "$h" no-pause-pull "setup: $why"; return; fi
    # Every event while the pod lives, between two of our own (labels on
    # the busybox image), so that none is missed at either end.
    ev="$work/$name.events"
    # (ctr itself, not through the function: a subshell holds SIGTERM back
    # while it waits for its child)
    "$CTR" -n k8s.io events >"$ev" 2>&1 &
    evpid=$!
    wait_for 10 eval 'ctr images label "$img" tether-probe=start >/dev/null 2>&1; grep -qF "\"tether-probe\":\"start\"" "$ev"' ||
        why+="ctr events shows nothing; "
    if ! pod="$(run_pod "$h" "$name" 2>"$work/$name.runp.err")"; then
        why+="runp failed: $(grep -o 'desc = .*' "$work/$name.runp.err" | head -n1 | cut -c1-300); "
    elif ! app="$(start_ctr "$pod" "$name" app 0 sleep 1004)"; then
        why+="create/start failed; "
    else
        [[ "$(ex "$app" echo ok)" == ok ]] || why+="exec failed; "
    fi
    [[ -z "${pod:-}" ]] || rm_pod "$pod" "$name"
    wait_for 10 eval 'ctr images label "$img" tether-probe=end >/dev/null 2>&1; grep -qF "\"tether-probe\":\"end\"" "$ev"' ||
        why+="ctr events did not show our last event; "
    kill "$evpid" 2>/dev/null
    wait "$evpid" 2>/dev/null
    ctr images label "$img" tether-probe= >/dev/null 2>&1
    [[ -z "$(pause_images)" ]] || why+="the pause image is in containerd's store: $(pause_images | tr '\n' ' '); "
    # (busybox is there already: nothing at all is pulled)
    local made
    made="$(grep -E '/(images|content)/create' "$ev")"
    [[ -z "$made" ]] || why+="images or content created: $(cut -c1-300 <<<"$made" | tr '\n' ' '); "
    note "$h: $(grep -c ' k8s.io /' "$ev") events while the pod lived, $(grep -c . <<<"$made") image or content creations"
    verdict "$h" no-pause-pull "$why"
}
