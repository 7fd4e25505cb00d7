"""GPU timings for ``make gpu-check``: each op per backend at the paper's sizes, with a copy bandwidth of the same run.

    python3 tools/gpu_timings.py --out OUT/timings.json [--batch 8] [--reps 20]

Times (CUDA events, median of ``--reps`` runs after a warm-up) the *primary case* of every op on ``reference``,
``cuda`` and ``triton`` -- pixel_entropy and region_scores (k = 1) and pixel_scores (k = 32) on B x 19 x 1024 x 2048
logits, select_regions for one RA 5 % round (k = 1) on those scores, each loss forward + backward -- which
tools/gpu_check_report.py uses to rank the verified backends; plus region_scores at k = 32 and k = 64 (cost must
not grow with k), region_scores fused from 1/8 resolution (the driver's path), and select_regions on a map that is
90 % exact zeros (the candidate threshold inside the zero bin: CUB's per-image segmented sort then sorts every zero).
GB/s counts the bytes an op must move at least (logits read once, outputs written once) against the bandwidth of a
device-to-device copy measured here. A backend that cannot run is left out; nothing here asserts anything.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

import ripu_kernels as rk
from ripu_kernels import _dispatch

BACKENDS = ("reference", "cuda", "triton")


def time_ms(fn, reps: int, warmup: bool = True) -> float:
    if warmup:
        fn()  # warm-up (and compilation for Triton)
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def copy_gbps(nbytes: int, reps: int) -> float:
    src = torch.empty(nbytes // 4, dtype=torch.float32, device="cuda").uniform_()
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src), reps)
    return 2 * src.numel() * 4 / (ms * 1e-3) / 1e9  # read + write


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--reps", type=int, default=20)
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_timings: no CUDA device", file=sys.stderr)
        return 2
    dev = torch.device("cuda")
    backends = [b for b in BACKENDS if _dispatch.unavailable_reason(b, dev) is None]
    B, C, H, W = args.batch, 19, 1024, 2048
    g = torch.Generator(device="cuda").manual_seed(0)
    coarse = torch.randn(B, C, H // 64, W // 64, device=dev, generator=g) * 4
    low = F.interpolate(coarse, size=(H // 8, W // 8), mode="bicubic", align_corners=False)
    low = low + 0.3 * torch.randn(low.shape, device=dev, generator=g)
    logits = F.interpolate(low, size=(H, W), mode="bilinear", align_corners=True).contiguous()
    labels = logits.argmax(1)
    gbps = copy_gbps(logits.numel() * 4, args.reps)
    rows, primary = [], {}

    def record(op, case, backend, fn, nbytes, reps=args.reps, is_primary=False, scale=1.0):
        try:
            ms = time_ms(fn, reps, warmup=scale == 1.0) * scale
        except Exception as exc:  # noqa: BLE001 -- a backend that fails here is reported, not fatal
            rows.append({"op": op, "case": case, "backend": backend, "ms": None, "error": str(exc)[:300]})
            print(f"{op:24s} {case:28s} {backend:10s} FAILED: {exc}", flush=True)
            return
        rate = nbytes / (ms * 1e-3) / 1e9 if nbytes else None
        rows.append({"op": op, "case": case, "backend": backend, "ms": ms, "bytes": nbytes, "gbps": rate,
                     "copy_fraction": rate / gbps if rate else None})
        if is_primary:
            primary.setdefault(op, {})[backend] = ms
        print(f"{op:24s} {case:28s} {backend:10s} {ms:9.3f} ms" + (f"  {rate:7.0f} GB/s" if rate else ""),
              flush=True)

    maps = 3 * B * H * W * 4
    ref_reps = max(3, args.reps // 5)  # the reference is slow: fewer repetitions
    for b in backends:
        reps = ref_reps if b == "reference" else args.reps
        record("pixel_entropy", "B x 19 x 1024 x 2048", b, lambda b=b: rk.pixel_entropy(logits, backend=b),
               logits.numel() * 4 + B * H * W * 4, reps, True)
        record("region_scores", "k=1", b, lambda b=b: rk.region_scores(logits, k=1, backend=b),
               logits.numel() * 4 + maps, reps, True)
        for k in (32, 64):
            record("region_scores", f"k={k}", b, lambda b=b, k=k: rk.region_scores(logits, k=k, backend=b),
                   logits.numel() * 4 + maps, reps)
        record("region_scores", "k=1 size= from 1/8", b,
               lambda b=b: rk.region_scores(low, k=1, size=(H, W), backend=b), low.numel() * 4 + maps, reps)
        record("pixel_scores", "k=32", b, lambda b=b: rk.pixel_scores(logits, k=32, backend=b),
               logits.numel() * 4 + maps, reps, True)
        record("pixel_scores", "k=32 size= from 1/8", b,
               lambda b=b: rk.pixel_scores(low, k=32, size=(H, W), backend=b), low.numel() * 4 + maps, reps)

    score = rk.region_scores(logits, k=1, backend="reference").score
    n = math.ceil(H * W * 0.05 / 9)
    zeros = score.clone()
    zeros[torch.rand(zeros.shape, device=dev, generator=g) < 0.9] = 0.0
    for b in backends:
        if b == "reference":  # a host loop: one image, once, times B (an estimate, said in the case name)
            record("select_regions", f"RA 5% round, {B} images (1 image x {B})", b,
                   lambda: rk.select_regions(score[:1], n, radius=1, backend=b), 0, 1, True, scale=B)
            continue
        record("select_regions", f"RA 5% round, {B} images", b,
               lambda b=b: rk.select_regions(score, n, radius=1, backend=b), 0, args.reps, True)
        record("select_regions", "90% exact zeros", b, lambda b=b: rk.select_regions(zeros, n, radius=1, backend=b),
               0, args.reps)

    def loss_step(fn, b, *a, **kw):
        x = logits.detach().requires_grad_()
        fn(x, *a, backend=b, **kw).backward()

    for b in backends:
        reps = ref_reps if b == "reference" else args.reps
        record("local_consistency_loss", "l1, 8 neighbours, fwd+bwd", b,
               lambda b=b: loss_step(rk.local_consistency_loss, b, labels), 2 * logits.numel() * 4, reps, True)
        record("negative_learning_loss", "fwd+bwd", b, lambda b=b: loss_step(rk.negative_learning_loss, b),
               2 * logits.numel() * 4, reps, True)

    payload = {"device": torch.cuda.get_device_name(0), "shape": [B, C, H, W], "copy_gbps": gbps,
               "backends": backends, "rows": rows, "primary": primary}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"copy bandwidth {gbps:.0f} GB/s; written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
