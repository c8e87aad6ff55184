"""B9's section of docs/benchmarks.md (bench/b9_tetherctl.py) as it is
rebuilt from bench/results/b9.json: the table's figures are the saved
samples' medians and p90s, the ratio and the verdict follow from them, and
the file's section is exactly what the script writes. No timing is asserted."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import b9_tetherctl as b9
from tetherbench.markers import B9_END, B9_START, marked_sections
from tetherbench.util import pct

BENCH = Path(__file__).resolve().parents[1]
RESULTS = BENCH / "results" / "b9.json"
DOCS = BENCH.parent / "docs" / "benchmarks.md"


@pytest.fixture(scope="module")
def data():
    return json.loads(RESULTS.read_text())


@pytest.fixture(scope="module")
def section():
    return next(s for s in marked_sections(DOCS.read_text()) if s.startswith(B9_START))


def test_saved_samples_are_complete(data):
    assert set(data["samples"]) == {k for k, _ in b9.VARIANTS}
    assert set(data["hung_rounds"]) == set(data["samples"])
    for key, samples in data["samples"].items():
        assert len(samples) + len(data["hung_rounds"][key]) == data["rounds"] > 0
        assert all(isinstance(s, float) and s > 0 for s in samples)
    assert data["target"] == b9.TARGET


def test_docs_section_reproduces_from_saved_results(data, section):
    assert section == b9.render(data)


def test_table_matches_samples(data, section):
    rows = [ln for ln in section.splitlines() if ln.startswith("| `")]
    assert len(rows) == len(b9.VARIANTS)
    base = pct(data["samples"]["ctr-runc"], 50)
    for row, (key, label) in zip(rows, b9.VARIANTS):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[0] == label
        s = data["samples"][key]
        assert float(cells[1]) == pytest.approx(pct(s, 50) * 1e3, abs=0.05)
        assert float(cells[2]) == pytest.approx(pct(s, 90) * 1e3, abs=0.05)
        assert float(cells[1]) <= float(cells[2])
        assert cells[3] == f"{pct(s, 50) / base:.2f}×"
        assert cells[4] == str(len(data["hung_rounds"][key]))


def test_verdict_follows_the_ratio(data, section):
    m = re.search(r"median: ([0-9.]+)×, \*\*(met|not met)\*\*", section)
    assert m
    ratio = pct(data["samples"]["tetherctl"], 50) / pct(data["samples"]["ctr-runc"], 50)
    assert m.group(1) == f"{ratio:.2f}"
    assert m.group(2) == ("met" if ratio <= b9.TARGET else "not met")


def test_from_json_rewrites_only_its_section(data, tmp_path):
    md = tmp_path / "benchmarks.md"
    md.write_text(f"head\n\n{B9_START}\nold\n{B9_END}\n\ntail\n")
    for _ in range(2):
        subprocess.run([sys.executable, BENCH / "b9_tetherctl.py", "--from-json", RESULTS,
                        "--out", md], check=True)
        assert md.read_text() == f"head\n\n{b9.render(data)}\n\ntail\n"
