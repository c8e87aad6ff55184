"""Readers of /proc: processes, their CPU time, I/O and memory footprint,
and the machine's CPU time."""

import os

from .util import read

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_pids():
    for name in os.listdir("/proc"):
        if name.isdigit():
            yield int(name)


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
    # guest time (fields 9 and 10) is already part of user time
    return (user + nice + system) / CLK_TCK, steal / CLK_TCK
