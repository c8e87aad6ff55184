#!/usr/bin/env python3
"""Writes the cgroup v2 section of docs/benchmarks.md from the guest's
output (bench/guest-v2.sh): the v2 run's table, with the tether/Go ratio of
the host's (v1) run beside each metric. The section sits between
<!-- V2 start --> and <!-- V2 end -->, which bench/bench.py carries over.

    v2_section.py GUEST-OUTPUT BENCHMARKS-MD
"""
import re
import sys
from pathlib import Path

from tetherbench.markers import V2_END, V2_START, replace_section


def rows(lines):
    """(bench, metric) -> cells of the rows of the main results table
    (Benchmark, Metric, tether, Go, tether/Go, Target, Met?); its header and
    the noise table's rows are not taken."""
    out = {}
    for line in lines:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and re.fullmatch(r"B\d+b?", cells[0]):
            out[(cells[0], cells[1])] = cells
    return out


def main(guest_out, md_path):
    text = Path(guest_out).read_text().splitlines()
    try:
        machine = text[text.index("==== machine") + 1:text.index("==== table")]
        table = text[text.index("==== table") + 1:]
    except ValueError:
        sys.exit("v2_section.py: no table in the guest's output")
    md = Path(md_path)
    old = md.read_text()
    v1 = rows(old.splitlines()[:old.find(V2_START) if V2_START in old else None])
    L = [V2_START, "## cgroup v2 (the unified hierarchy, in a guest)\n",
         "One quick run of B1-B7 by `bash bench/guest-v2.sh`, inside the guest of "
         "`scripts/guest-test.sh`: Debian's kernel with only cgroup v2, CPU time from "
         "`cpu.stat`. This host's KVM cannot boot that kernel, so the guest is emulated "
         "(TCG): absolute times are several times slower than on the host, and only the "
         "tether/Go ratios compare. The last column is the ratio of the host's own "
         "(cgroup v1) run above.\n"]
    L += machine + [""]
    L.append("| Benchmark | Metric | tether (v2) | Go (v2) | tether/Go (v2) | tether/Go (v1, host) |")
    L.append("|---|---|---|---|---|---|")
    for key, cells in rows(table).items():
        ratio_v1 = v1.get(key, [""] * 5)[4]
        L.append(f"| {cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} | {cells[4]} | {ratio_v1} |")
    L.append(V2_END)
    md.write_text(replace_section(old, V2_START, V2_END, "\n".join(L)))


if __name__ == "__main__":
    main(*sys.argv[1:])
