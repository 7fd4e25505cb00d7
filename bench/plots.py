"""PNG plots of the sweeps (matplotlib, Agg): ``k_sweep.png`` and ``size_sweep.png``."""
from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ._harness import BACKEND_ORDER, atomic_write  # noqa: E402

STYLE = {"reference": "o-", "cpu": "s-", "cuda": "^-", "triton": "v-", "authors": "x--"}


def _series(rows: list[dict], sweep: str) -> dict[str, list[tuple[float, float]]]:
    """{label: [(x, median ms)]} per backend, or per (table, backend) when the sweep spans several tables."""
    tables = {r.get("table", r["op"]) for r in rows if r.get("sweep") == sweep}
    out: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        if r.get("sweep") == sweep and r["median_ms"] is not None:
            label = r["backend"] if len(tables) == 1 else f"{r.get('table', r['op'])} {r['backend']}"
            out.setdefault(label, []).append((float(r["x"]), float(r["median_ms"])))
    return {b: sorted(v) for b, v in out.items()}


def _save(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write(path, buf.getvalue())


def _plot(rows, sweep, out_dir: Path, name: str, xlabel: str, title: str, logx: bool) -> str | None:
    series = _series(rows, sweep)
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    order = {b: i for i, b in enumerate(BACKEND_ORDER)}
    for label in sorted(series, key=lambda s: (s.split()[0] if " " in s else "", order.get(s.split()[-1], 99))):
        xs, ys = zip(*series[label])
        ax.plot(xs, ys, STYLE.get(label.split()[-1], "o-"), label=label)
    skipped = sorted({r["backend"] for r in rows if r.get("sweep") == sweep and r["status"] == "skipped"})
    ax.set_yscale("log")
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("median time (ms, log)")
    some = next(r for r in rows if r.get("sweep") == sweep)
    note = f" (skipped points: {', '.join(skipped)})" if skipped else ""
    ax.set_title(f"{title}\n{some['device']} {some['dtype']}{note}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    _save(fig, out_dir / name)
    return name


def make_plots(rows: list[dict], out_dir: Path) -> list[str]:
    """Writes the plots that have data; returns their file names (relative to ``out_dir``)."""
    out_dir = Path(out_dir)
    made = []
    shape = next((r["shape"] for r in rows if r.get("sweep") == "k"), "")
    ops = sorted({r["op"] for r in rows if r.get("sweep") == "k"})
    name = _plot(rows, "k", out_dir, "k_sweep.png", "window radius k (window (2k+1)^2)",
                 f"{' and '.join(ops)} time against k at {shape}", logx=False)
    if name:
        made.append(name)
    name = _plot(rows, "size", out_dir, "size_sweep.png", "pixels per image (H*W)",
                 "region_scores k=1 time against image size", logx=True)
    if name:
        made.append(name)
    return made
