# shellcheck shell=bash
# The containerd.service checks of scripts/guest/systemd-suite.sh (sourced
# through lib.sh): restart, SIGKILL and stop of containerd with containers
# of both shims running, through ctr (the shim in containerd.service's
# cgroup, as ctr leaves it) and through CRI (the shim in its ShimCgroup
# slice). After each, every container must be RUNNING with the same init
# pid and the same shim, and exec must work.

# The containers under watch: "NAME KIND ID POD" lines in $SUITE_WORK/watch
# (KIND ctr or cri; POD the CRI pod, or -); their pids in .../pids.
watch_pid() { if [[ $2 == ctr ]]; then task_pid "$3"; else ctr_pid "$3"; fi; }
watch_exec() { # KIND ID
    if [[ $1 == ctr ]]; then
        c task exec --exec-id "x$RANDOM" "$2" echo alive 2>&1 </dev/null
    else
        crictl exec -s "$2" echo alive 2>&1 </dev/null
    fi
}
record_pids() {
    local name kind id pod pid
    : >"$SUITE_WORK/pids"
    while read -r -u 3 name kind id pod; do
        pid="$(watch_pid "$name" "$kind" "$id")"
        echo "$name $pid $(ppid_of "$pid")" >>"$SUITE_WORK/pids"
    done 3<"$SUITE_WORK/watch"
}
# verify PHASE [NAME-PATTERN]: each container (matching) the same and alive.
verify() {
    local phase="$1" pattern="${2:-.}" name kind id pod pid shim want_pid want_shim
    while read -r -u 3 name kind id pod; do
        [[ $name =~ $pattern ]] || continue
        read -r _ want_pid want_shim < <(grep "^$name " "$SUITE_WORK/pids")
        pid="$(watch_pid "$name" "$kind" "$id")"
        shim="$(ppid_of "$pid")"
        check "${name%%-*}" "${name#*-}" "$phase: same init and shim pids, exec works" \
            "$want_pid $want_shim alive" "$pid $shim $(watch_exec "$kind" "$id" | tr -d '\r')"
    done 3<"$SUITE_WORK/watch"
}
# shims_gone PHASE PATTERN: the shims of the matching containers are dead.
shims_gone() {
    local phase="$1" pattern="$2" name want_shim
    while read -r -u 3 name _ want_shim; do
        [[ $name =~ $pattern ]] || continue
        waitfor 10 test ! -e "/proc/$want_shim"
        check "${name%%-*}" "${name#*-}" "$phase" "gone" "$([[ -e /proc/$want_shim ]] && echo alive || echo gone)"
    done 3<"$SUITE_WORK/pids"
}
main_pid() { systemctl show -p MainPID --value containerd; }
# A containerd that answers, with a main pid other than $1.
restarted() { local p; p="$(main_pid)"; [[ $p != 0 && $p != "$1" ]] && c version >/dev/null 2>&1; }

# watch_ctr SHIM RUNC-BIN ID: a sleeping ctr container under watch.
watch_ctr() {
    local opts=() root="$SUITE_WORK/root-$3"
    read -r -a opts <<<"$(rt "$1" "$2")"
    mkroot "$root"
    if c run -d "${opts[@]}" --env PATH=/bin --cgroup "system.slice:systemd-suite:$3" \
        --rootfs "$root" "$3" sleep 3600 >/dev/null 2>&1; then
        echo "$1-ctr ctr $3 -" >>"$SUITE_WORK/watch"
    else
        fail "$1" ctr "a ctr container to watch"
    fi
}

restart_checks() { # RUNC-BIN
    local runc_bin="$1" kind ids pod c1 old
    : >"$SUITE_WORK/watch"
    say "containerd.service: restart, kill, stop"
    cri_image || fail - - "restart checks: the CRI test image"
    for kind in tether go; do
        watch_ctr "$kind" "$runc_bin" "restart-$kind"
        local handler=runc
        [[ $kind == tether ]] && handler=tether
        ids="$(run_pod "$handler" "restart-$kind")"
        if [[ -n $ids ]]; then
            read -r pod c1 _ <<<"$ids"
            echo "$kind-cri cri $c1 $pod" >>"$SUITE_WORK/watch"
        else
            fail "$kind" cri "restart checks: a CRI pod"
        fi
    done
    record_pids
    # Where the shims live: ctr's in containerd.service (KillMode=process
    # is what keeps them), CRI's in their ShimCgroup slices.
    while read -r -u 3 name _ shim; do
        local want=/system.slice/containerd.service
        [[ $name == *-cri ]] && want="/${name%%-*}-shims.slice"
        [[ $name == go-cri ]] && want=/go-shims.slice
        check "${name%%-*}" "${name#*-}" "the shim's cgroup" "$want" "$(cgroup_of "$shim")"
    done 3<"$SUITE_WORK/pids"

    systemctl restart containerd
    waitfor 60 c version >/dev/null 2>&1
    verify "systemctl restart containerd"

    old="$(main_pid)"
    systemctl kill --kill-whom=main -s KILL containerd
    # Restart=always brings it back after RestartSec (5 s).
    waitfor 60 restarted "$old"
    verify "systemctl kill --kill-whom=main -s KILL containerd"

    systemctl stop containerd
    local alive=yes name kind id pod pid
    while read -r -u 3 name pid _; do
        [[ -e /proc/$pid ]] || alive="no: $name"
    done 3<"$SUITE_WORK/pids"
    check - - "systemctl stop containerd: the containers keep running" yes "$alive"
    check - - "systemctl stop containerd: the unit is inactive" inactive "$(systemctl is-active containerd)"
    systemctl start containerd
    waitfor 60 c version >/dev/null 2>&1
    verify "systemctl stop, then start containerd"

    # systemctl kill signals every process of the unit (its --kill-whom
    # defaults to all; KillMode does not apply): the shims that live in
    # containerd.service die with it, those in a ShimCgroup slice do not.
    old="$(main_pid)"
    systemctl kill -s KILL containerd
    waitfor 60 restarted "$old"
    verify "systemctl kill -s KILL containerd, shim in ShimCgroup" 'cri$'
    shims_gone "systemctl kill -s KILL containerd kills a shim in containerd.service" 'ctr$'

    # Clean up: pods through CRI, ctr containers (their shims may be gone).
    while read -r -u 3 name kind id pod; do
        if [[ $kind == cri ]]; then remove_pod "$pod"; else cleanup_task "$id"; fi
    done 3<"$SUITE_WORK/watch"
}

# The drop-in's own effect. systemd's default KillMode is control-group,
# which kills every process of the unit on stop: a unit that does not set
# KillMode (40-killmode-default.conf stands in for one) keeps the shims only
# because 50-tether.conf sets it. With the drop-in, a restart keeps both
# shims; without it (the control), the same restart kills them.
dropin_checks() { # RUNC-BIN
    local d=/etc/systemd/system/containerd.service.d kind
    say "containerd.service: the drop-in's effect"
    printf '[Service]\nKillMode=control-group\n' | install -m 0644 /dev/stdin "$d/40-killmode-default.conf"
    systemctl daemon-reload
    check - - "a unit with KillMode=control-group, and 50-tether.conf: KillMode" process \
        "$(systemctl show -p KillMode --value containerd)"
    : >"$SUITE_WORK/watch"
    for kind in tether go; do
        watch_ctr "$kind" "$1" "dropin-$kind"
    done
    record_pids
    systemctl restart containerd
    waitfor 60 c version >/dev/null 2>&1
    verify "with 50-tether.conf over KillMode=control-group, systemctl restart containerd"

    mv "$d/50-tether.conf" "$SUITE_WORK/50-tether.conf"
    systemctl daemon-reload
    systemctl restart containerd
    waitfor 60 c version >/dev/null 2>&1
    shims_gone "control: without 50-tether.conf, systemctl restart containerd kills the shim" 'ctr$'

    mv "$SUITE_WORK/50-tether.conf" "$d/50-tether.conf"
    rm -f "$d/40-killmode-default.conf"
    systemctl daemon-reload
    systemctl restart containerd
    waitfor 60 c version >/dev/null 2>&1
    local name id
    while read -r -u 3 name _ id _; do
        cleanup_task "$id"
    done 3<"$SUITE_WORK/watch"
}
