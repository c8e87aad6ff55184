"""The chart of docs/benchmarks.md: ratios of the targeted metrics, B1's
memory per shim, B2/B4 latencies and B5's throughput (matplotlib), or a
hand-written SVG of the ratios when matplotlib is missing."""

import math
import re

from .util import median


def make_chart(results, rows, out_dir):
    """Writes out_dir/benchmarks.png (or, without matplotlib, benchmarks.svg);
    returns its file name."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return make_svg(rows, out_dir)
    R = results
    fig, axes = plt.subplots(2, 2, figsize=(14, 10))
    colors = {"tether": "#d95f02", "go": "#1b9e77"}

    # (a) ratio per metric
    ax = axes[0][0]
    rr = [r for r in rows if r["ratio"] is not None and r["target"]]
    labels = [(r["bench"] + " " + re.sub(r" \(.*", "", r["metric"]))[:48] for r in rr]
    vals = [r["ratio"] for r in rr]
    cols = ["#4daf4a" if r["met"] else "#e41a1c" for r in rr]
    y = range(len(rr))
    ax.barh(list(y), vals, color=cols)
    for i, r in enumerate(rr):
        m = re.search(r"([\d.]+)× Go", r["target"] or "")
        if m:  # the target ratio, as a tick on the bar
            ax.plot([float(m.group(1))] * 2, [i - 0.4, i + 0.4], color="black", lw=2)
        ax.text(r["ratio"] * 1.05, i, f"{r['ratio']:.2f}", va="center", fontsize=7)
    ax.axvline(1.0, color="grey", lw=0.8, ls=":")
    ax.set_yticks(list(y))
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("tether / Go, log scale (green: target met, red: not met; black tick: target ratio)")
    ax.set_title("Ratios of the targeted metrics")

    # (b) B1 PSS per shim vs N
    ax = axes[0][1]
    if "B1" in R:
        for k in ["tether", "go"]:
            ns = sorted(R["B1"][k]["levels"], key=int)
            ax.plot([int(n) for n in ns],
                    [median([s["pss_kib_median"] for s in R["B1"][k]["levels"][n]]) / 1024 for n in ns],
                    "o-", color=colors[k], label=f"{k} PSS")
            ax.plot([int(n) for n in ns],
                    [median([s["anon_kib_median"] for s in R["B1"][k]["levels"][n]]) / 1024 for n in ns],
                    "s--", color=colors[k], alpha=0.6, label=f"{k} anonymous")
        ax.set_xticks([int(n) for n in ns])
        ax.set_xlabel("running containers (one shim each)")
        ax.set_ylabel("MiB per shim")
        ax.set_ylim(bottom=0)
        ax.legend()
        ax.set_title("B1 idle memory per shim")

    # (c) B2 / B4 latency distributions
    ax = axes[1][0]
    data, lab = [], []
    if "B2" in R:
        for k in ["tether", "go"]:
            data.append([1000 * x for x in R["B2"][k]["wall"]])
            lab.append(f"B2 run --rm\n{k}")
    if "B4" in R:
        for k in ["tether", "go"]:
            data.append([1000 * x for x in R["B4"][k]["seq"]])
            lab.append(f"B4 exec\n{k}")
    if data:
        bp = ax.boxplot(data, showfliers=False, patch_artist=True)
        ax.set_xticks(range(1, len(lab) + 1))
        ax.set_xticklabels(lab, fontsize=8)
        for patch, l in zip(bp["boxes"], lab):
            patch.set_facecolor(colors["tether" if "tether" in l else "go"])
        ax.set_ylabel("ms (box: p25–p75, whiskers 1.5 IQR)")
        ax.set_title("Latency: lifecycle and exec")

    # (d) B5 throughput and CPU/GiB
    ax = axes[1][1]
    if "B5" in R:
        sinks = ["fifo", "file"]
        x = range(len(sinks))
        w = 0.35
        for j, k in enumerate(["tether", "go"]):
            tp = [median([r["gib_per_s"] for r in R["B5"][k][s]]) if R["B5"][k][s] else 0 for s in sinks]
            ax.bar([i + (j - 0.5) * w for i in x], tp, w, color=colors[k], label=f"{k} GiB/s")
        ax2 = ax.twinx()
        for j, k in enumerate(["tether", "go"]):
            cp = [median([r["shim_cpu_s_per_gib"] for r in R["B5"][k][s]]) if R["B5"][k][s] else 0
                  for s in sinks]
            ax2.plot([i + (j - 0.5) * w for i in x], cp, "kD" if k == "go" else "k^",
                     label=f"{k} shim CPU s/GiB")
        ax.set_xticks(list(x))
        ax.set_xticklabels(["FIFO → ctr", "file:// log"])
        ax.set_ylabel("GiB/s")
        ax2.set_ylabel("shim CPU s per GiB")
        ax2.set_ylim(bottom=0)
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.08),
                  ncol=4)
        ax.set_title("B5 stdout")
    fig.suptitle("tether vs containerd-shim-runc-v2 (medians; see benchmarks.md)")
    fig.tight_layout()
    path = out_dir / "benchmarks.png"
    fig.savefig(path, dpi=110)
    return path.name


def make_svg(rows, out_dir):
    """Fallback without matplotlib: a hand-written bar chart of the ratios."""
    rr = [r for r in rows if r["ratio"] is not None and r["target"] and r["ratio"] > 0]
    h = 40 + 22 * len(rr)
    x0, width = 330, 420

    def xpos(v):  # log scale 0.01 .. 10
        v = min(max(v, 0.01), 10)
        return x0 + (math.log10(v) + 2) / 3 * width
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{x0 + width + 40}" height="{h}" '
           'font-family="sans-serif" font-size="11">',
           '<text x="10" y="18" font-size="13">tether / Go (log scale; green = target met)</text>']
    for i, r in enumerate(rr):
        y = 30 + 22 * i
        col = "#4daf4a" if r["met"] else "#e41a1c"
        label = f"{r['bench']} {r['metric']}"[:52].replace("&", "&amp;").replace("<", "&lt;")
        out.append(f'<text x="10" y="{y + 13}">{label}</text>')
        out.append(f'<rect x="{x0}" y="{y}" width="{max(1, xpos(r["ratio"]) - x0):.1f}" '
                   f'height="16" fill="{col}"/>')
        out.append(f'<text x="{xpos(r["ratio"]) + 4:.1f}" y="{y + 13}">{r["ratio"]:.2f}×</text>')
    out.append(f'<line x1="{xpos(1):.1f}" y1="25" x2="{xpos(1):.1f}" y2="{h}" stroke="black"/>')
    out.append("</svg>")
    (out_dir / "benchmarks.svg").write_text("\n".join(out))
    return "benchmarks.svg"
