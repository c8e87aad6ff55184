"""cgroup v1 and v2: which one the machine has, where CPU accounting lives,
and the readers of a cgroup's CPU time."""

from pathlib import Path

CGROUP_FS = Path("/sys/fs/cgroup")
# CPU accounting: v1's cpuacct hierarchy, or the unified hierarchy itself
# (cpu.stat's usage_usec is there in every cgroup, controllers or not).
UNIFIED = (CGROUP_FS / "cgroup.controllers").exists()
CPUACCT = CGROUP_FS if UNIFIED else CGROUP_FS / "cpuacct"


def v1_cpu_seconds(d):
    """CPU seconds a v1 cpuacct cgroup has used (cpuacct.usage, ns); 0 when
    the cgroup is gone."""
    try:
        return int((d / "cpuacct.usage").read_text()) / 1e9
    except (OSError, ValueError):
        return 0.0


def v2_cpu_seconds(d):
    """CPU seconds a v2 cgroup has used (cpu.stat's usage_usec); 0 when the
    cgroup is gone."""
    try:
        for line in (d / "cpu.stat").read_text().splitlines():
            k, v = line.split()
            if k == "usage_usec":
                return int(v) / 1e6
        return 0.0
    except (OSError, ValueError):
        return 0.0


cpu_seconds = v2_cpu_seconds if UNIFIED else v1_cpu_seconds


def mode():
    if (CGROUP_FS / "cgroup.controllers").exists():
        return "v2 (unified)"
    if (CGROUP_FS / "unified").is_dir():
        return "v1 (hybrid: v1 controllers + v2 at /sys/fs/cgroup/unified)"
    return "v1 (legacy)"
