# shellcheck shell=bash
# Process helpers shared by the test scripts (sourced, not run).

# descendants PID: the PIDs of every descendant of PID (children,
# grandchildren, ...), space-separated, read from /proc in one pass.
descendants() {
    cat /proc/[0-9]*/stat 2>/dev/null | awk -v root="$1" '
        { pid = $1; sub(/^.*\) /, ""); parent[pid] = $2 }
        END {
            want[root] = 1; changed = 1
            while (changed) {
                changed = 0
                for (p in parent) if (!(p in want) && (parent[p] in want)) { want[p] = 1; changed = 1 }
            }
            for (p in want) if (p != root) printf "%s ", p
        }'
}
