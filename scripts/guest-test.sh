#!/usr/bin/env bash
# Runs a command, or the cargo tests, in a guest (KVM, or TCG emulation
# where KVM cannot boot it; scripts/guest/README.md) whose only cgroup
# hierarchy is cgroup v2 (Debian's kernel, the host's root read-only over
# virtio-9p, a scratch disk; see scripts/guest/).
#
#   scripts/guest-test.sh [OPTIONS] -- CMD [ARGS...]
#       run CMD in the guest: CMD's stdout on stdout, the guest's console
#       (CMD's output included) live on stderr, CMD's exit status
#   scripts/guest-test.sh [OPTIONS] [TEST-FILTER]
#       build the test binaries on the host (cargo test --no-run), run each
#       in one guest with TEST-FILTER as cargo test would, their output live
#       on stderr, one summary line a binary on stdout; exit status 0 when
#       all passed
#
# OPTIONS:
#   --mem MB, --cpus N       guest memory (default 4096) and CPUs (default 2)
#   --scratch-mb MB          scratch disk size (sparse; default 20480)
#   --env NAME=VALUE         environment for CMD or the tests (repeatable)
#   --module NAME            kernel module to load first (repeatable)
#   --init bash|systemd      PID 1 of the guest: guest-init.sh (default) or
#                            systemd (CMD runs as tether-test.service)
#   --expose PATH            a host path under /tmp, /var/tmp, /var/lib or
#                            /var/log to keep visible (repeatable; the
#                            working dir and the repository always are)
#   --test NAME              tests mode: only this integration test
#                            (cargo test --test NAME; repeatable)
#   --lib                    tests mode: only the library's unit tests
#
# Tests mode: RUST_* and TETHER_* variables of the caller (but
# TETHER_PEERS_DIR) are passed on; GUEST_TEST_ARGS adds arguments for every
# test binary (e.g. "--test-threads=1 --nocapture").
# Environment (scripts/guest/run.sh): GUEST_TIMEOUT (s, default 1800),
# GUEST_ACCEL (auto: KVM, or TCG where KVM is PVM-only; kvm; tcg),
# GUEST_CONSOLE=0, GUEST_VERBOSE=1,
# GUEST_KEEP=1.
# Exit status 2: the guest cannot run here (no /dev/kvm, no qemu), or
# a usage error; 124: timeout; 125: the guest died.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
guest_opts=()
cargo_opts=()
command_mode=0
while (($#)); do
    case "$1" in
        --mem | --cpus | --scratch-mb | --env | --module | --expose | --init)
            (($# >= 2)) || { echo "guest-test: $1 needs a value" >&2; exit 2; }
            guest_opts+=("$1" "$2")
            shift 2
            ;;
        --test)
            (($# >= 2)) || { echo "guest-test: --test needs a name" >&2; exit 2; }
            cargo_opts+=(--test "$2")
            shift 2
            ;;
        --lib) cargo_opts+=(--lib); shift ;;
        --) command_mode=1; shift; break ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2; exit 2 ;;
        -*) echo "guest-test: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) break ;;
    esac
done

if ((command_mode)); then
    (($#)) || { echo "guest-test: no command after --" >&2; exit 2; }
    exec bash "$repo/scripts/guest/run.sh" "${guest_opts[@]}" -- "$@"
fi

# --- tests mode
(($# <= 1)) || { echo "guest-test: one TEST-FILTER at most (or -- CMD ...)" >&2; exit 2; }
filter="${1:-}"
# Fail before building when no guest can run here.
bash "$repo/scripts/guest/run.sh" --check
cd "$repo"
build="$(mktemp "${TMPDIR:-/tmp}/guest-test-build.XXXXXX")"
trap 'rm -f "$build"' EXIT
echo "guest-test: cargo test --no-run ${cargo_opts[*]}" >&2
cargo test --no-run --message-format=json "${cargo_opts[@]}" >"$build"
# The test executables (profile.test) of the build, as cargo test runs them.
mapfile -t binaries < <(python3 -c '
import json, sys
seen = []
for line in open(sys.argv[1]):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("profile", {}).get("test") and m.get("executable"):
        if m["executable"] not in seen:
            seen.append(m["executable"])
print("\n".join(seen))
' "$build")
((${#binaries[@]})) || { echo "guest-test: the build produced no test binaries" >&2; exit 1; }
echo "guest-test: ${#binaries[@]} test binaries" >&2

runner=(bash "$repo/scripts/guest/run-tests.sh")
[[ -n $filter ]] && runner+=(--filter "$filter")
read -r -a extra <<<"${GUEST_TEST_ARGS:-}"
for a in "${extra[@]}"; do
    runner+=(--arg "$a")
done
# The caller's RUST_* and TETHER_* settings (the guest has its own
# TETHER_PEERS_DIR).
while IFS='=' read -r -d '' name value; do
    [[ $name =~ ^(RUST_|TETHER_) && $name != TETHER_PEERS_DIR ]] && guest_opts+=(--env "$name=$value")
done < <(env -0)
guest_opts+=(--env "CARGO_MANIFEST_DIR=$repo")
for b in "${binaries[@]}"; do
    guest_opts+=(--expose "$(dirname "$b")")
done
status=0
bash "$repo/scripts/guest/run.sh" "${guest_opts[@]}" -- "${runner[@]}" -- "${binaries[@]}" || status=$?
exit "$status"
