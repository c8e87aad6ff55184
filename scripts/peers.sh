#!/usr/bin/env bash
# Builds the real peers the tests run against, from the Go module proxy, and
# caches them by version outside the source tree.
#
#   scripts/peers.sh containerd VERSION   build containerd, ctr and
#                                          containerd-shim-runc-v2 VERSION
#                                          (e.g. 2.3.7 or 1.7.35); prints the bin dir
#   scripts/peers.sh runc VERSION         build runc VERSION (e.g. 1.5.3) with
#                                          seccomp; prints the bin dir
#   scripts/peers.sh matrix               build every containerd of the test matrix
#   scripts/peers.sh runc-matrix          build every runc of the runc matrix
#                                          (needs libseccomp-dev and pkg-config)
#   scripts/peers.sh list                 the containerd matrix, one version a line
#   scripts/peers.sh runc-list            the runc matrix, one version a line
#
# Cache: $TETHER_PEERS_DIR (default /var/cache/tether-peers)/containerd-VERSION/bin
# and .../runc-VERSION/bin. "system" in a matrix is Debian's package (apt),
# which is not built.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cache="${TETHER_PEERS_DIR:-/var/cache/tether-peers}"
matrix_file="$here/tests/peers/containerd-matrix"
runc_matrix_file="$here/tests/peers/runc-matrix"

matrix() {
    if [[ -n "${TETHER_CONTAINERD:-}" ]]; then
        tr ', ' '\n' <<<"$TETHER_CONTAINERD" | sed '/^$/d'
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

runc_matrix() {
    sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$runc_matrix_file" | awk '{print $1}'
}

# runc from its module's own tree, as its Makefile builds it (dynamic PIE,
# cgo, seccomp through Debian's libseccomp-dev), less the libpathrs tag: that
# links a Rust C library Debian 12 does not ship, and runc falls back to its
# built-in Go implementation without it. The version comes from the module's
# VERSION file (embedded); the commit is stamped as the module version.
build_runc() {
    local version="$1" module="github.com/opencontainers/runc"
    [[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+(-rc\.[0-9]+)?$ ]] ||
        { echo "peers: unsupported runc version $version" >&2; return 2; }
    local dest="$cache/runc-$version"
    mkdir -p "$cache"
    exec 8>"$cache/.runc-$version.lock"
    flock 8
    if [[ -x "$dest/bin/runc" ]]; then
        echo "$dest/bin"
        return 0
    fi
    command -v go >/dev/null || { echo "peers: go is needed to build runc $version" >&2; return 1; }
    pkg-config --exists libseccomp 2>/dev/null ||
        { echo "peers: runc needs libseccomp-dev and pkg-config (apt-get install libseccomp-dev pkg-config)" >&2; return 1; }
    local tmp="$dest.tmp.$$" start=$SECONDS src
    rm -rf "$tmp"
    mkdir -p "$tmp/bin"
    echo "peers: building runc $version from $module" >&2
    src="$(go mod download -json "$module@v$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    [[ -d "$src" ]] || { echo "peers: go mod download of $module@v$version failed" >&2; return 1; }
    cp -r "$src" "$tmp/src"
    chmod -R u+w "$tmp/src"
    (
        cd "$tmp/src"
        GOFLAGS="-buildvcs=false -mod=mod" CGO_ENABLED=1 go build -trimpath -buildmode=pie \
            -tags "seccomp urfave_cli_no_docs" \
            -ldflags "-X main.gitCommit=v$version-module-proxy" \
            -o "$tmp/bin/runc" .
    ) >&2
    rm -rf "$tmp/src"
    # Read whole, then matched: `runc --version | grep -q` fails under
    # pipefail whenever grep exits before runc has written its last line
    # (SIGPIPE), as it did on a fresh CI machine.
    local said
    said="$("$tmp/bin/runc" --version)"
    [[ $'\n'"$said" == *$'\n'"runc version $version"* ]] ||
        { echo "peers: the runc built does not say it is $version: $said" >&2; return 1; }
    [[ $'\n'"$said" == *$'\n'"libseccomp: "* ]] ||
        { echo "peers: runc $version was built without seccomp" >&2; return 1; }
    echo "built in $((SECONDS - start)) s on $(date -u +%FT%TZ)" >"$tmp/BUILD-INFO"
    rm -rf "$dest"
    mv "$tmp" "$dest"
    echo "peers: runc $version built in $((SECONDS - start)) s" >&2
    echo "$dest/bin"
}

case "${1:-}" in
    containerd) build_containerd "${2:?version}" ;;
    runc) build_runc "${2:?version}" ;;
    matrix)
        for v in $(matrix); do
            [[ "$v" == system ]] && continue
            ( build_containerd "$v" >/dev/null )
        done
        ;;
    runc-matrix)
        for v in $(runc_matrix); do
            [[ "$v" == system ]] && continue
            ( build_runc "$v" >/dev/null )
        done
        ;;
    list) matrix ;;
    runc-list) runc_matrix ;;
    *) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
