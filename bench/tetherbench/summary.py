"""Summary rows, the lines of the report's results table. Each benchmark
module makes its own with `Rows.add`."""


def ratio(a, b):
    try:
        return a / b if b else None
    except TypeError:
        return None


class Rows(list):
    """Rows: (bench, metric, tether, go, ratio, target text, met or None)."""

    def add(self, b, metric, t, g, target=None, met=None, fmt="{:.2f}", unit=""):
        self.append(dict(bench=b, metric=metric + (f" ({unit})" if unit else ""),
                         tether=t, go=g, ratio=ratio(t, g), target=target, met=met, fmt=fmt))
