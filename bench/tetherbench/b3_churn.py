"""B3: churn, `ctr run --rm … /bin/true` by concurrent workers: containers/s,
shim+runc CPU per container, leaked shims and bundles."""

import os
import time
from concurrent.futures import ThreadPoolExecutor

from .summary import Rows
from .util import log, median


def run(bench):
    cfg = bench.cfg
    n, conc = cfg["b3_n"], cfg["b3_conc"]
    res = {impl.key: [] for impl in bench.impls}
    for rnd in range(cfg["b3_rounds"]):
        for impl in bench.order(rnd):
            ids = [bench.uid("churn") for _ in range(n)]
            cpu0 = bench.cg_usage(impl.key)

            def one(cid, impl=impl):
                r = bench.ctr(impl, *bench.run_args(impl, cid, "/bin/true", rm=True))
                if r.returncode != 0:
                    bench.note_failure(f"{impl.key} churn {cid}", r)
                return r.returncode == 0
            t = time.monotonic()
            with ThreadPoolExecutor(conc) as pool:
                ok = sum(pool.map(one, ids))
            wall = time.monotonic() - t
            cpu = bench.cg_usage(impl.key) - cpu0
            time.sleep(0.5)
            leaked = len(bench.shim_pids(impl))
            bundles = bench.state / "io.containerd.runtime.v2.task" / impl.ns
            left = len(os.listdir(bundles)) if bundles.is_dir() else 0
            r = dict(containers=n, ok=ok, wall_s=round(wall, 3), per_s=round(ok / wall, 2),
                     cpu_shim_and_runc_per_container_ms=round(1000 * cpu / n, 2),
                     leaked_shims=leaked, leftover_bundles=left)
            log(f"B3 round {rnd + 1} {impl.key}: {r}")
            res[impl.key].append(r)
    bench.results["B3"] = res


def summary(R, cfg):
    rows = Rows()
    if "B3" not in R:
        return rows
    t = median([r["per_s"] for r in R["B3"]["tether"]])
    g = median([r["per_s"] for r in R["B3"]["go"]])
    rows.add("B3", f"churn {cfg['b3_n']} at concurrency {cfg['b3_conc']}", t, g, "≥ 1.15× Go",
             t >= 1.15 * g, unit="containers/s")
    rows.add("B3", "shim+runc CPU per container (cgroup)",
             median([r["cpu_shim_and_runc_per_container_ms"] for r in R["B3"]["tether"]]),
             median([r["cpu_shim_and_runc_per_container_ms"] for r in R["B3"]["go"]]),
             fmt="{:.1f}", unit="ms")
    rows.add("B3", "leaked shims / leftover bundles (all rounds)",
             sum(r["leaked_shims"] + r["leftover_bundles"] for r in R["B3"]["tether"]),
             sum(r["leaked_shims"] + r["leftover_bundles"] for r in R["B3"]["go"]), fmt="{:.0f}")
    return rows
