#!/usr/bin/env python3
"""Side-by-side benchmark of tether and containerd-shim-runc-v2 (B1-B7).

Run through bench/run.sh, which builds tether first. See bench/README.md for
what each benchmark does and how it is measured.

Everything runs against one private containerd (own config, root, state,
sockets and opt dir in a temporary directory, CRI disabled), with one unique
namespace per shim implementation. Both shims are resolved by containerd
through its PATH, where the harness puts small launchers that move the shim
into a per-implementation cpuacct cgroup and exec a private copy of the
binary. On exit, success or not, the harness stops what it started, by PID.
"""

import argparse
import datetime
import json
import os
import platform
import random
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TOOLS = Path(__file__).resolve().parent / "tools"
GO_SHIM = Path("/usr/bin/containerd-shim-runc-v2")
RUNC = Path(shutil.which("runc") or "/usr/sbin/runc")
RUNC_STATE = Path("/run/containerd/runc")
CGROUP_FS = Path("/sys/fs/cgroup")
# CPU accounting: v1's cpuacct hierarchy, or the unified hierarchy itself
# (cpu.stat's usage_usec is there in every cgroup, controllers or not).
UNIFIED = (CGROUP_FS / "cgroup.controllers").exists()
CPUACCT = CGROUP_FS if UNIFIED else CGROUP_FS / "cpuacct"


def cg_cpu_seconds(d):
    """CPU seconds a cgroup has used: cpuacct.usage (ns) on v1, cpu.stat's
    usage_usec on v2; 0 when the cgroup is gone."""
    try:
        if UNIFIED:
            for line in (d / "cpu.stat").read_text().splitlines():
                k, v = line.split()
                if k == "usage_usec":
                    return int(v) / 1e6
            return 0.0
        return int((d / "cpuacct.usage").read_text()) / 1e9
    except (OSError, ValueError):
        return 0.0
MIB = 1 << 20
GIB = 1 << 30
CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1

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

T0 = time.monotonic()


def log(msg):
    print(f"[bench {time.monotonic() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


class Interrupted(Exception):
    pass


# --------------------------------------------------------------------------
# small helpers


def pct(values, p):
    """Percentile with linear interpolation (p in 0..100)."""
    v = sorted(values)
    if not v:
        return float("nan")
    k = (len(v) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def median(values):
    return statistics.median(values) if values else float("nan")


def read(path, default=None):
    try:
        return Path(path).read_text()
    except OSError:
        return default


def proc_pids():
    for name in os.listdir("/proc"):
        if name.isdigit():
            yield int(name)


def proc_ppid_map():
    m = {}
    for pid in proc_pids():
        s = read(f"/proc/{pid}/stat")
        if s:
            m[pid] = int(s[s.rindex(")") + 2:].split()[1])
    return m


def proc_exe(pid):
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def proc_cmdline(pid):
    s = read(f"/proc/{pid}/cmdline", "")
    return s.split("\0")[:-1] if s else []


def proc_cpu(pid):
    """utime+stime (s) of a whole thread group and of its waited-for children."""
    s = read(f"/proc/{pid}/stat")
    if not s:
        return None
    f = s[s.rindex(")") + 2:].split()
    own = (int(f[11]) + int(f[12])) / CLK_TCK
    children = (int(f[13]) + int(f[14])) / CLK_TCK
    return own, children


def proc_rchar(pid):
    s = read(f"/proc/{pid}/io")
    if not s:
        return None
    for line in s.splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return None


def proc_io(pid):
    out = {"rchar": 0, "wchar": 0, "syscr": 0, "syscw": 0}
    for line in (read(f"/proc/{pid}/io", "") or "").splitlines():
        k, _, v = line.partition(":")
        if k in out:
            out[k] = int(v)
    return out


def footprint(pid):
    """Memory (KiB), threads and fds of one process, or None if it is gone."""
    roll = read(f"/proc/{pid}/smaps_rollup")
    status = read(f"/proc/{pid}/status")
    if not roll or not status:
        return None
    out = {}
    for line in roll.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
            out[parts[0][:-1]] = int(parts[1])
    for line in status.splitlines():
        if line.startswith("Threads:"):
            out["Threads"] = int(line.split()[1])
        elif line.startswith("VmHWM:"):
            out["VmHWM"] = int(line.split()[1])
    try:
        out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    return out


def proc_stat_cpu():
    """(busy seconds, steal seconds) summed over CPUs, from /proc/stat."""
    f = read("/proc/stat").splitlines()[0].split()[1:]
    v = [int(x) for x in f]
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = v[:8]
    guest = v[8] if len(v) > 8 else 0
    guest_nice = v[9] if len(v) > 9 else 0
    # guest time is already part of user time
    del guest, guest_nice
    return (user + nice + system) / CLK_TCK, steal / CLK_TCK


def cgroup_mode():
    if (CGROUP_FS / "cgroup.controllers").exists():
        return "v2 (unified)"
    if (CGROUP_FS / "unified").is_dir():
        return "v1 (hybrid: v1 controllers + v2 at /sys/fs/cgroup/unified)"
    return "v1 (legacy)"


# --------------------------------------------------------------------------
# implementations


class Impl:
    def __init__(self, key, label, runtime, shim_name, src):
        self.key = key
        self.label = label
        self.runtime = runtime  # what ctr --runtime gets
        self.shim_name = shim_name  # what containerd looks up on PATH
        self.src = src  # the binary we copy
        self.real = None  # private copy (set up later)
        self.ns = None
        self.cgroup = None


# --------------------------------------------------------------------------
# the harness


class Bench:
    def __init__(self, args):
        self.args = args
        self.cfg = dict(QUICK if args.quick else FULL)
        self.stopping = False
        self.run_id = f"{os.getpid()}-{random.randrange(16**4):04x}"
        self.tmp = None
        self.shm = None
        self.cg_root = None
        self.orig_cpuacct = None
        self.containerd = None
        self.containerd_stopped = False
        self.failed = False
        self.side_procs = []
        self.serial = 0
        self.serial_lock = threading.Lock()
        self.results = {}
        self.noise = {}
        self.failures = []
        self.impls = [
            Impl("tether", "tether", "io.containerd.tether.v2", "containerd-shim-tether-v2",
                 REPO / "target" / "release" / "containerd-shim-tether-v2"),
            Impl("go", "Go runc-v2", "io.containerd.runc.v2", "containerd-shim-runc-v2", GO_SHIM),
        ]

    # ------------------------------------------------------------------ setup

    def setup(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="tether-bench-", dir="/tmp"))
        self.shm = Path(tempfile.mkdtemp(prefix="tether-bench-", dir="/dev/shm"))
        log(f"work dir {self.tmp} (logs in {self.shm}), run id {self.run_id}")
        for d in ["bin", "real", "root", "state", "opt", "fifo", "rootfs/bin"]:
            (self.tmp / d).mkdir(parents=True, exist_ok=True)
        self.addr = self.tmp / "containerd.sock"
        self.fifo = self.tmp / "fifo"
        self.rootfs = self.tmp / "rootfs"
        self.runc_log = self.tmp / "runc-times.log"

        # busybox rootfs
        shutil.copy2("/bin/busybox", self.rootfs / "bin" / "busybox")
        applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True,
                                 check=True).stdout.split()
        for a in applets:
            if a != "busybox" and "/" not in a:
                os.symlink("busybox", self.rootfs / "bin" / a)
        for d in ["proc", "sys", "dev", "tmp", "etc"]:
            (self.rootfs / d).mkdir(exist_ok=True)

        # cpuacct cgroups: harness (this process, containerd, ctr), one per
        # shim implementation, and runc (breakdown phase only).
        self.cg_root = CPUACCT / f"tether-bench-{self.run_id}"
        for sub in ["harness", "tether", "go", "runc"]:
            (self.cg_root / sub).mkdir(parents=True, exist_ok=True)
        for line in read("/proc/self/cgroup", "").splitlines():
            _, ctrls, path = line.split(":", 2)
            if (UNIFIED and ctrls == "") or (not UNIFIED and "cpuacct" in ctrls.split(",")):
                self.orig_cpuacct = CPUACCT / path.lstrip("/")
        (self.cg_root / "harness" / "cgroup.procs").write_text(f"{os.getpid()}\n")

        # private shim copies behind launchers on containerd's PATH
        for impl in self.impls:
            impl.ns = f"tbench-{self.run_id}-{impl.key}"
            impl.real = self.tmp / "real" / impl.shim_name
            shutil.copy2(impl.src, impl.real)
            impl.cgroup = self.cg_root / impl.key
            impl.timing_log = self.tmp / f"shim-times-{impl.key}.log"
            self.cc(TOOLS / "launcher.c", self.tmp / "bin" / impl.shim_name,
                    SHIM=impl.real, CGROUP_PROCS=impl.cgroup / "cgroup.procs",
                    TIMING_FLAG=self.tmp / "time-shim-invocations",
                    TIMING_LOG=impl.timing_log)
        self.timer = self.tmp / "runc-timer"
        self.cc(TOOLS / "runc-timer.c", self.timer, REAL_RUNC=RUNC,
                CGROUP_PROCS=self.cg_root / "runc" / "cgroup.procs", LOG_FILE=self.runc_log)
        self.tether_opts = self.tmp / "tether-runc-timer.toml"
        self.tether_opts.write_text(f'BinaryName = "{self.timer}"\n')

        self.start_containerd()

    def cc(self, src, out, **defines):
        cmd = ["gcc", "-O2", "-static", "-Wall", "-o", str(out), str(src)]
        cmd += [f'-D{k}="{v}"' for k, v in defines.items()]
        subprocess.run(cmd, check=True)

    def start_containerd(self):
        t = self.tmp
        (t / "config.toml").write_text(f"""version = 2
root = "{t / 'root'}"
state = "{t / 'state'}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{self.addr}"

[ttrpc]
  address = "{self.addr}.ttrpc"

[debug]
  level = "warn"

[plugins."io.containerd.internal.v1.opt"]
  path = "{t / 'opt'}"
""")
        env = dict(os.environ)
        env["PATH"] = f"{t / 'bin'}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
        for k in ["CONTAINERD_ADDRESS", "CONTAINERD_NAMESPACE"]:
            env.pop(k, None)
        logf = open(t / "containerd.log", "ab")
        # Own session: a Ctrl-C in the terminal must not reach containerd
        # before the harness has cleaned up through it.
        self.containerd = subprocess.Popen(
            ["containerd", "--config", str(t / "config.toml")], stdin=subprocess.DEVNULL,
            stdout=logf, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        logf.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.containerd.poll() is not None:
                raise RuntimeError(f"containerd exited: see {t / 'containerd.log'}")
            r = subprocess.run(["ctr", "--address", str(self.addr), "--connect-timeout", "1s",
                                "version"], capture_output=True)
            if r.returncode == 0:
                log(f"containerd pid {self.containerd.pid} ready at {self.addr}")
                return
            time.sleep(0.2)
        raise RuntimeError("containerd did not come up")

    # ------------------------------------------------------------- ctr calls

    def uid(self, tag):
        with self.serial_lock:
            self.serial += 1
            return f"{tag}-{self.serial}"

    def ctr_cmd(self, impl, *args):
        return ["ctr", "--address", str(self.addr), "--namespace", impl.ns, *map(str, args)]

    def ctr(self, impl, *args, timeout=120, stdout=subprocess.DEVNULL):
        if self.stopping:
            raise Interrupted("stopping")
        if self.containerd.poll() is not None:
            raise RuntimeError(f"containerd exited ({self.containerd.returncode}); "
                               f"see {self.tmp / 'containerd.log'}")
        try:
            return subprocess.run(self.ctr_cmd(impl, *args), stdin=subprocess.DEVNULL,
                                  stdout=stdout, stderr=subprocess.PIPE, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            return subprocess.CompletedProcess(e.cmd, -1, b"", b"timeout")

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

    def delete_everything(self, impl, conc=4):
        """Force-deletes every task and container of the implementation's namespace."""
        def chunks(ids, n=20):
            return [ids[i:i + n] for i in range(0, len(ids), n)]
        r = self.ctr(impl, "task", "ls", "-q", stdout=subprocess.PIPE)
        tasks = r.stdout.decode().split()
        with ThreadPoolExecutor(conc) as pool:
            list(pool.map(lambda c: self.ctr(impl, "task", "delete", "-f", *c), chunks(tasks)))
        r = self.ctr(impl, "containers", "ls", "-q", stdout=subprocess.PIPE)
        ctrs = r.stdout.decode().split()
        with ThreadPoolExecutor(conc) as pool:
            list(pool.map(lambda c: self.ctr(impl, "containers", "rm", *c), chunks(ctrs)))
        # shims exit after the last Delete+Shutdown; give them a moment
        deadline = time.monotonic() + 15
        while self.shim_pids(impl) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = self.shim_pids(impl)
        if left:
            self.failures.append(f"{impl.key}: {len(left)} shims still running after deleting "
                                 f"all containers (pids {left[:5]})")
        return len(left)

    # --------------------------------------------------------- process views

    def shim_pids(self, impl, cid=None):
        """Daemon processes of `impl` serving our namespace (optionally for id)."""
        out = []
        real = str(impl.real)
        for pid in proc_pids():
            if proc_exe(pid) != real:
                continue
            args = proc_cmdline(pid)
            if "start" in args or "delete" in args:
                continue
            try:
                if args[args.index("-namespace") + 1] != impl.ns:
                    continue
                if cid is not None and args[args.index("-id") + 1] != cid:
                    continue
            except (ValueError, IndexError):
                continue
            out.append(pid)
        return out

    def wait_shim(self, impl, cid, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            p = self.shim_pids(impl, cid)
            if p:
                return p[0]
            time.sleep(0.005)
        return None

    def cg_usage(self, name):
        return cg_cpu_seconds(self.cg_root / name)

    def my_cpu(self):
        """CPU seconds used so far by everything of ours (cgroup accounted)."""
        total = sum(self.cg_usage(n) for n in ["harness", "tether", "go", "runc"])
        for impl in self.impls:  # containers: runc puts them under /<ns>/<id>
            total += cg_cpu_seconds(CPUACCT / impl.ns)
        return total

    # ---------------------------------------------------------- noise meter

    def measure_noise(self, name):
        bench = self

        class Meter:
            def __enter__(self):
                self.t = time.monotonic()
                self.busy, self.steal = proc_stat_cpu()
                self.mine = bench.my_cpu()
                self.load = os.getloadavg()[0]
                return self

            def __exit__(self, *exc):
                wall = time.monotonic() - self.t
                busy, steal = proc_stat_cpu()
                mine = bench.my_cpu()
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

    def order(self, i):
        """A B, then B A: alternate which implementation goes first."""
        return self.impls if i % 2 == 0 else self.impls[::-1]

    # ================================================================== B1/B6

    def b1_b6(self):
        cfg = self.cfg
        levels = cfg["b1_levels"]
        res = {impl.key: {"levels": {n: [] for n in levels}, "storm": []} for impl in self.impls}
        for rnd in range(cfg["b1_rounds"]):
            for impl in self.order(rnd):
                log(f"B1/B6 round {rnd + 1}/{cfg['b1_rounds']}: {impl.key}")
                events = EventStream(self, impl)
                try:
                    have = 0
                    for n in levels:
                        ids = [self.uid(f"idle{n}") for _ in range(n - have)]
                        self.start_sleepers(impl, ids)
                        have = n
                        time.sleep(cfg["settle"])
                        res[impl.key]["levels"][n].append(self.sample_shims(impl))
                        s = res[impl.key]["levels"][n][-1]
                        log(f"  {impl.key} N={n}: {s['shims']} shims, PSS/shim "
                            f"{s['pss_kib_median']} KiB, threads {s['threads_max']}")
                    res[impl.key]["storm"].append(self.storm(impl, events))
                finally:
                    events.stop()
                    self.delete_everything(impl)
        self.results["B1"] = {k: {"levels": {str(n): v["levels"][n] for n in levels}}
                              for k, v in res.items()}
        self.results["B6"] = {k: v["storm"] for k, v in res.items()}

    def b6_paused(self):
        """The plan's second B6 variant: the storm happens while containerd is
        SIGSTOPped; exits must all arrive, once, after it is resumed."""
        n, pause = self.cfg["b1_levels"][-1], self.cfg["b6_pause"]
        res = {}
        for impl in self.order(0):
            log(f"B6b {impl.key}: {n} containers, kill all while containerd is stopped {pause} s")
            events = EventStream(self, impl)
            try:
                self.start_sleepers(impl, [self.uid("paused") for _ in range(n)])
                time.sleep(self.cfg["settle"])
                pids = {c: p for c, (p, st) in self.task_pids(impl).items() if st == "RUNNING"}
                if not events.seen_topic("/tasks/start"):
                    self.failures.append(f"B6b {impl.key}: event stream saw no /tasks/start")
                    continue
                mark = len(events.lines)
                os.kill(self.containerd.pid, signal.SIGSTOP)
                self.containerd_stopped = True
                try:
                    for pid in pids.values():
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                    time.sleep(pause)
                finally:
                    os.kill(self.containerd.pid, signal.SIGCONT)
                    self.containerd_stopped = False
                t_resume = time.monotonic()
                deadline = t_resume + 60
                while time.monotonic() < deadline:
                    evs = events.exits(mark, set(pids))["events"]
                    if len({e["container_id"] for e in evs}) >= len(pids):
                        break
                    time.sleep(0.02)
                time.sleep(2.0)
                evs = events.exits(mark, set(pids))["events"]
                first_of = {}
                for e in sorted(evs, key=lambda e: e["mono"]):
                    first_of.setdefault(e["container_id"], e["mono"])
                r = dict(containers=len(pids), pause_s=pause, exits_received=len(evs),
                         lost=len(pids) - len(first_of), duplicated=len(evs) - len(first_of),
                         resume_to_last_exit_s=round(max(first_of.values()) - t_resume, 3)
                         if first_of else None)
                log(f"  B6b {impl.key}: {r}")
                res[impl.key] = r
            finally:
                events.stop()
                self.delete_everything(impl)
        self.results["B6b"] = res

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

    def storm(self, impl, events):
        tasks = self.task_pids(impl)
        pids = {cid: pid for cid, (pid, st) in tasks.items() if st == "RUNNING"}
        n = len(pids)
        if not events.seen_topic("/tasks/start"):
            self.failures.append(f"{impl.key}: event stream saw no /tasks/start; storm skipped")
            return None
        mark = len(events.lines)
        t_kill = time.monotonic()
        wall_kill = time.time()
        for pid in pids.values():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        kill_spent = time.monotonic() - t_kill
        deadline = t_kill + 30
        got = {}
        while time.monotonic() < deadline:
            got = events.exits(mark, set(pids))
            if len({e["container_id"] for e in got["events"]}) >= n:
                break
            time.sleep(0.01)
        time.sleep(1.0)  # let duplicates, if any, arrive
        got = events.exits(mark, set(pids))
        evs = got["events"]
        uniq = {e["container_id"] for e in evs}
        arrivals = sorted(e["mono"] for e in evs)
        first_of = {}
        for e in sorted(evs, key=lambda e: e["mono"]):
            first_of.setdefault(e["container_id"], e["mono"])
        last = max(first_of.values(), default=float("nan"))
        lat = [e["wall"] - e["exited_at"] for e in evs if e.get("exited_at")]
        out = dict(
            containers=n, kill_loop_s=round(kill_spent, 4),
            exits_received=len(evs), unique=len(uniq), lost=n - len(uniq),
            duplicated=len(evs) - len(uniq),
            time_to_last_exit_s=round(last - t_kill, 3) if uniq else None,
            time_to_first_exit_s=round(arrivals[0] - t_kill, 3) if arrivals else None,
            exited_at_to_receive_p50_ms=round(1000 * pct(lat, 50), 1) if lat else None,
            exited_at_to_receive_p99_ms=round(1000 * pct(lat, 99), 1) if lat else None,
            kill_to_exited_at_max_ms=round(1000 * (max(e["exited_at"] for e in evs) - wall_kill), 1)
            if evs else None,
            bad_status=sum(1 for e in evs if e.get("exit_status") != 137),
        )
        log(f"  B6 {impl.key}: {out}")
        return out

    # ===================================================================== B2

    def b2(self):
        cfg = self.cfg
        res = {impl.key: dict(wall=[], fail=0) for impl in self.impls}
        for i in range(cfg["b2_warmup"]):
            for impl in self.order(i):
                self.ctr(impl, *self.run_args(impl, self.uid("warm"), "/bin/true", rm=True))
        log(f"B2: {cfg['b2_runs']} lifecycles per shim, interleaved")
        cpu0 = {impl.key: self.cg_usage(impl.key) for impl in self.impls}
        for i in range(cfg["b2_runs"]):
            for impl in self.order(i):
                cid = self.uid("life")
                t = time.monotonic()
                r = self.ctr(impl, *self.run_args(impl, cid, "/bin/true", rm=True))
                dt = time.monotonic() - t
                if r.returncode != 0:
                    res[impl.key]["fail"] += 1
                    self.note_failure(f"{impl.key} run --rm {cid}", r)
                else:
                    res[impl.key]["wall"].append(dt)
        for impl in self.impls:
            res[impl.key]["cpu_shim_and_runc_per_run_ms"] = round(
                1000 * (self.cg_usage(impl.key) - cpu0[impl.key]) / cfg["b2_runs"], 2)

        # breakdown: both shims run runc through the timer
        log(f"B2 breakdown: {cfg['b2_breakdown']} lifecycles per shim with timed runc")
        for impl in self.impls:
            res[impl.key]["breakdown"] = []
        flag = self.tmp / "time-shim-invocations"
        flag.touch()
        try:
            self.b2_breakdown(res)
        finally:
            flag.unlink()
        self.results["B2"] = res

    def b2_breakdown(self, res):
        for i in range(self.cfg["b2_breakdown"]):
            for impl in self.order(i):
                cid = self.uid("bd")
                extra = (["--runc-binary", self.timer] if impl.key == "go"
                         else ["--runtime-config-path", self.tether_opts])
                shim0, runc0 = self.cg_usage(impl.key), self.cg_usage("runc")
                t = time.monotonic()
                r = self.ctr(impl, *self.run_args(impl, cid, "/bin/true", rm=True, extra=extra))
                t1 = time.monotonic()
                # containerd's clean-up after the shim disconnected (`shim
                # delete` → `runc delete`) may still be running: let it finish
                # so it is neither lost nor charged to the next run.
                time.sleep(GAP)
                shim1, runc1 = self.cg_usage(impl.key), self.cg_usage("runc")
                if r.returncode != 0:
                    self.note_failure(f"{impl.key} breakdown run {cid}", r)
                    continue
                calls = self.runc_calls(t, t1 + GAP)
                if not calls:
                    self.failures.append(f"{impl.key}: breakdown run saw no runc calls "
                                         "(runtime options not applied?)")
                # only the part of each runc call inside the run's wall time
                runc_wall = sum(max(0.0, min(b, t1) - max(a, t)) for a, b, _ in calls)
                after = [c[2] for c in calls if c[0] >= t1]
                res[impl.key]["breakdown"].append(dict(
                    total=t1 - t, runc=runc_wall, shim_share=(t1 - t) - runc_wall,
                    calls=[c[2] for c in calls], after_exit=after,
                    call_ms=[[c[2], round(1000 * (c[1] - c[0]), 2)] for c in calls],
                    shim_cpu=shim1 - shim0, runc_cpu=runc1 - runc0,
                    shim_bin=self.shim_invocations(impl, t, t1 + GAP)))

    def shim_invocations(self, impl, t0, t1):
        """{subcommand: wall seconds} of the shim binary runs containerd made."""
        out = {}
        for line in (read(impl.timing_log, "") or "").splitlines():
            f = line.split()
            if len(f) == 3 and t0 <= float(f[0]) < t1:
                out[f[2]] = out.get(f[2], 0.0) + float(f[1]) - float(f[0])
        return out

    def runc_calls(self, t0, t1):
        out = []
        for line in (read(self.runc_log, "") or "").splitlines():
            f = line.split()
            if len(f) < 3:
                continue
            a, b = float(f[0]), float(f[1])
            if t0 <= a < t1:
                sub = next((x for x in f[2:] if x in RUNC_SUBCOMMANDS), "?")
                out.append((a, b, sub))
        return out

    # ===================================================================== B3

    def b3(self):
        cfg = self.cfg
        n, conc = cfg["b3_n"], cfg["b3_conc"]
        res = {impl.key: [] for impl in self.impls}
        for rnd in range(cfg["b3_rounds"]):
            for impl in self.order(rnd):
                ids = [self.uid("churn") for _ in range(n)]
                cpu0 = self.cg_usage(impl.key)

                def one(cid, impl=impl):
                    r = self.ctr(impl, *self.run_args(impl, cid, "/bin/true", rm=True))
                    if r.returncode != 0:
                        self.note_failure(f"{impl.key} churn {cid}", r)
                    return r.returncode == 0
                t = time.monotonic()
                with ThreadPoolExecutor(conc) as pool:
                    ok = sum(pool.map(one, ids))
                wall = time.monotonic() - t
                cpu = self.cg_usage(impl.key) - cpu0
                time.sleep(0.5)
                leaked = len(self.shim_pids(impl))
                bundles = self.tmp / "state" / "io.containerd.runtime.v2.task" / impl.ns
                left = len(os.listdir(bundles)) if bundles.is_dir() else 0
                r = dict(containers=n, ok=ok, wall_s=round(wall, 3), per_s=round(ok / wall, 2),
                         cpu_shim_and_runc_per_container_ms=round(1000 * cpu / n, 2),
                         leaked_shims=leaked, leftover_bundles=left)
                log(f"B3 round {rnd + 1} {impl.key}: {r}")
                res[impl.key].append(r)
        self.results["B3"] = res

    # ===================================================================== B4

    def b4(self):
        cfg = self.cfg
        res = {impl.key: dict(seq=[], seq_fail=0, bursts={str(k): [] for k in cfg["b4_bursts"]})
               for impl in self.impls}
        cids = {}
        for impl in self.impls:
            cids[impl.key] = self.uid("exec")
            self.start_sleepers(impl, [cids[impl.key]])
        shim = {impl.key: self.wait_shim(impl, cids[impl.key]) for impl in self.impls}
        cpu0 = {k: proc_cpu(p) for k, p in shim.items()}
        for impl in self.impls:
            fp = footprint(shim[impl.key])
            res[impl.key]["before"] = fp and {k: fp.get(k) for k in ["Pss", "Anonymous", "Rss",
                                                                       "Threads", "fds"]}
        log(f"B4: {cfg['b4_seq']} sequential execs per shim, interleaved")
        for i in range(cfg["b4_seq"]):
            for impl in self.order(i):
                t = time.monotonic()
                r = self.ctr(impl, "task", "exec", "--exec-id", f"s{i}", cids[impl.key], "/bin/true")
                dt = time.monotonic() - t
                if r.returncode != 0:
                    res[impl.key]["seq_fail"] += 1
                    self.note_failure(f"{impl.key} exec s{i}", r)
                else:
                    res[impl.key]["seq"].append(dt)
        for impl in self.impls:
            c1 = proc_cpu(shim[impl.key])
            c0 = cpu0[impl.key]
            if c0 and c1:
                res[impl.key]["shim_cpu_per_exec_ms"] = round(1000 * (c1[0] - c0[0]) / cfg["b4_seq"], 3)
                res[impl.key]["children_cpu_per_exec_ms"] = round(
                    1000 * (c1[1] - c0[1]) / cfg["b4_seq"], 3)
        log("B4: bursts")
        for k in cfg["b4_bursts"]:
            for rnd in range(cfg["b4_burst_rounds"]):
                for impl in self.order(rnd):
                    cid = cids[impl.key]
                    t = time.monotonic()
                    procs = [subprocess.Popen(
                        self.ctr_cmd(impl, "task", "exec", "--exec-id", f"b{k}-{rnd}-{j}", cid,
                                     "/bin/true"),
                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE) for j in range(k)]
                    self.side_procs += procs
                    done = []

                    def reap(p):
                        try:
                            _, err = p.communicate(timeout=120)
                        except subprocess.TimeoutExpired:
                            p.kill()
                            _, err = p.communicate()
                        done.append(time.monotonic() - t)
                        return p.returncode, err
                    with ThreadPoolExecutor(k) as pool:
                        outs = list(pool.map(reap, procs))
                    dt = time.monotonic() - t
                    fails = 0
                    for rc, err in outs:
                        if rc != 0:
                            fails += 1
                            self.failures.append(f"{impl.key} burst {k}: {err.decode()[-200:]}")
                    self.side_procs = [p for p in self.side_procs if p.poll() is None]
                    res[impl.key]["bursts"][str(k)].append(dict(
                        wall_s=round(dt, 3), failed=fails, first_done_s=round(min(done), 3),
                        median_done_s=round(median(done), 3)))
                    log(f"  burst {k} {impl.key}: {dt:.3f}s (first {min(done):.3f}s, "
                        f"median {median(done):.3f}s), {fails} failed")
        for impl in self.impls:
            fp = footprint(shim[impl.key])
            res[impl.key]["after"] = fp and {k: fp.get(k) for k in ["Pss", "Anonymous", "Rss",
                                                                      "Threads", "fds"]}
            self.delete_everything(impl)
        self.results["B4"] = res

    # ===================================================================== B5

    def b5(self):
        cfg = self.cfg
        nbytes = cfg["b5_bytes"]
        res = {impl.key: {"fifo": [], "file": []} for impl in self.impls}
        for sink in ["fifo", "file"]:
            for rnd in range(cfg["b5_rounds"]):
                for impl in self.order(rnd):
                    r = self.b5_once(impl, sink, nbytes)
                    if r:
                        res[impl.key][sink].append(r)
                    log(f"B5 {sink} round {rnd + 1} {impl.key}: {r}")
        self.results["B5"] = res

    def b5_once(self, impl, sink, nbytes):
        cid = self.uid(f"out{sink}")
        count = nbytes // 65536
        script = f"sleep 0.5; dd if=/dev/zero bs=65536 count={count} 2>/dev/null; sleep 0.5"
        logf = self.shm / f"{cid}.log"
        extra = ["--log-uri", f"file://{logf}"] if sink == "file" else []
        p = subprocess.Popen(
            self.ctr_cmd(impl, *self.run_args(impl, cid, "/bin/sh", "-c", script, rm=True,
                                              extra=extra)),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.side_procs.append(p)
        try:
            shim = self.wait_shim(impl, cid)
            if shim is None:
                self.failures.append(f"B5 {impl.key} {sink}: shim not found")
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
                self.failures.append(f"B5 {impl.key} {sink}: rc={p.returncode} "
                                     f"done={t_end is not None} {err.decode()[-200:]}")
                return None
            if sink == "file" and os.stat(logf).st_size < nbytes:
                self.failures.append(f"B5 {impl.key} file: short log")
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

    # ===================================================================== B7

    def b7(self):
        cfg = self.cfg
        pods = cfg["b7_pods"]
        res = {impl.key: [] for impl in self.impls}
        for rnd in range(cfg["b1_rounds"]):
            for impl in self.order(rnd):
                log(f"B7 round {rnd + 1}: {impl.key}, {pods} pods x 2 containers, grouped")
                try:
                    group_of = {}
                    first = []
                    for i in range(pods):
                        cid = self.uid("podA")
                        group_of[cid] = f"pod{i}-{self.run_id}"
                        first.append(cid)
                    second = []
                    for i in range(pods):
                        cid = self.uid("podB")
                        group_of[cid] = f"pod{i}-{self.run_id}"
                        second.append(cid)

                    def extra(cid):
                        return ["--annotation", f"io.containerd.runc.v2.group={group_of[cid]}"]
                    self.start_sleepers(impl, first, extra)
                    time.sleep(self.cfg["settle"])
                    one = self.sample_shims(impl)
                    self.start_sleepers(impl, second, extra)
                    time.sleep(self.cfg["settle"])
                    two = self.sample_shims(impl)
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
                    self.delete_everything(impl)
        self.results["B7"] = res

    # ================================================================ cleanup

    def cleanup(self):
        self.stopping = True
        log("cleaning up")
        for p in self.side_procs:
            if p.poll() is None:
                try:
                    p.kill()
                    p.wait(timeout=5)
                except Exception:
                    pass
        if self.containerd is not None and self.containerd.poll() is None:
            os.kill(self.containerd.pid, signal.SIGCONT)  # in case B6b was interrupted
        alive = self.containerd is not None and self.containerd.poll() is None
        if alive:
            self.stopping = False  # allow the ctr calls below
            for impl in self.impls:
                if impl.ns:
                    try:
                        self.delete_everything(impl)
                    except Exception as e:  # keep cleaning
                        log(f"cleanup via ctr failed for {impl.key}: {e}")
            self.stopping = True
        self.kill_leftover_processes()
        for impl in self.impls:
            if not impl.ns:
                continue
            root = RUNC_STATE / impl.ns
            if root.is_dir():
                for cid in os.listdir(root):
                    subprocess.run([str(RUNC), "--root", str(root), "delete", "-f", cid],
                                   capture_output=True, timeout=30)
                try:
                    root.rmdir()
                except OSError as e:
                    log(f"could not remove {root}: {e}")
        if self.containerd is not None and self.containerd.poll() is None:
            self.containerd.terminate()
            try:
                self.containerd.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.containerd.kill()
                self.containerd.wait()
        self.remove_shim_sockets()
        if self.failed and self.tmp and (self.tmp / "containerd.log").exists():
            dest = Path(__file__).resolve().parent / "results" / "containerd-failed-run.log"
            dest.parent.mkdir(exist_ok=True)
            shutil.copy(self.tmp / "containerd.log", dest)
            log(f"containerd's log kept in {dest}")
        self.unmount_ours()
        self.remove_cgroups()
        for d in [self.tmp, self.shm]:
            if d and d.exists():
                shutil.rmtree(d, ignore_errors=True)
        log("cleanup done")

    def kill_leftover_processes(self):
        """SIGKILL, by PID, every process running one of our private binaries
        and everything below them (containers, runc)."""
        if not self.tmp:
            return
        mine = str(self.tmp) + "/"
        for attempt in range(5):
            ppid = proc_ppid_map()
            roots = {p for p in ppid if (proc_exe(p) or "").startswith(mine)}
            if self.containerd is not None:
                roots.discard(self.containerd.pid)
            if not roots:
                return
            victims = set()
            for p in ppid:
                q, seen = p, 0
                while q and q > 1 and seen < 64:
                    if q in roots:
                        victims.add(p)
                        break
                    q = ppid.get(q, 0)
                    seen += 1
            log(f"killing {len(victims)} leftover processes by pid")
            for p in sorted(victims, key=lambda p: p in roots):  # children first
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.5)

    def remove_shim_sockets(self):
        if not self.tmp:
            return
        base = self.tmp / "state" / "io.containerd.runtime.v2.task"
        if not base.is_dir():
            return
        for addr in base.glob("*/*/address"):
            a = (read(addr, "") or "").strip()
            path = a[len("unix://"):] if a.startswith("unix://") else None
            if path and os.path.exists(path):
                try:
                    os.unlink(path)
                    log(f"removed leftover shim socket {path}")
                except OSError:
                    pass

    def unmount_ours(self):
        prefixes = [str(d) + "/" for d in [self.tmp, self.shm] if d]
        mounts = []
        for line in (read("/proc/self/mountinfo", "") or "").splitlines():
            mp = line.split()[4].replace("\\040", " ")
            if any(mp.startswith(p) or mp + "/" == p for p in prefixes):
                mounts.append(mp)
        for mp in sorted(mounts, key=len, reverse=True):
            if subprocess.run(["umount", mp], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", mp], capture_output=True)
            log(f"unmounted {mp}")

    def remove_cgroups(self):
        if self.orig_cpuacct is not None:
            try:
                (self.orig_cpuacct / "cgroup.procs").write_text(f"{os.getpid()}\n")
            except OSError as e:
                log(f"could not move back to {self.orig_cpuacct}: {e}")
        dirs = []
        if self.cg_root is not None:
            dirs.append(self.cg_root)
        for impl in self.impls:
            if impl.ns:
                tops = [CGROUP_FS] if UNIFIED else list(CGROUP_FS.iterdir())
                dirs += [c / impl.ns for c in tops if (c / impl.ns).is_dir()]
        for top in dirs:
            if not top.is_dir():
                continue
            subs = sorted((p for p in top.rglob("*") if p.is_dir()),
                          key=lambda p: len(p.parts), reverse=True)
            for d in subs + [top]:
                try:
                    d.rmdir()
                except OSError as e:
                    log(f"could not remove cgroup {d}: {e}")


GAP = 0.25  # seconds between breakdown runs

RUNC_SUBCOMMANDS = {"create", "start", "delete", "kill", "state", "exec", "ps", "pause", "resume",
                    "update", "events", "features", "checkpoint", "restore", "run", "list"}


class EventStream:
    """`ctr events`, read line by line; each line stamped on arrival."""

    def __init__(self, bench, impl):
        self.ns = impl.ns
        self.lines = []
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(bench.ctr_cmd(impl, "events"), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        bench.side_procs.append(self.proc)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for raw in self.proc.stdout:
            mono, wall = time.monotonic(), time.time()
            with self.lock:
                self.lines.append((mono, wall, raw.decode(errors="replace").rstrip("\n")))

    def seen_topic(self, topic):
        with self.lock:
            return any(f" {self.ns} {topic} " in ln for _, _, ln in self.lines)

    def exits(self, start, ids):
        with self.lock:
            lines = self.lines[start:]
        evs = []
        for mono, wall, ln in lines:
            parts = ln.split(" ", 6)
            if len(parts) < 7 or parts[4] != self.ns or parts[5] != "/tasks/exit":
                continue
            try:
                body = json.loads(parts[6])
            except ValueError:
                continue
            if body.get("container_id") not in ids:
                continue
            ex = body.get("exited_at")
            body["exited_at"] = parse_rfc3339(ex) if ex else None
            body["mono"], body["wall"] = mono, wall
            evs.append(body)
        return {"events": evs}

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def parse_rfc3339(s):
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z$", s)
    if not m:
        return None
    base = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(
        tzinfo=datetime.timezone.utc).timestamp()
    frac = float("0." + m.group(2)) if m.group(2) else 0.0
    return base + frac


# --------------------------------------------------------------------------
# summary, report, chart


def summarize(bench):
    """Rows: (bench, metric, tether, go, ratio, target text, met or None)."""
    R = bench.results
    cfg = bench.cfg
    rows = []

    def ratio(a, b):
        try:
            return a / b if b else None
        except TypeError:
            return None

    def add(b, metric, t, g, target=None, met=None, fmt="{:.2f}", unit=""):
        rows.append(dict(bench=b, metric=metric + (f" ({unit})" if unit else ""),
                         tether=t, go=g, ratio=ratio(t, g), target=target, met=met, fmt=fmt))

    if "B1" in R:
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
            add("B1", f"PSS per shim @{n}", t, g, tgt, met, unit="MiB")
        for key, name, unit in [("anon_kib_median", "anonymous per shim", "MiB"),
                                ("rss_kib_median", "RSS per shim", "MiB")]:
            add("B1", f"{name} @{top}", median([s[key] for s in R["B1"]["tether"]["levels"][top]]) / 1024,
                median([s[key] for s in R["B1"]["go"]["levels"][top]]) / 1024, unit=unit)
        tt = max(max(s["threads_max"] for s in R["B1"]["tether"]["levels"][n]) for n in map(str, levels))
        gt = max(max(s["threads_max"] for s in R["B1"]["go"]["levels"][n]) for n in map(str, levels))
        add("B1", "threads per shim (max)", tt, gt, "≤ 2", tt <= 2, fmt="{:.0f}")
        add("B1", f"open fds per shim @{top} (median)",
            median([s["fds_median"] for s in R["B1"]["tether"]["levels"][top]]),
            median([s["fds_median"] for s in R["B1"]["go"]["levels"][top]]), fmt="{:.0f}")
        add("B1", f"Σ PSS of all shims @{top}",
            median([s["pss_kib_sum"] for s in R["B1"]["tether"]["levels"][top]]) / 1024,
            median([s["pss_kib_sum"] for s in R["B1"]["go"]["levels"][top]]) / 1024, unit="MiB")
    if "B2" in R:
        T, G = R["B2"]["tether"], R["B2"]["go"]
        t50, g50 = 1000 * median(T["wall"]), 1000 * median(G["wall"])
        add("B2", f"`ctr run --rm` p50 (n={len(T['wall'])}/{len(G['wall'])})", t50, g50,
            "≤ 0.95× Go", t50 <= 0.95 * g50, fmt="{:.1f}", unit="ms")
        add("B2", "`ctr run --rm` p95", 1000 * pct(T["wall"], 95), 1000 * pct(G["wall"], 95),
            fmt="{:.1f}", unit="ms")
        if T["breakdown"] and G["breakdown"]:
            ts = 1000 * median([b["shim_share"] for b in T["breakdown"]])
            gs = 1000 * median([b["shim_share"] for b in G["breakdown"]])
            add("B2", f"shim share = total − runc, p50 (n={len(T['breakdown'])}/{len(G['breakdown'])})",
                ts, gs, "≤ 0.5× Go", ts <= 0.5 * gs, fmt="{:.1f}", unit="ms")
            for sub in ["start", "delete"]:
                tv = [b["shim_bin"][sub] for b in T["breakdown"] if sub in b.get("shim_bin", {})]
                gv = [b["shim_bin"][sub] for b in G["breakdown"] if sub in b.get("shim_bin", {})]
                if tv and gv:
                    add("B2", f"`shim {sub}` invocation wall time, p50", 1000 * median(tv),
                        1000 * median(gv), fmt="{:.1f}", unit="ms")
            add("B2", "runc time per lifecycle, p50",
                1000 * median([b["runc"] for b in T["breakdown"]]),
                1000 * median([b["runc"] for b in G["breakdown"]]), fmt="{:.1f}", unit="ms")
            add("B2", "runc invocations per lifecycle",
                median([len(b["calls"]) for b in T["breakdown"]]),
                median([len(b["calls"]) for b in G["breakdown"]]), fmt="{:.0f}")
            add("B2", "shim CPU per lifecycle (cgroup), p50",
                1000 * median([b["shim_cpu"] for b in T["breakdown"]]),
                1000 * median([b["shim_cpu"] for b in G["breakdown"]]), fmt="{:.1f}", unit="ms")
    if "B3" in R:
        t = median([r["per_s"] for r in R["B3"]["tether"]])
        g = median([r["per_s"] for r in R["B3"]["go"]])
        add("B3", f"churn {cfg['b3_n']} at concurrency {cfg['b3_conc']}", t, g, "≥ 1.15× Go",
            t >= 1.15 * g, unit="containers/s")
        add("B3", "shim+runc CPU per container (cgroup)",
            median([r["cpu_shim_and_runc_per_container_ms"] for r in R["B3"]["tether"]]),
            median([r["cpu_shim_and_runc_per_container_ms"] for r in R["B3"]["go"]]),
            fmt="{:.1f}", unit="ms")
        add("B3", "leaked shims / leftover bundles (all rounds)",
            sum(r["leaked_shims"] + r["leftover_bundles"] for r in R["B3"]["tether"]),
            sum(r["leaked_shims"] + r["leftover_bundles"] for r in R["B3"]["go"]), fmt="{:.0f}")
    if "B4" in R:
        T, G = R["B4"]["tether"], R["B4"]["go"]
        t50, g50 = 1000 * median(T["seq"]), 1000 * median(G["seq"])
        add("B4", f"sequential exec p50 (n={len(T['seq'])}/{len(G['seq'])})", t50, g50,
            "≤ 0.9× Go", t50 <= 0.9 * g50, fmt="{:.1f}", unit="ms")
        add("B4", "sequential exec p99", 1000 * pct(T["seq"], 99), 1000 * pct(G["seq"], 99),
            fmt="{:.1f}", unit="ms")
        if "shim_cpu_per_exec_ms" in T and "shim_cpu_per_exec_ms" in G:
            add("B4", "shim CPU per exec", T["shim_cpu_per_exec_ms"], G["shim_cpu_per_exec_ms"],
                unit="ms")
        for k in cfg["b4_bursts"]:
            tb = median([b["wall_s"] for b in T["bursts"][str(k)]])
            gb = median([b["wall_s"] for b in G["bursts"][str(k)]])
            fails = sum(b["failed"] for b in T["bursts"][str(k)])
            tgt = met = None
            if k == 50:
                tgt, met = "tether ≤ 2 s", tb <= 2.0 and fails == 0
            add("B4", f"burst of {k} concurrent execs", tb, gb, tgt, met, unit="s")
    if "B5" in R:
        for sink, name in [("fifo", "FIFO → ctr → /dev/null"), ("file", "file:// log")]:
            T, G = R["B5"]["tether"][sink], R["B5"]["go"][sink]
            if not T or not G:
                continue
            tt, gt = median([r["gib_per_s"] for r in T]), median([r["gib_per_s"] for r in G])
            add("B5", f"{name}: throughput", tt, gt, "≥ 1.0× Go", tt >= gt, unit="GiB/s")
            tc = median([r["shim_cpu_s_per_gib"] for r in T])
            gc = median([r["shim_cpu_s_per_gib"] for r in G])
            add("B5", f"{name}: shim CPU per GiB", tc, gc, "≤ 0.5× Go", tc <= 0.5 * gc,
                fmt="{:.3f}", unit="s")
    if "B6" in R:
        T = [s for s in R["B6"]["tether"] if s]
        G = [s for s in R["B6"]["go"] if s]
        if T and G:
            n = T[0]["containers"]
            tw = max(s["time_to_last_exit_s"] or float("inf") for s in T)
            gw = max(s["time_to_last_exit_s"] or float("inf") for s in G)
            tm = median([s["time_to_last_exit_s"] for s in T])
            gm = median([s["time_to_last_exit_s"] for s in G])
            add("B6", f"kill {n} → last /tasks/exit, median", tm, gm, unit="s", fmt="{:.3f}")
            add("B6", f"kill {n} → last /tasks/exit, worst round", tw, gw,
                "tether ≤ 1 s", tw <= 1.0, unit="s", fmt="{:.3f}")
            tl = sum(s["lost"] for s in T) + sum(s["duplicated"] for s in T)
            gl = sum(s["lost"] for s in G) + sum(s["duplicated"] for s in G)
            add("B6", "lost + duplicated exits (all rounds)", tl, gl, "0", tl == 0, fmt="{:.0f}")
            add("B6", "exited_at → received p99, median of rounds",
                median([s["exited_at_to_receive_p99_ms"] for s in T]),
                median([s["exited_at_to_receive_p99_ms"] for s in G]), fmt="{:.0f}", unit="ms")
    if "B6b" in R and "tether" in R["B6b"] and "go" in R["B6b"]:
        T, G = R["B6b"]["tether"], R["B6b"]["go"]
        add("B6b", f"paused {T['pause_s']:.0f} s, {T['containers']} killed: resume → last exit",
            T["resume_to_last_exit_s"], G["resume_to_last_exit_s"],
            "≤ 2 s (plan)", (T["resume_to_last_exit_s"] or 99) <= 2.0, fmt="{:.3f}", unit="s")
        add("B6b", "lost exits after the pause", T["lost"], G["lost"], "0 (plan)", T["lost"] == 0,
            fmt="{:.0f}")
        add("B6b", "duplicated exits after the pause", T["duplicated"], G["duplicated"],
            fmt="{:.0f}")
    if "B7" in R and R["B7"]["tether"] and R["B7"]["go"]:
        T, G = R["B7"]["tether"], R["B7"]["go"]
        pods = cfg["b7_pods"]
        tp = median([r["pss_per_pod_kib"] for r in T]) / 1024
        gp = median([r["pss_per_pod_kib"] for r in G]) / 1024
        add("B7", f"PSS per grouped pod ({pods} pods × 2)", tp, gp, "≤ 1.5 MiB", tp <= 1.5,
            unit="MiB")
        ts = median([r["pss_sum_kib_2"] for r in T]) / 1024
        gs = median([r["pss_sum_kib_2"] for r in G]) / 1024
        add("B7", f"Σ PSS, {2 * pods} containers grouped", ts, gs, "≤ 0.3× Go", ts <= 0.3 * gs,
            unit="MiB")
        tm = median([r["marginal_kib_per_container"] for r in T])
        gm = median([r["marginal_kib_per_container"] for r in G])
        add("B7", "marginal PSS of 2nd container in a shim", tm, gm, "≤ 100 KiB", tm <= 100,
            fmt="{:.0f}", unit="KiB")
        add("B7", "shims for the grouped pods", median([r["shims"] for r in T]),
            median([r["shims"] for r in G]), fmt="{:.0f}")
    return rows


def fmt_val(v, fmt):
    if v is None or (isinstance(v, float) and v != v):
        return "–"
    if v == float("inf"):
        return "timeout"
    return fmt.format(v)


def machine_info():
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
        kernel=platform.release(), os=osr, cgroup=cgroup_mode(),
        containerd=ver(["containerd", "--version"]).split("\n")[0],
        runc=ver([str(RUNC), "--version"]).split("\n")[0],
        go_shim=f"{GO_SHIM} ({GO_SHIM.stat().st_size / MIB:.1f} MiB, dynamically linked)",
        tether=f"commit {commit}{' + uncommitted changes in src/' if dirty else ''}",
    )


B8_START = "<!-- B8 start -->"
B8_END = "<!-- B8 end -->"
# The cgroup v2 section (bench/guest-v2.sh, bench/v2_section.py).
V2_START = "<!-- V2 start -->"
V2_END = "<!-- V2 end -->"


def write_report(bench, rows, out_dir, chart_name, started, duration, argv, m, mode):
    cfg = bench.cfg
    L = []
    L.append("# tether vs containerd-shim-runc-v2: benchmark results\n")
    L.append(f"Generated by the harness in `bench/` ({mode} mode). Command:\n")
    L.append(f"```sh\n{argv}\n```\n")
    L.append(f"- Date: {started} (UTC); run took {duration / 60:.1f} min including the build check")
    L.append(f"- Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB RAM, kernel "
             f"{m['kernel']}, {m['os']}")
    L.append(f"- cgroups: {m['cgroup']}")
    L.append(f"- containerd: {m['containerd']}; runc: {m['runc']}")
    L.append(f"- Go shim: {m['go_shim']}; tether: release build, {m['tether']}")
    L.append(f"- Rounds: B1/B6/B7 {cfg['b1_rounds']}, B2 {cfg['b2_runs']} runs per shim "
             f"(+{cfg['b2_breakdown']} timed-runc runs), B3 {cfg['b3_rounds']}×{cfg['b3_n']}, "
             f"B4 {cfg['b4_seq']} sequential + {cfg['b4_burst_rounds']} rounds per burst size, "
             f"B5 {cfg['b5_rounds']}×{cfg['b5_bytes'] // MIB} MiB per sink. "
             "All A/B interleaved (ABAB, first shim alternating); values are medians.\n")
    L.append(f"![chart]({chart_name})\n")
    L.append("| Benchmark | Metric | tether | Go | tether/Go | Target | Met? |")
    L.append("|---|---|---:|---:|---:|---|---|")
    for r in rows:
        met = "" if r["met"] is None else ("**met**" if r["met"] else "**not met**")
        ratio = "–" if r["ratio"] is None else f"{r['ratio']:.2f}×"
        L.append(f"| {r['bench']} | {r['metric']} | {fmt_val(r['tether'], r['fmt'])} | "
                 f"{fmt_val(r['go'], r['fmt'])} | {ratio} | {r['target'] or ''} | {met} |")
    L.append("")
    unmet = [r for r in rows if r["met"] is False]
    if unmet:
        L.append("## Targets not met, and why\n")
        for r in unmet:
            why = next((text for key, text in WHY_NOT_MET if key in r["metric"]),
                       "no analysis recorded for this figure yet.")
            L.append(f"- **{r['bench']} {r['metric']}** ({r['ratio']:.2f}×, target {r['target']}): {why}")
        L.append("")
    L.append("## Noise\n")
    L.append("CPU used outside the benchmark's own processes during each benchmark "
             "(`/proc/stat` busy time minus the harness's cpuacct cgroups and its containers' "
             "cgroups; includes kernel threads), as a share of all CPUs:\n")
    L.append("| Benchmark | wall (s) | foreign CPU | ours | steal | load avg start→end |")
    L.append("|---|---:|---:|---:|---:|---|")
    noisy = []
    for name, n in bench.noise.items():
        L.append(f"| {name} | {n['wall_s']} | {n['foreign_cpu_pct']} % | {n['ours_cpu_pct']} % | "
                 f"{n['steal_pct']} % | {n['load_start']} → {n['load_end']} |")
        if n["foreign_cpu_pct"] > 5:
            noisy.append(name)
    L.append("")
    if noisy:
        L.append(f"**Noisy:** {', '.join(noisy)} ran while something else used more than 5 % of the "
                 "machine (this VM is shared with another engineer's test runs). A/B interleaving "
                 "spreads the disturbance over both shims, but treat those figures with care.\n")
    else:
        L.append("No benchmark saw more than 5 % foreign CPU.\n")
    if bench.failures:
        L.append("## Failures during the run\n")
        for f in bench.failures[:50]:
            L.append(f"- {f}")
        if len(bench.failures) > 50:
            L.append(f"- … and {len(bench.failures) - 50} more")
        L.append("")
    L.append(METHOD_NOTES)
    L.append(details_section(bench))
    # B8 (CRI pods, bench/b8_pods.py) and the cgroup v2 run
    # (bench/guest-v2.sh) keep their own sections; carry them over.
    old_md = out_dir / "benchmarks.md"
    text = old_md.read_text() if old_md.exists() else ""
    for mark_start, mark_end in [(B8_START, B8_END), (V2_START, V2_END)]:
        start, end = text.find(mark_start), text.find(mark_end)
        if 0 <= start < end:
            L.append(text[start:end + len(mark_end)])
    (out_dir / "benchmarks.md").write_text("\n".join(L) + "\n")


# Why a target is missed, where the harness's own figures say so. Matched
# by substring of the metric name.
WHY_NOT_MET = [
    ("shim share", "'total minus runc' still holds ctr's and containerd's own time, which both "
     "shims pay alike. The shim's own parts are well under half of Go's: see `shim start` "
     "and `shim delete` invocation times and shim CPU per lifecycle in the table."),
    ("sequential exec p50", "an exec's wall time is mostly ctr, containerd and `runc exec`; "
     "the shim's own CPU per exec is about a third of Go's (table). Cutting it further "
     "needs fewer runc processes per exec, which runc's CLI does not offer."),
    ("file:// log: shim CPU", "writing into the page cache is kernel work charged to the "
     "shim, and it dominates; splice(2) into the file and writes without O_APPEND were "
     "both measured slower here, so plain O_APPEND writes stay."),
    ("file:// log: throughput", "see the CPU figure: the page-cache write dominates."),
]

METHOD_NOTES = """## How each figure is measured

Both shims run under the same private containerd, in separate unique
namespaces, selected by runtime name (`io.containerd.tether.v2`,
`io.containerd.runc.v2`). containerd finds each through its PATH, where a tiny
static launcher moves the process into a per-shim cpuacct cgroup and execs a
private copy of the shim binary (so page-cache sharing, and therefore PSS, is
not affected by other shims on the machine). The launcher costs both shims the
same one extra `execve` per shim invocation. Containers run a static busybox
rootfs with `ctr run --rootfs`.

- **B1** `ctr run -d … /bin/sleep` up to 10, 50 and 110 containers (4 at a
  time), then after a settle period each shim daemon (exe = our copy, cmdline
  has our namespace) is read: `/proc/PID/smaps_rollup` (Pss, Anonymous, Rss),
  `/proc/PID/status` Threads, `ls /proc/PID/fd`. Per-shim values are the
  median over shims, then the median over rounds.
- **B2** `ctr run --rm … /bin/true`, sequential, interleaved per run. The
  breakdown runs give both shims a runc wrapper as their runtime binary (Go:
  `--runc-binary`; tether: `--runtime-config-path` with `BinaryName`). The
  wrapper forks the real runc, waits, and logs start/end on CLOCK_MONOTONIC;
  *shim share* = wall time of the run − Σ runc wall time inside it. It
  still contains ctr's and containerd's own work (identical for both), so the
  ratio understates the difference between the shims themselves. *shim CPU*
  is the shim's cpuacct cgroup delta (start + daemon + `delete` processes;
  the wrapped runc runs in a separate cgroup). In these runs the launcher
  also forks the shim instead of exec'ing it and logs how long each `shim
  start` and `shim delete` invocation took (wall time until that process
  exited; the daemon `start` spawns is not included).
- **B3** 4 workers each running `ctr run --rm … /bin/true` until 110
  containers were created, started, exited and deleted; containers/s = 110 /
  wall. CPU per container is the shim cgroup delta, which includes runc (runc
  is the shim's child).
- **B4** one `sleep` container per shim; `ctr task exec --exec-id … /bin/true`
  sequentially (interleaved per exec), then bursts of 10/30/50 concurrent
  `ctr task exec` (time until the last one returned). Shim CPU per exec is the
  daemon's utime+stime delta over the sequential phase.
- **B5** `sh -c 'sleep 0.5; dd if=/dev/zero bs=64k count=N; sleep 0.5'` under
  `ctr run --rm`. FIFO sink: ctr's stdout is /dev/null and progress is ctr's
  `rchar` (`/proc/PID/io`), i.e. bytes that reached the client. file:// sink:
  `--log-uri file:///dev/shm/…`, progress is the file size. Throughput is
  timed from 1 MiB delivered to all bytes delivered (polled every 4 ms); shim
  CPU is the daemon's utime+stime (10 ms ticks) over the same window.
- **B6** after B1 reached the top level: `ctr events` is already streaming;
  the harness SIGKILLs every container init by PID (from `ctr task ls`) in a
  tight loop and timestamps each `/tasks/exit` line as it arrives. Lost =
  containers without an exit event; duplicated = extra exit events.
- **B6b** the plan's variant: a fresh set of containers, `ctr events`
  streaming, containerd SIGSTOPped, every container SIGKILLed, containerd
  SIGCONTinued after the pause; time from SIGCONT to the last first-seen exit.
  An exit counted as duplicated arrived more than once (a shim whose Forward
  call times out while containerd is stopped and then retries on a new
  connection makes containerd publish both copies once it runs again).
- **B7** the containers carry `io.containerd.runc.v2.group=<pod>` (both shims
  honour it): one container per pod first (Σ PSS sampled), then a second
  container in each pod (sampled again). Per-pod PSS = Σ PSS / shims;
  marginal = (Σ PSS with 2 − Σ PSS with 1) / pods. The plan's 250-container
  step is not run (time budget); 110 containers = 55 pods.
"""


def details_section(bench):
    R = bench.results
    L = ["## Details\n"]
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
    if "B1" in R:
        for k in ["tether", "go"]:
            for n, samples in R["B1"][k]["levels"].items():
                s = samples[-1]
                L.append(f"- B1 {k} @{n} (last round): {s['shims']} shims, PSS {s['pss_kib_median']} KiB, "
                         f"Pss_Anon {s['pss_anon_kib_median']} KiB, Private_Dirty "
                         f"{s['private_dirty_kib_median']} KiB, RSS {s['rss_kib_median']} KiB, "
                         f"VmHWM {s['hwm_kib_median']} KiB, threads {s['threads_median']}, "
                         f"fds {s['fds_median']}")
    if "B6" in R:
        for k in ["tether", "go"]:
            for i, s in enumerate(R["B6"][k]):
                if s:
                    L.append(f"- B6 {k} round {i + 1}: last exit after {s['time_to_last_exit_s']} s, "
                             f"first after {s['time_to_first_exit_s']} s, {s['exits_received']} "
                             f"events for {s['containers']} containers, exited_at→received p50 "
                             f"{s['exited_at_to_receive_p50_ms']} ms / p99 "
                             f"{s['exited_at_to_receive_p99_ms']} ms")
    if "B6b" in R:
        for k in ["tether", "go"]:
            if k in R["B6b"]:
                L.append(f"- B6b {k}: {R['B6b'][k]}")
    if "B4" in R:
        for k in ["tether", "go"]:
            L.append(f"- B4 {k}: shim daemon (KiB) before the execs {R['B4'][k].get('before')}, "
                     f"after all of them {R['B4'][k].get('after')}; reaped "
                     f"children CPU per exec {R['B4'][k].get('children_cpu_per_exec_ms')} ms")
    if "B4" in R:
        for k in ["tether", "go"]:
            parts = []
            for size, bs in R["B4"][k]["bursts"].items():
                if bs:
                    parts.append(f"{size}: first done {median([b['first_done_s'] for b in bs]):.2f} s, "
                                 f"half done {median([b['median_done_s'] for b in bs]):.2f} s, "
                                 f"all done {median([b['wall_s'] for b in bs]):.2f} s")
            L.append(f"- B4 {k} bursts (medians over rounds): " + "; ".join(parts))
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
    L.append("\nRaw data: `bench/results/latest.json`.")
    return "\n".join(L) + "\n"


def make_chart(bench, rows, out_dir):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return make_svg(rows, out_dir)
    R = bench.results
    fig, axes = plt.subplots(2, 2, figsize=(14, 10))
    colors = {"tether": "#d95f02", "go": "#1b9e77"}

    # (a) ratio per metric
    ax = axes[0][0]
    rr = [r for r in rows if r["ratio"] is not None and r["target"]]
    labels = [(r["bench"] + " " + re.sub(r" \(.*", "", r["metric"]))[:48] for r in rr]
    vals = [r["ratio"] for r in rr]
    cols = ["#4daf4a" if r["met"] else "#e41a1c" for r in rr]
    y = range(len(rr))
    ax.barh(list(y), vals, color=cols)
    for i, r in enumerate(rr):
        m = re.search(r"([\d.]+)× Go", r["target"] or "")
        if m:  # the target ratio, as a tick on the bar
            ax.plot([float(m.group(1))] * 2, [i - 0.4, i + 0.4], color="black", lw=2)
        ax.text(r["ratio"] * 1.05, i, f"{r['ratio']:.2f}", va="center", fontsize=7)
    ax.axvline(1.0, color="grey", lw=0.8, ls=":")
    ax.set_yticks(list(y))
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("tether / Go, log scale (green: target met, red: not met; black tick: target ratio)")
    ax.set_title("Ratios of the targeted metrics")

    # (b) B1 PSS per shim vs N
    ax = axes[0][1]
    if "B1" in R:
        for k in ["tether", "go"]:
            ns = sorted(R["B1"][k]["levels"], key=int)
            ax.plot([int(n) for n in ns],
                    [median([s["pss_kib_median"] for s in R["B1"][k]["levels"][n]]) / 1024 for n in ns],
                    "o-", color=colors[k], label=f"{k} PSS")
            ax.plot([int(n) for n in ns],
                    [median([s["anon_kib_median"] for s in R["B1"][k]["levels"][n]]) / 1024 for n in ns],
                    "s--", color=colors[k], alpha=0.6, label=f"{k} anonymous")
        ax.set_xticks([int(n) for n in ns])
        ax.set_xlabel("running containers (one shim each)")
        ax.set_ylabel("MiB per shim")
        ax.set_ylim(bottom=0)
        ax.legend()
        ax.set_title("B1 idle memory per shim")

    # (c) B2 / B4 latency distributions
    ax = axes[1][0]
    data, lab = [], []
    if "B2" in R:
        for k in ["tether", "go"]:
            data.append([1000 * x for x in R["B2"][k]["wall"]])
            lab.append(f"B2 run --rm\n{k}")
    if "B4" in R:
        for k in ["tether", "go"]:
            data.append([1000 * x for x in R["B4"][k]["seq"]])
            lab.append(f"B4 exec\n{k}")
    if data:
        bp = ax.boxplot(data, showfliers=False, patch_artist=True)
        ax.set_xticks(range(1, len(lab) + 1))
        ax.set_xticklabels(lab, fontsize=8)
        for patch, l in zip(bp["boxes"], lab):
            patch.set_facecolor(colors["tether" if "tether" in l else "go"])
        ax.set_ylabel("ms (box: p25–p75, whiskers 1.5 IQR)")
        ax.set_title("Latency: lifecycle and exec")

    # (d) B5 throughput and CPU/GiB
    ax = axes[1][1]
    if "B5" in R:
        sinks = ["fifo", "file"]
        x = range(len(sinks))
        w = 0.35
        for j, k in enumerate(["tether", "go"]):
            tp = [median([r["gib_per_s"] for r in R["B5"][k][s]]) if R["B5"][k][s] else 0 for s in sinks]
            ax.bar([i + (j - 0.5) * w for i in x], tp, w, color=colors[k], label=f"{k} GiB/s")
        ax2 = ax.twinx()
        for j, k in enumerate(["tether", "go"]):
            cp = [median([r["shim_cpu_s_per_gib"] for r in R["B5"][k][s]]) if R["B5"][k][s] else 0
                  for s in sinks]
            ax2.plot([i + (j - 0.5) * w for i in x], cp, "kD" if k == "go" else "k^",
                     label=f"{k} shim CPU s/GiB")
        ax.set_xticks(list(x))
        ax.set_xticklabels(["FIFO → ctr", "file:// log"])
        ax.set_ylabel("GiB/s")
        ax2.set_ylabel("shim CPU s per GiB")
        ax2.set_ylim(bottom=0)
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.08),
                  ncol=4)
        ax.set_title("B5 stdout")
    fig.suptitle("tether vs containerd-shim-runc-v2 (medians; see benchmarks.md)")
    fig.tight_layout()
    path = out_dir / "benchmarks.png"
    fig.savefig(path, dpi=110)
    return path.name


def make_svg(rows, out_dir):
    """Fallback without matplotlib: a hand-written bar chart of the ratios."""
    import math
    rr = [r for r in rows if r["ratio"] is not None and r["target"] and r["ratio"] > 0]
    h = 40 + 22 * len(rr)
    x0, width = 330, 420

    def xpos(v):  # log scale 0.01 .. 10
        v = min(max(v, 0.01), 10)
        return x0 + (math.log10(v) + 2) / 3 * width
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{x0 + width + 40}" height="{h}" '
           'font-family="sans-serif" font-size="11">',
           '<text x="10" y="18" font-size="13">tether / Go (log scale; green = target met)</text>']
    for i, r in enumerate(rr):
        y = 30 + 22 * i
        col = "#4daf4a" if r["met"] else "#e41a1c"
        label = f"{r['bench']} {r['metric']}"[:52].replace("&", "&amp;").replace("<", "&lt;")
        out.append(f'<text x="10" y="{y + 13}">{label}</text>')
        out.append(f'<rect x="{x0}" y="{y}" width="{max(1, xpos(r["ratio"]) - x0):.1f}" '
                   f'height="16" fill="{col}"/>')
        out.append(f'<text x="{xpos(r["ratio"]) + 4:.1f}" y="{y + 13}">{r["ratio"]:.2f}×</text>')
    out.append(f'<line x1="{xpos(1):.1f}" y1="25" x2="{xpos(1):.1f}" y2="{h}" stroke="black"/>')
    out.append("</svg>")
    (out_dir / "benchmarks.svg").write_text("\n".join(out))
    return "benchmarks.svg"


# --------------------------------------------------------------------------


def report_from_json(args):
    data = json.loads(Path(args.from_json).read_text())
    bench = Bench(args)
    bench.cfg = data["config"]
    bench.results = data["results"]
    bench.noise = data["noise"]
    bench.failures = data["failures"]
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = summarize(bench)
    chart = make_chart(bench, rows, out_dir)
    write_report(bench, rows, out_dir, chart, data["started"], data["seconds"],
                 data.get("command", "bash bench/run.sh"), data["machine"],
                 data.get("mode", "full"))
    log(f"rewrote {out_dir / 'benchmarks.md'} and {out_dir / chart} from {args.from_json}")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds and containers")
    ap.add_argument("--only", default="", help="comma list of B1..B7 to run (development)")
    ap.add_argument("--out-dir", default=str(REPO / "docs"), help="where benchmarks.md/png go")
    ap.add_argument("--results-dir", default=str(REPO / "bench" / "results"),
                    help="where latest.json goes")
    ap.add_argument("--command", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--from-json", default=None, metavar="PATH",
                    help="only rewrite the report and chart from a results file "
                         "(e.g. bench/results/latest.json)")
    args = ap.parse_args()
    if args.from_json:
        return report_from_json(args)
    if os.geteuid() != 0:
        sys.exit("bench: must run as root")
    for tool in ["ctr", "containerd", "gcc"]:
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} not found")
    if not RUNC.exists() or not GO_SHIM.exists():
        sys.exit("bench: runc or containerd-shim-runc-v2 missing")

    only = {x.strip().upper() for x in args.only.split(",") if x.strip()}

    def want(b):
        return not only or b in only
    bench = Bench(args)
    if not bench.impls[0].src.exists():
        sys.exit("bench: build tether first (cargo build --release)")
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    t_start = time.monotonic()

    def on_signal(signum, frame):
        bench.stopping = True
        raise Interrupted(f"signal {signum}")
    for s in [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]:
        signal.signal(s, on_signal)
    rc = 0
    try:
        bench.setup()
        steps = [("B2", bench.b2, want("B2")), ("B3", bench.b3, want("B3")),
                 ("B4", bench.b4, want("B4")), ("B5", bench.b5, want("B5")),
                 ("B1+B6", bench.b1_b6, want("B1") or want("B6")),
                 ("B6b", bench.b6_paused, want("B6") or want("B6B")),
                 ("B7", bench.b7, want("B7"))]
        for name, fn, wanted in steps:
            if wanted:
                with bench.measure_noise(name):
                    fn()
    except (Interrupted, KeyboardInterrupt) as e:
        log(f"interrupted ({e}); cleaning up")
        rc = 130
    except Exception:
        import traceback
        traceback.print_exc()
        bench.failed = True
        rc = 1
    finally:
        for s in [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]:
            signal.signal(s, signal.SIG_IGN)
        bench.cleanup()
    if rc != 0:
        return rc
    duration = time.monotonic() - T0 + float(os.environ.get("BENCH_BUILD_SECONDS", "0"))
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = summarize(bench)
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    cmd = (args.command or " ".join(shlex.quote(a) for a in [sys.argv[0], *sys.argv[1:]])).strip()
    mode = "quick" if args.quick else "full"
    machine = machine_info()
    (results_dir / "latest.json").write_text(json.dumps(
        dict(config=bench.cfg, results=bench.results, noise=bench.noise, failures=bench.failures,
             machine=machine, started=started, seconds=round(duration, 1), command=cmd,
             mode=mode),
        indent=1, default=str))
    chart = make_chart(bench, rows, out_dir)
    write_report(bench, rows, out_dir, chart, started, duration, cmd, machine, mode)
    log(f"wrote {out_dir / 'benchmarks.md'} and {out_dir / chart} "
        f"({(time.monotonic() - t_start) / 60:.1f} min)")
    for r in rows:
        met = "" if r["met"] is None else ("MET" if r["met"] else "NOT MET")
        print(f"{r['bench']:3} {r['metric'][:60]:60} tether {fmt_val(r['tether'], r['fmt']):>9} "
              f"go {fmt_val(r['go'], r['fmt']):>9} {met}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
