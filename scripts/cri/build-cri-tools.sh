#!/usr/bin/env bash
# Builds critest, crictl (and the ginkgo CLI critest -parallel needs) of cri-tools VERSION from the Go module proxy and
# caches them outside the source tree; prints the bin dir.
#
#   scripts/cri/build-cri-tools.sh [VERSION]     (default v1.34.0)
#
# Cache: $TETHER_PEERS_DIR (default /var/cache/tether-peers)/cri-tools-VERSION/bin.
# Concurrent callers are serialised with flock; a build happens only when the
# binaries are missing.
set -euo pipefail
version="${1:-v1.34.0}"
version="v${version#v}"
module="sigs.k8s.io/cri-tools"
cache="${TETHER_PEERS_DIR:-/var/cache/tether-peers}"
dest="$cache/cri-tools-${version#v}"
mkdir -p "$cache"
exec 9>"$cache/.cri-tools-${version#v}.lock"
flock 9
if [[ -x "$dest/bin/critest" && -x "$dest/bin/crictl" && -x "$dest/bin/ginkgo" ]]; then
    echo "$dest/bin"
    exit 0
fi
command -v go >/dev/null || { echo "cri-tools: go is needed to build $module@$version" >&2; exit 1; }
tmp="$dest.tmp.$$"
start=$SECONDS
rm -rf "$tmp"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin"
echo "cri-tools: building critest and crictl $version from $module" >&2
# Build inside the module's own source tree so that its go.mod (replace and
# exclude directives included) governs the build, as `go install pkg@v` would
# refuse a module with replace directives.
src="$(cd "$tmp" && go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[[ -d "$src" ]] || { echo "cri-tools: go mod download of $module@$version failed" >&2; exit 1; }
cp -r "$src" "$tmp/src"
chmod -R u+w "$tmp/src"
(
    cd "$tmp/src"
    export GOFLAGS="-buildvcs=false -mod=mod" CGO_ENABLED=0
    jobs="${CRI_TOOLS_BUILD_JOBS:-1}"   # keep the build gentle on a small shared machine
    ldflags="-X $module/pkg/version.Version=$version"
    # critest is a Go test binary (upstream's Makefile: go test -c).
    go test -c -p "$jobs" -trimpath -ldflags "$ldflags" -o "$tmp/bin/critest" ./cmd/critest
    go build -p "$jobs" -trimpath -ldflags "$ldflags" -o "$tmp/bin/crictl" ./cmd/crictl
    # critest -parallel=N re-runs itself under the ginkgo CLI, which must be in
    # PATH: build the one of the ginkgo version cri-tools pins.
    go build -p "$jobs" -trimpath -o "$tmp/bin/ginkgo" github.com/onsi/ginkgo/v2/ginkgo
) >&2
rm -rf "$tmp/src"
echo "built $module@$version in $((SECONDS - start)) s on $(date -u +%FT%TZ)" >"$tmp/BUILD-INFO"
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
echo "cri-tools: $version built in $((SECONDS - start)) s" >&2
echo "$dest/bin"
