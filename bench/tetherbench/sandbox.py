"""The world the benchmarks run in: a `testenv exec` environment.

bench/run.sh runs the harness as the command of `testenv exec` (see
testenv/): a cgroup, mount, network, IPC and UTS namespaces of its own, and
in them a private containerd (own config, root, state and sockets, CRI
disabled) that testenv's init started. Here the harness adds one unique
namespace per shim implementation, cpuacct cgroups for itself and each
shim, and launchers in the environment's bin dir (first on containerd's
PATH) that move each shim into its cgroup and exec a private copy of its
binary. Teardown is the environment's: testenv kills its cgroup and drops
its namespaces, so nothing here stops a process or removes a file, mount or
cgroup.
"""

import os
import random
import shutil
import signal
import subprocess
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import cgroup
from .procfs import proc_cmdline, proc_exe, proc_pids
from .util import BENCH_DIR, REPO, TOOLS, Interrupted, log, read

GO_SHIM = Path("/usr/bin/containerd-shim-runc-v2")
RUNC = Path(shutil.which("runc") or "/usr/sbin/runc")
SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
# What `testenv exec` tells its command about the environment.
ENV_VARS = ["TESTENV_DIR", "CONTAINERD_ADDRESS", "CONTAINERD_STATE", "CONTAINERD_LOG",
            "CONTAINERD_PID_FILE", "CONTAINERD_BIN"]


def in_testenv():
    """Whether this process runs inside a `testenv exec` environment."""
    return all(k in os.environ for k in ENV_VARS)


class Impl:
    def __init__(self, key, runtime, shim_name, src):
        self.key = key
        self.runtime = runtime  # what ctr --runtime gets
        self.shim_name = shim_name  # what containerd looks up on PATH
        self.src = src  # the binary we copy
        self.real = None  # private copy (set up later)
        self.ns = None
        self.cgroup = None


class Containerd:
    """The environment's containerd (started by testenv's init, not a child
    of the harness): its PID, for B6b's SIGSTOP and to tell it is gone."""

    def __init__(self, pid):
        self.pid = pid

    def alive(self):
        stat = read(f"/proc/{self.pid}/stat", "") or ""
        return ")" in stat and stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


class Sandbox:
    def __init__(self, tether_shim=None):
        self.stopping = False
        self.run_id = f"{os.getpid()}-{random.randrange(16**4):04x}"
        self.tmp = None
        self.shm = None
        self.cg_root = None
        self.containerd = None
        self.containerd_log = None
        self.failed = False
        self.failures = []
        self.impls = [
            Impl("tether", "io.containerd.tether.v2", "containerd-shim-tether-v2",
                 Path(tether_shim) if tether_shim
                 else REPO / "target" / "release" / "containerd-shim-tether-v2"),
            Impl("go", "io.containerd.runc.v2", "containerd-shim-runc-v2", GO_SHIM),
        ]

    # ------------------------------------------------------------------ setup

    def setup(self):
        if not in_testenv():
            raise RuntimeError("not inside a testenv environment: run the harness through "
                               "`testenv exec` (bash bench/run.sh does)")
        env_dir = Path(os.environ["TESTENV_DIR"])
        # The environment's dir goes at teardown; /dev/shm is a tmpfs of its own.
        self.tmp = env_dir / "bench"
        self.shm = Path("/dev/shm/tether-bench")
        bin_dir = env_dir / "bin"  # first on containerd's PATH
        log(f"work dir {self.tmp} (logs in {self.shm}), run id {self.run_id}")
        for d in ["real", "fifo", "rootfs/bin"]:
            (self.tmp / d).mkdir(parents=True, exist_ok=True)
        self.shm.mkdir(exist_ok=True)
        self.addr = Path(os.environ["CONTAINERD_ADDRESS"])
        self.state = Path(os.environ["CONTAINERD_STATE"])
        self.containerd_log = Path(os.environ["CONTAINERD_LOG"])
        self.containerd = Containerd(int(Path(os.environ["CONTAINERD_PID_FILE"]).read_text()))
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

        # cpuacct cgroups, inside the environment's: harness (this process
        # and every ctr), one per shim implementation, and runc (breakdown
        # phase only). containerd stays in the environment's top cgroup.
        self.cg_root = cgroup.CPUACCT / "bench"
        for sub in ["harness", "tether", "go", "runc"]:
            (self.cg_root / sub).mkdir(parents=True, exist_ok=True)
        (self.cg_root / "harness" / "cgroup.procs").write_text(f"{os.getpid()}\n")

        # private shim copies behind launchers on containerd's PATH
        for impl in self.impls:
            impl.ns = f"tbench-{self.run_id}-{impl.key}"
            impl.real = self.tmp / "real" / impl.shim_name
            shutil.copy2(impl.src, impl.real)
            impl.cgroup = self.cg_root / impl.key
            impl.timing_log = self.tmp / f"shim-times-{impl.key}.log"
            self.cc(TOOLS / "launcher.c", bin_dir / impl.shim_name,
                    SHIM=impl.real, CGROUP_PROCS=impl.cgroup / "cgroup.procs",
                    TIMING_FLAG=self.tmp / "time-shim-invocations",
                    TIMING_LOG=impl.timing_log)
        self.timer = self.tmp / "runc-timer"
        self.cc(TOOLS / "runc-timer.c", self.timer, REAL_RUNC=RUNC,
                CGROUP_PROCS=self.cg_root / "runc" / "cgroup.procs", LOG_FILE=self.runc_log)
        self.tether_opts = self.tmp / "tether-runc-timer.toml"
        self.tether_opts.write_text(f'BinaryName = "{self.timer}"\n')
        r = subprocess.run(["ctr", "--address", str(self.addr), "version"], capture_output=True)
        if r.returncode != 0:
            raise RuntimeError(f"the environment's containerd does not answer: {r.stderr!r}")
        log(f"containerd pid {self.containerd.pid} at {self.addr}")

    def our_cpu(self):
        """CPU seconds used so far by everything in the environment: the
        harness, ctr, containerd, the shims, runc and the containers (the
        environment's cgroup, as its own root)."""
        return cgroup.cpu_seconds(cgroup.CPUACCT)

    def cc(self, src, out, **defines):
        cmd = ["gcc", "-O2", "-static", "-Wall", "-o", str(out), str(src)]
        cmd += [f'-D{k}="{v}"' for k, v in defines.items()]
        subprocess.run(cmd, check=True)

    # ------------------------------------------------------- ctr and shims

    def ctr_cmd(self, impl, *args):
        return ["ctr", "--address", str(self.addr), "--namespace", impl.ns, *map(str, args)]

    def ctr(self, impl, *args, timeout=120, stdout=subprocess.DEVNULL):
        if self.stopping:
            raise Interrupted("stopping")
        if not self.containerd.alive():
            raise RuntimeError(f"containerd exited; see {self.containerd_log}")
        try:
            return subprocess.run(self.ctr_cmd(impl, *args), stdin=subprocess.DEVNULL,
                                  stdout=stdout, stderr=subprocess.PIPE, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            return subprocess.CompletedProcess(e.cmd, -1, b"", b"timeout")

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

def run_inside(sandbox, body):
    """Sets the sandbox up in the environment and runs body() in it. SIGINT,
    SIGTERM and SIGHUP stop the run (testenv, which gets them too, then
    kills the environment). On an error containerd's log is kept in
    bench/results/containerd-failed-run.log (the environment's dir goes at
    teardown). Returns the exit status: 0, 1 on an error, 130 when
    interrupted."""
    def on_signal(signum, frame):
        sandbox.stopping = True
        raise Interrupted(f"signal {signum}")
    for s in SIGNALS:
        signal.signal(s, on_signal)
    try:
        sandbox.setup()
        body()
        return 0
    except (Interrupted, KeyboardInterrupt) as e:
        log(f"interrupted ({e})")
        return 130
    except Exception:
        traceback.print_exc()
        sandbox.failed = True
        log_file = sandbox.containerd_log
        if log_file is not None and log_file.exists():
            dest = BENCH_DIR / "results" / "containerd-failed-run.log"
            dest.parent.mkdir(exist_ok=True)
            shutil.copy(log_file, dest)
            log(f"containerd's log kept in {dest}")
        return 1
    finally:
        for s in SIGNALS:
            signal.signal(s, signal.SIG_IGN)
