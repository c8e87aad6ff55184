"""The benchmark harness: the sandbox plus what every benchmark uses to run
containers, find and sample shims, and meter foreign CPU."""

import os
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from . import cgroup
from .procfs import footprint, proc_stat_cpu
from .sandbox import Sandbox
from .util import GIB, MIB, NCPU, log, median

FULL = dict(
    b1_levels=[10, 50, 110], b1_rounds=3, settle=3.0,
    b2_runs=200, b2_warmup=5, b2_breakdown=60,
    b3_n=110, b3_rounds=5, b3_conc=4,
    b4_seq=500, b4_bursts=[10, 30, 50], b4_burst_rounds=5,
    b5_bytes=GIB, b5_rounds=5,
    b6_pause=10.0,
    b7_pods=55,
)
QUICK = dict(
    b1_levels=[10, 30], b1_rounds=1, settle=1.0,
    b2_runs=20, b2_warmup=2, b2_breakdown=8,
    b3_n=30, b3_rounds=1, b3_conc=4,
    b4_seq=40, b4_bursts=[10, 30, 50], b4_burst_rounds=1,
    b5_bytes=256 * MIB, b5_rounds=1,
    b6_pause=5.0,
    b7_pods=15,
)


class Bench(Sandbox):
    def __init__(self, quick, tether_shim=None):
        super().__init__(tether_shim)
        self.cfg = dict(QUICK if quick else FULL)
        self.serial = 0
        self.serial_lock = threading.Lock()
        self.results = {}
        self.noise = {}

    def uid(self, tag):
        with self.serial_lock:
            self.serial += 1
            return f"{tag}-{self.serial}"

    def order(self, i):
        """A B, then B A: alternate which implementation goes first."""
        return self.impls if i % 2 == 0 else self.impls[::-1]

    # ------------------------------------------------------------- ctr calls

    def run_args(self, impl, cid, *cmd, detach=False, rm=False, extra=()):
        a = ["run"]
        if detach:
            a.append("-d")
        if rm:
            a.append("--rm")
        a += ["--fifo-dir", self.fifo, "--runtime", impl.runtime, *extra,
              "--rootfs", self.rootfs, cid, *cmd]
        return a

    def note_failure(self, what, r):
        msg = f"{what}: rc={r.returncode} {r.stderr.decode(errors='replace').strip()[-300:]}"
        self.failures.append(msg)
        log("FAILED " + msg)

    def start_sleepers(self, impl, ids, extra_for=None, conc=4):
        """`ctr run -d ... sleep` for each id, `conc` at a time."""
        def one(cid):
            extra = extra_for(cid) if extra_for else ()
            r = self.ctr(impl, *self.run_args(impl, cid, "/bin/sleep", "1000000",
                                              detach=True, extra=extra))
            if r.returncode != 0:
                self.note_failure(f"{impl.key} run -d {cid}", r)
            return r.returncode == 0
        with ThreadPoolExecutor(conc) as pool:
            return sum(pool.map(one, ids))

    def task_pids(self, impl):
        r = self.ctr(impl, "task", "ls", stdout=subprocess.PIPE)
        out = {}
        for line in r.stdout.decode().splitlines()[1:]:
            f = line.split()
            if len(f) >= 3 and f[1].isdigit():
                out[f[0]] = (int(f[1]), f[2])
        return out

    # --------------------------------------------------------- process views

    def wait_shim(self, impl, cid, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            p = self.shim_pids(impl, cid)
            if p:
                return p[0]
            time.sleep(0.005)
        return None

    def sample_shims(self, impl):
        pids = self.shim_pids(impl)
        fps = [f for f in (footprint(p) for p in pids) if f]

        def col(k):
            return [f.get(k, 0) for f in fps]
        return dict(
            shims=len(fps),
            pss_kib_median=median(col("Pss")), pss_kib_sum=sum(col("Pss")),
            anon_kib_median=median(col("Anonymous")),
            pss_anon_kib_median=median(col("Pss_Anon")),
            private_dirty_kib_median=median(col("Private_Dirty")),
            rss_kib_median=median(col("Rss")),
            hwm_kib_median=median(col("VmHWM")),
            threads_median=median(col("Threads")), threads_max=max(col("Threads"), default=0),
            fds_median=median(col("fds")), fds_max=max(col("fds"), default=0),
        )

    def cg_usage(self, name):
        return cgroup.cpu_seconds(self.cg_root / name)

    # ---------------------------------------------------------- noise meter

    def measure_noise(self, name):
        bench = self

        class Meter:
            def __enter__(self):
                self.t = time.monotonic()
                self.busy, self.steal = proc_stat_cpu()
                self.mine = bench.our_cpu()
                self.load = os.getloadavg()[0]
                return self

            def __exit__(self, *exc):
                wall = time.monotonic() - self.t
                busy, steal = proc_stat_cpu()
                mine = bench.our_cpu()
                foreign = max(0.0, (busy - self.busy) - (mine - self.mine))
                bench.noise[name] = dict(
                    wall_s=round(wall, 1),
                    foreign_cpu_pct=round(100 * foreign / (wall * NCPU), 1),
                    ours_cpu_pct=round(100 * (mine - self.mine) / (wall * NCPU), 1),
                    steal_pct=round(100 * (steal - self.steal) / (wall * NCPU), 1),
                    load_start=round(self.load, 2),
                    load_end=round(os.getloadavg()[0], 2),
                )
                log(f"{name}: {bench.noise[name]}")
                return False
        return Meter()
