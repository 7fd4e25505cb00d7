"""Turn a passing ``make gpu-check`` run into the table ``backend="auto"`` follows on CUDA tensors.

    python3 tools/update_verified.py gpu-check-out/summary.json [--out ripu_kernels/_verified.py]

Reads the run's summary (tools/gpu_check_report.py): per op, the GPU backends that passed every GPU test of that op
in that run and were timed faster than the reference there, fastest first. Writes ripu_kernels/_verified.py with
that table and the run's provenance (GPU, git commit, date, torch, triton, CUDA, driver). Refuses a dry run, a run
whose required steps did not all pass, and a run made from a checkout with uncommitted changes (unless
``--allow-dirty``): the table must name code that exists in the history. Commit the written file together with
``bench/results/<gpu>.{md,json}`` from the same run.
"""
from __future__ import annotations

import argparse
import json
import pprint
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OPS = ("pixel_entropy", "region_scores", "pixel_scores", "select_regions", "local_consistency_loss",
       "negative_learning_loss")
KNOWN = {"cuda", "triton"}
PROVENANCE_KEYS = ("gpu", "capability", "git_sha", "git_dirty", "date", "torch", "triton", "cuda", "driver")

HEADER = '''"""Which compiled backends ``backend="auto"`` may pick for CUDA tensors: those a GPU run has verified.

Written by ``tools/update_verified.py`` from a passing ``make gpu-check`` run (do not edit by hand). ``VERIFIED``
maps an op to the backends that passed every GPU test of that op in that run, fastest first as measured there;
``auto`` takes the first of them that is available, else the pure-PyTorch reference. ``PROVENANCE`` says which run
the table comes from (GPU, git commit, date, torch, triton, CUDA and driver versions).
"""
from __future__ import annotations

'''


def build_table(summary: dict, allow_dirty: bool = False) -> tuple[dict, dict]:
    """(provenance, verified) from a gpu-check summary; raises ValueError when the run cannot be used."""
    if summary.get("dry_run"):
        raise ValueError("this summary is from a dry run: nothing ran on a GPU")
    if not summary.get("ok"):
        failed = [s["name"] for s in summary.get("steps", []) if s.get("required") and s.get("status") != "pass"]
        raise ValueError(f"the run did not pass (required steps not passed: {', '.join(failed) or 'unknown'})")
    prov = summary.get("provenance") or {}
    if not prov.get("gpu"):
        raise ValueError("the summary names no GPU")
    if not prov.get("git_sha"):
        raise ValueError("the summary names no git commit")
    if prov.get("git_dirty") and not allow_dirty:
        raise ValueError("the run was made from a checkout with uncommitted changes (pass --allow-dirty to accept)")
    verified = {}
    for op, backends in (summary.get("verified") or {}).items():
        if op not in OPS:
            raise ValueError(f"unknown op {op!r} in the summary")
        bad = [b for b in backends if b not in KNOWN]
        if bad:
            raise ValueError(f"unknown backend(s) {bad} for {op}")
        if backends:
            verified[op] = tuple(backends)
    return {k: prov.get(k) for k in PROVENANCE_KEYS}, verified


def render(provenance: dict, verified: dict) -> str:
    body = f"PROVENANCE: dict[str, object] | None = {pprint.pformat(provenance, width=110, sort_dicts=False)}\n\n"
    body += f"VERIFIED: dict[str, tuple[str, ...]] = {pprint.pformat(verified, width=110, sort_dicts=False)}\n"
    return HEADER + body


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("summary", type=Path, help="summary.json of a gpu-check run")
    p.add_argument("--out", type=Path, default=ROOT / "ripu_kernels" / "_verified.py")
    p.add_argument("--allow-dirty", action="store_true", help="accept a run made from a checkout with local changes")
    args = p.parse_args(argv)
    try:
        summary = json.loads(args.summary.read_text())
        provenance, verified = build_table(summary, args.allow_dirty)
    except (OSError, json.JSONDecodeError, ValueError) as exc:
        print(f"update_verified: {args.summary}: {exc}", file=sys.stderr)
        return 1
    args.out.write_text(render(provenance, verified))
    picks = {op: (verified.get(op) or ("reference",))[0] for op in OPS}
    print(f"update_verified: wrote {args.out} from {provenance['gpu']} at {provenance['git_sha']}; auto on CUDA: "
          + ", ".join(f"{op} -> {b}" for op, b in picks.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
