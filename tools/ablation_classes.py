"""Per-class tables of a finished ``ripu ablate`` folder: final IoU per class and strategy (mean over seeds),
and the class mix of the pixels each strategy revealed (from the runs' revealed-label masks).

    python tools/ablation_classes.py ABLATE_OUT

Prints two markdown tables (the ones in docs/benchmark-data.md, "What the ablation shows").
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np


def _mean(values):
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return sum(vals) / len(vals) if vals else float("nan")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="the --out folder of a finished `ripu ablate`")
    args = p.parse_args(argv)
    from ripu_kernels.driver.io import read_png

    out = Path(args.out)
    seeds = sorted(d for d in (out / "runs").iterdir() if d.is_dir())
    runs = sorted({r.name for s in seeds for r in s.iterdir() if (r / "metrics.json").is_file()})
    order = ["source_only"] + [r for r in runs if r not in ("source_only", "target_supervised")] + \
        [r for r in ("target_supervised",) if r in runs]
    names = None
    iou: dict[str, list[list[float]]] = {}
    strategies = [r for r in order if r not in ("source_only", "target_supervised")]
    for run in order:
        for seed in seeds:
            # the source-only model is evaluated by every fork before its first round (identical weights)
            path = seed / (strategies[0] if run == "source_only" else run) / "metrics.json"
            if not path.is_file():
                continue
            m = json.loads(path.read_text())
            names = m["class_names"]
            iou.setdefault(run, []).append(m["iou_before_rounds" if run == "source_only" else "iou_final"])
    print("| class | " + " | ".join(order) + " |")
    print("| --- | " + " | ".join("---" for _ in order) + " |")
    for c, name in enumerate(names):
        cells = [f"{_mean([v[c] for v in iou[run]]):.1f}" for run in order]
        print(f"| {name} | " + " | ".join(cells) + " |")
    # class mix of the revealed pixels, summed over seeds, beside the mix of every target train pixel
    from ripu_kernels.driver.config import config_from_dict
    from ripu_kernels.driver.data import build_datasets

    cfg = config_from_dict(json.loads((seeds[0] / strategies[0] / "config.json").read_text()), "config.json")
    target = build_datasets(cfg)[1]
    allc = np.zeros(len(names), np.int64)
    for i in range(len(target)):
        lab = np.asarray(target.load_label(i))
        allc += np.bincount(lab[lab != 255].ravel(), minlength=len(names))[: len(names)]
    share = 100 * allc / allc.sum()
    rare = share < 1.0
    mix = {}
    for run in strategies:
        counts = np.zeros(len(names), np.int64)
        for seed in seeds:
            for f in (seed / run / "state" / "labels").rglob("*.png"):
                lab = read_png(f)
                counts += np.bincount(lab[lab != 255].ravel(), minlength=len(names))[: len(names)]
        mix[run] = 100 * counts / max(1, counts.sum())
    print()
    print(f"| revealed pixels (%) | " + " | ".join(names) + f" | the {int(rare.sum())} classes under 1% |")
    print("| --- | " + " | ".join("---" for _ in names) + " | --- |")
    print("| all target train pixels | " + " | ".join(f"{v:.1f}" for v in share) + f" | {share[rare].sum():.1f} |")
    for run in strategies:
        print(f"| {run} | " + " | ".join(f"{v:.1f}" for v in mix[run]) + f" | {mix[run][rare].sum():.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
