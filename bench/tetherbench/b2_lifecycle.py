"""B2: sequential `ctr run --rm … /bin/true` lifecycles, then breakdown runs
with a timed runc (shim share = wall − Σ runc wall, runc calls, shim CPU)."""

import time

from .summary import Rows
from .util import log, median, pct, read

GAP = 0.25  # seconds between breakdown runs

RUNC_SUBCOMMANDS = {"create", "start", "delete", "kill", "state", "exec", "ps", "pause", "resume",
                    "update", "events", "features", "checkpoint", "restore", "run", "list"}


def run(bench):
    cfg = bench.cfg
    res = {impl.key: dict(wall=[], fail=0) for impl in bench.impls}
    for i in range(cfg["b2_warmup"]):
        for impl in bench.order(i):
            bench.ctr(impl, *bench.run_args(impl, bench.uid("warm"), "/bin/true", rm=True))
    log(f"B2: {cfg['b2_runs']} lifecycles per shim, interleaved")
    cpu0 = {impl.key: bench.cg_usage(impl.key) for impl in bench.impls}
    for i in range(cfg["b2_runs"]):
        for impl in bench.order(i):
            cid = bench.uid("life")
            t = time.monotonic()
            r = bench.ctr(impl, *bench.run_args(impl, cid, "/bin/true", rm=True))
            dt = time.monotonic() - t
            if r.returncode != 0:
                res[impl.key]["fail"] += 1
                bench.note_failure(f"{impl.key} run --rm {cid}", r)
            else:
                res[impl.key]["wall"].append(dt)
    for impl in bench.impls:
        res[impl.key]["cpu_shim_and_runc_per_run_ms"] = round(
            1000 * (bench.cg_usage(impl.key) - cpu0[impl.key]) / cfg["b2_runs"], 2)

    # breakdown: both shims run runc through the timer
    log(f"B2 breakdown: {cfg['b2_breakdown']} lifecycles per shim with timed runc")
    for impl in bench.impls:
        res[impl.key]["breakdown"] = []
    flag = bench.tmp / "time-shim-invocations"
    flag.touch()
    try:
        breakdown(bench, res)
    finally:
        flag.unlink()
    bench.results["B2"] = res


def breakdown(bench, res):
    for i in range(bench.cfg["b2_breakdown"]):
        for impl in bench.order(i):
            cid = bench.uid("bd")
            extra = (["--runc-binary", bench.timer] if impl.key == "go"
                     else ["--runtime-config-path", bench.tether_opts])
            shim0, runc0 = bench.cg_usage(impl.key), bench.cg_usage("runc")
            t = time.monotonic()
            r = bench.ctr(impl, *bench.run_args(impl, cid, "/bin/true", rm=True, extra=extra))
            t1 = time.monotonic()
            # containerd's clean-up after the shim disconnected (`shim
            # delete` → `runc delete`) may still be running: let it finish
            # so it is neither lost nor charged to the next run.
            time.sleep(GAP)
            shim1, runc1 = bench.cg_usage(impl.key), bench.cg_usage("runc")
            if r.returncode != 0:
                bench.note_failure(f"{impl.key} breakdown run {cid}", r)
                continue
            calls = runc_calls(bench.runc_log, t, t1 + GAP)
            if not calls:
                bench.failures.append(f"{impl.key}: breakdown run saw no runc calls "
                                      "(runtime options not applied?)")
            # only the part of each runc call inside the run's wall time
            runc_wall = sum(max(0.0, min(b, t1) - max(a, t)) for a, b, _ in calls)
            after = [c[2] for c in calls if c[0] >= t1]
            res[impl.key]["breakdown"].append(dict(
                total=t1 - t, runc=runc_wall, shim_share=(t1 - t) - runc_wall,
                calls=[c[2] for c in calls], after_exit=after,
                call_ms=[[c[2], round(1000 * (c[1] - c[0]), 2)] for c in calls],
                shim_cpu=shim1 - shim0, runc_cpu=runc1 - runc0,
                shim_bin=shim_invocations(impl, t, t1 + GAP)))


def shim_invocations(impl, t0, t1):
    """{subcommand: wall seconds} of the shim binary runs containerd made."""
    out = {}
    for line in (read(impl.timing_log, "") or "").splitlines():
        f = line.split()
        if len(f) == 3 and t0 <= float(f[0]) < t1:
            out[f[2]] = out.get(f[2], 0.0) + float(f[1]) - float(f[0])
    return out


def runc_calls(runc_log, t0, t1):
    out = []
    for line in (read(runc_log, "") or "").splitlines():
        f = line.split()
        if len(f) < 3:
            continue
        a, b = float(f[0]), float(f[1])
        if t0 <= a < t1:
            sub = next((x for x in f[2:] if x in RUNC_SUBCOMMANDS), "?")
            out.append((a, b, sub))
    return out


def summary(R, cfg):
    rows = Rows()
    if "B2" not in R:
        return rows
    T, G = R["B2"]["tether"], R["B2"]["go"]
    t50, g50 = 1000 * median(T["wall"]), 1000 * median(G["wall"])
    rows.add("B2", f"`ctr run --rm` p50 (n={len(T['wall'])}/{len(G['wall'])})", t50, g50,
             "≤ 0.95× Go", t50 <= 0.95 * g50, fmt="{:.1f}", unit="ms")
    rows.add("B2", "`ctr run --rm` p95", 1000 * pct(T["wall"], 95), 1000 * pct(G["wall"], 95),
             fmt="{:.1f}", unit="ms")
    if T["breakdown"] and G["breakdown"]:
        ts = 1000 * median([b["shim_share"] for b in T["breakdown"]])
        gs = 1000 * median([b["shim_share"] for b in G["breakdown"]])
        rows.add("B2", f"shim share = total − runc, p50 (n={len(T['breakdown'])}/{len(G['breakdown'])})",
                 ts, gs, "≤ 0.5× Go", ts <= 0.5 * gs, fmt="{:.1f}", unit="ms")
        for sub in ["start", "delete"]:
            tv = [b["shim_bin"][sub] for b in T["breakdown"] if sub in b.get("shim_bin", {})]
            gv = [b["shim_bin"][sub] for b in G["breakdown"] if sub in b.get("shim_bin", {})]
            if tv and gv:
                rows.add("B2", f"`shim {sub}` invocation wall time, p50", 1000 * median(tv),
                         1000 * median(gv), fmt="{:.1f}", unit="ms")
        rows.add("B2", "runc time per lifecycle, p50",
                 1000 * median([b["runc"] for b in T["breakdown"]]),
                 1000 * median([b["runc"] for b in G["breakdown"]]), fmt="{:.1f}", unit="ms")
        rows.add("B2", "runc invocations per lifecycle",
                 median([len(b["calls"]) for b in T["breakdown"]]),
                 median([len(b["calls"]) for b in G["breakdown"]]), fmt="{:.0f}")
        rows.add("B2", "shim CPU per lifecycle (cgroup), p50",
                 1000 * median([b["shim_cpu"] for b in T["breakdown"]]),
                 1000 * median([b["shim_cpu"] for b in G["breakdown"]]), fmt="{:.1f}", unit="ms")
    return rows


def details(R):
    L = []
    if "B2" in R:
        for k in ["tether", "go"]:
            bd = R["B2"][k].get("breakdown") or []
            if bd:
                seq = {}
                for b in bd:
                    seq[" ".join(b["calls"])] = seq.get(" ".join(b["calls"]), 0) + 1
                common = max(seq.items(), key=lambda kv: kv[1])[0]
                per = {}
                for b in bd:
                    for sub, ms in b.get("call_ms", []):
                        per.setdefault(sub, []).append(ms)
                per_s = ", ".join(f"{sub} {median(v):.1f} ms" for sub, v in per.items())
                L.append(f"- B2 {k}: runc calls per lifecycle (most common): `{common}`; "
                         f"runc wall p50 per call: {per_s}; "
                         f"runc CPU p50 {1000 * median([b['runc_cpu'] for b in bd]):.1f} ms; "
                         f"shim+runc CPU per run (untimed phase) "
                         f"{R['B2'][k].get('cpu_shim_and_runc_per_run_ms')} ms; "
                         f"failed runs {R['B2'][k]['fail']}")
    return L
