#!/usr/bin/env python3
"""B9: `tetherctl run --rm /bin/true` against `ctr run --rm /bin/true`.

Issue #22's target: tetherctl's foreground `run --rm` of /bin/true is within
1.2 times `ctr run --rm` (containerd + containerd-shim-runc-v2) on the same
machine. As root, from the repository root, after a release build:

    cargo build --release --bins
    target/release/testenv exec --log-level warn --runc "$(command -v runc)" -- \
        python3 bench/b9_tetherctl.py [--rounds 30] [--bin-dir target/release]
    python3 bench/b9_tetherctl.py --from-json bench/results/b9.json   # rewrite the section only

It builds nothing. Inside the testenv environment (whose containerd it
uses, and whose teardown is the clean-up) it sets up the harness's busybox
rootfs and launchers (bench/tetherbench/sandbox.py), copies tetherctl and the tether shim
(which tetherctl runs from next to its own binary) into that sandbox, and
runs, per round, each of
  tetherctl    `tetherctl --state-dir S run --rm --rootfs R ID /bin/true`
  ctr-runc     `ctr run --rm --runtime io.containerd.runc.v2 --rootfs R ID /bin/true`
  ctr-tether   `ctr run --rm --runtime io.containerd.tether.v2 --rootfs R ID /bin/true`
in alternating order (A B C, then C B A, ...), timing each command's wall
time around the whole process. Raw samples go to bench/results/b9.json, and
the section between <!-- B9 start --> and <!-- B9 end --> of
docs/benchmarks.md is rewritten from them (bench/bench.py keeps it).
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tetherbench.markers import B9_END, B9_START, replace_section
from tetherbench.procfs import proc_stat_cpu
from tetherbench.util import NCPU, REPO, log, pct

TARGET = 1.2
VARIANTS = [
    ("tetherctl", "`tetherctl run --rm`"),
    ("ctr-runc", "`ctr run --rm`, containerd-shim-runc-v2"),
    ("ctr-tether", "`ctr run --rm`, tether shim"),
]


def stats(samples):
    return {"median": pct(samples, 50), "p90": pct(samples, 90)}


def render(data):
    """The B9 section of docs/benchmarks.md, from the saved results."""
    s = {k: stats(data["samples"][k]) for k, _ in VARIANTS}
    base = s["ctr-runc"]
    ratio = s["tetherctl"]["median"] / base["median"]
    m = data["machine"]
    L = [B9_START, "## B9: `tetherctl run --rm` vs `ctr run --rm`\n",
         f"`{data['command']}` on {data['date']}: {m['nproc']} CPUs ({m['cpu']}), "
         f"{m['kernel']}, {m['containerd']}, {m['runc']}, tether {m['tether']}. "
         f"{data['rounds']} rounds after {data['warmup']} warm-up round(s), the three "
         "commands interleaved (A B C, then C B A, ...), each timed around the whole "
         "process running `/bin/true` in the busybox rootfs; ctr talks to the harness's "
         "private containerd (which stays up between runs: its start-up is not counted, "
         "while tetherctl's whole run is).\n",
         f"| Command | median (ms) | p90 (ms) | ÷ ctr (runc shim), median | hung (> {data['timeout_s']} s) |",
         "|---|---|---|---|---|"]
    for key, label in VARIANTS:
        L.append(f"| {label} | {s[key]['median'] * 1e3:.1f} | {s[key]['p90'] * 1e3:.1f} | "
                 f"{s[key]['median'] / base['median']:.2f}× | {len(data['hung_rounds'][key])} |")
    L.append("")
    L.append(f"Target (issue #22): tetherctl ≤ {TARGET}× `ctr run --rm` (runc shim), median: "
             f"{ratio:.2f}×, **{'met' if ratio <= TARGET else 'not met'}**. "
             f"Foreign CPU while it ran: {data['foreign_cpu_pct']:.1f} % of all CPUs"
             f"{' (noisy)' if data['foreign_cpu_pct'] > 5 else ''}.\n")
    if any(data["hung_rounds"].values()):
        L.append("A hung command was killed after the timeout, its container force-removed, "
                 "and its round left out of that command's median and p90 (the rounds are in "
                 "the JSON's `hung_rounds`).\n")
    L.append("Raw samples: `bench/results/b9.json`.")
    L.append(B9_END)
    return "\n".join(L)


def write_section(data, md_path):
    md = Path(md_path)
    md.write_text(replace_section(md.read_text(), B9_START, B9_END, render(data)))


def measure(sb, args):
    ctl_dir = sb.tmp / "ctl"
    ctl_dir.mkdir()
    # On the environment's own /run: the shim's socket path under it must
    # stay within 107 bytes, which the environment's dir in /tmp would not.
    state = Path("/run/tether-b9")
    bin_dir = Path(args.bin_dir)
    for name in ["tetherctl", "containerd-shim-tether-v2"]:
        shutil.copy2(bin_dir / name, ctl_dir / name)
    runc_ns, tether_ns = sb.impls[1].ns, sb.impls[0].ns
    env = dict(os.environ)
    for k in ["CONTAINERD_ADDRESS", "CONTAINERD_NAMESPACE", "TETHER_STATE_DIR"]:
        env.pop(k, None)

    def cmd(key, cid):
        if key == "tetherctl":
            return [str(ctl_dir / "tetherctl"), "--state-dir", str(state), "run", "--rm",
                    "--rootfs", str(sb.rootfs), cid, "/bin/true"]
        ns, rt = (runc_ns, "io.containerd.runc.v2") if key == "ctr-runc" else \
            (tether_ns, "io.containerd.tether.v2")
        return ["ctr", "--address", str(sb.addr), "--namespace", ns, "run", "--rm",
                "--runtime", rt, "--rootfs", str(sb.rootfs), cid, "/bin/true"]

    def once(key, cid):
        """Seconds the command took, or None when it hung (killed, by PID,
        after --timeout seconds; what its container left is logged and
        force-removed)."""
        if sb.stopping:
            raise RuntimeError("stopping")
        t0 = time.perf_counter()
        try:
            r = subprocess.run(cmd(key, cid), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            log(f"{key} {cid}: no exit after {args.timeout} s; killed")
            for f in sorted((state / "containers" / cid).rglob("*")) if key == "tetherctl" else []:
                if f.is_file() and f.stat().st_size < 65536:
                    log(f"  {f}:\n{f.read_text(errors='replace')}")
            rm = [str(ctl_dir / "tetherctl"), "--state-dir", str(state), "rm", "-f", cid] \
                if key == "tetherctl" else cmd(key, cid)[:5] + ["task", "delete", "-f", cid]
            subprocess.run(rm, capture_output=True, timeout=60, env=env)
            if key != "tetherctl":
                subprocess.run(cmd(key, cid)[:5] + ["containers", "rm", cid], capture_output=True,
                               timeout=60, env=env)
            return None
        dt = time.perf_counter() - t0
        if r.returncode != 0:
            raise RuntimeError(f"{key} {cid}: exit {r.returncode}: {r.stderr.decode().strip()}")
        return dt

    keys = [k for k, _ in VARIANTS]
    for i in range(args.warmup):
        for k in keys:
            once(k, f"b9w{i}-{k}")
    samples = {k: [] for k in keys}
    busy0, wall0, mine0 = proc_stat_cpu()[0], time.monotonic(), sb.our_cpu()
    hung = {k: [] for k in keys}
    for i in range(args.rounds):
        order = keys if i % 2 == 0 else keys[::-1]
        for k in order:
            dt = once(k, f"b9-{i}-{k}")
            if dt is None:
                hung[k].append(i)
            else:
                samples[k].append(dt)
        log(f"round {i + 1}/{args.rounds}: " + ", ".join(
            f"{k} {'hung' if i in hung[k] else f'{samples[k][-1] * 1e3:.0f} ms'}" for k in keys))
    # Foreign CPU as the harness counts it: /proc/stat busy time minus our
    # cgroups' (tetherctl's /bin/true containers are not subtracted).
    busy1, wall1, mine1 = proc_stat_cpu()[0], time.monotonic(), sb.our_cpu()
    foreign = max(0.0, (busy1 - busy0) - (mine1 - mine0)) / ((wall1 - wall0) * NCPU) * 100
    left = [p for p in list(state.glob("containers/*")) + list(state.glob("runc/*/*"))
            if not any(p.name == f"b9-{i}-tetherctl" for i in hung["tetherctl"])]
    if left:
        raise RuntimeError(f"tetherctl left {len(left)} containers in its state dir: {left[:3]}")
    return samples, hung, foreign


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--timeout", type=int, default=30,
                    help="seconds before a command counts as hung and is killed (%(default)s)")
    default_bin = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "release"
    ap.add_argument("--bin-dir", default=str(default_bin),
                    help="where tetherctl and containerd-shim-tether-v2 are (%(default)s)")
    ap.add_argument("--out", default=str(REPO / "docs" / "benchmarks.md"))
    ap.add_argument("--results", default=str(REPO / "bench" / "results" / "b9.json"))
    ap.add_argument("--from-json", help="rewrite the section from saved results only")
    args = ap.parse_args()
    if args.from_json:
        write_section(json.loads(Path(args.from_json).read_text()), args.out)
        return 0
    if os.geteuid() != 0:
        sys.exit("b9_tetherctl.py: run as root")
    from tetherbench import cli
    from tetherbench.sandbox import Sandbox, in_testenv, run_inside
    if not in_testenv():
        sys.exit("b9_tetherctl.py: run inside a testenv environment (see the top of this file)")
    sb = Sandbox()
    sb.impls[0].src = Path(args.bin_dir) / "containerd-shim-tether-v2"
    out = {}

    def body():
        out["samples"], out["hung"], out["foreign"] = measure(sb, args)

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rc = run_inside(sb, body)
    if rc != 0:
        return rc
    cmdline = "python3 bench/b9_tetherctl.py" + "".join(f" {a}" for a in sys.argv[1:])
    data = {"command": cmdline, "date": started, "rounds": args.rounds, "warmup": args.warmup,
            "target": TARGET, "machine": cli.machine_info(),
            "foreign_cpu_pct": round(out["foreign"], 2), "timeout_s": args.timeout, "hung_rounds": out["hung"],
            "samples": out["samples"]}
    data["machine"]["python"] = platform.python_version()
    Path(args.results).write_text(json.dumps(data, indent=1) + "\n")
    write_section(data, args.out)
    print(render(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
