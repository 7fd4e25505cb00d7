"""``python -m bench``: run the benchmarks, print the tables, save results.json, results.md and the plots."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from . import _harness as H
from . import bench_entropy, bench_losses, bench_pixel_scores, bench_region_scores, bench_select

OPS = {
    "pixel_entropy": bench_entropy.cases,
    "region_scores": bench_region_scores.cases,
    "pixel_scores": bench_pixel_scores.cases,
    "select_regions": bench_select.cases,
    "losses": bench_losses.cases,
    "k_sweep": bench_region_scores.k_sweep_cases,
    "size_sweep": bench_region_scores.size_sweep_cases,
}

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

examples:
  python -m bench --quick --out bench-out
  python -m bench --ops region_scores,k_sweep --backends reference,cpu,authors
  python -m bench --device cuda --shape 8x19x1024x2048
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
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("python -m bench: --device cuda was asked for but torch sees no CUDA device", file=sys.stderr)
        return 2
    budget, slow, gmacs = BUDGETS["quick" if args.quick else "full"]
    if args.threads is not None:
        if args.threads < 1:
            print(f"python -m bench: --threads must be >= 1, got {args.threads}", file=sys.stderr)
            return 2
        torch.set_num_threads(args.threads)
    opts = H.RunOptions(device=device, budget_s=args.budget or budget, slow_s=slow,
                        authors_macs_limit=1e9 * (gmacs if args.authors_gmacs is None else args.authors_gmacs),
                        authors_required_runs=args.authors_gmacs is None)
    backends = H.backends_for(device, args.backends)
    main_shape = H.main_shape(device, args.quick, args.shape)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    log(f"bench: device {device} ({H.device_name(device)}), backends {', '.join(backends)}, "
        f"main shape {H.shape_str(main_shape)}, {'quick' if args.quick else 'full'} run")
    started = time.perf_counter()
    load_start = H.load_average()
    rows: list[dict] = []

    def save(plots: list[str], done: bool) -> str:
        meta = H.metadata(device, args.quick, main_shape, argv)
        meta.update(load_average_1m_start=load_start, complete=done, ops_done=sorted({r["op"] for r in rows}),
                    seconds=round(time.perf_counter() - started, 1))
        H.add_derived(rows, meta["peak_gbps"])
        targets = H.evaluate_targets(rows, device, main_shape)
        return H.write_results(args.out, meta, rows, targets, plots)

    for op in args.ops:
        for case in OPS[op](device, args.quick, args.shape):
            rows += H.run_case(case, backends, opts, log=log)
        save([], done=False)  # an interrupted run keeps the tables it finished
    from .plots import make_plots

    plots = make_plots(rows, args.out)
    md = save(plots, done=True)
    print(md)
    log(f"bench: wrote {args.out / 'results.json'}, {args.out / 'results.md'}"
        + "".join(f", {args.out / p}" for p in plots) + f" in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
