#!/usr/bin/env python3
"""B8: Kubernetes pods through containerd's CRI plugin, tether vs runc.

Run through scripts/critest.sh, which sets up a private containerd with the
CRI plugin, a local registry, a CNI bridge and the handlers `tether` and
`runc`, then runs this with CRICTL, CRI_TMP, CONTAINERD_STATE, ... set:

    bash scripts/critest.sh --containerd 2.3.7 --shim target/release/containerd-shim-tether-v2 \\
        --exec -- python3 bench/b8_pods.py [--rounds N] [--out docs/benchmarks.md]

Per round, in alternating handler order (interleaved A/B):
- pod start latency: RunPodSandbox + CreateContainer + StartContainer of a
  1-container pod, timed around the three crictl calls (crictl's own start-up
  is paid by both handlers alike);
- memory per pod: PSS (smaps_rollup) of the shim process(es) serving a pod
  with 1 container and with 4 containers, once all are running.
Writes a section between <!-- B8 start --> and <!-- B8 end --> in --out
(bench/bench.py keeps it when it rewrites the file).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tetherbench.markers import B8_END, B8_START, replace_section

CRICTL = os.environ["CRICTL"]
TMP = Path(os.environ["CRI_TMP"])
STATE = Path(os.environ["CONTAINERD_STATE"]) / "io.containerd.runtime.v2.task" / "k8s.io"
IMAGE = os.environ["CRI_BUSYBOX_IMAGE"]
WORK = TMP / "b8"
SHIM_EXES = {"tether": os.path.realpath(os.environ["CRI_SHIM"])}


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


def start_pod(handler, name, n):
    """Starts a pod with n containers; returns (pod id, seconds for the
    first RunPodSandbox + CreateContainer + StartContainer)."""
    pcfg = pod_config(name, n)
    t0 = time.perf_counter()
    pod = crictl("runp", "--runtime", handler, str(pcfg))
    c = crictl("create", pod, str(ctr_config(name, 0)), str(pcfg))
    crictl("start", c)
    first = time.perf_counter() - t0
    for i in range(1, n):
        c = crictl("create", pod, str(ctr_config(name, i)), str(pcfg))
        crictl("start", c)
    return pod, first


def remove_pod(pod):
    crictl("stopp", pod)
    crictl("rmp", pod)


def pod_bundles(pod):
    ids = {pod} | set(crictl("ps", "-q", "--pod", pod).split())
    return {str(STATE / i) for i in ids}


def shim_pids(handler, pod):
    """Shim processes whose cwd is one of the pod's bundles."""
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
        if cwd in bundles and ("containerd-shim" in exe or exe == SHIM_EXES.get(handler)):
            pids.append(int(d.name))
    return pids


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
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    crictl("pull", IMAGE)
    handlers = ["tether", "runc"]
    lat = {h: [] for h in handlers}
    mem = {(h, n): [] for h in handlers for n in (1, 4)}
    shims = {(h, n): [] for h in handlers for n in (1, 4)}
    started = time.time()
    for r in range(args.rounds):
        order = handlers if r % 2 == 0 else handlers[::-1]
        for h in order:
            for n in (1, 4):
                name = f"b8-{h}-{n}-{r}"
                pod, first = start_pod(h, name, n)
                if n == 1:
                    lat[h].append(first)
                time.sleep(0.5)
                pids = shim_pids(h, pod)
                shims[(h, n)].append(len(pids))
                mem[(h, n)].append(sum(pss_kib(p) for p in pids))
                remove_pod(pod)
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(
            f"{h} {lat[h][-1] * 1000:.0f} ms" for h in handlers), file=sys.stderr)
    took = time.time() - started

    def ratio(a, b):
        return f"{a / b:.2f}x" if b else "n/a"

    lt, lr = median(lat["tether"]) * 1000, median(lat["runc"]) * 1000
    rows = [
        ("pod start p50 (runp + create + start)", f"{lt:.0f} ms", f"{lr:.0f} ms", ratio(lt, lr)),
    ]
    for n in (1, 4):
        mt, mr = median(mem[("tether", n)]), median(mem[("runc", n)])
        rows.append((f"shim PSS per pod, {n} container{'s' if n > 1 else ''}",
                     f"{mt / 1024:.2f} MiB", f"{mr / 1024:.2f} MiB", ratio(mt, mr)))
        st, sr = median(shims[("tether", n)]), median(shims[("runc", n)])
        rows.append((f"shim processes per pod, {n} container{'s' if n > 1 else ''}",
                     f"{st:g}", f"{sr:g}", ""))
    version = os.environ.get("CONTAINERD_VERSION", "?").split("+")[0]
    L = [B8_START, "", "## B8: Kubernetes pods through CRI (tether vs runc handler)", "",
         f"containerd {version} with its CRI plugin, `bash scripts/critest.sh --containerd "
         f"{version} --shim target/release/containerd-shim-tether-v2 --exec -- python3 bench/b8_pods.py "
         f"--rounds {args.rounds}`, {time.strftime('%Y-%m-%d', time.gmtime(started))}, "
         f"{os.cpu_count()} CPUs, {args.rounds} interleaved rounds ({took:.0f} s). The `runc` handler is "
         "containerd's `io.containerd.runc.v2` (its Go shim); `tether` is this shim running runc.", "",
         "| B8 | tether | runc handler | tether / runc |", "|---|---|---|---|"]
    L += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    L += ["", "Pod start is timed around the three crictl calls, so it includes crictl's own start-up "
          "(three processes), the pause container, CNI and containerd, which both handlers pay alike; "
          "PSS is the sum over the shim processes whose working directory is a bundle of the pod, "
          "0.5 s after the last container started.", "",
          "Samples (pod start, ms): tether " + ", ".join(f"{x * 1000:.0f}" for x in lat["tether"])
          + "; runc " + ", ".join(f"{x * 1000:.0f}" for x in lat["runc"]), "", B8_END]
    out = Path(args.out)
    text = out.read_text() if out.exists() else ""
    out.write_text(replace_section(text, B8_START, B8_END, "\n".join(L)))
    for h in Path("/sys/fs/cgroup").iterdir():
        try:
            (h / "b8-pods").rmdir()
        except OSError:
            pass
    print("\n".join(f"{a}: tether {b}, runc {c} ({d})" for a, b, c, d in rows))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
