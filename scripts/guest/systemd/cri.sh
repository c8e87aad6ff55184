# shellcheck shell=bash
# shellcheck disable=SC2154 # repo, peers, cd_bin, tool: set by systemd-suite.sh before it sources this
# The CRI checks of scripts/guest/systemd-suite.sh (sourced through lib.sh):
# a pod placed as the kubelet's systemd driver places it (cgroup_parent
# kubepods-besteffort-pod<uid>.slice, which containerd's CRI turns into
# `slice:cri-containerd:ID` cgroup paths), host network (no CNI), two
# containers, through the handlers of write_containerd_config.

# The image for the sandbox and the containers: busybox and a pause
# (tests/cri/images/pause.c), imported once into containerd's k8s.io
# namespace as tether.local/node:1.
cri_image() {
    [[ -e $SUITE_WORK/image-imported ]] && return 0
    local d="$SUITE_WORK/image" root="$SUITE_WORK/image-root"
    mkroot "$root"
    gcc -static -O2 -o "$root/pause" "$repo/tests/cri/images/pause.c" || return 1
    mkdir -p "$d/blobs/sha256"
    tar -C "$root" -cf "$d/layer.tar" . || return 1
    python3 - "$d" <<'EOF' || return 1
import hashlib, json, os, sys
d = sys.argv[1]
def blob(data):
    h = hashlib.sha256(data).hexdigest()
    open(f"{d}/blobs/sha256/{h}", "wb").write(data)
    return {"digest": f"sha256:{h}", "size": len(data)}
layer = open(f"{d}/layer.tar", "rb").read()
os.remove(f"{d}/layer.tar")
l = blob(layer)
config = {"architecture": "amd64", "os": "linux",
          "config": {"Entrypoint": ["/pause"], "Env": ["PATH=/bin"]},
          "rootfs": {"type": "layers", "diff_ids": [l["digest"]]}}
c = blob(json.dumps(config).encode())
manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **c},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **l}]}
m = blob(json.dumps(manifest).encode())
index = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", **m,
         "annotations": {"io.containerd.image.name": "tether.local/node:1",
                         "org.opencontainers.image.ref.name": "1"},
         "platform": {"architecture": "amd64", "os": "linux"}}]}
json.dump(index, open(f"{d}/index.json", "w"))
json.dump({"imageLayoutVersion": "1.0.0"}, open(f"{d}/oci-layout", "w"))
EOF
    tar -C "$d" -cf "$SUITE_WORK/image.tar" . || return 1
    "$cd_bin/ctr" --address "$sock" --namespace k8s.io images import "$SUITE_WORK/image.tar" >/dev/null || return 1
    : >"$SUITE_WORK/image-imported"
}

# run_pod HANDLER NAME: starts a pod of two sleeping containers; prints
# "POD-ID C1-ID C2-ID" (nothing on failure).
run_pod() {
    local h="$1" name="$2" uid="${2//-/_}" dir="$SUITE_WORK/pod-$2" pod c1 c2
    mkdir -p "$dir"
    cat >"$dir/pod.json" <<EOF
{"metadata": {"name": "$name", "namespace": "systemd-suite", "uid": "$uid", "attempt": 0},
 "log_directory": "$dir/logs",
 "linux": {"cgroup_parent": "kubepods-besteffort-pod$uid.slice",
           "security_context": {"namespace_options": {"network": 2}}}}
EOF
    for c in c1 c2; do
        printf '{"metadata": {"name": "%s"}, "image": {"image": "tether.local/node:1"}, "command": ["sleep", "600"], "log_path": "%s.log", "linux": {}}\n' \
            "$c" "$c" >"$dir/$c.json"
    done
    pod="$(crictl runp --runtime "$h" "$dir/pod.json" 2>>"$dir/errors")" || return 1
    c1="$(crictl create "$pod" "$dir/c1.json" "$dir/pod.json" 2>>"$dir/errors")" || return 1
    c2="$(crictl create "$pod" "$dir/c2.json" "$dir/pod.json" 2>>"$dir/errors")" || return 1
    crictl start "$c1" "$c2" >/dev/null 2>>"$dir/errors" || return 1
    echo "$pod $c1 $c2"
}
pod_pid() { crictl inspectp "$1" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["info"]["pid"])'; }
ctr_pid() { crictl inspect "$1" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["info"]["pid"])'; }
remove_pod() { crictl stopp "$1" >/dev/null 2>&1; crictl rmp "$1" >/dev/null 2>&1; }

cri_checks() { # SHIM(tether|go) RUNC-LABEL RUNC-KIND(newest|debian)
    local shim_kind="$1" label="$2" handler slice name ids pod c1 c2 p0 p1 p2 podslice
    handler=runc slice=/go-shims.slice
    [[ $shim_kind == tether ]] && handler=tether slice=/tether-shims.slice
    [[ $3 == debian ]] && handler="$handler-debian"
    if ! cri_image; then
        fail "$shim_kind" "$label" "CRI: the test image" "build or import failed"
        return
    fi
    name="pod-$shim_kind-$3"
    podslice="/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${name//-/_}.slice"
    ids="$(run_pod "$handler" "$name")"
    if [[ -z $ids ]]; then
        fail "$shim_kind" "$label" "CRI: a pod of two containers" "$(tail -n 3 "$SUITE_WORK/pod-$name/errors" 2>/dev/null | paste -sd ' ')"
        return
    fi
    read -r pod c1 c2 <<<"$ids"
    pass "$shim_kind" "$label" "CRI: a pod of two containers"
    p0="$(pod_pid "$pod")" p1="$(ctr_pid "$c1")" p2="$(ctr_pid "$c2")"
    check "$shim_kind" "$label" "CRI: sandbox and containers in scopes of the pod slice" \
        "$podslice/cri-containerd-$pod.scope $podslice/cri-containerd-$c1.scope $podslice/cri-containerd-$c2.scope" \
        "$(cgroup_of "$p0") $(cgroup_of "$p1") $(cgroup_of "$p2")"
    check "$shim_kind" "$label" "CRI: one shim for the pod" "1" \
        "$(printf '%s\n' "$(ppid_of "$p0")" "$(ppid_of "$p1")" "$(ppid_of "$p2")" | sort -u | grep -c .)"
    check "$shim_kind" "$label" "CRI: the shim in its ShimCgroup slice" "$slice" "$(cgroup_of "$(ppid_of "$p1")")"
    check "$shim_kind" "$label" "CRI: exec" "hello" "$(crictl exec -s "$c2" echo hello 2>&1 | tr -d '\r')"
    # In-place resize, as the kubelet does it.
    local err scope="/sys/fs/cgroup$podslice/cri-containerd-$c1.scope"
    err="$(crictl update --memory 67108864 --cpu-quota 50000 --cpu-period 100000 "$c1" 2>&1 >/dev/null)"
    check "$shim_kind" "$label" "CRI: update memory.max and cpu.max" "67108864 50000 100000" \
        "$(cat "$scope/memory.max" "$scope/cpu.max" 2>/dev/null | paste -sd ' ')${err:+ ($err)}"
    remove_pod "$pod"
    waitfor 20 test ! -d "/sys/fs/cgroup$podslice/cri-containerd-$pod.scope"
    check "$shim_kind" "$label" "CRI: the pod's scopes go with it" "gone" \
        "$(ls -d "/sys/fs/cgroup$podslice"/cri-containerd-*.scope >/dev/null 2>&1 && echo there || echo gone)"
}
