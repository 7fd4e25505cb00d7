"""``python -m bench``: run the benchmarks, print the tables, save results.json, results.md and the plots."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from . import _harness as H
from . import bench_entropy, bench_losses, bench_pixel_scores, bench_region_scores, bench_select, gpu_check

# Tables of the default ("paper") preset: the public ops, then the two region_scores sweeps.
OPS = {
    "pixel_entropy": bench_entropy.cases,
    "region_scores": bench_region_scores.cases,
    "pixel_scores": bench_pixel_scores.cases,
    "select_regions": bench_select.cases,
    "local_consistency_loss": bench_losses.lcr_cases,
    "negative_learning_loss": bench_losses.nl_cases,
    "k_sweep": bench_region_scores.k_sweep_cases,
    "size_sweep": bench_region_scores.size_sweep_cases,
}
PRESETS = ("paper", "gpu-check")
RESULTS_DIR = Path(__file__).resolve().parent / "results"

# (measured seconds per row after the warm-up, first-call seconds beyond which a row is a single run,
#  CPU limit in G multiply-adds on the authors' box convolutions)
BUDGETS = {"quick": (0.3, 2.0, 1.0), "full": (2.0, 20.0, 13.0)}

EPILOG = """\
backends: every backend of ripu_kernels.available_backends(device) (Triton only on CUDA: on CPU it is the
interpreter, a correctness tool) plus 'authors', the RIPU authors'-style computation (bench/authors.py).
Ratios are baseline time / row time against 'reference' and 'authors'. On CPU the authors' box convolutions
are skipped beyond 13 G multiply-adds (1 G with --quick; the row says so), except for the headline PA k=32
row. Results are rewritten after every table, so an interrupted run leaves the tables it finished.

shapes: the full run uses the paper's 19 x 1024 x 2048 maps (1 image on CPU, 8 on GPU) and one selection round
of the 5% RA budget (2,331 regions at 1024x2048); --quick uses 1x19x128x256 on CPU (2x19x512x1024 on GPU).
The size= rows score logits at 1/8 of that size at full size (the training driver's path).

presets: 'paper' (default) the tables above; 'gpu-check' the GPU check of issue 18 at 8x19x1024x2048 (copy
bandwidth, k sweep 1..64 of both score ops, size=, the RA round with a host-sync check, a zero-plateau
selection, both losses; pass/fail targets), about 2 minutes on an H100/H200 (estimated). --dry-run runs a
preset's plumbing on tiny shapes on any device (measures nothing).

examples:
  python -m bench --quick --out bench-out
  python -m bench --save                # also writes bench/results/<machine>.json and .md (README's table)
  python -m bench --ops region_scores,k_sweep --backends reference,cpu,authors
  python -m bench --device cuda --preset gpu-check --out gpu-out
  python -m bench --device cpu --preset gpu-check --dry-run --out dry-out
  python -m bench.readme_table bench/results/<machine>.json   # the README's benchmark table
  pytest bench/ --benchmark-only        # the same cases at a small shape under pytest-benchmark
"""


def _csv(choices):
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(bad) or 'empty list'}; choose from "
                                             f"{', '.join(choices)}")
        return items
    return parse


def _shape(text: str):
    try:
        return H.parse_shape(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="small shapes and short timing budgets (under 3 minutes on a 2-core CPU)")
    p.add_argument("--out", type=Path, default=Path("bench-out"), metavar="DIR",
                   help="folder for results.json, results.md, k_sweep.png, size_sweep.png (default: bench-out)")
    p.add_argument("--ops", type=_csv(list(OPS)), default=list(OPS), metavar="OP[,OP...]",
                   help=f"which tables to run (default: all): {', '.join(OPS)}")
    p.add_argument("--backends", type=_csv(list(H.BACKEND_ORDER)), default=None, metavar="B[,B...]",
                   help="restrict to these backends (default: all available, plus authors): "
                        f"{', '.join(H.BACKEND_ORDER)}")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None,
                   help="device to run on (default: cuda when available, else cpu)")
    p.add_argument("--shape", type=_shape, default=None, metavar="BxCxHxW",
                   help="logits shape of the main rows and sweeps (default: the paper's, or the quick one)")
    p.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                   help="measured time per row after the warm-up (default: 0.3 quick, 2.0 full)")
    p.add_argument("--authors-gmacs", type=float, default=None, metavar="G",
                   help="CPU only: skip the authors' baseline where its box convolutions exceed G giga "
                        "multiply-adds (default: 1 quick, 13 full, and the PA k=32 row runs regardless; "
                        "given explicitly, it applies to that row too)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help=f"CPU intra-op threads (default: torch's, here {torch.get_num_threads()})")
    p.add_argument("--preset", choices=PRESETS, default="paper",
                   help="'paper' (default): the tables of --ops; 'gpu-check': the GPU check (see below)")
    p.add_argument("--dry-run", action="store_true",
                   help="tiny shapes and budgets on any device: checks the plumbing of a preset, measures nothing")
    p.add_argument("--save", nargs="?", type=Path, const=RESULTS_DIR, default=None, metavar="DIR",
                   help="also write results as DIR/<machine>.json and .md, named after the device "
                        "(default DIR: bench/results; e.g. cpu-amd-epyc-7b13.json, gpu-nvidia-h200-gpu-check.json)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("python -m bench: --device cuda was asked for but torch sees no CUDA device "
              f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); nothing was run",
              file=sys.stderr)
        return 2
    budget, slow, gmacs = BUDGETS["quick" if args.quick else "full"]
    if args.preset == "gpu-check":
        budget, slow = 0.2, 5.0
    if args.dry_run:
        budget, slow, gmacs = 0.01, 2.0, 0.05
    if args.threads is not None:
        if args.threads < 1:
            print(f"python -m bench: --threads must be >= 1, got {args.threads}", file=sys.stderr)
            return 2
        torch.set_num_threads(args.threads)
    opts = H.RunOptions(device=device, budget_s=args.budget or budget, slow_s=slow,
                        authors_macs_limit=1e9 * (gmacs if args.authors_gmacs is None else args.authors_gmacs),
                        authors_required_runs=args.authors_gmacs is None and not args.dry_run)
    if args.preset == "gpu-check":
        wanted = args.backends or list(gpu_check.BACKENDS)
        backends = [b for b in H.backends_for(device, wanted) if b in wanted]
        if args.dry_run:  # the CPU backends stand in for the GPU ones, to exercise the plumbing
            backends = H.backends_for(device, args.backends)
        main_shape = gpu_check.main_shape(args.dry_run)
    else:
        backends = H.backends_for(device, args.backends)
        main_shape = H.main_shape(device, args.quick, args.shape)
        if args.dry_run and args.shape is None:
            main_shape = (1, 5, 12, 20)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    mode = "dry run" if args.dry_run else ("quick" if args.quick else "full")
    log(f"bench: device {device} ({H.device_name(device)}), preset {args.preset}, backends {', '.join(backends)}, "
        f"main shape {H.shape_str(main_shape)}, {mode} run")
    started = time.perf_counter()
    load_start = H.load_average()
    rows: list[dict] = []
    copy_gbps = None
    machine = []

    def save(plots: list[str], done: bool) -> str:
        meta = H.metadata(device, args.quick, main_shape, argv, preset=args.preset, dry_run=args.dry_run)
        meta.update(load_average_1m_start=load_start, complete=done, ops_done=sorted({r["table"] for r in rows}),
                    seconds=round(time.perf_counter() - started, 1), copy_gbps=copy_gbps)
        H.add_derived(rows, meta["peak_gbps"], copy_gbps, any_device=args.preset == "gpu-check")
        if args.preset == "gpu-check":
            targets = gpu_check.evaluate_targets(rows, main_shape, args.dry_run)
        else:
            targets = H.evaluate_targets(rows, device, main_shape)
        md = H.write_results(args.out, meta, rows, targets, plots)
        if args.save is not None and done:
            H.write_results(args.save, meta, rows, targets, [], stem=meta["machine"])
            machine.append(meta["machine"])
        return md

    if args.preset == "gpu-check":
        row = gpu_check.copy_row(device, opts, args.dry_run)
        copy_gbps = row["gbps"]
        rows.append(row)
        log(f"  copy: {copy_gbps:.0f} GB/s")
        groups = [(None, gpu_check.cases(device, args.dry_run))]
    else:
        groups = [(op, OPS[op](device, args.quick, main_shape if args.dry_run else args.shape)) for op in args.ops]
    for _, cases in groups:
        for case in cases:
            rows += H.run_case(case, backends, opts, log=log)
            save([], done=False)  # an interrupted run keeps the rows it finished
    from .plots import make_plots

    plots = make_plots(rows, args.out)
    md = save(plots, done=True)
    print(md)
    saved = "".join(f", {args.save / name}.json, {args.save / name}.md" for name in machine)
    log(f"bench: wrote {args.out / 'results.json'}, {args.out / 'results.md'}"
        + "".join(f", {args.out / p}" for p in plots) + saved + f" in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
