"""The Triton backend against the reference: scores forward, losses forward and backward, registration.

Without CUDA the kernels run under Triton's interpreter on CPU tensors; TRITON_INTERPRET=1 must be set before
the kernel modules are imported, which this module does at import time (tests/conftest.py may do it too).
On a GPU the same tests run on CUDA tensors with compiled kernels, plus a torch.compile test.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import ripu_kernels as rk  # noqa: E402
from ripu_kernels import triton as tbackend  # noqa: E402

from ._tol import assert_close_verbose, tol  # noqa: E402

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
_WHY = tbackend.unavailable_reason(DEVICE)
pytestmark = [
    pytest.mark.skipif(_WHY is not None, reason=f"Triton backend unavailable: {_WHY}"),
    # The interpreter evaluates masked-out lanes too (e.g. 0 * -inf); numpy warns about them.
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),
]

# (atol, rtol) per compute dtype from tests/ops/_tol.py; half/bfloat16 logits are computed in float32 by both backends.
TOL = {dt: (tol(dt)["atol"], tol(dt)["rtol"]) for dt in (torch.float32, torch.float64)}


def _ct(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def assert_close(actual, expected, atol, rtol, what, where=None):
    """tests/ops/_tol.py's verbose allclose (NaN patterns equal); with ``where``, values are compared only there."""
    if where is not None:
        nan_a, nan_e = torch.isnan(actual).cpu(), torch.isnan(expected).cpu()
        assert torch.equal(nan_a, nan_e), (f"{what}: NaN pattern differs at {int((nan_a != nan_e).sum())} places, "
                                           f"first {(nan_a != nan_e).nonzero()[:5].tolist()}")
        where = where.to(actual.device)
        actual, expected = actual[where], expected[where]
    assert_close_verbose(actual, expected, atol=atol, rtol=rtol, name=what)


def _layout(x, layout):
    if layout == "channels_last":
        return x.contiguous(memory_format=torch.channels_last)
    if layout == "strided":  # a non-contiguous view: every other column of a wider tensor, classes reversed
        wide = torch.zeros((x.shape[0], x.shape[1], x.shape[2], 2 * x.shape[3]), dtype=x.dtype, device=x.device)
        wide[..., ::2] = x.flip(1)
        return wide[..., ::2].flip(1)
    return x.contiguous()


def _logits(shape, dtype=torch.float32, layout="contiguous", seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(dtype).to(DEVICE)
    return _layout(x, layout)


def _near_tie_windows(x, k, size, align_corners):
    """Pixels whose window holds a pixel with top-2 logits closer than 1e-4 (impurity may then differ)."""
    r = x.to(_ct(x.dtype))
    if size is not None and r.shape[0] > 0:
        r = F.interpolate(r, size=size, mode="bilinear", align_corners=align_corners)
    if r.shape[1] < 2 or r.shape[0] == 0:
        return torch.zeros((r.shape[0], r.shape[2], r.shape[3]), dtype=torch.bool, device=r.device)
    top = r.topk(2, dim=1).values
    tie = ((top[:, 0] - top[:, 1]) < 1e-4).to(torch.float32)[:, None]
    return F.max_pool2d(tie, 2 * k + 1, stride=1, padding=k)[:, 0] > 0


def _check_scores(x, k, size, align_corners, op):
    got = getattr(rk, op)(x, k=k, size=size, align_corners=align_corners, backend="triton")
    ref = getattr(rk, op)(x, k=k, size=size, align_corners=align_corners, backend="reference")
    atol, rtol = TOL[_ct(x.dtype)]
    ok = ~_near_tie_windows(x, k, size, align_corners)
    for name in ("impurity", "uncertainty", "score"):
        where = None if name == "uncertainty" and op == "region_scores" else ok
        assert_close(getattr(got, name), getattr(ref, name), atol, rtol, f"{op}.{name}", where)


# --------------------------------------------------------------------------------------------- availability
def test_unavailable_reason_on_cpu_without_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    why = tbackend.unavailable_reason(torch.device("cpu"))
    assert why is not None and "TRITON_INTERPRET=1" in why
    with pytest.raises(ValueError, match="backend 'triton' is not available for a cpu tensor"):
        rk.pixel_entropy(torch.zeros(1, 2, 3, 3), backend="triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert tbackend.unavailable_reason(torch.device("cpu")) is None


def test_package_imports_without_triton():
    code = (
        "import sys; sys.modules['triton'] = None\n"  # makes `import triton` fail
        "import ripu_kernels as rk, ripu_kernels.triton as t\n"
        "assert t.unavailable_reason('cpu') == \"the 'triton' package is not installed\", t.unavailable_reason('cpu')\n"
        "assert 'triton' not in rk.available_backends('cpu')\n"
        "print('ok')\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), *sys.path]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


@pytest.mark.parametrize("triton_version,torch_version,missing", [
    ("3.2.0", "2.13.0", "triton >= 3.3"),
    ("3.3.1", "2.5.1+cu124", "torch >= 2.6"),
    ("3.0.0", "2.4.0", "torch >= 2.6"),
    (None, "2.13.0", "'triton' package is not installed"),
])
def test_version_problem_names_what_is_missing(triton_version, torch_version, missing):
    why = tbackend.version_problem(triton_version, torch_version)
    assert why is not None and missing in why
    if triton_version is not None:
        assert (triton_version in why) or (torch_version in why)


@pytest.mark.parametrize("triton_version,torch_version", [
    ("3.3.0", "2.6.0"), ("3.4.0.dev20250601", "2.7.0a0+git1234"), ("3.9.0", "2.13.0+cpu"), ("", "2.6.0")])
def test_version_problem_accepts_supported_versions(triton_version, torch_version):
    assert tbackend.version_problem(triton_version, torch_version) is None  # "": version unknown, let it run


def test_old_triton_is_not_offered():
    """An installed triton older than 3.3 (read from its metadata, without importing it): the backend is not
    available, and asking for it explicitly says why."""
    code = (
        "import importlib.metadata as md\n"
        "real = md.version\n"
        "md.version = lambda name: '3.2.0' if 'triton' in name else real(name)\n"
        "import torch, ripu_kernels as rk\n"
        "assert 'triton' not in rk.available_backends('cpu')\n"
        "try:\n"
        "    rk.pixel_entropy(torch.zeros(1, 2, 3, 3), backend='triton')\n"
        "except ValueError as exc:\n"
        "    print(exc)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), *sys.path]), TRITON_INTERPRET="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "triton >= 3.3" in out.stdout and "found triton 3.2.0" in out.stdout, out.stdout


def test_import_is_lazy():
    code = ("import sys, ripu_kernels as rk\n"
            "rk.available_backends('cpu'); rk.available_backends('cuda')\n"
            "print('triton' in sys.modules)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), *sys.path]), TRITON_INTERPRET="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------------------------------ scores forward
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_pixel_entropy(dtype, layout):
    x = _logits((2, 5, 13, 17), dtype, layout)
    got = rk.pixel_entropy(x, backend="triton")
    ref = rk.pixel_entropy(x, backend="reference")
    assert_close(got, ref, *TOL[_ct(dtype)], "pixel_entropy")


@pytest.mark.parametrize("op", ["region_scores", "pixel_scores"])
@pytest.mark.parametrize("shape,k,size,align_corners,dtype,layout", [
    ((1, 3, 13, 17), 1, None, True, torch.float32, "contiguous"),
    ((2, 5, 13, 17), 0, None, True, torch.float32, "channels_last"),
    ((2, 5, 13, 17), 3, None, True, torch.float32, "strided"),
    ((1, 4, 9, 11), 1, None, True, torch.float64, "contiguous"),
    ((1, 4, 9, 11), 2, None, True, torch.float16, "channels_last"),
    ((1, 4, 7, 9), 1, (13, 17), True, torch.float32, "contiguous"),
    ((1, 4, 7, 9), 1, (13, 17), False, torch.float32, "channels_last"),
    ((1, 4, 16, 20), 2, (9, 7), True, torch.float32, "strided"),
    ((1, 4, 16, 20), 1, (9, 7), False, torch.float64, "contiguous"),
    ((1, 4, 5, 6), 1, (5, 6), False, torch.bfloat16, "contiguous"),
    ((1, 3, 40, 70), 2, None, True, torch.float32, "contiguous"),   # two row bands and two column tiles
    ((1, 3, 6, 40), 20, None, True, torch.float32, "contiguous"),   # window wider than the image
], ids=lambda v: str(v).replace(" ", ""))
def test_scores(op, shape, k, size, align_corners, dtype, layout):
    _check_scores(_logits(shape, dtype, layout), k, size, align_corners, op)


@pytest.mark.parametrize("op", ["region_scores", "pixel_scores"])
def test_scores_one_class_and_empty(op):
    x = _logits((2, 1, 5, 7))
    got = getattr(rk, op)(x, k=1, backend="triton")
    assert torch.equal(got.impurity, torch.zeros_like(got.impurity))
    _check_scores(x, 1, None, True, op)
    empty = _logits((0, 4, 5, 7))
    got = getattr(rk, op)(empty, k=2, size=(3, 4), backend="triton")
    assert all(t.shape == (0, 3, 4) and t.dtype == torch.float32 for t in got)
    assert rk.pixel_entropy(empty, backend="triton").shape == (0, 5, 7)


@pytest.mark.parametrize("k", [0, 1, 2])
@pytest.mark.parametrize("size", [None, (11, 8)])
def test_scores_nonfinite(k, size):
    x = _logits((2, 4, 9, 7))
    x[0, 1, 2, 3] = float("nan")
    x[0, 0, 7, 6] = float("inf")
    x[1, 3, 0, 0] = float("-inf")
    x[1, :, 5, 2] = float("-inf")
    for op in ("region_scores", "pixel_scores"):
        _check_scores(x, k, size, True, op)
    assert_close(rk.pixel_entropy(x, backend="triton"), rk.pixel_entropy(x, backend="reference"),
                 *TOL[torch.float32], "pixel_entropy")


def test_scores_ties_lowest_class():
    """Exactly tied top logits: the argmax is the lowest class index, as in the reference."""
    x = torch.zeros((1, 3, 6, 6), device=DEVICE)
    x[0, 2, :, :3] = 1.0
    x[0, 0, :, 3:] = 1.0
    x[0, 1, :, 3:] = 1.0  # classes 0 and 1 tie on the right half
    for op in ("region_scores", "pixel_scores"):
        got = getattr(rk, op)(x, k=1, backend="triton")
        ref = getattr(rk, op)(x, k=1, backend="reference")
        assert_close(got.impurity, ref.impurity, *TOL[torch.float32], f"{op}.impurity")


def test_scores_k_independent_tiles():
    """Results do not depend on how the window kernel tiles the image (k=1 vs k=9 windows cover one tile)."""
    x = _logits((1, 3, 20, 90), seed=3)
    for k in (1, 9):
        _check_scores(x, k, None, True, "region_scores")


# ------------------------------------------------------------------------------------------------ losses
def _labels(b, h, w, classes=3, seed=1, ignore=None):
    g = torch.Generator().manual_seed(seed)
    lab = torch.randint(0, classes, (b, h, w), generator=g)
    if ignore is not None:
        lab[:, 0, : w // 2] = ignore
    return lab.to(DEVICE)


def _loss_pair(fn, x, *args):
    xa = x.detach().clone().requires_grad_(True)
    xb = x.detach().clone().requires_grad_(True)
    la = fn(xa, *args, backend="triton")
    lb = fn(xb, *args, backend="reference")
    la.backward()
    lb.backward()
    return la, lb, xa.grad, xb.grad


def _grad_tol(dtype, ref_grad):
    atol, rtol = TOL[_ct(dtype)]
    if ref_grad.numel() == 0:
        return atol, rtol
    if dtype in (torch.float16, torch.bfloat16):  # the gradient is rounded to the logits' dtype
        eps = torch.finfo(dtype).eps
        return eps * float(ref_grad.abs().max()) + atol, eps
    return atol * max(float(ref_grad.abs().max()), 1e-3), rtol


@pytest.mark.parametrize("kind", ["l1", "kl"])
@pytest.mark.parametrize("neighbors", [8, 4])
@pytest.mark.parametrize("dtype,layout,shape", [
    (torch.float32, "contiguous", (2, 5, 13, 17)),
    (torch.float64, "channels_last", (1, 4, 9, 11)),
    (torch.float16, "strided", (1, 4, 7, 9)),
], ids=["f32-contiguous", "f64-channels_last", "f16-strided"])
def test_local_consistency_loss(kind, neighbors, dtype, layout, shape):
    x = _logits(shape, dtype, layout)
    lab = _labels(shape[0], shape[2], shape[3], ignore=255)
    la, lb, ga, gb = _loss_pair(rk.local_consistency_loss, x, lab, kind, neighbors, 255)
    atol, rtol = TOL[_ct(dtype)]
    assert_close(la, lb, atol, rtol, "loss")
    assert ga.dtype == dtype and ga.shape == x.shape
    assert_close(ga, gb, *_grad_tol(dtype, gb), "grad")


@pytest.mark.parametrize("case", ["all_ignored", "uniform_labels", "empty_batch", "one_row", "int32_labels"])
def test_local_consistency_loss_edge_cases(case):
    shape = {"empty_batch": (0, 3, 5, 6), "one_row": (2, 4, 1, 7)}.get(case, (1, 3, 5, 6))
    x = _logits(shape)
    lab = _labels(shape[0], shape[2], shape[3])
    if case == "all_ignored":
        lab = torch.full_like(lab, 7)
        args = (lab, "l1", 8, 7)
    elif case == "uniform_labels":  # Laplacian with zero padding: only the image border is a boundary
        args = (torch.ones_like(lab), "kl", 4, 255)
    elif case == "int32_labels":
        args = (lab.to(torch.int32), "kl", 8, 0)
    else:
        args = (lab, "l1", 8, 255)
    la, lb, ga, gb = _loss_pair(rk.local_consistency_loss, x, *args)
    assert_close(la, lb, *TOL[torch.float32], "loss")
    assert_close(ga, gb, *_grad_tol(torch.float32, gb), "grad")
    if case == "all_ignored":
        assert la.item() == 0.0 and torch.count_nonzero(ga) == 0


@pytest.mark.parametrize("threshold", [0.05, 0.3, 1e-12])
@pytest.mark.parametrize("dtype,layout,shape", [
    (torch.float32, "contiguous", (2, 5, 13, 17)),
    (torch.float32, "channels_last", (1, 19, 6, 7)),
    (torch.float64, "strided", (1, 4, 9, 11)),
    (torch.bfloat16, "contiguous", (1, 4, 7, 9)),
    (torch.float32, "contiguous", (0, 4, 7, 9)),
], ids=["f32-contiguous", "f32-channels_last-19", "f64-strided", "bf16", "empty"])
def test_negative_learning_loss(threshold, dtype, layout, shape):
    x = _logits(shape, dtype, layout)
    la, lb, ga, gb = _loss_pair(rk.negative_learning_loss, x, threshold)
    atol, rtol = TOL[_ct(dtype)]
    assert_close(la, lb, atol, rtol, "loss")
    assert ga.dtype == dtype
    assert_close(ga, gb, *_grad_tol(dtype, gb), "grad")
    if threshold == 1e-12 and shape[0]:
        assert la.item() == 0.0 and torch.count_nonzero(ga) == 0


def test_losses_gradcheck_float64():
    x = _logits((1, 3, 3, 4), torch.float64, seed=5).requires_grad_(True)
    lab = _labels(1, 3, 4, seed=2)
    for kind, neighbors in (("kl", 8), ("l1", 4)):
        assert torch.autograd.gradcheck(
            lambda t: rk.local_consistency_loss(t, lab, kind, neighbors, 255, backend="triton"), (x,),
            eps=1e-6, atol=1e-6, fast_mode=True)
    assert torch.autograd.gradcheck(
        lambda t: rk.negative_learning_loss(t, 0.2, backend="triton"), (x,), eps=1e-6, atol=1e-6, fast_mode=True)


# ------------------------------------------------------------------------------------------- select regions
def test_select_regions_delegates():
    score = rk.region_scores(_logits((2, 4, 9, 11)), k=1, backend="reference").score
    n = torch.tensor([3, 5], device=DEVICE)
    got = rk.select_regions(score, n, radius=1, backend="triton")
    ref = rk.select_regions(score, n, radius=1, backend="reference")
    for a, b in zip(got, ref):
        assert torch.equal(a, b)


# ------------------------------------------------------------------------------------------- registration
def _opcheck_cases():
    import ripu_kernels.triton._losses  # noqa: F401  (registers the ops)
    import ripu_kernels.triton._scores  # noqa: F401

    x = _logits((2, 4, 5, 6))
    xg = x.clone().requires_grad_(True)
    lab = _labels(2, 5, 6)
    count = torch.tensor(7, device=DEVICE)
    grad = torch.tensor(1.5, device=DEVICE)
    ops = torch.ops.ripu_triton
    _, _, p, bnd = ops.local_consistency_loss(x, lab, "l1", 4, 255)
    return [
        ("pixel_entropy", ops.pixel_entropy, (x,)),
        ("region_scores", ops.region_scores, (x, 1, None, True)),
        ("pixel_scores_resized", ops.pixel_scores, (x, 2, [7, 8], False)),
        ("negative_learning_loss", ops.negative_learning_loss, (xg, 0.2)),
        ("local_consistency_loss", ops.local_consistency_loss, (xg, lab, "kl", 8, 255)),
        ("nl_backward", ops._negative_learning_loss_backward, (grad, x, count, 0.2)),
        ("lcr_backward", ops._local_consistency_loss_backward, (grad, p, bnd, count, "l1", 4, torch.float32, False)),
    ]


_EAGER_UTILS = ("test_schema", "test_autograd_registration", "test_faketensor")


@pytest.mark.parametrize("case", range(7))
def test_opcheck(case):
    name, op, args = _opcheck_cases()[case]
    torch.library.opcheck(op, args, test_utils=_EAGER_UTILS)


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="AOT dispatch compiles the ops; under the Triton interpreter (CPU) they run eagerly only")
@pytest.mark.parametrize("case", range(7))
def test_opcheck_aot_dispatch(case):
    name, op, args = _opcheck_cases()[case]
    torch.library.opcheck(op, args, test_utils=("test_aot_dispatch_static", "test_aot_dispatch_dynamic"))


def test_compile_under_interpreter_raises_clearly():
    if torch.cuda.is_available():
        pytest.skip("only the interpreter refuses compilation")
    x = _logits((1, 3, 4, 5))
    rk.pixel_entropy(x, backend="triton")  # eager first: the dispatcher imports the backend outside the trace
    fn = torch.compile(lambda t: rk.pixel_entropy(t, backend="triton"), backend="aot_eager", fullgraph=True)
    with pytest.raises(Exception, match="needs CUDA tensors"):
        fn(x)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch.compile over Triton kernels needs a CUDA device")
def test_torch_compile_fullgraph():
    x = _logits((2, 5, 33, 47))
    lab = _labels(2, 33, 47, ignore=255)

    def step(t):
        s = rk.region_scores(t, k=2, size=(40, 50), backend="triton")
        loss = rk.local_consistency_loss(t, lab, "kl", 8, 255, backend="triton") \
            + rk.negative_learning_loss(t, 0.05, backend="triton")
        return s.score, loss

    xa = x.clone().requires_grad_(True)
    xb = x.clone().requires_grad_(True)
    sb, lb = step(xb)  # eager first: the dispatcher imports the backend modules outside the trace
    lb.backward()
    compiled = torch.compile(step, fullgraph=True)
    sa, la = compiled(xa)
    la.backward()
    assert_close(sa, sb, *TOL[torch.float32], "score")
    assert_close(la, lb, *TOL[torch.float32], "loss")
    assert_close(xa.grad, xb.grad, 1e-7, 1e-4, "grad")


def test_kernels_compile_for_sm90_without_spills():
    """The interpreter cannot catch lowering errors: compile every kernel for an H100 (sm_90) with Triton's own
    ptxas, no GPU needed, in the launchers' tile configurations, and require no local-memory spills."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([os.getcwd(), *sys.path])
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    out = subprocess.run([sys.executable, "-m", "ripu_kernels.triton._compile_check", "--arch", "90"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert "0 failure(s)" in out.stdout
