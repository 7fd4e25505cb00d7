"""Figures of the driver (matplotlib, Agg backend): mIoU against labelled fraction, selected regions."""
from __future__ import annotations

import io
import os

import numpy as np

from .io import atomic_write_bytes


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


STRATEGY_STYLE = {"ra": ("tab:blue", "RIPU (RA)"), "pa": ("tab:cyan", "RIPU (PA)"), "random": ("tab:orange", "random"),
                  "entropy": ("tab:green", "entropy"), "uncertainty": ("tab:purple", "uncertainty"),
                  "impurity": ("tab:red", "impurity")}


def _style(name: str, i: int):
    colour, label = STRATEGY_STYLE.get(name, (f"C{i % 10}", name))
    return colour, label


def plot_miou_curve(metrics: dict, path: str | os.PathLike) -> None:
    """mIoU (%) against the labelled fraction of target pixels (%), source-only at 0; one line per strategy in
    ``metrics["strategies"]`` (the demo: RA and random), else the run's own rounds."""
    plt = _plt()
    curves = metrics.get("strategies") or {"ra": {"rounds": metrics["rounds"]}}
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for i, (name, curve) in enumerate(curves.items()):
        colour, label = _style(name, i)
        xs = [0.0] + [100 * r["labelled_fraction"] for r in curve["rounds"]]
        ys = [metrics["miou_source_only"]] + [r["miou"] for r in curve["rounds"]]
        ax.plot(xs, ys, "o-", color=colour, label=label)
        if i == 0:
            for x, y, r in zip(xs[1:], ys[1:], curve["rounds"]):
                ax.annotate(f"r{r['round']}", (x, y), textcoords="offset points", xytext=(4, -10), fontsize=8)
    ax.axhline(metrics["miou_source_only"], color="grey", ls="--", lw=1, label="source only")
    ax.set_xlabel("labelled target pixels (%)")
    ax.set_ylabel("target val mIoU (%)")
    ax.set_title("mIoU against annotation budget")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)
    plt.close(fig)


def colourise(label: np.ndarray, num_classes: int) -> np.ndarray:
    """uint8 (H, W, 3) colours of a label map (tab20 colours, void black)."""
    plt = _plt()
    cmap = plt.get_cmap("tab20")
    lut = np.zeros((256, 3), dtype=np.uint8)
    for c in range(min(num_classes, 255)):
        lut[c] = (np.array(cmap(c % 20)[:3]) * 255).astype(np.uint8)
    return lut[np.clip(label, 0, 255)]


def plot_selection(image: np.ndarray, revealed: np.ndarray, truth: np.ndarray | None, active: np.ndarray | None,
                   class_names, path: str | os.PathLike, title: str = "") -> None:
    """The target image with the revealed regions drawn over it (coloured by their labels), and the truth."""
    plt = _plt()
    n = len(class_names)
    shown = revealed != 255
    over = image.astype(np.float32).copy()
    colours = colourise(revealed, n).astype(np.float32)
    over[shown] = 0.25 * over[shown] + 0.75 * colours[shown]
    panels = [(image, "target image"), (over.astype(np.uint8), f"revealed regions ({100 * shown.mean():.2f}% px)")]
    if active is not None:
        dim = image.astype(np.float32) * np.where(active, 0.45, 1.0)[..., None]
        dim[shown] = [255, 40, 40]
        panels.append((dim.astype(np.uint8), "selected (red) and suppressed (dark)"))
    if truth is not None:
        panels.append((colourise(truth, n), "ground truth"))
    fig, axes = plt.subplots(len(panels), 1, figsize=(6, 2.0 * len(panels)))
    for ax, (img, name) in zip(np.atleast_1d(axes), panels):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    _save(fig, path)
    plt.close(fig)


def plot_ablation(result: dict, path: str | os.PathLike) -> None:
    """``ripu ablate``: mean mIoU against the mean labelled fraction per strategy, a band of +- one std over
    seeds, the source-only and target-supervised bounds as horizontal lines."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    so = result["source_only"]
    for i, (name, curve) in enumerate(result["strategies"].items()):
        colour, label = _style(name, i)
        xs = np.array([0.0] + [100 * r["labelled_fraction"] for r in curve["mean"]])
        ys = np.array([so["miou"]] + [r["miou"] for r in curve["mean"]])
        sd = np.array([so.get("std", 0.0) or 0.0] + [r["miou"] for r in curve["std"]])
        ax.plot(xs, ys, "o-", color=colour, label=label, ms=3, lw=1.5)
        ax.fill_between(xs, ys - sd, ys + sd, color=colour, alpha=0.15, lw=0)
    ax.axhline(so["miou"], color="grey", ls="--", lw=1, label="source only")
    ts = result.get("target_supervised") or {}
    if ts.get("miou") is not None:
        ax.axhline(ts["miou"], color="black", ls=":", lw=1.2, label="target supervised (all labels)")
    n = len(result["settings"]["seeds"])
    ax.set_xlabel("labelled target pixels (%)")
    ax.set_ylabel("target val mIoU (%)")
    ax.set_title(f"strategies at equal budget ({n} seed{'s' if n > 1 else ''}, mean ± std)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    _save(fig, path)
    plt.close(fig)
