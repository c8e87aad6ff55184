#!/usr/bin/env bash
# Builds the real peers the tests run against, from the Go module proxy, and
# caches them by version outside the source tree.
#
#   scripts/peers.sh containerd VERSION   build containerd, ctr and
#                                          containerd-shim-runc-v2 VERSION
#                                          (e.g. 2.3.7 or 1.7.35); prints the bin dir
#   scripts/peers.sh matrix               build every containerd of the test matrix
#   scripts/peers.sh list                 the test matrix, one version a line
#
# Cache: $TETHER_PEERS_DIR (default /var/cache/tether-peers)/containerd-VERSION/bin.
# "system" in the matrix is Debian's containerd (apt), which is not built.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cache="${TETHER_PEERS_DIR:-/var/cache/tether-peers}"
matrix_file="$here/tests/peers/containerd-matrix"

matrix() {
    if [[ -n "${TETHER_CONTAINERD:-}" ]]; then
        tr ', ' '\n\n' <<<"$TETHER_CONTAINERD" | sed '/^$/d'
    else
        sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$matrix_file" | awk '{print $1}'
    fi
}

build_containerd() {
    local version="$1" module
    case "$version" in
        2.*) module="github.com/containerd/containerd/v2" ;;
        1.*) module="github.com/containerd/containerd" ;;
        *) echo "peers: unsupported containerd version $version" >&2; return 2 ;;
    esac
    local dest="$cache/containerd-$version"
    mkdir -p "$cache"
    # One build per version at a time (tests run in parallel).
    exec 9>"$cache/.containerd-$version.lock"
    flock 9
    if [[ -x "$dest/bin/containerd" && -x "$dest/bin/ctr" && -x "$dest/bin/containerd-shim-runc-v2" ]]; then
        echo "$dest/bin"
        return 0
    fi
    command -v go >/dev/null || { echo "peers: go is needed to build containerd $version" >&2; return 1; }
    local tmp="$dest.tmp.$$" start=$SECONDS
    rm -rf "$tmp"
    mkdir -p "$tmp/bin"
    echo "peers: building containerd $version from $module" >&2
    # Build inside the module's own source tree, so that its go.mod (with its
    # replace and exclude directives, which `go install pkg@version` refuses)
    # governs the build exactly as upstream's release build.
    local src
    src="$(go mod download -json "$module@v$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    [[ -d "$src" ]] || { echo "peers: go mod download of $module@v$version failed" >&2; return 1; }
    cp -r "$src" "$tmp/src"
    chmod -R u+w "$tmp/src"
    (
        cd "$tmp/src"
        GOFLAGS="-buildvcs=false -mod=mod" CGO_ENABLED=1 go build -trimpath -o "$tmp/bin/" \
            -ldflags "-X $module/version.Version=v$version" \
            ./cmd/containerd ./cmd/ctr ./cmd/containerd-shim-runc-v2
    ) >&2
    rm -rf "$tmp/src"
    echo "built in $((SECONDS - start)) s on $(date -u +%FT%TZ)" >"$tmp/BUILD-INFO"
    rm -rf "$dest"
    mv "$tmp" "$dest"
    echo "peers: containerd $version built in $((SECONDS - start)) s" >&2
    echo "$dest/bin"
}

case "${1:-}" in
    containerd) build_containerd "${2:?version}" ;;
    matrix)
        for v in $(matrix); do
            [[ "$v" == system ]] && continue
            ( build_containerd "$v" >/dev/null )
        done
        ;;
    list) matrix ;;
    *) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
