"""Every CUDA kernel of backend ``cuda`` once, on small inputs, for compute-sanitizer (memcheck, racecheck).

    compute-sanitizer --tool memcheck python3 tools/gpu_sanitize_ops.py

Run by tools/gpu_check.sh with PYTORCH_NO_CUDA_MEMORY_CACHING=1, so that every scratch buffer is its own allocation
and an out-of-bounds access is not hidden inside a larger cached block. Covers: pass 1 with and without a fused
resize (NCHW, channels-last, half), the window pass in shared memory (several tiles and bands, k = 0 .. past the
image, C = 1) and on global scratch (300 classes, k = 150), selection (ties, NaN, -inf, active, a tensor n, float64),
both losses forward and backward (all kinds and neighbourhoods, ignored labels), NL. Prints one line per case and
exits non-zero if an op raises (compute-sanitizer's own exit code reports what it found).
"""
from __future__ import annotations

import sys

import torch

import ripu_kernels as rk


def main() -> int:
    if not torch.cuda.is_available():
        print("gpu_sanitize_ops: no CUDA device", file=sys.stderr)
        return 2
    g = torch.Generator().manual_seed(0)
    dev = "cuda"

    def logits(shape, dtype=torch.float32):
        return (torch.randn(shape, generator=g) * 3).to(dtype).to(dev)

    cases = []
    x = logits((2, 7, 37, 300))
    x[0, 0, 1, 2] = float("nan")
    x[1, -1, -1, -1] = float("inf")
    for k in (0, 1, 5, 40, 400):
        cases.append((f"region_scores k={k}", lambda k=k: rk.region_scores(x, k=k, backend="cuda")))
        cases.append((f"pixel_scores k={k}", lambda k=k: rk.pixel_scores(x, k=k, backend="cuda")))
    cl = x.contiguous(memory_format=torch.channels_last)
    cases.append(("region_scores channels_last size=", lambda: rk.region_scores(cl, k=1, size=(61, 517),
                                                                                 backend="cuda")))
    cases.append(("pixel_scores half size=", lambda: rk.pixel_scores(x.half(), k=3, size=(20, 301),
                                                                      align_corners=False, backend="cuda")))
    cases.append(("region_scores C=1", lambda: rk.region_scores(logits((1, 1, 9, 140)), k=2, backend="cuda")))
    cases.append(("region_scores global scratch", lambda: rk.region_scores(logits((1, 300, 12, 400)), k=150,
                                                                            backend="cuda")))
    cases.append(("pixel_entropy", lambda: rk.pixel_entropy(cl, backend="cuda")))
    values = torch.tensor([0.0, 0.0, 0.5, 1.0, float("nan"), float("-inf"), float("inf")])
    score = values[torch.randint(0, len(values), (3, 40, 70), generator=g)].to(dev)
    active = (torch.rand(3, 40, 70, generator=g) < 0.2).to(dev)
    cases.append(("select_regions ties", lambda: rk.select_regions(score, 30, radius=1, active=active,
                                                                    backend="cuda")))
    cases.append(("select_regions tensor n", lambda: rk.select_regions(
        score, torch.tensor([5, 0, 60], device=dev), radius=0, mask_radius=3, n_max=60, backend="cuda")))
    cases.append(("select_regions float64", lambda: rk.select_regions(score.double(), 500, radius=2,
                                                                       backend="cuda")))
    labels = torch.randint(0, 4, (2, 37, 300), generator=g).to(dev)
    labels[0, :3] = 255
    y = logits((2, 4, 37, 300))

    def losses(kind, neighbors):
        t = y.clone().requires_grad_()
        loss = rk.local_consistency_loss(t, labels, kind=kind, neighbors=neighbors, backend="cuda")
        (loss + rk.negative_learning_loss(t, backend="cuda")).backward()
        return loss

    for kind in ("l1", "kl"):
        for nb in (8, 4):
            cases.append((f"losses {kind} {nb}", lambda kind=kind, nb=nb: losses(kind, nb)))
    for name, fn in cases:
        fn()
        torch.cuda.synchronize()
        print("ok", name, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
