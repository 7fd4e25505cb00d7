"""The shared benchmark harness: cases, timing, peak memory, rows, ratios, targets and the JSON/markdown writers.

A *case* is one workload (an op at a shape with its parameters). ``Case.setup(device)`` builds the inputs once;
``Case.bind(inputs, backend)`` returns a zero-argument callable that runs the workload with one backend
(``reference``, ``cpu``, ``cuda``, ``triton`` or ``authors``, the RIPU authors'-style computation of
:mod:`bench.authors`). :func:`run_cases` times every (case, backend) pair and returns one row (a dict) per pair.

Timing: CPU with ``torch.utils.benchmark.Timer`` (all intra-op threads), CUDA with ``triton.testing.do_bench``
(median and 20/80 % quantiles). The first call is a warm-up and also the memory measurement; a call slower than
``slow_s`` is timed once (its first call) and the row says so.

Peak extra memory: on CUDA ``torch.cuda.max_memory_allocated`` above what was allocated before the call; on CPU
the process's resident-set high-water mark (``VmHWM``, reset through ``/proc/self/clear_refs``) above the resident
set before the call, with glibc's mmap threshold lowered for that call so freed blocks go back to the system.
Both include the op's outputs.
"""
from __future__ import annotations

import ctypes
import functools
import json
import math
import os
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.utils.benchmark

import ripu_kernels

AUTHORS = "authors"
PAPER_CPU = (1, 19, 1024, 2048)   # one Cityscapes map, 19 classes
PAPER_GPU = (8, 19, 1024, 2048)   # a batch of 8 on GPU
BACKEND_ORDER = ("reference", "cpu", "cuda", "triton", AUTHORS)
MIB = 1024.0 * 1024.0

# Peak DRAM bandwidth in GB/s by device name (first match wins; matched case-insensitively on
# ``torch.cuda.get_device_name``). Vendor datasheet numbers.
PEAK_BANDWIDTH_GBPS: list[tuple[tuple[str, ...], float]] = [
    (("h200",), 4800.0),
    (("h100", "pcie"), 2000.0),
    (("h100", "nvl"), 3900.0),
    (("h100",), 3350.0),            # SXM5, reported as "NVIDIA H100 80GB HBM3"
    (("gh200",), 4000.0),
    (("a100", "80gb", "pcie"), 1935.0),
    (("a100", "80gb"), 2039.0),     # SXM4 80GB
    (("a100",), 1555.0),            # 40GB SXM4 / PCIe
    (("l40s",), 864.0),
    (("a10g",), 600.0),
    (("rtx 4090",), 1008.0),
    (("v100",), 900.0),
]


def peak_bandwidth_gbps(device_name: str) -> float | None:
    """Datasheet peak memory bandwidth of a GPU named ``device_name`` in GB/s, ``None`` when unknown."""
    name = device_name.lower()
    for keys, gbps in PEAK_BANDWIDTH_GBPS:
        if all(k in name for k in keys):
            return gbps
    return None


# --------------------------------------------------------------------------------------------------- cases
@dataclass
class Case:
    """One workload. ``bind(inputs, backend)`` returns a callable, or raises ``Skip`` for a backend it cannot use."""

    op: str                                   # the public op timed, e.g. "region_scores" (or "copy")
    label: str                                # the case inside the table, e.g. "k=1"
    shape: tuple[int, ...]                    # logits shape (B, C, H, W) or score shape (B, H, W)
    setup: Callable[[torch.device], dict]
    bind: Callable[[dict, str], Callable[[], Any]]
    dtype: torch.dtype = torch.float32
    nbytes: int | None = None                 # bytes a fused kernel must move (for GB/s); None: not reported
    params: dict = field(default_factory=dict)
    sweep: str | None = None                  # "k" or "size" for sweep cases (plots), else None
    x: float | None = None                    # the sweep's x value (k, or H*W)
    authors_macs: float = 0.0                 # multiply-adds of the authors' box convolutions (CPU budget rule)
    slow_s: float | None = None               # override of the single-run threshold for this case
    authors_required: bool = False            # run the authors' baseline even beyond the CPU budget (headline rows)
    table: str | None = None                  # the table the row goes to (default: op), e.g. "k_sweep"
    authors_skip: str | None = None           # why the authors' baseline is not run for this case (None: it is)
    check: Callable[[Callable[[], Any], torch.device], dict] | None = None  # extra per-backend facts, e.g. host syncs

    def __post_init__(self):
        if self.table is None:
            self.table = self.op

    @property
    def key(self) -> str:
        return f"{self.table}|{self.label}"


class Skip(Exception):
    """Raised by ``Case.bind`` when a backend has no implementation of that workload; the row records why."""


def shape_str(shape) -> str:
    return "x".join(str(int(s)) for s in shape)


def parse_shape(text: str) -> tuple[int, int, int, int]:
    """``"BxCxHxW"`` -> a 4-tuple of positive ints (``ValueError`` naming the option otherwise)."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if len(dims) != 4 or min(dims) < 1:
        raise ValueError(f"--shape must be BxCxHxW with positive integers (e.g. 1x19x1024x2048), got {text!r}")
    return dims  # type: ignore[return-value]


def logits_nbytes(shape, dtype=torch.float32) -> int:
    return int(math.prod(shape)) * torch.empty((), dtype=dtype).element_size()


def map_nbytes(shape, maps: int = 1, itemsize: int = 4) -> int:
    b, _, h, w = shape
    return int(b * h * w * maps * itemsize)


# -------------------------------------------------------------------------------------------------- shapes
QUICK_CPU = (1, 19, 128, 256)
QUICK_GPU = (2, 19, 512, 1024)


def main_shape(device: torch.device, quick: bool, shape=None) -> tuple[int, int, int, int]:
    """The logits shape of the main rows: ``shape`` when given, else the paper's maps (one image on CPU, a batch
    of 8 on GPU), or a small quick shape."""
    if shape is not None:
        return tuple(int(s) for s in shape)  # type: ignore[return-value]
    if quick:
        return QUICK_GPU if device.type == "cuda" else QUICK_CPU
    return PAPER_GPU if device.type == "cuda" else PAPER_CPU


def backend_call(name: str, backend: str, *args, **kwargs):
    """``ripu_kernels.<name>(*args, backend=backend, **kwargs)`` as a zero-argument callable."""
    fn = getattr(ripu_kernels, name)
    return lambda: fn(*args, backend=backend, **kwargs)


def authors_box_macs(shape, k: int, entropy_conv: bool) -> float:
    """Multiply-adds of the authors' all-ones convolutions: C one-hot channels (+1 entropy map) x (2k+1)^2."""
    b, c, h, w = shape
    return float(b * h * w * (c + (1 if entropy_conv else 0)) * (2 * k + 1) ** 2)


# -------------------------------------------------------------------------------------------------- inputs
def smooth_logits(shape, device, dtype=torch.float32, seed: int = 0, cell: int = 16, scale: float = 4.0,
                  noise: float = 0.5) -> torch.Tensor:
    """Segmentation-like logits: a coarse random field upsampled bilinearly plus pixel noise.

    The argmax then forms regions with boundaries (as a real network's output does), so impurities, the
    selection and the LCR boundary mask are all non-trivial.
    """
    b, c, h, w = shape
    device = torch.device(device)
    g = torch.Generator(device=device).manual_seed(seed)  # generated where it is used: fast on GPU
    coarse = torch.randn((b, c, max(1, h // cell), max(1, w // cell)), generator=g, device=device) * scale
    x = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=True)
    x += torch.randn((b, c, h, w), generator=g, device=device) * noise
    return x.to(dtype=dtype)


def resize(x: torch.Tensor, size) -> torch.Tensor:
    """The bilinear resize ``size=`` fuses (align_corners=True, the ops' default), materialised: for baselines."""
    return torch.nn.functional.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


def label_map(shape, device, seed: int = 1, ignore_fraction: float = 0.05, ignore_index: int = 255) -> torch.Tensor:
    """Integer labels (B, H, W) with regions and ``ignore_fraction`` of pixels set to ``ignore_index``."""
    b, c, h, w = shape
    lab = smooth_logits((b, c, h, w), device, seed=seed, cell=32, noise=0.0).argmax(dim=1)
    g = torch.Generator(device=torch.device(device)).manual_seed(seed + 1)
    lab[torch.rand((b, h, w), generator=g, device=device) < ignore_fraction] = ignore_index
    return lab


# ------------------------------------------------------------------------------------------------- memory
class _CpuMemory:
    """Peak extra resident memory of one call (Linux); ``None`` where /proc or glibc is not there."""

    M_MMAP_THRESHOLD = -3

    def __init__(self):
        self._libc = None
        self.ok = os.path.exists("/proc/self/clear_refs") and os.path.exists("/proc/self/status")
        try:
            self._libc = ctypes.CDLL("libc.so.6")
        except OSError:
            self._libc = None

    @staticmethod
    def _status_kib(key: str) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        raise KeyError(key)

    def _threshold(self, nbytes: int) -> None:
        if self._libc is not None:
            self._libc.mallopt(self.M_MMAP_THRESHOLD, int(nbytes))

    def measure(self, fn: Callable[[], Any]) -> tuple[Any, float, float | None]:
        """Runs ``fn`` once; returns (result, seconds, peak extra MiB or None)."""
        if not self.ok:
            t = time.perf_counter()
            out = fn()
            return out, time.perf_counter() - t, None
        # Small threshold: every large block is its own mapping and is unmapped when freed, so RSS follows the
        # live allocations. Afterwards 32 MiB, the ceiling glibc's dynamic threshold converges to, for timing.
        self._threshold(64 * 1024)
        if self._libc is not None:
            # Free heap memory stays resident and would serve the call's allocations without the resident set
            # growing; malloc_trim returns it to the system first, so reusing it shows up as new resident pages.
            self._libc.malloc_trim(0)
        try:
            before = self._status_kib("VmRSS")
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
            except OSError:
                self.ok = False
                return self.measure(fn)
            t = time.perf_counter()
            out = fn()
            seconds = time.perf_counter() - t
            peak = self._status_kib("VmHWM")
        finally:
            self._threshold(32 * 1024 * 1024)
        return out, seconds, max(0, peak - before) / 1024.0


_CPU_MEMORY = _CpuMemory()


def first_call(fn: Callable[[], Any], device: torch.device) -> tuple[float, float | None]:
    """Warm-up call that also measures peak extra memory: (seconds, MiB or None)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        t = time.perf_counter()
        out = fn()
        torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t
        peak = torch.cuda.max_memory_allocated(device) - base
        del out
        return seconds, peak / MIB
    out, seconds, mib = _CPU_MEMORY.measure(fn)
    del out
    return seconds, mib


# ------------------------------------------------------------------------------------------------- timing
@dataclass
class Timing:
    median_s: float
    q20_s: float
    q80_s: float
    repeats: int
    method: str


def _quantile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    if len(xs) == 1:
        return xs[0]
    pos = q * (len(xs) - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def time_cpu(fn: Callable[[], Any], first_s: float, budget_s: float, slow_s: float, label: str = "") -> Timing:
    """``torch.utils.benchmark.Timer`` with every intra-op thread; few repeats for slow calls."""
    if first_s >= slow_s:
        return Timing(first_s, first_s, first_s, 1, "single run (first call)")
    timer = torch.utils.benchmark.Timer(stmt="fn()", globals={"fn": fn}, label=label,
                                        num_threads=torch.get_num_threads())
    if first_s * 4 > budget_s:  # a handful of calls: time them one by one
        repeats = max(2, min(10, int(budget_s / max(first_s, 1e-9))))
        times = [timer.timeit(number=1).times[0] for _ in range(repeats)]
        return Timing(statistics.median(times), _quantile(times, 0.2), _quantile(times, 0.8), repeats,
                      "Timer.timeit(1)")
    m = timer.blocked_autorange(min_run_time=budget_s)
    times = list(m.times)
    return Timing(m.median, _quantile(times, 0.2), _quantile(times, 0.8), len(times) * m.number_per_run,
                  "Timer.blocked_autorange")


def time_cuda(fn: Callable[[], Any], first_s: float, budget_s: float, slow_s: float,
              device: torch.device) -> Timing:
    """``triton.testing.do_bench`` (L2 flushed between calls); wall-clock repeats for calls slower than 0.1 s."""
    if first_s >= slow_s:
        return Timing(first_s, first_s, first_s, 1, "single run (first call)")
    if first_s > 0.1:  # do_bench would spend 5 calls estimating; time a few calls directly
        repeats = max(2, min(10, int(budget_s / first_s)))
        times = []
        for _ in range(repeats):
            torch.cuda.synchronize(device)
            t = time.perf_counter()
            fn()
            torch.cuda.synchronize(device)
            times.append(time.perf_counter() - t)
        return Timing(statistics.median(times), _quantile(times, 0.2), _quantile(times, 0.8), repeats,
                      "wall clock + synchronize")
    rep_ms = budget_s * 1000.0
    try:
        import triton.testing
    except ImportError:  # no triton: CUDA events around each call
        repeats = max(3, min(1000, int(budget_s / max(first_s, 1e-6))))
        times = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1000.0)
        return Timing(statistics.median(times), _quantile(times, 0.2), _quantile(times, 0.8), repeats,
                      "CUDA events (triton missing)")
    med, q20, q80 = triton.testing.do_bench(fn, warmup=25, rep=rep_ms, quantiles=[0.5, 0.2, 0.8])
    repeats = max(1, int(rep_ms / max(med, 1e-6)))
    return Timing(med / 1000.0, q20 / 1000.0, q80 / 1000.0, repeats, "triton.testing.do_bench")


# ---------------------------------------------------------------------------------------------- backends
def backends_for(device: torch.device, wanted: list[str] | None = None) -> list[str]:
    """Backends to run on ``device``: those available (Triton only on CUDA: its CPU interpreter is a
    correctness tool, not a benchmark target), plus ``authors``; filtered and ordered by ``wanted``."""
    names = [b for b in ripu_kernels.available_backends(device) if not (b == "triton" and device.type != "cuda")]
    names.append(AUTHORS)
    names = [b for b in BACKEND_ORDER if b in names]
    if wanted is not None:
        names = [b for b in names if b in wanted]
    return names


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def load_average() -> float | None:
    """1-minute load average (other processes on the machine make CPU timings noisy), None where unknown."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def git_sha(root: Path | None = None) -> str:
    root = root or Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# ----------------------------------------------------------------------------------------------- running
@dataclass
class RunOptions:
    device: torch.device
    budget_s: float = 1.0          # measured time per row (after the warm-up)
    slow_s: float = 20.0           # a first call slower than this is the row's only run
    authors_macs_limit: float = 1.3e10   # CPU only: authors' box convolutions beyond this are not run
    authors_required_runs: bool = True    # headline rows (Case.authors_required) run the authors beyond the limit
    verbose: bool = True


def _row_base(case: Case, backend: str, device: torch.device) -> dict:
    return {
        "op": case.op, "table": case.table, "case": case.label, "shape": shape_str(case.shape),
        "dtype": str(case.dtype).replace("torch.", ""),
        "device": device.type, "backend": backend, "params": dict(case.params), "sweep": case.sweep, "x": case.x,
        "status": "ok", "note": "", "median_ms": None, "q20_ms": None, "q80_ms": None, "repeats": None,
        "method": None, "first_call_ms": None, "peak_mem_mib": None, "bytes": case.nbytes,
        "gbps": None, "pct_peak": None, "pct_copy": None, "vs_reference": None, "vs_authors": None,
    }


def run_case(case: Case, backends: list[str], opts: RunOptions, log: Callable[[str], None] = print) -> list[dict]:
    """Times ``case`` with each backend; one row per backend (``status`` ``ok``, ``skipped`` or ``error``)."""
    device = opts.device
    inputs = case.setup(device)
    rows = []
    for backend in backends:
        row = _row_base(case, backend, device)
        rows.append(row)
        if backend == AUTHORS and case.authors_skip:
            row["status"], row["note"] = "skipped", case.authors_skip
            continue
        if (backend == AUTHORS and device.type == "cpu"
                and not (case.authors_required and opts.authors_required_runs)
                and case.authors_macs > opts.authors_macs_limit):
            row["status"] = "skipped"
            row["note"] = (f"authors' box convolutions need {case.authors_macs / 1e9:.0f} G multiply-adds "
                           f"(> {opts.authors_macs_limit / 1e9:.0f} G limit on CPU)")
            continue
        try:
            fn = case.bind(inputs, backend)
        except Skip as why:
            row["status"], row["note"] = "skipped", str(why)
            continue
        try:
            first_s, mib = first_call(fn, device)
            slow_s = case.slow_s if case.slow_s is not None else opts.slow_s
            if device.type == "cuda":
                timing = time_cuda(fn, first_s, opts.budget_s, slow_s, device)
            else:
                timing = time_cpu(fn, first_s, opts.budget_s, slow_s, label=case.key)
        except Exception as exc:  # a backend failing must not lose the other rows
            row["status"], row["note"] = "error", f"{type(exc).__name__}: {exc}"[:300]
            if opts.verbose:
                log(f"  {case.table} {case.label} [{backend}] ERROR {row['note']}")
            continue
        row.update(median_ms=timing.median_s * 1e3, q20_ms=timing.q20_s * 1e3, q80_ms=timing.q80_s * 1e3,
                   repeats=timing.repeats, method=timing.method, first_call_ms=first_s * 1e3, peak_mem_mib=mib)
        if case.check is not None:
            try:
                row.update(case.check(fn, device))
            except Exception as exc:  # a check failing must not lose the timing
                row["note"] = f"check failed: {type(exc).__name__}: {exc}"[:300]
        if opts.verbose:
            mem = "" if mib is None else f", peak +{mib:.1f} MiB"
            log(f"  {case.table:<24} {case.label:<28} {backend:<9} {timing.median_s * 1e3:12.3f} ms "
                f"(x{timing.repeats}{mem})")
    del inputs
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def add_derived(rows: list[dict], peak_gbps: float | None, copy_gbps: float | None = None,
                any_device: bool = False) -> None:
    """Fills ``vs_reference`` / ``vs_authors`` (baseline time / row time: > 1 means faster) and, on GPU (or on
    any device with ``any_device``), GB/s with its % of the datasheet peak and of the copy bandwidth measured in
    the same run."""
    by_key: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        by_key.setdefault((r["table"], r["case"], r["shape"], r["dtype"], r["device"]), {})[r["backend"]] = r
    for group in by_key.values():
        for r in group.values():
            if r["median_ms"] is None:
                continue
            for base, col in (("reference", "vs_reference"), (AUTHORS, "vs_authors")):
                b = group.get(base)
                if b is not None and b["median_ms"] is not None and r["median_ms"] > 0:
                    r[col] = b["median_ms"] / r["median_ms"]
            if (r["device"] == "cuda" or any_device) and r["bytes"]:
                r["gbps"] = r["bytes"] / (r["median_ms"] / 1e3) / 1e9
                if peak_gbps:
                    r["pct_peak"] = 100.0 * r["gbps"] / peak_gbps
                if copy_gbps:
                    r["pct_copy"] = 100.0 * r["gbps"] / copy_gbps


# ---------------------------------------------------------------------------------------------- targets
@dataclass
class Target:
    device: str                       # "cpu" or "cuda"
    text: str                         # the target as stated in the issue
    backends: tuple[str, ...]         # which backends it applies to
    measure: Callable[[dict, str], tuple[float | None, str]]   # (index, backend) -> (value, formatted)
    passes: Callable[[float], bool]
    paper_shape: tuple[int, ...]      # the shape the target is stated for


def index_rows(rows: list[dict]) -> dict:
    return {(r["table"], r["case"], r["backend"]): r for r in rows}


def _get(index, op, case, backend, col="median_ms"):
    r = index.get((op, case, backend))
    return None if r is None else r.get(col)


def _ratio_target(op, case, col, fmt="{:.0f}x"):
    def measure(index, backend):
        v = _get(index, op, case, backend, col)
        return v, ("" if v is None else fmt.format(v))
    return measure


def _k_ratio_target(op, case_hi, case_lo):
    def measure(index, backend):
        hi, lo = _get(index, op, case_hi, backend), _get(index, op, case_lo, backend)
        if hi is None or lo is None:
            return None, ""
        return hi / lo, f"{hi / lo:.2f}x ({hi:.2f} / {lo:.2f} ms)"
    return measure


def _select_gpu_measure(index, backend):
    t = _get(index, "select_regions", "RA k=1", backend)
    s = _get(index, "select_regions", "RA k=1", backend, "vs_authors")
    if t is None or s is None:
        return None, "" if t is None else f"{t:.3f} ms, vs authors n/a"
    return (1.0 if (t < 2.0 and s >= 200) else 0.0), f"{t:.3f} ms, {s:.0f}x vs authors"


def _losses_measure(index, backend):
    vals = [(f"{table} {case}", _get(index, table, case, backend, "vs_reference")) for table, case in LOSS_CASES]
    got = [v for _, v in vals if v is not None]
    if not got:
        return None, ""
    text = ", ".join(f"{c}: {v:.1f}x" for c, v in vals if v is not None)
    return (1.0 if min(got) >= 3 else 0.0) if len(got) == len(vals) else None, text


LOSS_CASES = (("local_consistency_loss", "l1 n8"), ("local_consistency_loss", "kl n8"),
              ("negative_learning_loss", "t=0.05"))

TARGETS = [
    Target("cpu", "region_scores k=1 >= 30x faster than authors", ("cpu",),
           _ratio_target("region_scores", "k=1", "vs_authors"), lambda v: v >= 30, PAPER_CPU),
    Target("cpu", "pixel_scores k=32 >= 1000x faster than authors", ("cpu",),
           _ratio_target("pixel_scores", "k=32", "vs_authors"), lambda v: v >= 1000, PAPER_CPU),
    Target("cpu", "one RA 5% selection round (2,331 regions, r=1, m=2) >= 100x faster than authors", ("cpu",),
           _ratio_target("select_regions", "RA k=1", "vs_authors"), lambda v: v >= 100, PAPER_CPU),
    Target("cpu", "region_scores time(k=32) <= 1.5 x time(k=1)", ("cpu",),
           _k_ratio_target("region_scores", "k=32", "k=1"), lambda v: v <= 1.5, PAPER_CPU),
    Target("cuda", "region_scores k=1 >= 70% of peak bandwidth (logits read once + 3 float32 maps)",
           ("cuda", "triton"), _ratio_target("region_scores", "k=1", "pct_peak", "{:.0f}%"), lambda v: v >= 70,
           PAPER_GPU),
    Target("cuda", "pixel_scores time(k=32) <= 1.2 x time(k=1)", ("cuda", "triton"),
           _k_ratio_target("pixel_scores", "k=32", "k=1"), lambda v: v <= 1.2, PAPER_GPU),
    Target("cuda", "RA 5% selection for 8 images < 2 ms and >= 200x faster than authors", ("cuda", "triton"),
           _select_gpu_measure, lambda v: v >= 1.0, PAPER_GPU),
    Target("cuda", "each loss forward+backward >= 3x faster than autograd through the reference",
           ("cuda", "triton"), _losses_measure, lambda v: v >= 1.0, PAPER_GPU),
]


def evaluate_targets(rows: list[dict], device: torch.device, main_shape: tuple[int, ...]) -> list[dict]:
    """One entry per (target, backend) on this device: the measured value and pass/fail (a report only)."""
    index = index_rows(rows)
    out = []
    for t in TARGETS:
        if t.device != device.type:
            continue
        shape_note = "" if tuple(main_shape) == t.paper_shape else (
            f"measured at {shape_str(main_shape)}, target is for {shape_str(t.paper_shape)}: indicative only")
        for backend in t.backends:
            value, text = t.measure(index, backend)
            if value is None:
                status = "not measured"
                why = "backend not available" if not any(k[2] == backend for k in index) else "rows missing"
                text = text or why
            else:
                status = "pass" if t.passes(value) else "FAIL"
            out.append({"target": t.text, "backend": backend, "measured": text, "status": status,
                        "note": shape_note})
    return out


# ----------------------------------------------------------------------------------------------- writers
def atomic_write(path: Path, data: bytes | str) -> None:
    """Writes ``path`` atomically (temporary file, fsync, rename: never half-written), with the driver's writer."""
    from ripu_kernels.driver.io import atomic_write_bytes  # stdlib + NumPy only: no driver extra needed

    atomic_write_bytes(path, data if isinstance(data, bytes) else data.encode("utf-8"))


def _fmt(v, spec="{:.3f}", empty=""):
    return empty if v is None else spec.format(v)


def _fmt_ms(v):
    if v is None:
        return ""
    return f"{v:.4f}" if v < 1 else f"{v:.3f}" if v < 100 else f"{v:.1f}"


def _fmt_ratio(v):
    if v is None:
        return ""
    return f"{v:.2f}x" if v < 10 else f"{v:.0f}x"


TABLE_TITLES = {
    "copy": "copy: device-to-device copy bandwidth (the GB/s baseline of this run)",
    "pixel_entropy": "pixel_entropy",
    "region_scores": "region_scores (RA)",
    "pixel_scores": "pixel_scores (PA)",
    "select_regions": "select_regions (one selection round)",
    "local_consistency_loss": "local_consistency_loss (forward + backward)",
    "negative_learning_loss": "negative_learning_loss (forward + backward)",
    "k_sweep": "k sweep: region_scores time against window radius k (must stay flat)",
    "size_sweep": "size sweep: region_scores k=1 time against image size",
}


def markdown(meta: dict, rows: list[dict], targets: list[dict], plots: list[str]) -> str:
    gpu = meta["device_type"] == "cuda"
    copy_gbps = meta.get("copy_gbps")
    lines = ["# ripu_kernels benchmarks", ""]
    lines.append(f"- device: {meta['device_name']} ({meta['device_type']}), torch {meta['torch']}, "
                 f"triton {meta.get('triton') or 'n/a'}, threads {meta['threads']}")
    mode = meta.get("preset") if meta.get("preset", "paper") != "paper" else ("quick" if meta["quick"] else "full")
    if meta.get("dry_run"):
        mode += " (dry run: tiny shapes, checks the plumbing, measures nothing)"
    lines.append(f"- git {meta['git_sha']}, {meta['time_utc']}, mode {mode}, "
                 f"main shape {meta['main_shape']}, {meta.get('seconds', '?')} s")
    lines.append(f"- machine: CPU {meta.get('cpu_model', '?')}, {meta.get('cpu_count', '?')} cores, "
                 f"python {meta.get('python', '?')}")
    if not meta.get("complete", True):
        lines.append(f"- **partial**: the run was still going (or was interrupted); tables done: "
                     f"{', '.join(meta.get('ops_done', []))}")
    loads = [v for v in (meta.get("load_average_1m_start"), meta.get("load_average_1m")) if v is not None]
    if not gpu and loads and meta.get("cpu_count") and max(loads) > 0.75 * meta["cpu_count"]:
        lines.append(f"- **warning**: 1-minute load average {' / '.join(map(str, loads))} (start / end) on "
                     f"{meta['cpu_count']} cores: other processes shared the CPU, timings are noisy")
    if gpu:
        lines.append(f"- peak bandwidth (datasheet): {meta['peak_gbps'] or 'unknown (no %)'} GB/s"
                     + (f"; measured device-to-device copy: {copy_gbps:.0f} GB/s" if copy_gbps else ""))
        if meta.get("driver"):
            lines.append(f"- driver {meta['driver']}, CUDA {meta.get('cuda') or '?'}")
    lines.append("- `x ref` / `x authors`: baseline median / row median (> 1: faster than the baseline). "
                 "`peak MiB`: peak extra memory of one call, outputs included.")
    lines.append("")
    tables = []
    for r in rows:
        if r["table"] not in tables:
            tables.append(r["table"])
    gpu = gpu or bool(copy_gbps)  # the bandwidth columns
    for table in tables:
        lines += [f"## {TABLE_TITLES.get(table, table)}", ""]
        head = ["case", "shape", "dtype", "device", "backend", "median ms", "q20-q80 ms", "runs", "x ref",
                "x authors", "peak MiB"]
        if gpu:
            head += ["GB/s", "% peak"] + (["% copy"] if copy_gbps else [])
        head += ["note"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for r in rows:
            if r["table"] != table:
                continue
            spread = "" if r["q20_ms"] is None else f"{_fmt_ms(r['q20_ms'])}-{_fmt_ms(r['q80_ms'])}"
            note = r["note"] if r["status"] == "ok" else f"{r['status']}: {r['note']}"
            if r.get("host_sync"):
                note = (note + "; " if note else "") + f"host sync: {r['host_sync']}"
            if r["status"] == "ok" and r["repeats"] == 1:
                note = (note + "; " if note else "") + "single run"
            cells = [r["case"], r["shape"], r["dtype"], r["device"], r["backend"], _fmt_ms(r["median_ms"]), spread,
                     _fmt(r["repeats"], "{}"), _fmt_ratio(r["vs_reference"]), _fmt_ratio(r["vs_authors"]),
                     _fmt(r["peak_mem_mib"], "{:.1f}")]
            if gpu:
                cells += [_fmt(r["gbps"], "{:.0f}"), _fmt(r["pct_peak"], "{:.0f}%")]
                if copy_gbps:
                    cells += [_fmt(r.get("pct_copy"), "{:.0f}%")]
            cells += [note.replace("|", "/")]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## targets (reported, not asserted)", ""]
    if targets:
        lines.append("| target | backend | measured | status | note |")
        lines.append("|---|---|---|---|---|")
        for t in targets:
            lines.append(f"| {t['target']} | {t['backend']} | {t['measured']} | {t['status']} | {t['note']} |")
    else:
        lines.append("No target is stated for this device.")
    lines.append("")
    if plots:
        lines += ["## plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    return "\n".join(lines)


def write_results(out_dir: Path, meta: dict, rows: list[dict], targets: list[dict], plots: list[str],
                  stem: str = "results") -> str:
    """Writes ``<stem>.json`` and ``<stem>.md`` atomically into ``out_dir``; returns the markdown."""
    out_dir = Path(out_dir)
    payload = {"meta": meta, "rows": rows, "targets": targets, "plots": plots}
    atomic_write(out_dir / f"{stem}.json", json.dumps(payload, indent=1, default=str) + "\n")
    md = markdown(meta, rows, targets, plots)
    atomic_write(out_dir / f"{stem}.md", md)
    return md


@functools.lru_cache(maxsize=1)
def driver_versions() -> tuple[str | None, str | None]:
    """(NVIDIA driver version from nvidia-smi, CUDA version torch was built with); None where unknown."""
    driver = None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        if out.returncode == 0 and out.stdout.strip():
            driver = out.stdout.strip().splitlines()[0].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return driver, torch.version.cuda


def slug(text: str) -> str:
    """A file-name-safe lower-case name: 'AMD EPYC 7B13 64-Core Processor' -> 'amd-epyc-7b13-64-core-processor'."""
    out = "".join(ch.lower() if ch.isalnum() else "-" for ch in text)
    while "--" in out:
        out = out.replace("--", "-")
    return out.strip("-") or "unknown"


def machine_name(meta: dict) -> str:
    """The results file name of a run: device kind and model, and the mode when it is not a full run,
    e.g. 'cpu-amd-epyc-7b13', 'gpu-nvidia-h200-gpu-check', 'cpu-amd-epyc-7b13-quick'."""
    model = meta["device_name"]
    for noise in ("(R)", "(TM)", "CPU", "Processor", "with Radeon Graphics"):
        model = model.replace(noise, " ")
    name = ("gpu-" if meta["device_type"] == "cuda" else "cpu-") + slug(model)
    if meta.get("preset") and meta["preset"] != "paper":
        name += "-" + slug(meta["preset"])
    if meta.get("dry_run"):
        name += "-dry-run"
    elif meta.get("quick"):
        name += "-quick"
    return name


def metadata(device: torch.device, quick: bool, main_shape, argv: list[str], preset: str = "paper",
             dry_run: bool = False) -> dict:
    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    name = device_name(device)
    driver, cuda = driver_versions() if device.type == "cuda" else (None, torch.version.cuda)
    meta = {
        "device_type": device.type, "device_name": name, "cpu_model": device_name(torch.device("cpu")),
        "torch": torch.__version__, "triton": triton_version, "cuda": cuda, "driver": driver,
        "python": platform.python_version(), "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "git_sha": git_sha(), "quick": quick, "preset": preset, "dry_run": dry_run,
        "main_shape": shape_str(main_shape), "argv": argv,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "peak_gbps": peak_bandwidth_gbps(name) if device.type == "cuda" else None,
        "backends_available": ripu_kernels.available_backends(device),
        "load_average_1m": load_average(),
    }
    meta["machine"] = machine_name(meta)
    return meta


# ----------------------------------------------------------------------------------------- pytest-benchmark
def pytest_params(cases: list[Case], device: torch.device):
    """``pytest.param((case, backend))`` for every backend that can run here, ids ``op-label-backend``."""
    import pytest

    params = []
    for case in cases:
        for backend in backends_for(device):
            cid = f"{case.op}-{case.label}-{backend}".replace(" ", "_")
            params.append(pytest.param(case, backend, id=cid))
    return params


def pytest_run(benchmark, case: Case, backend: str, device: torch.device) -> None:
    """Runs one (case, backend) under pytest-benchmark's ``benchmark`` fixture."""
    import pytest

    inputs = case.setup(device)
    try:
        fn = case.bind(inputs, backend)
    except Skip as why:
        pytest.skip(str(why))
    if device.type == "cuda":
        inner = fn

        def fn():
            out = inner()
            torch.cuda.synchronize(device)
            return out
    benchmark.group = f"{case.op} {case.label} {shape_str(case.shape)}"
    benchmark.extra_info.update(backend=backend, shape=shape_str(case.shape), **{
        k: v for k, v in case.params.items() if isinstance(v, (int, float, str))})
    benchmark.pedantic(fn, rounds=5, warmup_rounds=1, iterations=1)
