"""The private world the benchmarks run in, and its clean-up.

One private containerd (own config, root, state, sockets and opt dir in a
temporary directory, CRI disabled), one unique namespace per shim
implementation, cpuacct cgroups for the harness and each shim, and launchers
on containerd's PATH that move each shim into its cgroup and exec a private
copy of its binary. On exit, success or not, everything started here is
stopped by PID: never by name.
"""

import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import cgroup
from .procfs import proc_cmdline, proc_exe, proc_pids, proc_ppid_map
from .util import BENCH_DIR, REPO, TOOLS, Interrupted, log, read

# `testenv config`: writes the private containerd's config.
TESTENV = REPO / "target" / "release" / "testenv"

GO_SHIM = Path("/usr/bin/containerd-shim-runc-v2")
RUNC = Path(shutil.which("runc") or "/usr/sbin/runc")
RUNC_STATE = Path("/run/containerd/runc")
SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]


class Impl:
    def __init__(self, key, runtime, shim_name, src):
        self.key = key
        self.runtime = runtime  # what ctr --runtime gets
        self.shim_name = shim_name  # what containerd looks up on PATH
        self.src = src  # the binary we copy
        self.real = None  # private copy (set up later)
        self.ns = None
        self.cgroup = None


class Sandbox:
    def __init__(self):
        self.stopping = False
        self.run_id = f"{os.getpid()}-{random.randrange(16**4):04x}"
        self.tmp = None
        self.shm = None
        self.cg_root = None
        self.orig_cpuacct = None
        self.containerd = None
        self.failed = False
        self.side_procs = []
        self.failures = []
        self.impls = [
            Impl("tether", "io.containerd.tether.v2", "containerd-shim-tether-v2",
                 REPO / "target" / "release" / "containerd-shim-tether-v2"),
            Impl("go", "io.containerd.runc.v2", "containerd-shim-runc-v2", GO_SHIM),
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
        self.cg_root = cgroup.CPUACCT / f"tether-bench-{self.run_id}"
        for sub in ["harness", "tether", "go", "runc"]:
            (self.cg_root / sub).mkdir(parents=True, exist_ok=True)
        self.orig_cpuacct = cgroup.own_cpu_cgroup()
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
        # The one writer of containerd configs (testenv, built with the
        # shim by run.sh): root, state, opt and containerd.sock under t,
        # no CRI; the ttrpc socket is containerd's default, the gRPC
        # address plus ".ttrpc".
        subprocess.run([str(TESTENV), "config", str(t), "--containerd", "system",
                        "--log-level", "warn"], check=True, stdout=subprocess.DEVNULL)
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

    # ------------------------------------------------------- ctr and shims

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

    # ---------------------------------------------------------------- cleanup

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
            dest = BENCH_DIR / "results" / "containerd-failed-run.log"
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
        for _ in range(5):
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
                dirs += cgroup.namespace_cgroups(impl.ns)
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


def run_owned(sandbox, body):
    """Sets the sandbox up, runs body() in it and always cleans up, also on
    SIGINT, SIGTERM and SIGHUP (which stop the run). Returns the exit status:
    0, 1 on an error, 130 when interrupted."""
    def on_signal(signum, frame):
        sandbox.stopping = True
        raise Interrupted(f"signal {signum}")
    for s in SIGNALS:
        signal.signal(s, on_signal)
    rc = 0
    try:
        sandbox.setup()
        body()
    except (Interrupted, KeyboardInterrupt) as e:
        log(f"interrupted ({e}); cleaning up")
        rc = 130
    except Exception:
        traceback.print_exc()
        sandbox.failed = True
        rc = 1
    finally:
        for s in SIGNALS:
            signal.signal(s, signal.SIG_IGN)
        sandbox.cleanup()
    return rc
