# shellcheck shell=bash
# A single-node Kubernetes cluster on this machine, for scripts/kube/checks.sh
# (sourced; not run on its own). It needs the environment of
# `scripts/critest.sh --exec` (a private containerd with the CRI plugin and
# the runtime handlers runc and tether: CRI_ENDPOINT, CRI_TMP, CRICTL ...) and
# KUBE_BIN, the directory scripts/kube/build.sh prints.
#
# cluster_up starts, all under $CRI_TMP/kube and bound to 127.0.0.1 except the
# kubelet's API (on the node IP, which the API server dials for logs and exec):
#   etcd; kube-apiserver (client-certificate authentication, Node and RBAC
#   authorisation, a service-account key pair made here); kube-controller-
#   manager; kube-scheduler; the kubelet (cgroupfs driver, containerd's CRI,
#   root dir, pod logs and certificates under the private dir)
# then waits for the node to be Ready and the default service account to
# exist, and creates the RuntimeClasses `tether` (handler tether) and `runc`
# (handler runc). cluster_down stops each component by PID, in reverse order,
# and puts back what the kubelet changes on the host: the kernel sysctls it
# sets, the kubepods cgroups it makes and any KUBE-* iptables chains.
# Logs: $CRI_RESULTS/kube/*.log (kept with the critest.sh results).

kube_dir="$CRI_TMP/kube"
kube_logs="$CRI_RESULTS/kube"
node_name="tether-node"
kube_pids=()          # started components, in start order: "NAME:PID"
kube_sysctls_before=""
kube_chains_before=""
kube_cgroups_before=""
kube_dummy_link=""

klog() { echo "[kube] $*" >&2; }
kubectl() { "$KUBE_BIN/kubectl" --kubeconfig "$kube_dir/admin.kubeconfig" "$@"; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# The sysctls the kubelet sets when protectKernelDefaults is false.
kube_sysctl_keys=(vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops
    kernel/keys/root_maxkeys kernel/keys/root_maxbytes)

# start NAME CMD...: runs CMD in the background, logging to $kube_logs/NAME.log
start_component() {
    local name="$1"; shift
    "$@" </dev/null >"$kube_logs/$name.log" 2>&1 &
    kube_pids+=("$name:$!")
    klog "$name: pid $!"
}

# wait_until SECONDS WHAT CMD...: until CMD succeeds; fails naming WHAT
wait_until() {
    local end=$((SECONDS + $1)) what="$2"; shift 2
    until "$@" >/dev/null 2>&1; do
        local p
        for p in "${kube_pids[@]}"; do
            kill -0 "${p#*:}" 2>/dev/null || { klog "${p%%:*} exited while waiting for $what"; tail -n 30 "$kube_logs/${p%%:*}.log" >&2; return 1; }
        done
        if [[ $SECONDS -ge $end ]]; then klog "timed out waiting for $what"; return 1; fi
        sleep 0.5
    done
}

# The node's IP: the source address of the default route, or, on a machine
# without one, an address on a dummy link made for the run.
node_ip() {
    local ip
    ip="$(ip -4 -o route get 192.0.2.255 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')"
    if [[ -z "$ip" || "$ip" == 127.* ]]; then
        kube_dummy_link="tkube$$"
        kube_dummy_link="${kube_dummy_link:0:15}"
        ip link add "$kube_dummy_link" type dummy && ip addr add 10.254.254.1/32 dev "$kube_dummy_link" &&
            ip link set "$kube_dummy_link" up || return 1
        ip="10.254.254.1"
    fi
    echo "$ip"
}

make_pki() {
    local pki="$kube_dir/pki" ip="$1"
    mkdir -p "$pki"
    chmod 0700 "$pki"
    (
        cd "$pki"
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj "/CN=tether-kube-ca" 2>/dev/null
        # name SUBJECT [SAN]: a key and a certificate signed by the CA
        cert() {
            openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
            local ext="$1.ext"
            printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n' >"$ext"
            [[ -n "${3:-}" ]] && echo "subjectAltName=$3" >>"$ext"
            openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days 2 -extfile "$ext" 2>/dev/null
            rm -f "$1.csr" "$ext"
        }
        cert apiserver "/CN=kube-apiserver" \
            "IP:127.0.0.1,IP:$ip,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
        cert admin "/O=system:masters/CN=kubernetes-admin"
        # The kubelet's identity is the node's; system:masters as well, so
        # that authorisation never gets in the way of what is tested here.
        cert kubelet "/O=system:nodes/O=system:masters/CN=system:node:$node_name"
        cert kubelet-serving "/CN=$node_name" "IP:$ip,IP:127.0.0.1,DNS:$node_name"
        openssl genrsa -out sa.key 2048 2>/dev/null
        openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    ) || return 1
    chmod 0600 "$pki"/*.key
}

kubeconfig() { # FILE USER SERVER
    cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: tether
  cluster:
    server: $3
    certificate-authority: $kube_dir/pki/ca.crt
users:
- name: $2
  user:
    client-certificate: $kube_dir/pki/$2.crt
    client-key: $kube_dir/pki/$2.key
contexts:
- name: tether
  context: {cluster: tether, user: $2}
current-context: tether
EOF
    chmod 0600 "$1"
}

cluster_up() {
    mkdir -p "$kube_dir" "$kube_logs"
    local t0=$SECONDS ip
    ip="$(node_ip)" || { klog "no node IP"; return 1; }
    klog "node IP $ip"
    make_pki "$ip" || { klog "making certificates failed"; return 1; }

    local k
    for k in "${kube_sysctl_keys[@]}"; do kube_sysctls_before+="$k=$(cat "/proc/sys/$k" 2>/dev/null) "; done
    kube_chains_before="$(for t in filter nat mangle; do iptables -t "$t" -S 2>/dev/null | awk -v t="$t" '$1 == "-N" {print t " " $2}'; done)"
    kube_cgroups_before="$(ls -d /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods 2>/dev/null || true)"

    local etcd_port etcd_peer api_port
    etcd_port="$(free_port)" etcd_peer="$(free_port)" api_port="$(free_port)"
    start_component etcd "$KUBE_BIN/etcd" --name tether --data-dir "$kube_dir/etcd" \
        --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
        --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
        --initial-cluster "tether=http://127.0.0.1:$etcd_peer" --unsafe-no-fsync
    wait_until 60 "etcd" curl -fsS "http://127.0.0.1:$etcd_port/health" || return 1

    local pki="$kube_dir/pki"
    start_component kube-apiserver "$KUBE_BIN/kube-apiserver" \
        --etcd-servers "http://127.0.0.1:$etcd_port" \
        --bind-address 127.0.0.1 --secure-port "$api_port" --advertise-address "$ip" \
        --cert-dir "$kube_dir/apiserver" \
        --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
        --client-ca-file "$pki/ca.crt" \
        --kubelet-client-certificate "$pki/admin.crt" --kubelet-client-key "$pki/admin.key" \
        --kubelet-certificate-authority "$pki/ca.crt" --kubelet-preferred-address-types InternalIP,Hostname \
        --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
        --service-account-issuer https://kubernetes.default.svc.cluster.local \
        --service-cluster-ip-range 10.0.0.0/24 \
        --authorization-mode Node,RBAC --allow-privileged=true
    local server="https://127.0.0.1:$api_port"
    kubeconfig "$kube_dir/admin.kubeconfig" admin "$server"
    kubeconfig "$kube_dir/kubelet.kubeconfig" kubelet "$server"
    wait_until 120 "kube-apiserver /readyz" kubectl get --raw /readyz || return 1

    start_component kube-controller-manager "$KUBE_BIN/kube-controller-manager" \
        --kubeconfig "$kube_dir/admin.kubeconfig" \
        --authentication-kubeconfig "$kube_dir/admin.kubeconfig" --authorization-kubeconfig "$kube_dir/admin.kubeconfig" \
        --bind-address 127.0.0.1 --secure-port "$(free_port)" --leader-elect=false \
        --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
        --use-service-account-credentials=true
    start_component kube-scheduler "$KUBE_BIN/kube-scheduler" \
        --kubeconfig "$kube_dir/admin.kubeconfig" \
        --authentication-kubeconfig "$kube_dir/admin.kubeconfig" --authorization-kubeconfig "$kube_dir/admin.kubeconfig" \
        --bind-address 127.0.0.1 --secure-port "$(free_port)" --leader-elect=false

    mkdir -p "$kube_dir/kubelet" "$kube_dir/pod-logs"
    cat >"$kube_dir/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $ip
port: $(free_port)
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $(free_port)
tlsCertFile: $pki/kubelet-serving.crt
tlsPrivateKeyFile: $pki/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
containerRuntimeEndpoint: $CRI_ENDPOINT
imageServiceEndpoint: $CRI_ENDPOINT
failSwapOn: false
failCgroupV1: false
makeIPTablesUtilChains: false
podLogsDir: $kube_dir/pod-logs
resolvConf: ""
serializeImagePulls: false
evictionHard:
  memory.available: "50Mi"
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
EOF
    start_component kubelet "$KUBE_BIN/kubelet" --config "$kube_dir/kubelet.yaml" \
        --kubeconfig "$kube_dir/kubelet.kubeconfig" --root-dir "$kube_dir/kubelet" \
        --hostname-override "$node_name" --node-ip "$ip" --v 2
    wait_until 180 "node $node_name Ready" kubectl wait "node/$node_name" --for=condition=Ready --timeout=5s || return 1
    wait_until 60 "the default service account" kubectl get serviceaccount default || return 1
    kubectl apply -f - >&2 <<EOF || return 1
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: tether}
handler: tether
---
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: runc}
handler: runc
---
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: tether-sandbox}
handler: tether-sandbox
EOF
    klog "cluster up in $((SECONDS - t0)) s ($("$KUBE_BIN/kubelet" --version))"
}

stop_pid() { # NAME PID
    kill -0 "$2" 2>/dev/null || return 0
    kill -TERM "$2" 2>/dev/null
    local i
    for i in $(seq 60); do kill -0 "$2" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$2" 2>/dev/null && { klog "$1 ($2) ignored SIGTERM; SIGKILL"; kill -KILL "$2" 2>/dev/null; }
    wait "$2" 2>/dev/null
    return 0
}

cluster_down() {
    local i p
    for ((i = ${#kube_pids[@]} - 1; i >= 0; i--)); do
        p="${kube_pids[$i]}"
        stop_pid "${p%%:*}" "${p#*:}"
    done
    kube_pids=()
    # What the kubelet changed on the host.
    local kv
    for kv in $kube_sysctls_before; do
        [[ -n "${kv#*=}" ]] && echo "${kv#*=}" >"/proc/sys/${kv%%=*}" 2>/dev/null
    done
    local t c
    for t in filter nat mangle; do
        for c in $(iptables -t "$t" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ {print $2}'); do
            grep -qx "$t $c" <<<"$kube_chains_before" && continue
            iptables -t "$t" -F "$c" 2>/dev/null
        done
        for c in $(iptables -t "$t" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ {print $2}'); do
            grep -qx "$t $c" <<<"$kube_chains_before" && continue
            iptables -t "$t" -X "$c" 2>/dev/null
        done
    done
    [[ -n "$kube_dummy_link" ]] && ip link del "$kube_dummy_link" 2>/dev/null
    # The kubepods cgroups, once containerd's clean-up has emptied them (the
    # caller runs cluster_down before critest.sh removes the pods: a second
    # pass there is not needed because checks.sh deletes its pods first).
    local cg
    for cg in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
        [[ -d "$cg" ]] || continue
        grep -qxF "$cg" <<<"$kube_cgroups_before" && continue
        find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
    return 0
}
