"""``ripu demo``: source-only training, then RA and random regions at the same budget on the embedded data.

The source-only phase is trained once and both strategies are forked from it (``ripu ablate`` with two
strategies, one seed, no upper bound): ``OUT/source_only/``, ``OUT/ra/``, ``OUT/random/`` are run folders
(checkpoints, masks, ledger, ``train.log``); ``OUT/metrics.json`` holds RA's metrics under the keys a single
run has (``miou_source_only``, ``miou_final``, ``labelled_fraction``, ``rounds``, ...) plus both curves
under ``strategies`` and the headline ``gain_over_random``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

RUNS = ("source_only", "ra", "random")
OUTPUTS = ("metrics.json", "miou_vs_labelled.png", "selected_regions.png")
# files of the demo's single-run layout (before RA and random ran side by side)
OLD_LAYOUT = ("state", "checkpoints", "config.json", "train.log")


def _clear_previous_demo(out: Path) -> None:
    """Remove the outputs of an earlier demo in ``out`` (only what a demo writes) so it can run again."""
    import shutil

    from .ablate import clear_runs

    if not any((out / p).exists() for p in (*OUTPUTS, *RUNS, "state/ledger.json", "checkpoints/resume.pth")):
        return
    clear_runs(out, RUNS)
    for name in OLD_LAYOUT[:2]:
        if (out / name).is_dir():
            shutil.rmtree(out / name)
    for name in (*OUTPUTS, *OLD_LAYOUT[2:]):
        if (out / name).exists():
            (out / name).unlink()


def _curve(m: dict) -> dict:
    return {"rounds": [{"round": r["round"], "iteration": r["iteration"], "labelled_fraction": r["labelled_fraction"],
                        "miou": r.get("miou")} for r in m["rounds"]],
            "miou_final": m["miou_final"], "iou_final": m["iou_final"], "labelled_fraction": m["labelled_fraction"],
            "labelled_pixels": m["labelled_pixels"]}


def run_demo(out: str, overrides=(), progress: bool = False, n_jobs: int | None = None, echo=None) -> dict:
    """The demo: returns the metrics written to ``out/metrics.json``."""
    from .ablate import default_jobs, run_jobs, study_configs
    from .config import load_config, packaged_config
    from .io import atomic_write_json
    from .plots import plot_miou_curve

    cfg = load_config(packaged_config("demo"), [f"out_dir={out}", *overrides])
    if cfg.active.mode != "ra" or cfg.train.target_losses_before_rounds or not cfg.train.eval_every_round:
        raise SystemExit("ripu demo: the demo is source-only then RA, evaluated before every round (active.mode=ra, "
                         "train.target_losses_before_rounds=false, train.eval_every_round=true)")
    out_p = Path(out)
    _clear_previous_demo(out_p)
    started = time.time()
    jobs = study_configs(cfg, ("ra", "random"), [cfg.seed], out_p, upper=False, flat=True)
    run_jobs(jobs, n_jobs or default_jobs(), progress, echo)
    ra = json.loads((out_p / "ra" / "metrics.json").read_text(encoding="utf-8"))
    rnd = json.loads((out_p / "random" / "metrics.json").read_text(encoding="utf-8"))
    metrics = dict(ra)
    metrics["miou_source_only"] = metrics.pop("miou_before_rounds")
    metrics["iou_source_only"] = metrics.pop("iou_before_rounds")
    if abs(rnd["miou_before_rounds"] - metrics["miou_source_only"]) > 1e-9:
        raise RuntimeError("ripu demo: RA and random did not start from the same source-only model "
                           f"({metrics['miou_source_only']} vs {rnd['miou_before_rounds']} mIoU)")
    metrics["strategies"] = {"ra": _curve(ra), "random": _curve(rnd)}
    metrics["miou_final_random"] = rnd["miou_final"]
    metrics["gain"] = metrics["miou_final"] - metrics["miou_source_only"]
    metrics["gain_over_random"] = metrics["miou_final"] - rnd["miou_final"]
    metrics["wall_seconds"] = time.time() - started
    atomic_write_json(out_p / "metrics.json", metrics)
    plot_miou_curve(metrics, out_p / "miou_vs_labelled.png")
    _plot_regions(cfg, out_p / "ra", out_p / "selected_regions.png", len(metrics["rounds"]))
    return metrics


def _plot_regions(cfg, run: Path, path: Path, rounds: int) -> None:
    """The target image with the most revealed pixels among the first few, its RA regions and its truth."""
    from .active import MaskStore
    from .data import build_datasets
    from .plots import plot_selection

    _, tgt, _ = build_datasets(cfg)
    store = MaskStore(run / "state")
    shape = tgt.load_label(0).shape
    pick = max(range(min(8, len(tgt))), key=lambda i: int((store.labels(tgt.image_id(i), shape) != 255).sum()))
    image = (tgt.load_image(pick) * 255 + 0.5).astype("uint8")
    plot_selection(image, store.labels(tgt.image_id(pick), shape), tgt.load_label(pick),
                   store.active(tgt.image_id(pick), shape), tgt.class_names, path,
                   title=f"{tgt.image_id(pick)}: RA regions after {rounds} rounds")
