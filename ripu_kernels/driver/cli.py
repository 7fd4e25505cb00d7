"""Command line interface ``ripu`` (also ``python -m ripu_kernels``): train, select, eval, demo, and the rest."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DESCRIPTION = """\
RIPU active domain adaptation for semantic segmentation (Xie et al., CVPR 2022) with fused kernels.

  ripu demo --out DIR                         source-only, then RA and random regions (5% over 5 rounds)
  ripu ablate [--strategies ra,random,...] [--seeds N] --out DIR   strategies at equal budget, with bounds
  ripu train --config FILE [key=value ...]    a full run (configs: demo, gtav_cityscapes_ra_2.2, ...)
  ripu train --resume DIR                     continue a killed run (same masks, ledger, weights)
  torchrun --nproc_per_node N -m ripu_kernels train ...   DistributedDataParallel, sharded acquisition
  ripu select --checkpoint CKPT --out STATE [--images DIR]   one acquisition round (the config's target train
       [--shard I --num-shards N] [--export DIR --format F]  set, or a folder); a shard; queries for people
  ripu import-labels DIR [--from EXPORT]      annotators' labels (CVAT, COCO, Label Studio, PNG) into the state
  ripu merge-ledger STATE --round R --num-shards N      merge the shard ledgers of a round
  ripu eval --checkpoint CKPT [--flip]        mIoU and a per-class IoU table on the target val set
       [--config NAME]                        (an authors' checkpoint needs the config of its row)
  ripu config NAME [key=value ...]            print the resolved config as YAML
  ripu prepare DATASET ROOT                   class statistics (and SYNTHIA's 8-bit labels) for training

Packaged configs (the authors' model zoo; docs/fidelity.md lists every difference from their code):
  {gtav,synthia}_cityscapes_source_only, _ra_2.2, _pa_40, _ra_5_v3plus, _ra_2.2_source_free; demo
"""


def _overrides_help() -> str:
    return ("config overrides as section.key=value, e.g. train.iters=2000 active.ratio=0.05 "
            "active.strategy=random active.unit=pool data.target_root=/data/cityscapes (values are YAML)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ripu", description=DESCRIPTION, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    t = sub.add_parser("train", help="train with active rounds (writes checkpoints, masks, ledger, log, metrics)",
                       description="Train a segmentation model on source + target with RIPU active rounds. "
                                   "Writes OUT_DIR/{checkpoints/,state/labels,state/active,state/ledger.json,"
                                   "train.log,metrics.json,config.json}.")
    t.add_argument("--config", default=None,
                   help="YAML config file, or the name of a packaged config (`ripu config --list`: demo, "
                        "gtav_cityscapes_ra_2.2, gtav_cityscapes_ra_5_v3plus, gtav_cityscapes_pa_40, "
                        "gtav_cityscapes_source_only, gtav_cityscapes_ra_2.2_source_free and the synthia_cityscapes_* "
                        "ones); required unless --resume")
    t.add_argument("--resume", default=None, metavar="DIR",
                   help="continue the run in DIR (its config.json and checkpoints/resume.pth) after a crash or "
                        "kill; ends with the masks, ledger and weights of an uninterrupted run. Overrides may "
                        "only change paths, device, threads, workers and logging")
    t.add_argument("--allow-missing-labels", action="store_true",
                   help="with active.oracle=human: continue a run that waits for people even though some queried "
                        "images of the round have no imported labels (they stay unlabelled)")
    t.add_argument("--no-progress", action="store_true", help="disable the progress bars")
    t.add_argument("overrides", nargs="*", help=_overrides_help() + "; active.oracle=human stops after each "
                   "round's export of queries (OUT/queries/round_R) until `ripu import-labels` and "
                   "`ripu train --resume OUT`")

    s = sub.add_parser("select", help="one acquisition round for a checkpoint (its target set, or a folder)",
                       description="Score every image with a trained model and select regions (RA) or pixels (PA) "
                                   "within the per-image budget, over the checkpoint config's target train set "
                                   "(the images of `ripu train`, with the same ids) or over --images. Writes "
                                   "OUT/selected/<id>.png (255 = selected this round), OUT/active/<id>.png "
                                   "(suppression, kept across rounds), OUT/ledger.json, OUT/state.json and, with "
                                   "--labels/--reveal, OUT/labels/<id>.png (revealed ground truth, 255 elsewhere). "
                                   "OUT may be a training run's RUN/state: the selection joins it (same ids, its "
                                   "suppression masks, one ledger) or is refused with the reason. Run it again "
                                   "with --round N+1 for the next round. Shard ledgers go to OUT/ledgers/round_R/ "
                                   "and are merged into OUT/ledger.json; every batch is journalled, so a killed run "
                                   "is simply rerun.")
    s.add_argument("--checkpoint", required=True, help="checkpoint written by `ripu train` (its config is used)")
    s.add_argument("--images", default=None,
                   help="folder of .png/.jpg images (searched recursively; ids are paths relative to it without "
                        "extension and without Cityscapes' _leftImg8bit); default: the config's target train set")
    s.add_argument("--out", required=True, help="state folder (masks, ledger), e.g. a training run's RUN/state")
    s.add_argument("--labels", default=None,
                   help="with --images: a folder of train-id label PNGs with the images' relative names: simulates "
                        "the annotator and writes the revealed labels")
    s.add_argument("--reveal", action="store_true",
                   help="without --images: reveal the target set's ground truth (the simulated annotator of "
                        "`ripu train`)")
    s.add_argument("--round", type=int, default=0, help="round index recorded in the ledger (default 0)")
    s.add_argument("--config", default=None, help="optional YAML config overriding the checkpoint's")
    s.add_argument("--shard", type=int, default=0,
                   help="select only for shard I of --num-shards (image at position p of the sorted ids is in "
                        "shard p %% N); shards can run at once on different machines sharing OUT")
    s.add_argument("--num-shards", type=int, default=1, help="number of shards (default 1)")
    s.add_argument("--export", default=None, metavar="DIR",
                   help="write the queries for people: DIR/regions.json (sizes, scale, boxes per image in the "
                        "original image's pixels), DIR/masks/<id>.png and the --format files; label them and run "
                        "`ripu import-labels DIR --from THEIR_EXPORT`")
    s.add_argument("--format", default="all", metavar="F[,F...]",
                   help="with --export: cvat (CVAT for images 1.1 XML, a box per region), cvat-mask (CVAT "
                        "Segmentation mask 1.1), coco (COCO 1.0 JSON, RLE masks), label-studio (tasks with "
                        "predictions + labeling config), all (default), or png (only regions.json and masks)")
    s.add_argument("--no-progress", action="store_true", help="disable the progress bars")
    s.add_argument("overrides", nargs="*", help=_overrides_help() + "; e.g. active.mode=pa active.pixels=40")

    im = sub.add_parser("import-labels", help="import annotators' labels (CVAT, COCO, Label Studio, PNG)",
                        description="Read the labels people made for an export (DIR = `ripu select --export DIR`, "
                                    "or OUT/queries/round_R of a run with active.oracle=human) from EXPORT: a CVAT "
                                    "Segmentation mask 1.1 folder or zip, CVAT for images XML, COCO JSON (RLE or "
                                    "polygons; also Label Studio's COCO export), a Label Studio JSON export, or "
                                    "label-id PNGs (default DIR/labels/). Labels at the original image size are "
                                    "resized to the label resolution as ground truth is (nearest). Everything is "
                                    "checked before anything is written: unknown classes or colours, wrong sizes "
                                    "and clashes with revealed labels are refused naming the image and the value; "
                                    "labels outside the queried regions are ignored and counted (refused with "
                                    "--strict). Accepted labels are unioned into STATE/labels and each image's "
                                    "round entry in STATE/ledger.json gets `labelled`.")
    im.add_argument("dir", help="the export folder (holds regions.json)")
    im.add_argument("--from", dest="source", default=None, metavar="EXPORT",
                    help="the annotators' files: a zip, a folder, a .json or an .xml (default DIR/labels/)")
    im.add_argument("--format", default="auto",
                    choices=["auto", "png", "cvat-mask", "cvat", "coco", "label-studio"],
                    help="format of EXPORT (default: detected)")
    im.add_argument("--strict", action="store_true", help="refuse labels outside the queried regions")
    im.add_argument("--out", default=None, help="state folder (default: the one recorded in DIR/regions.json)")

    m = sub.add_parser("merge-ledger", help="merge the shard ledgers of a round into STATE/ledger.json",
                       description="Merge STATE/ledgers/round_R/shard_I_of_N.json (I = 0..N-1) into "
                                   "STATE/ledger.json; fails naming the missing shards if a shard is not done.")
    m.add_argument("state", help="state folder (the --out of `ripu select`)")
    m.add_argument("--round", type=int, required=True)
    m.add_argument("--num-shards", type=int, required=True)
    m.add_argument("--mode", default=None, help="ra or pa (default: from STATE/ledger.json or the shard files)")
    m.add_argument("--k", type=int, default=None, help="window radius (default: as --mode)")

    e = sub.add_parser("eval", help="evaluate a checkpoint (mIoU, per-class IoU)",
                       description="Evaluate a checkpoint on the target validation set of its config "
                                   "(or of --config) and print a per-class IoU table (SYNTHIA: mIoU over 16 classes "
                                   "and mIoU* over 13). Needs only the target dataset (data.target_root). Accepts "
                                   "the authors' checkpoints ({feature_extractor, classifier}, DeepLab-v2 or v3+ "
                                   "on ResNet-101) with the config of their row, e.g. --config "
                                   "gtav_cityscapes_ra_2.2 (published 69.6) or gtav_cityscapes_ra_5_v3plus (71.2).")
    e.add_argument("--checkpoint", required=True,
                   help="checkpoint written by `ripu train`, or one of the authors' released checkpoints")
    e.add_argument("--config", default=None,
                   help="YAML config or packaged config name: overrides the checkpoint's; required for an "
                        "authors' checkpoint (it carries no config)")
    e.add_argument("--flip", action="store_true", help="flip test-time augmentation")
    e.add_argument("--json", default=None, help="also write the result to this JSON file")
    e.add_argument("--no-progress", action="store_true", help="disable the progress bars")
    e.add_argument("overrides", nargs="*", help=_overrides_help())

    c = sub.add_parser("config", help="print a config, resolved (base chain, defaults, overrides), as YAML",
                       description="Print the config NAME (a packaged config or a YAML file) as it will run: the "
                                   "defaults, its base: chain and the overrides merged, as YAML.")
    c.add_argument("name", nargs="?", default=None, help="packaged config name or YAML file")
    c.add_argument("--list", action="store_true", help="list the packaged configs")
    c.add_argument("overrides", nargs="*", help=_overrides_help())

    pr = sub.add_parser("prepare", help="one-off: class statistics (and SYNTHIA's 8-bit labels) of a source dataset",
                        description="Compute what training needs from a source dataset's label folder, once: "
                                    "per-image class statistics for class-balanced sampling (data.balanced_sampling) "
                                    "and, for SYNTHIA, 8-bit train-id copies of its 16-bit labels (about 4x faster "
                                    "to decode, measured on a synthetic 1280x760 label). Writes "
                                    "OUT/class_stats.json (and OUT/labels/ for SYNTHIA), atomically; "
                                    "OUT defaults to ROOT/ripu_prepared, where training looks (data.prepared_dir). "
                                    "Output for another root or another number of label files is stale: training "
                                    "refuses it and says to run this again.")
    pr.add_argument("dataset", choices=["gtav", "synthia"], help="the source dataset")
    pr.add_argument("root", help="its root folder (data.source_root)")
    pr.add_argument("--out", default=None, help="output folder (default ROOT/ripu_prepared)")
    pr.add_argument("--list", default=None, help="only the images of this list file (data.source_list)")
    pr.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    pr.add_argument("--no-progress", action="store_true", help="disable the progress bar")

    d = sub.add_parser("demo", help="the end-to-end demo on the embedded synthetic data",
                       description="Source-only training once, then RA and random regions at the same 5%% target "
                                   "budget over 5 rounds, both forked from it, on the embedded synthetic street "
                                   "scenes. Prints mIoU per round for both and writes OUT/metrics.json (RA's "
                                   "metrics, both curves under 'strategies', 'gain_over_random'), "
                                   "OUT/miou_vs_labelled.png, OUT/selected_regions.png and the run folders "
                                   "OUT/source_only, OUT/ra, OUT/random (checkpoints, masks, ledger, train.log).")
    d.add_argument("--out", default="demo-out", help="output folder (default demo-out)")
    d.add_argument("--jobs", type=int, default=None,
                   help="runs at once in separate processes (default: 2 on a machine with 2 or more cores)")
    d.add_argument("--no-progress", action="store_true", help="disable the progress bars")
    d.add_argument("overrides", nargs="*", help=_overrides_help() + " (applied to the packaged demo config)")

    from .ablate import DEFAULT_STRATEGIES

    a = sub.add_parser("ablate", help="acquisition strategies at equal budget over seeds, with both bounds",
                       description="For each seed: train the source-only phase once (the iterations before the "
                                   "first round), fork every strategy from it (identical weights at the first "
                                   "round) and train it on the same budget schedule; add a target-supervised run "
                                   "(every target train label from the first round, same iterations) as the upper "
                                   "bound and the source-only model as the lower one. Writes OUT/ablation.json, "
                                   "OUT/ablation.md (mIoU mean +- std per strategy and budget), OUT/ablation.png "
                                   "and the run folders OUT/runs/seed_S/<run>/. Run the same command again to "
                                   "resume a killed ablation (finished runs are reused); an OUT of other settings "
                                   "is refused. Strategies: ra, pa, impurity, uncertainty, entropy, random (see "
                                   "docs/strategies.md); the unit follows the config (active.unit=pool etc.).")
    a.add_argument("--config", default="demo", help="YAML config or packaged config name (default demo)")
    a.add_argument("--strategies", default=",".join(DEFAULT_STRATEGIES),
                   help=f"comma-separated strategies (default {','.join(DEFAULT_STRATEGIES)})")
    a.add_argument("--seeds", type=int, default=3, help="number of seeds: config seed, seed+1, ... (default 3)")
    a.add_argument("--out", default="ablate-out", help="output folder (default ablate-out)")
    a.add_argument("--quick", action="store_true",
                   help="tiny images and a few iterations (seconds): a smoke test of the whole pipeline")
    a.add_argument("--jobs", type=int, default=None,
                   help="runs at once in separate processes (default: 2 on a machine with 2 or more cores)")
    a.add_argument("--no-progress", action="store_true", help="disable the progress bars")
    a.add_argument("overrides", nargs="*", help=_overrides_help())
    return p


def _progress(args) -> bool:
    return not args.no_progress and sys.stderr.isatty()


def _load_cfg(path, overrides):
    from .config import load_config

    return load_config(path, overrides)


def cmd_train(args) -> int:
    from .engine.device import resolve_device, warn_if_cpu
    from .engine.distributed import init_from_env
    from .engine.trainer import Trainer, setup_logging, silence_logging

    if args.resume:
        if args.config:
            raise SystemExit("ripu train: --resume DIR takes the config from DIR/config.json; drop --config")
        cfg_path = Path(args.resume) / "config.json"
        if not cfg_path.is_file():
            raise FileNotFoundError(f"resume: {cfg_path} not found; {args.resume} holds no run")
        if (Path(args.resume) / "metrics.json").is_file():
            raise SystemExit(f"ripu train: the run in {args.resume} has finished (metrics.json); nothing to resume")
        cfg = _load_cfg(str(cfg_path), [f"out_dir={args.resume}", *args.overrides])
    elif not args.config:
        raise SystemExit("ripu train: --config is required (or --resume DIR)")
    else:
        cfg = _load_cfg(args.config, args.overrides)
    requested, cfg.device = cfg.device, resolve_device(cfg.device, warn=False)
    env, cfg.device = init_from_env(cfg.device)
    finished = False
    try:
        if env.is_main:
            setup_logging(cfg.out_dir)
            warn_if_cpu(requested, cfg.device)  # into this run's log
        else:
            silence_logging()
        metrics = Trainer(cfg, progress=_progress(args) and env.is_main, resume=bool(args.resume), env=env,
                          allow_missing_labels=args.allow_missing_labels).run()
        if env.is_main and "awaiting_labels" in metrics:
            from .annotate.human import instructions

            print(instructions(cfg.out_dir, metrics["awaiting_labels"]["round"]))
        elif env.is_main:
            print(format_rounds(metrics))
        finished = True
    finally:
        env.shutdown(wait_for_others=finished)  # after a failure, never wait for ranks that may be gone
    return 0


def _checkpoint_cfg(args):
    from .engine.authors import load_checkpoint_any
    from .engine.device import resolve_device

    model, cfg, ckpt = load_checkpoint_any(args.checkpoint, args.config, args.overrides)
    cfg.device = resolve_device(cfg.device)
    return model.to(cfg.device), cfg, ckpt


def cmd_select(args) -> int:
    from .active import Acquirer, Budget, SimulatedOracle, resolution
    from .active.join import check_join, record_pool
    from .active.shards import acquire_shard, merge_round

    model, cfg, ckpt = _checkpoint_cfg(args)
    if cfg.active.mode not in ("ra", "pa"):
        raise SystemExit("ripu select: active.mode must be 'ra' or 'pa'")
    if args.round < 0:
        raise SystemExit("ripu select: --round must be >= 0")
    if args.num_shards < 1 or not 0 <= args.shard < args.num_shards:
        raise SystemExit(f"ripu select: --shard must be in [0, --num-shards={args.num_shards}), got {args.shard}")
    if args.labels and not args.images:
        raise SystemExit("ripu select: --labels goes with --images (for the config's target set use --reveal)")
    if args.reveal and args.images:
        raise SystemExit("ripu select: --reveal is for the config's target set; with --images give --labels DIR")
    if args.images:
        from .data.folder_images import ImageFolder

        size = tuple(cfg.data.target_size) if cfg.data.target != "synthetic" else None
        dataset = ImageFolder(args.images, size_wh=size, labels_root=args.labels, num_classes=cfg.data.num_classes,
                              native_labels=cfg.active.label_size == "original")
        oracle = SimulatedOracle(dataset) if args.labels else None
        what = f"--images {args.images}"
    else:
        from .data import build_datasets

        dataset = build_datasets(cfg)[1]
        oracle = SimulatedOracle(dataset) if args.reveal else None
        what = f"the target train set of {args.checkpoint}"
    out = Path(args.out)
    budget = Budget.from_config(cfg)
    ids = dataset.ids
    label_hw = resolution.label_hw(dataset, 0, tuple(dataset[0]["image"].shape[-2:])) if len(dataset) else None
    check_join(out, ids, label_hw, budget.mode, budget.k, what)  # refuses before anything is written
    record_pool(out, ids)
    listeners = ()
    exporter = None
    if args.export:
        from .annotate.classes import ClassTable, class_names_for
        from .annotate.export import Exporter

        exporter = Exporter(args.export, out, args.round, budget.mode, budget.k, budget.radius,
                            ClassTable.build(class_names_for(cfg, dataset)), dataset, args.format,
                            int(ckpt.get("iteration", 0)))
        listeners = (exporter,)
    acquirer = Acquirer(model, budget, cfg.device, cfg.active.batch_size, cfg.active.align_corners, _progress(args),
                        resize_via_input=cfg.active.resize_via_input)
    start = time.time()
    # journalled per batch (a killed run can be rerun), shard ledger in out/ledgers/round_R/
    stats = acquire_shard(acquirer, dataset, out, args.round, int(ckpt.get("iteration", 0)), args.shard,
                          args.num_shards, oracle=oracle, selection_dir=out / "selected", listeners=listeners)
    ledger = merge_round(out, args.round, args.num_shards, budget.mode, budget.k)
    shard = f" (shard {args.shard} of {args.num_shards})" if args.num_shards > 1 else ""
    print(f"round {args.round}{shard}: {stats['regions']} picks, {stats['pixels']} pixels on {stats['images']} "
          f"images in {time.time() - start:.1f}s; masks in {out}")
    if ledger is not None:
        print(f"ledger {out / 'ledger.json'}: {len(ledger.images)} images, {ledger.total_pixels} pixels, labelled "
              f"fraction {100 * ledger.labelled_fraction:.3f}%")
    else:
        print(f"ledger: waiting for the other shards of round {args.round} (merged by the last one to finish, "
              f"or `ripu merge-ledger {out} --round {args.round} --num-shards {args.num_shards}`)")
    if exporter is not None:
        path = exporter.finish(ledger)
        print(f"queries for annotators: {path} (formats: {', '.join(exporter.formats) or 'png'}; images under "
              f"{exporter.images.root}); then `ripu import-labels {args.export} --from THEIR_EXPORT`")
    return 0


def cmd_import_labels(args) -> int:
    from .annotate.importer import import_labels

    res = import_labels(args.dir, args.source, args.format, args.out, args.strict)
    print(f"imported {res['pixels']} labelled pixels of {res['images']} images ({res['format']} from "
          f"{res['source']}) into {res['state_dir']}")
    if res["outside"]:
        print(f"ignored {res['outside']} labelled pixels outside the queried regions (of the original images); "
              "--strict refuses them")
    if res["empty"]:
        print(f"{len(res['empty'])} images had no labels inside their queried regions (e.g. {res['empty'][0]!r}); "
              "not imported")
    if res["unmatched"]:
        print(f"{len(res['unmatched'])} labelled files or images are not queried in this round and were ignored "
              f"(e.g. {res['unmatched'][0]})")
    if res["missing"]:
        print(f"{len(res['missing'])} queried images have no labels yet (e.g. {res['missing'][0]!r}); "
              "run import-labels again once they are labelled")
    return 0


def cmd_merge_ledger(args) -> int:
    import json as _json

    from .active.shards import merge_round, round_dir

    mode, k = args.mode, args.k
    if mode is None:
        for f in [Path(args.state) / "ledger.json", *sorted(round_dir(args.state, args.round).glob("shard_*.json"))]:
            if f.is_file():
                d = _json.loads(f.read_text(encoding="utf-8"))
                mode, k = d["mode"], (d["k"] if k is None else k)
                break
    if mode is None or k is None:
        raise SystemExit(f"ripu merge-ledger: no ledger in {args.state}; give --mode and --k")
    led = merge_round(args.state, args.round, args.num_shards, mode, k, required=True)
    print(f"merged {args.num_shards} shards of round {args.round} into {Path(args.state) / 'ledger.json'}: "
          f"labelled fraction {100 * led.labelled_fraction:.3f}%")
    return 0


def cmd_eval(args) -> int:
    from .data import build_datasets
    from .evaluate import evaluate, format_table
    from .io import atomic_write_json

    model, cfg, _ = _checkpoint_cfg(args)
    _, _, val = build_datasets(cfg, need=("val",))  # the target val set only
    res = evaluate(model, val, cfg.data.num_classes, cfg.device, cfg.eval.batch_size,
                   args.flip or cfg.eval.flip, _progress(args), getattr(val, "class_names", ()))
    print(format_table(res, getattr(val, "class_names", ())))
    if args.json:
        atomic_write_json(args.json, {**{k: v for k, v in res.items() if k != "confusion"},
                                      "flip": bool(args.flip or cfg.eval.flip), "checkpoint": args.checkpoint})
    return 0


def cmd_config(args) -> int:
    from .config import dump_yaml, packaged_config_names

    if args.list or not args.name:
        print("\n".join(packaged_config_names()))
        return 0
    print(dump_yaml(_load_cfg(args.name, args.overrides)), end="")
    return 0


def cmd_prepare(args) -> int:
    from .data.prepared import prepare

    path = prepare(args.dataset, args.root, args.out, args.list, max(1, args.workers), not args.no_progress)
    print(f"prepared {args.dataset} at {args.root}: {path}")
    return 0


def format_rounds(metrics: dict) -> str:
    lines = [f"{'round':>5}  {'iteration':>9}  {'labelled %':>10}  {'mIoU %':>7}"]
    src = metrics.get("miou_source_only", metrics.get("miou_before_rounds"))
    if src is not None:
        lines.append(f"{'src':>5}  {'-':>9}  {0.0:10.3f}  {src:7.2f}")
    for r in metrics["rounds"]:
        miou = f"{r['miou']:7.2f}" if "miou" in r else f"{'-':>7}"
        lines.append(f"{r['round']:>5}  {r['iteration']:>9}  {100 * r['labelled_fraction']:10.3f}  {miou}")
    lines.append(f"final mIoU {metrics['miou_final']:.2f} with {100 * metrics['labelled_fraction']:.3f}% of target "
                 f"pixels labelled")
    return "\n".join(lines)


def format_demo(metrics: dict) -> str:
    """RA and random side by side, per round."""
    ra, rnd = metrics["strategies"]["ra"]["rounds"], metrics["strategies"]["random"]["rounds"]
    lines = [f"{'round':>5}  {'iteration':>9}  {'labelled % (RA / random)':>24}  {'RA mIoU':>8}  {'random mIoU':>11}",
             f"{'src':>5}  {'-':>9}  {'0.000 /  0.000':>24}  {metrics['miou_source_only']:8.2f}  "
             f"{metrics['miou_source_only']:11.2f}"]
    for a, b in zip(ra, rnd):
        lab = f"{100 * a['labelled_fraction']:.3f} / {100 * b['labelled_fraction']:6.3f}"
        lines.append(f"{a['round']:>5}  {a['iteration']:>9}  {lab:>24}  {a['miou']:8.2f}  {b['miou']:11.2f}")
    lines.append(f"final mIoU: RA {metrics['miou_final']:.2f}, random {metrics['miou_final_random']:.2f} "
                 f"(RA - random: {metrics['gain_over_random']:+.2f}); source only {metrics['miou_source_only']:.2f}")
    return "\n".join(lines)


def cmd_demo(args) -> int:
    from .demo import run_demo

    progress = _progress(args)
    metrics = run_demo(args.out, args.overrides, progress, args.jobs, None if progress else _echo)
    print(format_demo(metrics))
    print(f"RA over random at the same budget: {metrics['gain_over_random']:+.2f} mIoU points (over source only: "
          f"{metrics['gain']:+.2f}); wall time {metrics['wall_seconds']:.0f}s; results in {args.out}/ "
          "(metrics.json, miou_vs_labelled.png, selected_regions.png)")
    return 0


def _echo(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cmd_ablate(args) -> int:
    from .ablate import format_markdown, run_ablation

    progress = _progress(args)
    res = run_ablation(args.config, args.strategies.split(","), args.seeds, args.out, args.overrides, args.quick,
                       args.jobs, progress, None if progress else _echo)
    print(format_markdown(res))
    print(f"wall time {res['wall_seconds']:.0f}s with {res['jobs']} job(s); results in {args.out}/ "
          "(ablation.json, ablation.md, ablation.png, runs/)")
    return 0


def main(argv=None) -> int:
    from . import missing_dependencies

    missing = missing_dependencies()
    if missing:
        print(f"ripu: the training driver needs its extra dependencies (missing: {', '.join(missing)}); install "
              "them with: pip install --no-build-isolation \"ripu_kernels[driver]\"", file=sys.stderr)
        return 2
    from .errors import CheckpointError, RipuError

    args = build_parser().parse_args(argv)
    handlers = {"train": cmd_train, "select": cmd_select, "eval": cmd_eval, "demo": cmd_demo, "ablate": cmd_ablate,
                "import-labels": cmd_import_labels, "merge-ledger": cmd_merge_ledger, "config": cmd_config,
                "prepare": cmd_prepare}
    try:
        return handlers[args.command](args)
    except (RipuError, CheckpointError, FileNotFoundError, ValueError) as exc:
        print(f"ripu {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ripu {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
