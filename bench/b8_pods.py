#!/usr/bin/env python3
"""B8: Kubernetes pods through containerd's CRI plugin, tether vs runc.

Run through scripts/critest.sh, which sets up a private containerd with the
CRI plugin, a local registry, a CNI bridge and the handlers `tether`, `runc`
and (containerd 2.x) `tether-sandbox`, then runs this with CRICTL, CRI_TMP,
CONTAINERD_STATE, ... set:

    bash scripts/critest.sh --containerd 2.3.7 --shim target/release/containerd-shim-tether-v2 \\
        --exec -- python3 bench/b8_pods.py [--rounds N] [--out docs/benchmarks.md] [--handlers tether,runc]

Per round, in rotating handler order (interleaved):
- pod start latency: RunPodSandbox + CreateContainer + StartContainer of a
  1-container pod, timed two ways, alternately: the three CRI calls
  themselves, by `bench/tools/podstart` (a small Go CRI client, built once
  into /var/cache/tether-peers), over one connection made before the clock
  starts; and around the three crictl commands, which adds crictl's start-up,
  connection and version call three times over (paid by every handler
  alike);
- memory per pod: PSS (smaps_rollup) of the pod's own processes, with 1
  container and with 4 containers, once all are running: its shim(s) and its
  sandbox process, which is the pause container for `tether` and `runc` and,
  for `tether-sandbox` (sandboxer = "shim", no pause), the holder the shim
  forks (`<shim binary> --tether-pod-holder`).
Writes a section between <!-- B8 start --> and <!-- B8 end --> in --out
(bench/bench.py keeps it when it rewrites the file).
"""
import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tetherbench.markers import B8_END, B8_START, replace_section

CRICTL = os.environ["CRICTL"]
ENDPOINT = os.environ["CRI_ENDPOINT"]
PODSTART_SRC = Path(__file__).resolve().parent / "tools" / "podstart"
PEERS = Path(os.environ.get("TETHER_PEERS", "/var/cache/tether-peers"))
TMP = Path(os.environ["CRI_TMP"])
STATE = Path(os.environ["CONTAINERD_STATE"]) / "io.containerd.runtime.v2.task" / "k8s.io"
# A sandbox shim's bundle (its working directory): containerd's sandbox
# controller's dir, not the task dir.
SANDBOXES = Path(os.environ["CONTAINERD_STATE"]) / "io.containerd.sandbox.controller.v1.shim" / "k8s.io"
HOLDER_FLAG = "--tether-pod-holder"
IMAGE = os.environ["CRI_BUSYBOX_IMAGE"]
WORK = TMP / "b8"
SHIM_EXES = {h: os.path.realpath(os.environ["CRI_SHIM"]) for h in ("tether", "tether-sandbox")}
# The handlers measured (those of CRI_HANDLERS), in the table's order.
HANDLERS = ["tether", "tether-sandbox", "runc"]


def crictl(*args, timeout=120):
    out = subprocess.run([CRICTL, *args], capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"crictl {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout.strip()


def pod_config(name, n):
    cfg = {"metadata": {"name": name, "namespace": "b8", "uid": f"{name}-uid", "attempt": 0},
           "log_directory": str(WORK / name), "linux": {"cgroup_parent": "/b8-pods"}}
    path = WORK / f"{name}-pod.json"
    path.write_text(json.dumps(cfg))
    return path


def ctr_config(name, i):
    cfg = {"metadata": {"name": f"c{i}"}, "image": {"image": IMAGE},
           "command": ["sleep", "100000"], "log_path": f"c{i}.log",
           "linux": {"resources": {}}}
    path = WORK / f"{name}-c{i}.json"
    path.write_text(json.dumps(cfg))
    return path


def podstart_tool():
    """bench/tools/podstart, built once per version of its source."""
    digest = hashlib.sha256()
    for f in ("main.go", "go.mod", "go.sum"):
        digest.update((PODSTART_SRC / f).read_bytes())
    out = PEERS / f"b8-podstart-{digest.hexdigest()[:16]}" / "podstart"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, GOFLAGS="-buildvcs=false -mod=readonly", CGO_ENABLED="0")
        subprocess.run(["go", "build", "-trimpath", "-o", str(out) + ".tmp", "."],
                       cwd=PODSTART_SRC, env=env, check=True)
        os.replace(str(out) + ".tmp", out)
    return str(out)


def start_pod(handler, name, n, tool=None):
    """Starts a pod with n containers; returns (pod id, seconds for the
    first RunPodSandbox + CreateContainer + StartContainer, the calls). With
    `tool` (podstart), the seconds are the three calls' own and the calls
    (RunPodSandbox ms, CreateContainer + StartContainer ms), else the three
    crictl commands' and None."""
    pcfg = pod_config(name, n)
    if tool:
        out = subprocess.run([tool, "-endpoint", ENDPOINT, "-handler", handler, str(pcfg),
                              str(ctr_config(name, 0))], capture_output=True, text=True, timeout=180)
        if out.returncode != 0:
            raise RuntimeError(f"podstart {handler}: {out.stderr.strip()}")
        res = json.loads(out.stdout)
        pod, first = res["pod"], res["total_ms"] / 1000
        calls = (res["run_ms"], res["create_ms"] + res["start_ms"])
    else:
        t0 = time.perf_counter()
        pod = crictl("runp", "--runtime", handler, str(pcfg))
        c = crictl("create", pod, str(ctr_config(name, 0)), str(pcfg))
        crictl("start", c)
        first = time.perf_counter() - t0
        calls = None
    for i in range(1, n):
        c = crictl("create", pod, str(ctr_config(name, i)), str(pcfg))
        crictl("start", c)
    return pod, first, calls


def remove_pod(pod):
    crictl("stopp", pod)
    crictl("rmp", pod)


def pod_bundles(pod):
    ids = {pod} | set(crictl("ps", "-q", "--pod", pod).split())
    return {str(STATE / i) for i in ids} | {str(SANDBOXES / pod)}


def cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def ppid(pid):
    try:
        # the fields after the command name, which is in parentheses
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def is_holder(pid):
    return HOLDER_FLAG.encode() in cmdline(pid)[1:]


def shim_pids(handler, pod):
    """Shim processes whose cwd is one of the pod's bundles (not a holder,
    which runs the shim's binary too)."""
    bundles = pod_bundles(pod)
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cwd = os.readlink(d / "cwd")
            exe = os.readlink(d / "exe")
        except OSError:
            continue
        if cwd in bundles and ("containerd-shim" in exe or exe == SHIM_EXES.get(handler)) \
                and not is_holder(int(d.name)):
            pids.append(int(d.name))
    return pids


def sandbox_pid(pod, shims):
    """The pod's sandbox process: CRI's info.pid (pause, or the holder when
    the shim reports it), else a holder among the shims' children."""
    try:
        pid = int(json.loads(crictl("inspectp", "-o", "json", pod)).get("info", {}).get("pid") or 0)
    except (RuntimeError, ValueError, TypeError):
        pid = 0
    if pid > 0 and Path(f"/proc/{pid}").exists():
        return pid
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and ppid(int(d.name)) in shims and is_holder(int(d.name)):
            return int(d.name)
    return None


def pod_pids(handler, pod):
    """The pod's own processes: its shim(s) and its sandbox process."""
    shims = shim_pids(handler, pod)
    sandbox = sandbox_pid(pod, shims)
    return shims, ([sandbox] if sandbox else [])


def pss_kib(pid):
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"))
    ap.add_argument("--handlers", help="comma-separated, of " + ", ".join(HANDLERS)
                    + " (default: those of them in CRI_HANDLERS, which critest.sh sets)")
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    crictl("pull", IMAGE)
    wanted = args.handlers.split(",") if args.handlers else os.environ.get("CRI_HANDLERS", "tether runc").split()
    handlers = [h for h in HANDLERS if h in wanted]
    if "runc" not in handlers or len(handlers) < 2:
        ap.error(f"--handlers: runc and at least one of {HANDLERS[:2]} (got {wanted})")
    tool = podstart_tool()
    lat = {h: [] for h in handlers}  # the three CRI calls (podstart)
    lat_cli = {h: [] for h in handlers}  # the three crictl commands
    split = {h: [] for h in handlers}  # (RunPodSandbox, Create + Start) ms, podstart's
    mem = {(h, n): [] for h in handlers for n in (1, 4)}
    procs = {(h, n): [] for h in handlers for n in (1, 4)}
    started = time.time()
    for r in range(args.rounds):
        order = handlers[r % len(handlers):] + handlers[:r % len(handlers)]
        if (r // len(handlers)) % 2:
            order.reverse()
        for h in order:
            # each pod start is timed both ways, in alternating order
            for n, how in ((1, "rpc"), (1, "cli"), (4, None)) if r % 2 == 0 else \
                    ((1, "cli"), (1, "rpc"), (4, None)):
                name = f"b8-{h}-{n}-{how or 'mem'}-{r}"
                pod, first, calls = start_pod(h, name, n, tool if how == "rpc" else None)
                if how:
                    (lat if how == "rpc" else lat_cli)[h].append(first)
                if calls:
                    split[h].append(calls)
                time.sleep(0.5)
                shims, sandbox = pod_pids(h, pod)
                if not shims or not sandbox:
                    raise RuntimeError(f"{h} pod {pod}: shims {shims}, sandbox process {sandbox}")
                procs[(h, n)].append(len(shims) + len(sandbox))
                mem[(h, n)].append(sum(pss_kib(p) for p in shims + sandbox))
                remove_pod(pod)
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(
            f"{h} {lat[h][-1] * 1000:.0f} ms ({lat_cli[h][-1] * 1000:.0f} by crictl)" for h in handlers),
            file=sys.stderr)
    took = time.time() - started

    def ratio(a, b):
        return f"{a / b:.2f}x" if b else "n/a"

    others = [h for h in handlers if h != "runc"]
    plural = {1: "1 container", 4: "4 containers"}
    rows = []  # (metric, {handler: median}, unit)
    rows.append(("pod start p50: RunPodSandbox + CreateContainer + StartContainer",
                 {h: median(lat[h]) * 1000 for h in handlers}, "ms"))
    rows.append(("of which RunPodSandbox, p50",
                 {h: median([c[0] for c in split[h]]) for h in handlers}, "ms"))
    rows.append(("of which CreateContainer + StartContainer, p50",
                 {h: median([c[1] for c in split[h]]) for h in handlers}, "ms"))
    rows.append(("pod start p50 by crictl (runp + create + start commands)",
                 {h: median(lat_cli[h]) * 1000 for h in handlers}, "ms"))
    for n in (1, 4):
        rows.append((f"PSS per pod (shim + sandbox process), {plural[n]}",
                     {h: median(mem[(h, n)]) / 1024 for h in handlers}, "MiB"))
        rows.append((f"processes per pod (shim + sandbox process), {plural[n]}",
                     {h: median(procs[(h, n)]) for h in handlers}, ""))

    def cell(v, unit):
        return {"ms": f"{v:.0f} ms", "MiB": f"{v:.2f} MiB"}.get(unit, f"{v:g}")

    columns = others + ["runc"]
    version = os.environ.get("CONTAINERD_VERSION", "?").split("+")[0]
    L = [B8_START, "", "## B8: Kubernetes pods through CRI (tether vs runc handler)", "",
         f"containerd {version} with its CRI plugin, `bash scripts/critest.sh --containerd "
         f"{version} --shim target/release/containerd-shim-tether-v2 --exec -- python3 bench/b8_pods.py "
         f"--rounds {args.rounds}{' --handlers ' + args.handlers if args.handlers else ''}`, {time.strftime('%Y-%m-%d', time.gmtime(started))}, "
         f"{os.cpu_count()} CPUs, {args.rounds} interleaved rounds ({took:.0f} s). The `runc` handler is "
         "containerd's `io.containerd.runc.v2` (its Go shim); `tether` is this shim running runc"
         + ("; `tether-sandbox` is the same shim as the pods' sandbox controller (`sandboxer = \"shim\"`): "
            "no pause container, a holder process the shim forks holds the pod's namespaces."
            if "tether-sandbox" in handlers else "."), "",
         "| B8 | " + " | ".join(h if h != "runc" else "runc handler" for h in columns) + " | "
         + " | ".join(f"{h} / runc" for h in others) + " |",
         "|---|" + "---|" * (len(columns) + len(others))]
    for metric, values, unit in rows:
        ratios = [ratio(values[h], values["runc"]) if unit else "" for h in others]
        L.append(f"| {metric} | " + " | ".join(cell(values[h], unit) for h in columns) + " | "
                 + " | ".join(ratios) + " |")
    sandboxed = "tether-sandbox" in handlers
    L += ["", "Pod start is timed two ways on every round, in alternating order. First, the three "
          "CRI calls themselves, by `bench/tools/podstart` (a Go CRI client; the connection is made "
          "and the runtime asked its version before the clock starts). Second, around the three "
          "crictl commands, which adds three crictl start-ups, connections and version calls. Both "
          "include CNI and containerd, which every handler pays alike, and the pause container"
          + (", which `tether-sandbox` does not start" if sandboxed else "")
          + "; PSS is the sum over the pod's own processes, 0.5 s after the last container started: "
          "the shim processes whose working directory is a bundle of the pod, and the pod's sandbox "
          "process (pause" + (", or tether-sandbox's holder" if sandboxed else "") + ").", "",
          "Samples (pod start, ms, the CRI calls): " + "; ".join(
              f"{h} " + ", ".join(f"{x * 1000:.0f}" for x in lat[h]) for h in columns), "",
          "Samples (pod start, ms, by crictl): " + "; ".join(
              f"{h} " + ", ".join(f"{x * 1000:.0f}" for x in lat_cli[h]) for h in columns), "", B8_END]
    out = Path(args.out)
    text = out.read_text() if out.exists() else ""
    out.write_text(replace_section(text, B8_START, B8_END, "\n".join(L)))
    for h in Path("/sys/fs/cgroup").iterdir():
        try:
            (h / "b8-pods").rmdir()
        except OSError:
            pass
    for metric, values, unit in rows:
        print(f"{metric}: " + ", ".join(f"{h} {cell(values[h], unit)}" for h in columns))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
