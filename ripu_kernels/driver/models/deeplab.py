"""DeepLab-v2 (ASPP sum) and DeepLab-v3+ segmentation heads on a ResNet or the small CPU backbone."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .resnet import ResNet, SmallBackbone, load_pretrained, make_norm


class ASPPSum(nn.Module):
    """DeepLab-v2 classifier: parallel dilated 3x3 convolutions to the classes, summed."""

    def __init__(self, cin: int, num_classes: int, dilations=(6, 12, 18, 24)):
        super().__init__()
        self.branches = nn.ModuleList(nn.Conv2d(cin, num_classes, 3, padding=d, dilation=d, bias=True)
                                      for d in dilations)
        for conv in self.branches:
            nn.init.normal_(conv.weight, 0.0, 0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, x):
        return sum(branch(x) for branch in self.branches)


def _conv_norm_relu(cin, cout, k, norm, dilation=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=dilation * (k // 2), dilation=dilation, bias=False),
                         make_norm(norm, cout), nn.ReLU(inplace=True))


class DeepLabV3PlusHead(nn.Module):
    """ASPP (1x1, dilated 3x3s, image pooling) + decoder with low-level features, as in DeepLab-v3+."""

    def __init__(self, cin: int, low_cin: int, num_classes: int, dilations=(12, 24, 36), norm: str = "bn",
                 channels: int = 256, low_channels: int = 48):
        super().__init__()
        self.aspp = nn.ModuleList([_conv_norm_relu(cin, channels, 1, norm)] +
                                  [_conv_norm_relu(cin, channels, 3, norm, d) for d in dilations])
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, channels, 1, bias=False), nn.ReLU(inplace=True))
        self.project = _conv_norm_relu(channels * (len(dilations) + 2), channels, 1, norm)
        self.low = _conv_norm_relu(low_cin, low_channels, 1, norm)
        self.decoder = nn.Sequential(_conv_norm_relu(channels + low_channels, channels, 3, norm),
                                     _conv_norm_relu(channels, channels, 3, norm))
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x, low):
        size = x.shape[-2:]
        feats = [branch(x) for branch in self.aspp]
        feats.append(self.pool(x).expand(-1, -1, *size))
        x = self.project(torch.cat(feats, dim=1))
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=True)
        x = self.decoder(torch.cat([x, self.low(low)], dim=1))
        return self.classifier(x)


class SegmentationModel(nn.Module):
    """Backbone + head; ``forward`` returns logits at the feature resolution (upsample for the labels)."""

    def __init__(self, backbone: nn.Module, head: nn.Module, kind: str):
        super().__init__()
        self.backbone, self.head, self.kind = backbone, head, kind

    def forward(self, x):
        feats, low = self.backbone(x)
        return self.head(feats) if self.kind == "deeplabv2" else self.head(feats, low)

    def param_groups(self):
        """(backbone parameters, head parameters): the head trains at ``head_lr_mult`` x the base LR."""
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        head = [p for p in self.head.parameters() if p.requires_grad]
        return backbone, head


def upsample(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of logits to the label size (align_corners=True, as the authors' code)."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=True)


def build_model(cfg, num_classes: int) -> SegmentationModel:
    """Model from a :class:`ripu_kernels.driver.config.ModelConfig`."""
    if cfg.name not in ("deeplabv2", "deeplabv3plus"):
        raise ValueError(f"model.name must be 'deeplabv2' or 'deeplabv3plus', got {cfg.name!r}")
    if cfg.backbone == "small":
        backbone = SmallBackbone(width=cfg.width, output_stride=cfg.output_stride, norm=cfg.norm)
    else:
        backbone = ResNet(cfg.backbone, output_stride=cfg.output_stride, norm=cfg.norm)
    if cfg.pretrained:
        load_pretrained(backbone, cfg.pretrained)
    if cfg.name == "deeplabv2":
        head = ASPPSum(backbone.out_channels, num_classes, tuple(cfg.aspp_dilations))
    else:
        head_norm = "bn" if cfg.norm == "frozen_bn" else cfg.norm
        head = DeepLabV3PlusHead(backbone.out_channels, backbone.low_level_channels, num_classes,
                                 tuple(cfg.aspp_dilations), norm=head_norm,
                                 channels=cfg.head_channels, low_channels=max(8, cfg.head_channels // 5))
    return SegmentationModel(backbone, head, cfg.name)
