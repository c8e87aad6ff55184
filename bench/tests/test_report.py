"""The report as the harness builds it from bench/results/latest.json."""

import json
import re
from pathlib import Path

import pytest

from tetherbench import report
from tetherbench.chart import make_svg
from tetherbench.markers import B8_START, marked_sections

BENCH = Path(__file__).resolve().parents[1]
LATEST = BENCH / "results" / "latest.json"
DOCS = BENCH.parent / "docs" / "benchmarks.md"
HEADER = "| Benchmark | Metric | tether | Go | tether/Go | Target | Met? |"
# Which rows each benchmark module makes (B6's module makes B6b's too).
OWN_ROWS = {"b1_memory": {"B1"}, "b2_lifecycle": {"B2"}, "b3_churn": {"B3"}, "b4_exec": {"B4"},
            "b5_output": {"B5"}, "b6_exits": {"B6", "B6b"}, "b7_groups": {"B7"}}


@pytest.fixture(scope="module")
def run():
    return json.loads(LATEST.read_text())


@pytest.fixture(scope="module")
def rows(run):
    return report.summarize(run["config"], run["results"])


@pytest.fixture(scope="module")
def markdown(run, rows):
    return report.render(run, rows, "benchmarks.png", run["seconds"])


def table(markdown):
    """The results table's rows, as lists of cells (header and separator
    checked and left out)."""
    lines = markdown.splitlines()
    i = lines.index(HEADER)
    assert lines[i + 1] == "|---|---|---:|---:|---:|---|---|"
    out = []
    for line in lines[i + 2:]:
        if not line:
            break
        assert line.startswith("| ") and line.endswith(" |"), line
        out.append([c.strip() for c in line[1:-1].split("|")])
    return out


def number(cell):
    """A value cell: its number and half a unit of its last printed digit."""
    assert re.fullmatch(r"-?\d+(\.\d+)?", cell), cell
    decimals = len(cell.split(".")[1]) if "." in cell else 0
    return float(cell), 0.5 * 10 ** -decimals


def test_every_benchmark_has_its_rows(run, rows):
    cfg = run["config"]
    counts = {}
    for r in rows:
        counts[r["bench"]] = counts.get(r["bench"], 0) + 1
    assert list(counts) == ["B1", "B2", "B3", "B4", "B5", "B6", "B6b", "B7"]
    assert counts == {"B1": len(cfg["b1_levels"]) + 5, "B2": 8, "B3": 3,
                      "B4": 3 + len(cfg["b4_bursts"]), "B5": 4, "B6": 4, "B6b": 3, "B7": 4}
    top = cfg["b1_levels"][-1]
    assert f"PSS per shim @{top} (MiB)" in [r["metric"] for r in rows if r["bench"] == "B1"]
    assert all(r["metric"] for r in rows)


@pytest.mark.parametrize("module", report.BENCHMARKS, ids=lambda m: m.__name__.split(".")[-1])
def test_each_module_makes_only_its_own_rows(run, rows, module):
    own = OWN_ROWS[module.__name__.split(".")[-1]]
    made = module.summary(run["results"], run["config"])
    assert made and {r["bench"] for r in made} == own
    assert made == [r for r in rows if r["bench"] in own]
    # without its results, the benchmark has no rows and the others keep theirs
    rest = {k: v for k, v in run["results"].items() if k not in own}
    assert module.summary(rest, run["config"]) == []
    assert report.summarize(run["config"], rest) == [r for r in rows if r["bench"] not in own]


def test_ratio_is_tether_over_go(rows):
    for r in rows:
        t, g = r["tether"], r["go"]
        if g:
            assert r["ratio"] == pytest.approx(t / g), r
        else:
            assert r["ratio"] is None, r
    assert any(r["ratio"] is None for r in rows)  # 0 vs 0 (e.g. leaked shims)


def target_holds(target, metric, t, g):
    """Whether tether's value t (Go's g) meets the target text."""
    if t is None:
        return False
    m = re.fullmatch(r"(?:tether )?([≤≥]) ([\d.]+)(×)?(?: (Go|s|MiB|KiB))?(?: \(plan\))?", target)
    if m is None:
        assert re.fullmatch(r"0(?: \(plan\))?", target), target
        return t == 0
    op, k, times, unit = m.groups()
    if times:
        assert unit == "Go", target
        bound = float(k) * g
    else:
        bound = float(k)
        if unit:  # an absolute bound is in the metric's own unit
            assert metric.endswith(f"({unit})"), (target, metric)
    return t <= bound if op == "≤" else t >= bound


def test_targets_met_or_not_as_the_values_say(run, rows):
    bursts = run["results"]["B4"]["tether"]["bursts"]
    targeted = [r for r in rows if r["target"]]
    assert len(targeted) >= 10
    for r in rows:
        if not r["target"]:
            assert r["met"] is None, r
            continue
        want = target_holds(r["target"], r["metric"], r["tether"], r["go"])
        if r["metric"].startswith("burst of "):  # and no exec of the burst failed
            size = re.match(r"burst of (\d+) ", r["metric"]).group(1)
            want = want and sum(b["failed"] for b in bursts[size]) == 0
        assert r["met"] is want, r


def test_results_table_is_well_formed_and_matches_the_rows(markdown, rows):
    cells = table(markdown)
    assert len(cells) == len(rows)
    for c, r in zip(cells, rows):
        assert len(c) == 7, c
        bench, metric, t, g, ratio, target, met = c
        assert re.fullmatch(r"B\d+b?", bench) and (bench, metric) == (r["bench"], r["metric"])
        assert target == (r["target"] or "")
        assert met == {None: "", True: "**met**", False: "**not met**"}[r["met"]]
        if ratio == "–":
            assert r["ratio"] is None
            continue
        assert re.fullmatch(r"\d+\.\d\d×", ratio), ratio
        # the printed ratio agrees with the printed values, within their rounding
        (tv, th), (gv, gh) = number(t), number(g)
        lo = (tv - th) / (gv + gh)
        hi = (tv + th) / (gv - gh) if gv > gh else float("inf")
        assert lo - 0.005 <= float(ratio[:-1]) <= hi + 0.005, c


def test_unmet_targets_are_listed_with_a_reason(markdown, rows):
    unmet = [r for r in rows if r["met"] is False]
    assert unmet
    section = markdown.split("## Targets not met, and why\n", 1)[1].split("\n## ", 1)[0]
    bullets = [ln for ln in section.splitlines() if ln.startswith("- ")]
    assert len(bullets) == len(unmet)
    for b, r in zip(bullets, unmet):
        assert b.startswith(f"- **{r['bench']} {r['metric']}** ({r['ratio']:.2f}×, "
                            f"target {r['target']}): ")


def test_an_unmet_target_without_a_ratio_is_still_reported(run, rows):
    # B6b loses exits while the Go shim loses none: tether/Go is undefined.
    broken = [dict(r) for r in rows]
    row = next(r for r in broken if r["metric"] == "lost exits after the pause")
    row.update(tether=3, go=0, ratio=None, met=False)
    text = report.render(run, broken, "benchmarks.png", run["seconds"])
    assert "- **B6b lost exits after the pause** (no ratio, target 0 (plan)): " in text


def test_median_ignores_rounds_that_measured_nothing():
    from tetherbench.util import median
    assert median([0.2, None, 0.4]) == pytest.approx(0.3)
    assert median([None]) != median([None])  # nan


def test_noise_table_has_every_step(run, markdown):
    lines = markdown.split("| Benchmark | wall (s) |", 1)[1].splitlines()[2:]
    names = [ln.split("|")[1].strip() for ln in lines[:len(run["noise"])]]
    assert names == list(run["noise"]) == ["B2", "B3", "B4", "B5", "B1+B6", "B6b", "B7"]


def test_report_from_latest_json_is_docs_benchmarks_md(run, rows, markdown, tmp_path):
    docs = DOCS.read_text()
    # the harness's part, up to the B8 section it carries over
    assert docs.startswith(markdown + "\n" + B8_START)
    # rewritten in place (`bench.py --from-json`), the file keeps the B8, V2
    # and B9 sections verbatim, one line apart (docs/ has a blank line between
    # them, from v2_section.py's and b9_tetherctl.py's appends)
    (tmp_path / "benchmarks.md").write_text(docs)
    report.write_report(tmp_path, run, rows, "benchmarks.png", run["seconds"])
    sections = marked_sections(docs)
    assert len(sections) == 3
    assert (tmp_path / "benchmarks.md").read_text() == "\n".join([markdown, *sections]) + "\n"


def test_svg_chart_has_a_bar_per_targeted_ratio(rows, tmp_path):
    assert make_svg(rows, tmp_path) == "benchmarks.svg"
    svg = (tmp_path / "benchmarks.svg").read_text()
    bars = re.findall(r'<rect [^>]*fill="(#[0-9a-f]+)"', svg)
    targeted = [r for r in rows if r["ratio"] and r["target"]]
    assert bars == ["#4daf4a" if r["met"] else "#e41a1c" for r in targeted]
