#!/usr/bin/env python3
"""Summarises a ginkgo JSON report (critest -ginkgo.json-report).

    report.py REPORT.json OUTDIR

Writes OUTDIR/results.tsv (STATE<TAB>SECONDS<TAB>spec name, sorted by name)
OUTDIR/failures.txt (each failed spec, its failure message and location) and
OUTDIR/skipped.txt (spec<TAB>why, for the specs skipped at run time),
and prints "PASSED FAILED SKIPPED" on one line. Pending specs count as
skipped; panicked, aborted, interrupted and timed-out ones as failed; a failed
suite-level node (BeforeSuite, ...) counts as one failure.

    report.py --compare A/results.tsv B/results.tsv

prints the specs that passed in A but not in B (STATE-IN-B<TAB>spec), then
the specs that failed in both ("failed in both"<TAB>spec). Either report's
results.tsv will do (scripts/node/report.py's has no SECONDS).
"""
import json
import os
import sys

FAILED = {"failed", "panicked", "aborted", "interrupted", "timedout"}
SKIPPED = {"skipped", "pending"}


def spec_name(s):
    return " ".join([t for t in s.get("ContainerHierarchyTexts") or [] if t] + [s.get("LeafNodeText") or ""]).strip()


def drop_struct_dumps(lines):
    """Replaces each multi-line `{ ... }` block (gomega's dump of an error
    value) by `{...}`."""
    out, closing = [], None
    for line in lines:
        if closing is not None:
            if line == closing:
                closing = None
            continue
        if line.strip() == "{":
            indent = line[: len(line) - len(line.lstrip())]
            closing = indent + "}"
            out.append(indent + "{...}")
            continue
        out.append(line)
    return out


def summarise(path, outdir):
    with open(path) as f:
        suites = json.load(f)
    rows, failures, skips = [], [], []
    passed = failed = skipped = 0
    for suite in suites:
        for s in suite.get("SpecReports") or []:
            kind = s.get("LeafNodeType", "")
            state = s.get("State", "")
            name = spec_name(s)
            if kind != "It":
                if state in FAILED:
                    name = ("[%s] %s" % (kind, name)).strip()
                else:
                    continue
            secs = (s.get("RunTime") or 0) / 1e9
            rows.append((state, secs, name))
            if state in FAILED:
                failed += 1
                fl = s.get("Failure") or {}
                loc = fl.get("Location") or {}
                msg = fl.get("Message") or ""
                # gomega dumps the whole error struct after the message: keep
                # the head, which says what failed.
                lines = drop_struct_dumps(msg.rstrip().splitlines())
                if len(lines) > 40:
                    lines = lines[:40] + ["    [... %d more lines]" % (len(lines) - 40)]
                msg = "\n".join(lines)
                if fl.get("ForwardedPanic"):
                    msg += "\npanic: " + fl["ForwardedPanic"]
                failures.append("=== %s [%s, %.1f s]\n%s:%s\n%s\n" % (
                    name, state, secs, loc.get("FileName", "?"), loc.get("LineNumber", "?"), msg.rstrip()))
            elif state in SKIPPED:
                skipped += 1
                why = ((s.get("Failure") or {}).get("Message") or "").strip().replace("\n", " ")
                if why:
                    skips.append("%s\t%s" % (name, why))
            elif state == "passed":
                passed += 1
    rows.sort(key=lambda r: r[2])
    with open(os.path.join(outdir, "results.tsv"), "w") as f:
        for state, secs, name in rows:
            f.write("%s\t%.1f\t%s\n" % (state, secs, name))
    with open(os.path.join(outdir, "failures.txt"), "w") as f:
        f.write("\n".join(failures))
    with open(os.path.join(outdir, "skipped.txt"), "w") as f:
        f.write("".join(l + "\n" for l in sorted(skips)))
    print(passed, failed, skipped)


def load(tsv):
    """Reads a results.tsv of either report (STATE<TAB>[SECONDS<TAB>]spec):
    spec -> sorted list of its states (a name may be reported twice)."""
    out = {}
    with open(tsv) as f:
        for line in f:
            if not line.strip():
                continue
            state, rest = line.rstrip("\n").split("\t", 1)
            secs, sep, name = rest.partition("\t")
            try:
                float(secs)
            except ValueError:
                sep = ""
            out.setdefault(name if sep else rest, []).append(state)
    return {name: sorted(states) for name, states in out.items()}


def is_failure(state):
    return state not in ("passed", "skipped", "pending")


def compare(a, b):
    """As tests/common/specs.rs compares a runc run (A) with a tether run
    (B): the specs that pass in A and not (as often) in B, then those that
    fail in both."""
    ra, rb = load(a), load(b)
    both = []
    for name in sorted(ra):
        sa, sb = ra[name], rb.get(name, [])
        if sa.count("passed") > sb.count("passed"):
            print("%s\t%s" % (", ".join(sb) or "missing", name))
        if any(map(is_failure, sa)) and any(map(is_failure, sb)):
            both.append(name)
    for name in both:
        print("failed in both\t%s" % name)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--compare":
        compare(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 3:
        summarise(sys.argv[1], sys.argv[2])
    else:
        sys.exit(__doc__)
