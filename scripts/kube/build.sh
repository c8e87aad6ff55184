#!/usr/bin/env bash
# Builds the Kubernetes node components scripts/kube-e2e.sh runs (etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl)
# from the Go module proxy, through the wrapper module tests/kube (which pins
# k8s.io/kubernetes and maps its staging modules to their published versions),
# and caches them outside the source tree; prints the bin dir.
#
#   scripts/kube/build.sh
#
# Cache: $TETHER_PEERS_DIR (default /var/cache/tether-peers)/kube-VERSION-KEY/bin,
# VERSION being k8s.io/kubernetes's in tests/kube/go.mod and KEY a hash of the
# wrapper module's files, so an edit there rebuilds. Concurrent callers are
# serialised with flock; a build happens only when the binaries are missing.
# KUBE_BUILD_JOBS (default: the number of CPUs) is go build's -p.
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
mod="$here/tests/kube"
cache="${TETHER_PEERS_DIR:-/var/cache/tether-peers}"
version="$(awk '($1 == "k8s.io/kubernetes" && $2 ~ /^v1\./) {print $2} ($1 == "require" && $2 == "k8s.io/kubernetes") {print $3}' "$mod/go.mod" | head -n1)"
[[ -n "$version" ]] || { echo "kube: no k8s.io/kubernetes version in $mod/go.mod" >&2; exit 2; }
key="$(cat "$mod/go.mod" "$mod/go.sum" "$mod/tools.go" "$mod/cmd/etcd/main.go" | sha256sum | cut -c1-12)"
dest="$cache/kube-${version#v}-$key"
bins=(etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)
mkdir -p "$cache"
exec 9>"$cache/.kube.lock"
flock 9
have=1
for b in "${bins[@]}"; do [[ -x "$dest/bin/$b" ]] || have=0; done
if [[ $have == 1 ]]; then
    echo "$dest/bin"
    exit 0
fi
command -v go >/dev/null || { echo "kube: go is needed to build Kubernetes $version" >&2; exit 1; }
tmp="$dest.tmp.$$"
start=$SECONDS
rm -rf "$tmp"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin"
echo "kube: building Kubernetes $version and etcd from the module proxy" >&2
(
    cd "$mod"
    export GOFLAGS="-buildvcs=false -mod=mod" CGO_ENABLED=0
    pkg=k8s.io/kubernetes
    # One go build for all of them: the packages they share compile once.
    # The version stamp is what `kubectl version` and the node report.
    go build -p "${KUBE_BUILD_JOBS:-$(nproc)}" -trimpath -o "$tmp/bin/" \
        -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(cut -d. -f2 <<<"$version")" \
        "$pkg/cmd/kube-apiserver" "$pkg/cmd/kube-controller-manager" "$pkg/cmd/kube-scheduler" \
        "$pkg/cmd/kubelet" "$pkg/cmd/kubectl" ./cmd/etcd
) >&2
echo "built Kubernetes $version in $((SECONDS - start)) s on $(date -u +%FT%TZ)" >"$tmp/BUILD-INFO"
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
# Older builds go, but not those of the last day: another worktree with other
# wrapper-module files (another key) may be running its binaries right now.
for old in "$cache"/kube-*; do
    [[ "$old" == "$dest" || "$old" == *.tmp.* ]] && continue
    [[ -n "$(find "$old" -maxdepth 0 -mmin -1440 2>/dev/null)" ]] && continue
    rm -rf "$old"
done
echo "kube: Kubernetes $version built in $((SECONDS - start)) s" >&2
echo "$dest/bin"
