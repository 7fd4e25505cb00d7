"""Every error rule of docs/ops.md: ValueError (TypeError for a wrong Python type) naming the op and argument."""
import pytest
import torch

import ripu_kernels as rk

X = torch.randn(1, 3, 4, 5)
S = torch.rand(1, 4, 5)
Y = torch.zeros(1, 4, 5, dtype=torch.long)
BACKENDS = ["reference", "auto"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fn", [rk.pixel_entropy, rk.region_scores, rk.pixel_scores, rk.negative_learning_loss])
@pytest.mark.parametrize("bad,match", [
    (torch.randn(3, 4, 5), r"logits must be a 4-D tensor \(B, C, H, W\), got 3-D"),
    (torch.randn(1, 1, 3, 4, 5), r"logits must be a 4-D tensor .* got 5-D"),
    (torch.ones(1, 3, 4, 5, dtype=torch.long), r"logits must have a floating-point dtype, got torch.int64"),
    (torch.ones(1, 3, 4, 5, dtype=torch.bool), r"logits must have a floating-point dtype"),
    (torch.randn(1, 0, 4, 5), r"logits must have at least one class \(C >= 1\), got C = 0"),
])
def test_bad_logits(fn, bad, match, backend):
    with pytest.raises(ValueError, match=rf"ripu::{fn.__name__}: {match}"):
        fn(bad, backend=backend)


def test_logits_must_be_a_tensor():
    with pytest.raises(TypeError, match=r"ripu::pixel_entropy: logits must be a torch.Tensor, got list"):
        rk.pixel_entropy([[1.0]])


@pytest.mark.parametrize("fn", [rk.region_scores, rk.pixel_scores])
def test_k_and_size(fn):
    name = fn.__name__
    with pytest.raises(ValueError, match=rf"ripu::{name}: k must be >= 0, got -1"):
        fn(X, k=-1)
    with pytest.raises(TypeError, match=rf"ripu::{name}: k must be an int, got float"):
        fn(X, k=1.5)
    with pytest.raises(ValueError, match=rf"ripu::{name}: size must be None or a pair of ints"):
        fn(X, size=(4,))
    with pytest.raises(ValueError, match=rf"ripu::{name}: size must be positive, got \(0, 3\)"):
        fn(X, size=(0, 3))
    with pytest.raises(TypeError, match=rf"ripu::{name}: align_corners must be a bool"):
        fn(X, align_corners="yes")


def test_select_regions_errors():
    op = "ripu::select_regions"
    with pytest.raises(ValueError, match=rf"{op}: score must be a 3-D tensor \(B, H, W\), got 4-D"):
        rk.select_regions(X, 1)
    with pytest.raises(ValueError, match=rf"{op}: score must have a floating-point dtype"):
        rk.select_regions(torch.ones(1, 2, 2, dtype=torch.int32), 1)
    with pytest.raises(ValueError, match=rf"{op}: n must be >= 0, got -1"):
        rk.select_regions(S, -1)
    with pytest.raises(ValueError, match=rf"{op}: n must be >= 0, got -2"):
        rk.select_regions(S, torch.tensor([-2]))
    with pytest.raises(ValueError, match=rf"{op}: n must have shape \(B,\) = \(1,\), got \(2,\)"):
        rk.select_regions(S, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=rf"{op}: n must be an int or an integer tensor"):
        rk.select_regions(S, torch.tensor([1.0]))
    with pytest.raises(TypeError, match=rf"{op}: n must be an int, got float"):
        rk.select_regions(S, 2.0)
    with pytest.raises(ValueError, match=rf"{op}: radius must be >= 0, got -1"):
        rk.select_regions(S, 1, radius=-1)
    with pytest.raises(ValueError, match=rf"{op}: mask_radius must be >= 0, got -3"):
        rk.select_regions(S, 1, mask_radius=-3)
    with pytest.raises(ValueError, match=rf"{op}: active must be None or a bool tensor, got torch.float32"):
        rk.select_regions(S, 1, active=torch.zeros(1, 4, 5))
    with pytest.raises(ValueError, match=rf"{op}: active must have the shape of score \(1, 4, 5\), got \(1, 4, 4\)"):
        rk.select_regions(S, 1, active=torch.zeros(1, 4, 4, dtype=torch.bool))


def test_local_consistency_loss_errors():
    op = "ripu::local_consistency_loss"
    with pytest.raises(ValueError, match=rf"{op}: labels must have an integer dtype, got torch.float32"):
        rk.local_consistency_loss(X, Y.float())
    with pytest.raises(ValueError, match=rf"{op}: labels must have shape \(B, H, W\) = \(1, 4, 5\), got \(1, 4, 4\)"):
        rk.local_consistency_loss(X, Y[:, :, :4])
    with pytest.raises(ValueError, match=rf"{op}: kind must be 'l1' or 'kl', got 'l2'"):
        rk.local_consistency_loss(X, Y, kind="l2")
    with pytest.raises(ValueError, match=rf"{op}: neighbors must be 4 or 8, got 6"):
        rk.local_consistency_loss(X, Y, neighbors=6)
    with pytest.raises(ValueError, match=rf"{op}: logits must be a 4-D tensor"):
        rk.local_consistency_loss(X[0], Y)
    with pytest.raises(TypeError, match=rf"{op}: labels must be a torch.Tensor"):
        rk.local_consistency_loss(X, None)


def test_negative_learning_loss_threshold():
    with pytest.raises(ValueError, match=r"ripu::negative_learning_loss: threshold must be a finite number, got nan"):
        rk.negative_learning_loss(X, float("nan"))


@pytest.mark.parametrize("call", [
    lambda b: rk.pixel_entropy(X, backend=b),
    lambda b: rk.region_scores(X, backend=b),
    lambda b: rk.select_regions(S, 1, backend=b),
    lambda b: rk.local_consistency_loss(X, Y, backend=b),
])
def test_unknown_backend(call):
    with pytest.raises(ValueError, match=r"ripu::\w+: backend must be one of 'auto', 'reference', 'cpu', 'cuda', "
                                         r"'triton'; got 'gpu'"):
        call("gpu")


def test_unavailable_backend_names_backend_and_reason():
    with pytest.raises(ValueError, match=r"ripu::region_scores: backend 'cuda' is not available for a cpu tensor: "):
        rk.region_scores(X, backend="cuda")
