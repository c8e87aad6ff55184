#!/usr/bin/env bash
# The static gates of .ci/run, one by one or all (the default):
#   bash scripts/lint.sh [shellcheck] [doc] [machete] [deny]
#
# The gates:
#   (shellcheck) every shell script of the repository: the *.sh files and
#                any other file whose first line is a sh/bash shebang
#                (settings in .shellcheckrc), minus EXCLUDED below (none now)
#   (doc)        `cargo doc --no-deps` with every rustdoc warning an error,
#                public items, then private ones too
#   (machete)    dependencies of Cargo.toml that no source uses (cargo-machete)
#   (deny)       licences, banned or duplicate crates and sources of every
#                dependency, against deny.toml (cargo-deny, offline)
#
# Needs shellcheck, cargo-machete and cargo-deny on PATH (.ci/run installs
# them). None needs root or the network once the crates are fetched.
set -euo pipefail
cd "$(dirname "$0")/.."

# Paths shellcheck skips for now (regular expressions on the path from the
# repository's root). Each must go once its reason does.
EXCLUDED=()

# shell_scripts: the repository's shell scripts (tracked or new, not
# ignored), one path a line, minus EXCLUDED.
shell_scripts() {
    local f first skip re
    while IFS= read -r -d '' f; do
        [[ -f $f ]] || continue
        if [[ $f != *.sh ]]; then
            IFS= read -r first <"$f" 2>/dev/null || true
            [[ $first =~ ^'#!'.*[/\ ](ba|da)?sh([[:space:]]|$) ]] || continue
        fi
        skip=0
        for re in "${EXCLUDED[@]}"; do
            [[ $f =~ $re ]] && skip=1
        done
        ((skip)) || printf '%s\n' "$f"
    done < <(git ls-files -z --cached --others --exclude-standard)
}

gate_shellcheck() {
    local files
    mapfile -t files < <(shell_scripts)
    ((${#files[@]})) || { echo "lint: no shell script found" >&2; return 1; }
    echo "lint: shellcheck on ${#files[@]} scripts"
    shellcheck "${files[@]}"
}

gate_doc() {
    # Twice: the public items alone (a public doc linking to a private item
    # is an error there), then every item, as most of the doc comments are
    # on private ones. The second run reuses the first's build.
    RUSTDOCFLAGS="${RUSTDOCFLAGS:-} -D warnings" cargo doc --no-deps --quiet
    RUSTDOCFLAGS="${RUSTDOCFLAGS:-} -D warnings" cargo doc --no-deps --quiet --document-private-items
}

gate_machete() {
    cargo machete
}

gate_deny() {
    # Advisories are left out: they need the RustSec database from the
    # network, and a check whose verdict changes with the day's database
    # does not belong in a gate that must pass offline.
    # cargo-deny reads `cargo metadata`, which wants every platform's crates
    # (windows-sys and the like), not only the ones this host builds: a
    # fresh machine has fetched only those. Fetched once, from the registry.
    cargo fetch --locked --quiet
    cargo deny --offline --workspace check licenses bans sources
}

gates=("$@")
((${#gates[@]})) || gates=(shellcheck doc machete deny)
for g in "${gates[@]}"; do
    case $g in
        shellcheck | doc | machete | deny) ;;
        *) echo "lint: unknown gate '$g' (shellcheck, doc, machete, deny)" >&2; exit 2 ;;
    esac
done
for g in "${gates[@]}"; do
    start=$SECONDS
    "gate_$g"
    echo "lint: $g passed in $((SECONDS - start)) s"
done
