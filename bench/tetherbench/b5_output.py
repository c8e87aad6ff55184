"""B5: container stdout throughput, `dd if=/dev/zero bs=64k` through the FIFO
path (ctr's stdout = /dev/null) and through `--log-uri file://`: GiB/s and
shim CPU s/GiB."""

import os
import subprocess
import time

from .procfs import footprint, proc_cpu, proc_io, proc_rchar
from .summary import Rows
from .util import GIB, MIB, log, median

SINKS = [("fifo", "FIFO → ctr → /dev/null"), ("file", "file:// log")]


def run(bench):
    cfg = bench.cfg
    nbytes = cfg["b5_bytes"]
    res = {impl.key: {"fifo": [], "file": []} for impl in bench.impls}
    for sink in ["fifo", "file"]:
        for rnd in range(cfg["b5_rounds"]):
            for impl in bench.order(rnd):
                r = once(bench, impl, sink, nbytes)
                if r:
                    res[impl.key][sink].append(r)
                log(f"B5 {sink} round {rnd + 1} {impl.key}: {r}")
    bench.results["B5"] = res


def once(bench, impl, sink, nbytes):
    cid = bench.uid(f"out{sink}")
    count = nbytes // 65536
    script = f"sleep 0.5; dd if=/dev/zero bs=65536 count={count} 2>/dev/null; sleep 0.5"
    logf = bench.shm / f"{cid}.log"
    extra = ["--log-uri", f"file://{logf}"] if sink == "file" else []
    p = subprocess.Popen(
        bench.ctr_cmd(impl, *bench.run_args(impl, cid, "/bin/sh", "-c", script, rm=True,
                                            extra=extra)),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        shim = bench.wait_shim(impl, cid)
        if shim is None:
            bench.failures.append(f"B5 {impl.key} {sink}: shim not found")
            return None

        def delivered():
            if sink == "file":
                try:
                    return os.stat(logf).st_size
                except OSError:
                    return 0
            return proc_rchar(p.pid) or 0
        base = delivered()
        cpu0 = proc_cpu(shim)
        io0 = proc_io(shim)
        t_start = t_end = None
        cpu_end = None
        threads = 0
        polls = 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            polls += 1
            if polls % 8 == 1:
                fp = footprint(shim)
                threads = max(threads, fp["Threads"] if fp else 0)
            d = delivered() - base
            now = time.monotonic()
            if t_start is None and d >= MIB:
                t_start, d_start = now, d
            if d >= nbytes and t_start is not None:
                t_end = now
                cpu_end = proc_cpu(shim)
                io_end = proc_io(shim)
                break
            if p.poll() is not None:
                break
            time.sleep(0.004)
        _, err = p.communicate(timeout=60)
        if p.returncode != 0 or t_end is None or cpu_end is None:
            bench.failures.append(f"B5 {impl.key} {sink}: rc={p.returncode} "
                                  f"done={t_end is not None} {err.decode()[-200:]}")
            return None
        if sink == "file" and os.stat(logf).st_size < nbytes:
            bench.failures.append(f"B5 {impl.key} file: short log")
        gib = (nbytes - d_start) / GIB
        return dict(gib_per_s=round(gib / (t_end - t_start), 3),
                    shim_cpu_s_per_gib=round((cpu_end[0] - cpu0[0]) * GIB / nbytes, 3),
                    seconds=round(t_end - t_start, 3), shim_threads_max=threads,
                    shim_read_calls=io_end["syscr"] - io0["syscr"],
                    shim_write_calls=io_end["syscw"] - io0["syscw"],
                    shim_rchar=io_end["rchar"] - io0["rchar"],
                    shim_wchar=io_end["wchar"] - io0["wchar"])
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        try:
            logf.unlink()
        except OSError:
            pass


def summary(R, cfg):
    rows = Rows()
    if "B5" not in R:
        return rows
    for sink, name in SINKS:
        T, G = R["B5"]["tether"][sink], R["B5"]["go"][sink]
        if not T or not G:
            continue
        tt, gt = median([r["gib_per_s"] for r in T]), median([r["gib_per_s"] for r in G])
        rows.add("B5", f"{name}: throughput", tt, gt, "≥ 1.0× Go", tt >= gt, unit="GiB/s")
        tc = median([r["shim_cpu_s_per_gib"] for r in T])
        gc = median([r["shim_cpu_s_per_gib"] for r in G])
        rows.add("B5", f"{name}: shim CPU per GiB", tc, gc, "≤ 0.5× Go", tc <= 0.5 * gc,
                 fmt="{:.3f}", unit="s")
    return rows


def details(R):
    L = []
    if "B5" in R:
        for k in ["tether", "go"]:
            for sink in ["fifo", "file"]:
                rs = R["B5"][k][sink]
                if rs:
                    rd = median([r["shim_read_calls"] for r in rs])
                    wr = median([r["shim_write_calls"] for r in rs])
                    L.append(f"- B5 {k} {sink}: GiB/s per round {[r['gib_per_s'] for r in rs]}, "
                             f"shim CPU s/GiB {[r['shim_cpu_s_per_gib'] for r in rs]}, "
                             f"max shim threads while copying {max(r['shim_threads_max'] for r in rs)}; "
                             f"shim syscalls while copying (median): {rd:.0f} reads of "
                             f"{median([r['shim_rchar'] for r in rs]) / max(rd, 1) / 1024:.1f} KiB avg, "
                             f"{wr:.0f} writes of "
                             f"{median([r['shim_wchar'] for r in rs]) / max(wr, 1) / 1024:.1f} KiB avg "
                             "(read-side and write-side calls as counted in `/proc/PID/io` syscr/syscw)")
    return L
