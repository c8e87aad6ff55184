"""The cgroup and /proc readers, and the marked sections of
docs/benchmarks.md that b8_pods.py and v2_section.py replace."""

import os
import subprocess
import sys
import time
from pathlib import Path

from tetherbench import cgroup, procfs
from tetherbench.markers import (B8_END, B8_START, V2_END, V2_START, marked_sections,
                                 replace_section)

BENCH = Path(__file__).resolve().parents[1]


def test_v1_cpu_seconds(tmp_path):
    (tmp_path / "cpuacct.usage").write_text("1500000000\n")
    assert cgroup.v1_cpu_seconds(tmp_path) == 1.5
    assert cgroup.v1_cpu_seconds(tmp_path / "gone") == 0.0


def test_v2_cpu_seconds(tmp_path):
    (tmp_path / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n")
    assert cgroup.v2_cpu_seconds(tmp_path) == 2.5
    (tmp_path / "cpu.stat").write_text("user_usec 2000000\n")
    assert cgroup.v2_cpu_seconds(tmp_path) == 0.0
    assert cgroup.v2_cpu_seconds(tmp_path / "gone") == 0.0


def test_cpu_reader_follows_the_hierarchy():
    assert cgroup.cpu_seconds is (cgroup.v2_cpu_seconds if cgroup.UNIFIED else cgroup.v1_cpu_seconds)
    assert cgroup.mode().startswith("v2" if cgroup.UNIFIED else "v1")


def test_footprint_of_this_process():
    fp = procfs.footprint(os.getpid())
    assert fp["Pss"] > 0 and fp["Rss"] >= fp["Pss"]
    assert fp["Threads"] >= 1 and fp["fds"] >= 3
    own, children = procfs.proc_cpu(os.getpid())
    assert own >= 0 and children >= 0


def test_process_views_of_a_child():
    p = subprocess.Popen(["sleep", "30"])
    try:
        deadline = time.monotonic() + 5
        while procfs.proc_cmdline(p.pid) != ["sleep", "30"] and time.monotonic() < deadline:
            time.sleep(0.01)  # until the child has exec'd
        assert procfs.proc_cmdline(p.pid) == ["sleep", "30"]
        assert os.path.basename(procfs.proc_exe(p.pid)) == "sleep"
        assert p.pid in set(procfs.proc_pids())
    finally:
        p.kill()
        p.wait()


def test_footprint_of_a_gone_process():
    p = subprocess.Popen(["true"])
    p.wait()
    assert procfs.footprint(p.pid) is None and procfs.proc_cpu(p.pid) is None


def test_replace_section():
    section = f"{V2_START}\nnew\n{V2_END}"
    doc = f"head\n\n{B8_START}\nb8\n{B8_END}\n\n{V2_START}\nold\n{V2_END}\n"
    assert replace_section(doc, V2_START, V2_END, section) == doc.replace("old", "new")
    assert replace_section("head\n\n\n", V2_START, V2_END, section) == f"head\n\n{section}\n"
    assert marked_sections(doc) == [f"{B8_START}\nb8\n{B8_END}", f"{V2_START}\nold\n{V2_END}"]
    assert marked_sections("head\n") == []


def test_v2_section_script(tmp_path):
    md = tmp_path / "benchmarks.md"
    md.write_text("| B1 | threads per shim (max) | 1 | 14 | 0.07× | ≤ 2 | **met** |\n")
    guest = tmp_path / "guest.out"
    guest.write_text("==== machine\n- Date: today\n==== table\n"
                     "| B1 | threads per shim (max) | 1 | 13 | 0.08× | ≤ 2 | **met** |\n")
    for _ in range(2):  # the second run replaces the first one's section
        subprocess.run([sys.executable, BENCH / "v2_section.py", guest, md], check=True)
        text = md.read_text()
        assert text.count(V2_START) == 1 and text.count(V2_END) == 1
        assert "| B1 | threads per shim (max) | 1 | 13 | 0.08× | 0.07× |" in text


def test_b8_script_imports_the_package():
    env = dict(os.environ, CRICTL="crictl", CRI_ENDPOINT="unix:///nonexistent", CRI_TMP="/nonexistent",
               CONTAINERD_STATE="/nonexistent",
               CRI_BUSYBOX_IMAGE="busybox", CRI_SHIM="/nonexistent")
    out = subprocess.run([sys.executable, BENCH / "b8_pods.py", "--help"], env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0 and "--rounds" in out.stdout, out.stderr
