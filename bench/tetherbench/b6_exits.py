"""B6: SIGKILL every container of B1's top level at once while `ctr events`
streams: time to the last /tasks/exit, lost and duplicated exits. B6b: the
same storm while containerd is SIGSTOPped."""

import os
import signal
import time

from .events import EventStream
from .summary import Rows
from .util import log, median, pct


def storm(bench, impl, events):
    """B6 on the containers B1 left running (b1_memory.run calls this)."""
    tasks = bench.task_pids(impl)
    pids = {cid: pid for cid, (pid, st) in tasks.items() if st == "RUNNING"}
    n = len(pids)
    if not events.seen_topic("/tasks/start"):
        bench.failures.append(f"{impl.key}: event stream saw no /tasks/start; storm skipped")
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


def run_paused(bench):
    """The plan's second B6 variant: the storm happens while containerd is
    SIGSTOPped; exits must all arrive, once, after it is resumed."""
    n, pause = bench.cfg["b1_levels"][-1], bench.cfg["b6_pause"]
    res = {}
    for impl in bench.order(0):
        log(f"B6b {impl.key}: {n} containers, kill all while containerd is stopped {pause} s")
        events = EventStream(bench, impl)
        try:
            bench.start_sleepers(impl, [bench.uid("paused") for _ in range(n)])
            time.sleep(bench.cfg["settle"])
            pids = {c: p for c, (p, st) in bench.task_pids(impl).items() if st == "RUNNING"}
            if not events.seen_topic("/tasks/start"):
                bench.failures.append(f"B6b {impl.key}: event stream saw no /tasks/start")
                continue
            mark = len(events.lines)
            os.kill(bench.containerd.pid, signal.SIGSTOP)
            try:
                for pid in pids.values():
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                time.sleep(pause)
            finally:
                os.kill(bench.containerd.pid, signal.SIGCONT)
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
            bench.delete_everything(impl)
    bench.results["B6b"] = res


def summary(R, cfg):
    rows = Rows()
    if "B6" in R:
        T = [s for s in R["B6"]["tether"] if s]
        G = [s for s in R["B6"]["go"] if s]
        if T and G:
            n = T[0]["containers"]
            tw = max(s["time_to_last_exit_s"] or float("inf") for s in T)
            gw = max(s["time_to_last_exit_s"] or float("inf") for s in G)
            tm = median([s["time_to_last_exit_s"] for s in T])
            gm = median([s["time_to_last_exit_s"] for s in G])
            rows.add("B6", f"kill {n} → last /tasks/exit, median", tm, gm, unit="s", fmt="{:.3f}")
            rows.add("B6", f"kill {n} → last /tasks/exit, worst round", tw, gw,
                     "tether ≤ 1 s", tw <= 1.0, unit="s", fmt="{:.3f}")
            tl = sum(s["lost"] for s in T) + sum(s["duplicated"] for s in T)
            gl = sum(s["lost"] for s in G) + sum(s["duplicated"] for s in G)
            rows.add("B6", "lost + duplicated exits (all rounds)", tl, gl, "0", tl == 0, fmt="{:.0f}")
            rows.add("B6", "exited_at → received p99, median of rounds",
                     median([s["exited_at_to_receive_p99_ms"] for s in T]),
                     median([s["exited_at_to_receive_p99_ms"] for s in G]), fmt="{:.0f}", unit="ms")
    if "B6b" in R and "tether" in R["B6b"] and "go" in R["B6b"]:
        T, G = R["B6b"]["tether"], R["B6b"]["go"]
        rows.add("B6b", f"paused {T['pause_s']:.0f} s, {T['containers']} killed: resume → last exit",
                 T["resume_to_last_exit_s"], G["resume_to_last_exit_s"],
                 "≤ 2 s (plan)", (T["resume_to_last_exit_s"] or 99) <= 2.0, fmt="{:.3f}", unit="s")
        rows.add("B6b", "lost exits after the pause", T["lost"], G["lost"], "0 (plan)",
                 T["lost"] == 0, fmt="{:.0f}")
        rows.add("B6b", "duplicated exits after the pause", T["duplicated"], G["duplicated"],
                 fmt="{:.0f}")
    return rows


def details(R):
    L = []
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
    return L
