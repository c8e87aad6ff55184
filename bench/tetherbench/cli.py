"""Command line of bench/bench.py: options, the order of the benchmarks,
and where the results, report and chart go."""

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import b1_memory, b2_lifecycle, b3_churn, b4_exec, b5_output, b6_exits, b7_groups
from . import cgroup
from .chart import make_chart
from .harness import Bench
from .report import fmt_val, summarize, write_report
from .sandbox import GO_SHIM, RUNC, in_testenv, run_inside
from .util import MIB, NCPU, REPO, T0, log, read

DESCRIPTION = "Side-by-side benchmark of tether and containerd-shim-runc-v2 (B1-B7)."


def parse_args():
    ap = argparse.ArgumentParser(description=DESCRIPTION)
    ap.add_argument("--quick", action="store_true", help="fewer rounds and containers")
    ap.add_argument("--only", default="", help="comma list of B1..B7 to run (development)")
    ap.add_argument("--out-dir", default=str(REPO / "docs"), help="where benchmarks.md/png go")
    ap.add_argument("--results-dir", default=str(REPO / "bench" / "results"),
                    help="where latest.json goes")
    ap.add_argument("--tether-shim", default=None, metavar="PATH",
                    help="measure this build of containerd-shim-tether-v2 (e.g. an older "
                         "commit's, for a before/after) instead of target/release's")
    ap.add_argument("--command", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--from-json", default=None, metavar="PATH",
                    help="only rewrite the report and chart from a results file "
                         "(e.g. bench/results/latest.json)")
    return ap.parse_args()


def report_from_json(args):
    data = json.loads(Path(args.from_json).read_text())
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = summarize(data["config"], data["results"])
    chart = make_chart(data["results"], rows, out_dir)
    write_report(out_dir, data, rows, chart, data["seconds"])
    log(f"rewrote {out_dir / 'benchmarks.md'} and {out_dir / chart} from {args.from_json}")
    return 0


def machine_info(tether_shim=None):
    mem = next((ln for ln in read("/proc/meminfo", "").splitlines() if ln.startswith("MemTotal")), "")
    cpu = next((ln.split(":", 1)[1].strip() for ln in read("/proc/cpuinfo", "").splitlines()
                if ln.startswith("model name")), platform.processor())

    def ver(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception:
            return "?"
    osr = next((ln.split("=", 1)[1].strip('"') for ln in read("/etc/os-release", "").splitlines()
                if ln.startswith("PRETTY_NAME=")), "?")
    commit = ver(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = ver(["git", "-C", str(REPO), "status", "--porcelain", "--", "src", "Cargo.toml",
                 "Cargo.lock", "build.rs", "proto"])
    return dict(
        nproc=NCPU, cpu=cpu, memory_gib=round(int(mem.split()[1]) / MIB, 1) if mem else None,
        kernel=platform.release(), os=osr, cgroup=cgroup.mode(),
        containerd=ver([os.environ.get("CONTAINERD_BIN", "containerd"), "--version"]).split("\n")[0],
        runc=ver([str(RUNC), "--version"]).split("\n")[0],
        go_shim=f"{GO_SHIM} ({GO_SHIM.stat().st_size / MIB:.1f} MiB, dynamically linked)",
        tether=(f"{tether_shim} (given with --tether-shim; harness at commit {commit})" if tether_shim
                else f"commit {commit}{' + uncommitted changes in src/' if dirty else ''}"),
    )


def main():
    args = parse_args()
    if args.from_json:
        return report_from_json(args)
    if os.geteuid() != 0:
        sys.exit("bench: must run as root")
    if not in_testenv():
        sys.exit("bench: run inside a testenv environment: bash bench/run.sh")
    for tool in ["ctr", "containerd", "gcc"]:
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} not found")
    if not RUNC.exists() or not GO_SHIM.exists():
        sys.exit("bench: runc or containerd-shim-runc-v2 missing")

    only = {x.strip().upper() for x in args.only.split(",") if x.strip()}

    def want(b):
        return not only or b in only
    bench = Bench(args.quick, args.tether_shim)
    if not bench.impls[0].src.exists():
        sys.exit(f"bench: {bench.impls[0].src} missing: build tether first (cargo build --release)")
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    t_start = time.monotonic()
    steps = [("B2", b2_lifecycle.run, want("B2")), ("B3", b3_churn.run, want("B3")),
             ("B4", b4_exec.run, want("B4")), ("B5", b5_output.run, want("B5")),
             ("B1+B6", b1_memory.run, want("B1") or want("B6")),
             ("B6b", b6_exits.run_paused, want("B6") or want("B6B")),
             ("B7", b7_groups.run, want("B7"))]

    def run_steps():
        for name, fn, wanted in steps:
            if wanted:
                with bench.measure_noise(name):
                    fn(bench)
    rc = run_inside(bench, run_steps)
    if rc != 0:
        return rc
    duration = time.monotonic() - T0 + float(os.environ.get("BENCH_BUILD_SECONDS", "0"))
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = summarize(bench.cfg, bench.results)
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    cmd = (args.command or " ".join(shlex.quote(a) for a in [sys.argv[0], *sys.argv[1:]])).strip()
    mode = "quick" if args.quick else "full"
    run = dict(config=bench.cfg, results=bench.results, noise=bench.noise,
               failures=bench.failures, machine=machine_info(args.tether_shim), started=started,
               seconds=round(duration, 1), command=cmd, mode=mode)
    (results_dir / "latest.json").write_text(json.dumps(run, indent=1, default=str))
    chart = make_chart(bench.results, rows, out_dir)
    write_report(out_dir, run, rows, chart, duration)
    log(f"wrote {out_dir / 'benchmarks.md'} and {out_dir / chart} "
        f"({(time.monotonic() - t_start) / 60:.1f} min)")
    for r in rows:
        met = "" if r["met"] is None else ("MET" if r["met"] else "NOT MET")
        print(f"{r['bench']:3} {r['metric'][:60]:60} tether {fmt_val(r['tether'], r['fmt']):>9} "
              f"go {fmt_val(r['go'], r['fmt']):>9} {met}")
    return 0
