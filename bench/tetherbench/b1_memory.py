"""B1: idle memory, threads and fds per shim at rising container counts.
B6's kill storm runs on B1's containers at the top level (b6_exits)."""

import time

from . import b6_exits
from .events import EventStream
from .summary import Rows
from .util import log, median


def run(bench):
    """B1, and B6 at the top level, in the same rounds."""
    cfg = bench.cfg
    levels = cfg["b1_levels"]
    res = {impl.key: {"levels": {n: [] for n in levels}, "storm": []} for impl in bench.impls}
    for rnd in range(cfg["b1_rounds"]):
        for impl in bench.order(rnd):
            log(f"B1/B6 round {rnd + 1}/{cfg['b1_rounds']}: {impl.key}")
            events = EventStream(bench, impl)
            try:
                have = 0
                for n in levels:
                    ids = [bench.uid(f"idle{n}") for _ in range(n - have)]
                    bench.start_sleepers(impl, ids)
                    have = n
                    time.sleep(cfg["settle"])
                    res[impl.key]["levels"][n].append(bench.sample_shims(impl))
                    s = res[impl.key]["levels"][n][-1]
                    log(f"  {impl.key} N={n}: {s['shims']} shims, PSS/shim "
                        f"{s['pss_kib_median']} KiB, threads {s['threads_max']}")
                res[impl.key]["storm"].append(b6_exits.storm(bench, impl, events))
            finally:
                events.stop()
                bench.delete_everything(impl)
    bench.results["B1"] = {k: {"levels": {str(n): v["levels"][n] for n in levels}}
                           for k, v in res.items()}
    bench.results["B6"] = {k: v["storm"] for k, v in res.items()}


def summary(R, cfg):
    rows = Rows()
    if "B1" not in R:
        return rows
    levels = cfg["b1_levels"]
    top = str(levels[-1])
    for n in map(str, levels):
        def m(key, impl, n=n):
            return median([s[key] for s in R["B1"][impl]["levels"][n]])
        t, g = m("pss_kib_median", "tether") / 1024, m("pss_kib_median", "go") / 1024
        tgt = met = None
        if n == top:
            tgt = "≤ 0.3× Go"
            met = t <= 0.3 * g
        rows.add("B1", f"PSS per shim @{n}", t, g, tgt, met, unit="MiB")
    for key, name, unit in [("anon_kib_median", "anonymous per shim", "MiB"),
                            ("rss_kib_median", "RSS per shim", "MiB")]:
        rows.add("B1", f"{name} @{top}",
                 median([s[key] for s in R["B1"]["tether"]["levels"][top]]) / 1024,
                 median([s[key] for s in R["B1"]["go"]["levels"][top]]) / 1024, unit=unit)
    tt = max(max(s["threads_max"] for s in R["B1"]["tether"]["levels"][n]) for n in map(str, levels))
    gt = max(max(s["threads_max"] for s in R["B1"]["go"]["levels"][n]) for n in map(str, levels))
    rows.add("B1", "threads per shim (max)", tt, gt, "≤ 2", tt <= 2, fmt="{:.0f}")
    rows.add("B1", f"open fds per shim @{top} (median)",
             median([s["fds_median"] for s in R["B1"]["tether"]["levels"][top]]),
             median([s["fds_median"] for s in R["B1"]["go"]["levels"][top]]), fmt="{:.0f}")
    rows.add("B1", f"Σ PSS of all shims @{top}",
             median([s["pss_kib_sum"] for s in R["B1"]["tether"]["levels"][top]]) / 1024,
             median([s["pss_kib_sum"] for s in R["B1"]["go"]["levels"][top]]) / 1024, unit="MiB")
    return rows


def details(R):
    L = []
    if "B1" in R:
        for k in ["tether", "go"]:
            for n, samples in R["B1"][k]["levels"].items():
                s = samples[-1]
                L.append(f"- B1 {k} @{n} (last round): {s['shims']} shims, PSS {s['pss_kib_median']} KiB, "
                         f"Pss_Anon {s['pss_anon_kib_median']} KiB, Private_Dirty "
                         f"{s['private_dirty_kib_median']} KiB, RSS {s['rss_kib_median']} KiB, "
                         f"VmHWM {s['hwm_kib_median']} KiB, threads {s['threads_median']}, "
                         f"fds {s['fds_median']}")
    return L
