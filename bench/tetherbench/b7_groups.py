"""B7: pods of 2 containers grouped into one shim with the annotation
`io.containerd.runc.v2.group`: Σ PSS, PSS per pod, marginal PSS of the
second container."""

import time

from .summary import Rows
from .util import log, median


def run(bench):
    cfg = bench.cfg
    pods = cfg["b7_pods"]
    res = {impl.key: [] for impl in bench.impls}
    for rnd in range(cfg["b1_rounds"]):
        for impl in bench.order(rnd):
            log(f"B7 round {rnd + 1}: {impl.key}, {pods} pods x 2 containers, grouped")
            try:
                group_of = {}
                first = []
                for i in range(pods):
                    cid = bench.uid("podA")
                    group_of[cid] = f"pod{i}-{bench.run_id}"
                    first.append(cid)
                second = []
                for i in range(pods):
                    cid = bench.uid("podB")
                    group_of[cid] = f"pod{i}-{bench.run_id}"
                    second.append(cid)

                def extra(cid):
                    return ["--annotation", f"io.containerd.runc.v2.group={group_of[cid]}"]
                bench.start_sleepers(impl, first, extra)
                time.sleep(cfg["settle"])
                one = bench.sample_shims(impl)
                bench.start_sleepers(impl, second, extra)
                time.sleep(cfg["settle"])
                two = bench.sample_shims(impl)
                r = dict(pods=pods, containers=2 * pods, shims=two["shims"],
                         shims_with_1=one["shims"],
                         pss_sum_kib_1=one["pss_kib_sum"], pss_sum_kib_2=two["pss_kib_sum"],
                         pss_per_pod_kib=round(two["pss_kib_sum"] / max(1, two["shims"]), 1),
                         marginal_kib_per_container=round(
                             (two["pss_kib_sum"] - one["pss_kib_sum"]) / pods, 1),
                         threads_max=two["threads_max"], fds_median=two["fds_median"])
                log(f"  B7 {impl.key}: {r}")
                res[impl.key].append(r)
            finally:
                bench.delete_everything(impl)
    bench.results["B7"] = res


def summary(R, cfg):
    rows = Rows()
    if "B7" not in R or not R["B7"]["tether"] or not R["B7"]["go"]:
        return rows
    T, G = R["B7"]["tether"], R["B7"]["go"]
    pods = cfg["b7_pods"]
    tp = median([r["pss_per_pod_kib"] for r in T]) / 1024
    gp = median([r["pss_per_pod_kib"] for r in G]) / 1024
    rows.add("B7", f"PSS per grouped pod ({pods} pods × 2)", tp, gp, "≤ 1.5 MiB", tp <= 1.5,
             unit="MiB")
    ts = median([r["pss_sum_kib_2"] for r in T]) / 1024
    gs = median([r["pss_sum_kib_2"] for r in G]) / 1024
    rows.add("B7", f"Σ PSS, {2 * pods} containers grouped", ts, gs, "≤ 0.3× Go", ts <= 0.3 * gs,
             unit="MiB")
    tm = median([r["marginal_kib_per_container"] for r in T])
    gm = median([r["marginal_kib_per_container"] for r in G])
    rows.add("B7", "marginal PSS of 2nd container in a shim", tm, gm, "≤ 100 KiB", tm <= 100,
             fmt="{:.0f}", unit="KiB")
    rows.add("B7", "shims for the grouped pods", median([r["shims"] for r in T]),
             median([r["shims"] for r in G]), fmt="{:.0f}")
    return rows
