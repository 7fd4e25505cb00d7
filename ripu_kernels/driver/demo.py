"""``ripu demo``: source-only training, then RA with a 5% target budget over 5 rounds on the embedded data."""
from __future__ import annotations

import time
from pathlib import Path


def _clear_previous_demo(out: Path) -> None:
    """Remove the outputs of an earlier demo in ``out`` (only files the demo writes) so it can run again."""
    import shutil

    if not any((out / p).exists() for p in ("metrics.json", "state/ledger.json", "checkpoints/resume.pth")):
        return
    for name in ("state", "checkpoints"):
        if (out / name).is_dir():
            shutil.rmtree(out / name)
    for name in ("metrics.json", "config.json", "train.log", "miou_vs_labelled.png", "selected_regions.png"):
        if (out / name).exists():
            (out / name).unlink()


def run_demo(out: str, overrides=(), progress: bool = False) -> dict:
    """The demo: returns the metrics written to ``out/metrics.json``."""
    from .config import load_config, packaged_config
    from .engine.trainer import Trainer, log, setup_logging
    from .io import atomic_write_json
    from .plots import plot_miou_curve, plot_selection

    cfg = load_config(packaged_config("demo"), [f"out_dir={out}", *overrides])
    if cfg.active.mode != "ra" or cfg.train.target_losses_before_rounds or not cfg.train.eval_every_round:
        raise SystemExit("ripu demo: the demo is source-only then RA, evaluated before every round (active.mode=ra, "
                         "train.target_losses_before_rounds=false, train.eval_every_round=true)")
    _clear_previous_demo(Path(out))
    setup_logging(out)
    started = time.time()
    trainer = Trainer(cfg, progress=progress)
    metrics = trainer.run()
    metrics["miou_source_only"] = metrics.pop("miou_before_rounds")
    metrics["iou_source_only"] = metrics.pop("iou_before_rounds")
    metrics["wall_seconds"] = time.time() - started
    metrics["gain"] = metrics["miou_final"] - metrics["miou_source_only"]
    atomic_write_json(Path(out) / "metrics.json", metrics)
    plot_miou_curve(metrics, Path(out) / "miou_vs_labelled.png")
    tgt = trainer.target
    # the target image with the most revealed pixels among the first few, for a telling picture
    shape = tgt.load_label(0).shape
    pick = max(range(min(8, len(tgt))), key=lambda i: int((trainer.store.labels(tgt.image_id(i), shape) != 255).sum()))
    image = (tgt.load_image(pick) * 255 + 0.5).astype("uint8")
    plot_selection(image, trainer.store.labels(tgt.image_id(pick), shape), tgt.load_label(pick),
                   trainer.store.active(tgt.image_id(pick), shape), tgt.class_names,
                   Path(out) / "selected_regions.png", title=f"{tgt.image_id(pick)}: RA regions after "
                                                         f"{len(metrics['rounds'])} rounds")
    log.info("demo finished in %.1fs", metrics["wall_seconds"])
    return metrics
