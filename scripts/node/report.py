#!/usr/bin/env python3
"""Summarises the ginkgo JSON report of a scripts/node-conformance.sh run.

    report.py REPORT.json OUTDIR

Like scripts/cri/report.py (whose failure formatting it reuses), but the
specs that focus and skip left out (ginkgo reports them as skipped, without
a message) are not counted: only the specs that ran, and those that skipped
themselves at run time (e2eskipper, with a reason). Writes
OUTDIR/results.tsv (STATE<TAB>spec), OUTDIR/times.tsv
(STATE<TAB>SECONDS<TAB>spec), OUTDIR/failures.txt and OUTDIR/skipped.txt
(spec<TAB>why), and prints "PASSED FAILED SKIPPED".
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cri"))
import report as cri  # noqa: E402


def main(path, outdir):
    with open(path) as f:
        suites = json.load(f)
    rows, failures, skips = [], [], []
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for suite in suites:
        for s in suite.get("SpecReports") or []:
            kind, state, name = s.get("LeafNodeType", ""), s.get("State", ""), cri.spec_name(s)
            fl = s.get("Failure") or {}
            if kind != "It":
                if state not in cri.FAILED:
                    continue
                name = ("[%s] %s" % (kind, name)).strip()
            if state in cri.SKIPPED and not (fl.get("Message") or "").strip():
                continue  # filtered out by focus / skip
            secs = (s.get("RunTime") or 0) / 1e9
            rows.append((state, secs, name))
            if state in cri.FAILED:
                counts["failed"] += 1
                loc = fl.get("Location") or {}
                lines = cri.drop_struct_dumps((fl.get("Message") or "").rstrip().splitlines())
                if len(lines) > 40:
                    lines = lines[:40] + ["    [... %d more lines]" % (len(lines) - 40)]
                msg = "\n".join(lines)
                if fl.get("ForwardedPanic"):
                    msg += "\npanic: " + fl["ForwardedPanic"]
                failures.append("=== %s [%s, %.1f s]\n%s:%s\n%s\n" % (
                    name, state, secs, loc.get("FileName", "?"), loc.get("LineNumber", "?"), msg.rstrip()))
            elif state in cri.SKIPPED:
                counts["skipped"] += 1
                skips.append("%s\t%s" % (name, fl["Message"].strip().replace("\n", " ")))
            elif state == "passed":
                counts["passed"] += 1
    rows.sort(key=lambda r: r[2])
    with open(os.path.join(outdir, "results.tsv"), "w") as f:
        f.writelines("%s\t%s\n" % (state, name) for state, _, name in rows)
    with open(os.path.join(outdir, "times.tsv"), "w") as f:
        f.writelines("%s\t%.1f\t%s\n" % r for r in rows)
    with open(os.path.join(outdir, "failures.txt"), "w") as f:
        f.write("\n".join(failures))
    with open(os.path.join(outdir, "skipped.txt"), "w") as f:
        f.write("".join(l + "\n" for l in sorted(skips)))
    print(counts["passed"], counts["failed"], counts["skipped"])


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
