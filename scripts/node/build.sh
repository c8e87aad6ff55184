#!/usr/bin/env bash
# Builds what scripts/node-conformance.sh runs besides the kubelet: the
# Kubernetes node e2e suite (e2e_node.test, `go test -c` of
# k8s.io/kubernetes/test/e2e_node), the ginkgo CLI that runs it in parallel,
# and the two Go programs of the stand-in test images, agnhost
# (test/images/agnhost) and nnp (test/images/nonewprivs), all at the
# k8s.io/kubernetes version of the wrapper module tests/kube (the one
# scripts/kube/build.sh builds the kubelet from), from the Go module proxy,
# statically (CGO_ENABLED=0, as upstream builds them). Prints the bin dir.
#
#   scripts/node/build.sh
#
# Cache: $TETHER_PEERS_DIR (default /var/cache/tether-peers)/node-VERSION-KEY/bin,
# KEY a hash of tests/kube/go.mod, go.sum and this script, so an edit there
# rebuilds (an edit of tests/kube also rebuilds the kubelet: scripts/kube/
# build.sh hashes the same files). Serialised with flock; a build happens
# only when a binary is missing. KUBE_BUILD_JOBS (default: the number of CPUs)
# is go's -p. BUILD-INFO in the cache dir says how long each build took.
# On the 2-core VM: e2e_node.test takes about 11 minutes from an empty Go
# build cache (670 s, measured once; 37 s when the kubelet's packages are
# cached), agnhost about 3 minutes (184 s; 8 s warm), ginkgo 2 s and nnp
# under 1 s with a warm cache.
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
mod="$here/tests/kube"
cache="${TETHER_PEERS_DIR:-/var/cache/tether-peers}"
version="$(awk '($1 == "k8s.io/kubernetes" && $2 ~ /^v1\./) {print $2} ($1 == "require" && $2 == "k8s.io/kubernetes") {print $3}' "$mod/go.mod" | head -n1)"
[[ -n "$version" ]] || { echo "node: no k8s.io/kubernetes version in $mod/go.mod" >&2; exit 2; }
ginkgo_version="$(awk '$1 == "github.com/onsi/ginkgo/v2" {print $2}' "$mod/go.mod" | head -n1)"
[[ -n "$ginkgo_version" ]] || { echo "node: no github.com/onsi/ginkgo/v2 in $mod/go.mod" >&2; exit 2; }
key="$(cat "$mod/go.mod" "$mod/go.sum" "$0" | sha256sum | cut -c1-12)"
dest="$cache/node-${version#v}-$key"
bins=(e2e_node.test ginkgo agnhost nnp)
mkdir -p "$cache"
exec 9>"$cache/.node.lock"
flock 9
have=1
for b in "${bins[@]}"; do [[ -x "$dest/bin/$b" ]] || have=0; done
if [[ $have == 1 ]]; then
    echo "$dest/bin"
    exit 0
fi
command -v go >/dev/null || { echo "node: go is needed to build the node e2e suite $version" >&2; exit 1; }
tmp="$dest.tmp.$$"
rm -rf "$tmp"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin"
echo "node: building e2e_node.test, ginkgo $ginkgo_version, agnhost and nnp ($version) from the module proxy" >&2
k=k8s.io/kubernetes
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(cut -d. -f2 <<<"$version")"
# step NAME CMD...: runs CMD in the module, timing it into BUILD-INFO.
step() {
    local name="$1" t0=$SECONDS
    shift
    (
        cd "$mod"
        export GOFLAGS="-buildvcs=false -mod=mod" CGO_ENABLED=0
        "$@"
    ) >&2
    echo "$name: $((SECONDS - t0)) s" >>"$tmp/BUILD-INFO"
    echo "node: $name built in $((SECONDS - t0)) s" >&2
}
jobs="${KUBE_BUILD_JOBS:-$(nproc)}"
step e2e_node.test go test -c -vet=off -p "$jobs" -trimpath -ldflags "$ldflags" -o "$tmp/bin/e2e_node.test" "$k/test/e2e_node"
step ginkgo go build -p "$jobs" -trimpath -ldflags "-s -w" -o "$tmp/bin/ginkgo" github.com/onsi/ginkgo/v2/ginkgo
step agnhost go build -p "$jobs" -trimpath -ldflags "$ldflags" -o "$tmp/bin/agnhost" "$k/test/images/agnhost"
step nnp go build -p "$jobs" -trimpath -ldflags "-s -w" -o "$tmp/bin/nnp" "$k/test/images/nonewprivs"
echo "built on $(date -u +%FT%TZ) with $(go version | awk '{print $3}')" >>"$tmp/BUILD-INFO"
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
# Older builds go, but not those of the last day (another worktree's).
for old in "$cache"/node-1*; do
    [[ "$old" == "$dest" || "$old" == *.tmp.* ]] && continue
    [[ -n "$(find "$old" -maxdepth 0 -mmin -1440 2>/dev/null)" ]] && continue
    rm -rf "$old"
done
echo "$dest/bin"
