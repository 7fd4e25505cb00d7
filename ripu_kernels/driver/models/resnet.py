"""ResNet-50/101 with output stride 8 (dilated layer3/layer4) and frozen batch norm, plus a small CPU backbone.

Module names follow torchvision's ResNet (``conv1``, ``bn1``, ``layer1.0.conv1``, ...) so an ImageNet
state dict saved from torchvision loads directly from a local file (nothing is downloaded).
"""
from __future__ import annotations

import os

import torch
from torch import nn


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine parameters (buffers, never trained)."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.pop(prefix + "num_batches_tracked", None)  # present in torchvision BN checkpoints
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.view(1, -1, 1, 1).to(x.dtype) + shift.view(1, -1, 1, 1).to(x.dtype)


def make_norm(kind: str, channels: int) -> nn.Module:
    if kind == "frozen_bn":
        return FrozenBatchNorm2d(channels)
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    if kind == "gn":
        groups = next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    raise ValueError(f"model.norm must be 'frozen_bn', 'bn' or 'gn', got {kind!r}")


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int, dilation: int, norm: str, downsample: nn.Module | None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = make_norm(norm, planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = make_norm(norm, planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = make_norm(norm, planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


_DEPTHS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}


class ResNet(nn.Module):
    """ResNet trunk; ``output_stride`` 8 dilates layer3 (2) and layer4 (4), 16 dilates layer4 (2)."""

    def __init__(self, depth: str = "resnet101", output_stride: int = 8, norm: str = "frozen_bn"):
        super().__init__()
        if depth not in _DEPTHS:
            raise ValueError(f"model.backbone must be one of {sorted(_DEPTHS)} or 'small', got {depth!r}")
        if output_stride not in (8, 16, 32):
            raise ValueError(f"model.output_stride must be 8, 16 or 32 for a ResNet, got {output_stride}")
        strides = {8: (1, 2, 1, 1), 16: (1, 2, 2, 1), 32: (1, 2, 2, 2)}[output_stride]
        dilations = {8: (1, 1, 2, 4), 16: (1, 1, 1, 2), 32: (1, 1, 1, 1)}[output_stride]
        self.norm = norm
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = make_norm(norm, 64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        layers = _DEPTHS[depth]
        self.layer1 = self._layer(64, layers[0], strides[0], dilations[0])
        self.layer2 = self._layer(128, layers[1], strides[1], dilations[1])
        self.layer3 = self._layer(256, layers[2], strides[2], dilations[2])
        self.layer4 = self._layer(512, layers[3], strides[3], dilations[3])
        self.out_channels, self.low_level_channels = 2048, 256

    def _layer(self, planes: int, blocks: int, stride: int, dilation: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride, bias=False),
                                       make_norm(self.norm, planes * 4))
        mods = [Bottleneck(self.inplanes, planes, stride, max(1, dilation // 2) if dilation > 1 else 1, self.norm,
                           downsample)]
        self.inplanes = planes * 4
        mods += [Bottleneck(self.inplanes, planes, 1, dilation, self.norm, None) for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def forward(self, x) -> tuple[torch.Tensor, torch.Tensor]:
        """(features at 1/output_stride, low-level features at 1/4)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        low = self.layer1(x)
        x = self.layer4(self.layer3(self.layer2(low)))
        return x, low


def load_pretrained(module: nn.Module, path: str) -> None:
    """Load ImageNet weights (a torchvision-style state dict, or a dict holding one under 'state_dict')."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model.pretrained: no such file {path!r}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or not a torch file
        raise ValueError(f"model.pretrained: cannot load {path!r}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    state = {k.removeprefix("module.").removeprefix("backbone."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        missing, unexpected = module.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise ValueError(f"model.pretrained: {path!r} does not match the backbone: {exc}") from exc
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"model.pretrained: {path!r} does not match the backbone: missing {missing[:5]}"
                         f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
                         f"{'...' if len(unexpected) > 5 else ''}")


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, dilation: int, norm: str):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = make_norm(norm, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = make_norm(norm, cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), make_norm(norm, cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class SmallBackbone(nn.Module):
    """A few dilated residual blocks for the CPU demo (output stride 4 or 8), trained from scratch."""

    def __init__(self, width: int = 32, output_stride: int = 4, norm: str = "gn"):
        super().__init__()
        if output_stride not in (4, 8):
            raise ValueError(f"model.output_stride must be 4 or 8 for the small backbone, got {output_stride}")
        w = width
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, stride=2, padding=1, bias=False), make_norm(norm, w),
                                  nn.ReLU(inplace=True))
        self.layer1 = BasicBlock(w, 2 * w, 2, 1, norm)
        s = 2 if output_stride == 8 else 1
        self.layer2 = nn.Sequential(BasicBlock(2 * w, 4 * w, s, 1, norm), BasicBlock(4 * w, 4 * w, 1, 2, norm))
        self.layer3 = nn.Sequential(BasicBlock(4 * w, 4 * w, 1, 4, norm), BasicBlock(4 * w, 4 * w, 1, 2, norm))
        self.out_channels, self.low_level_channels = 4 * w, 2 * w

    def forward(self, x):
        low = self.layer1(self.stem(x))
        return self.layer3(self.layer2(low)), low
