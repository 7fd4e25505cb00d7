"""DeepLab-v2 (ASPP sum) and DeepLab-v3+ segmentation heads on a ResNet or the small CPU backbone."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .resnet import FrozenBatchNorm2d, ResNet, SmallBackbone, load_pretrained, make_norm


class ASPPSum(nn.Module):
    """DeepLab-v2 classifier: parallel dilated 3x3 convolutions to the classes, summed.

    As the authors' ``ASPP_Classifier_V2`` (BIT-DA/RIPU ``core/models/classifier.py:6-33``): the same parameter
    names (``conv2d_list.<i>.weight|bias``), weights drawn from N(0, 0.01), biases left at PyTorch's default init.
    """

    def __init__(self, cin: int, num_classes: int, dilations=(6, 12, 18, 24)):
        super().__init__()
        self.conv2d_list = nn.ModuleList(nn.Conv2d(cin, num_classes, 3, padding=d, dilation=d, bias=True)
                                         for d in dilations)
        for conv in self.conv2d_list:
            nn.init.normal_(conv.weight, 0.0, 0.01)

    def forward(self, x):
        return sum(branch(x) for branch in self.conv2d_list)


class SeparableConvBlock(nn.Module):
    """Depthwise 3x3 conv + norm + ReLU, then pointwise 1x1 conv + norm + ReLU (no biases)."""

    def __init__(self, cin: int, cout: int, norm: str, dilation: int = 1):
        super().__init__()
        self.depthwise_conv = nn.Conv2d(cin, cin, 3, padding=dilation, dilation=dilation, groups=cin, bias=False)
        self.depthwise_bn = make_norm(norm, cin)
        self.depthwise_activate = nn.ReLU(inplace=True)
        self.pointwise_conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.pointwise_bn = make_norm(norm, cout)
        self.pointwise_activate = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.depthwise_activate(self.depthwise_bn(self.depthwise_conv(x)))
        return self.pointwise_activate(self.pointwise_bn(self.pointwise_conv(x)))


class DeepLabV3PlusHead(nn.Module):
    """The authors' DeepLab-v3+ head (``DepthwiseSeparableASPP``, BIT-DA/RIPU ``core/models/classifier.py:36-147``),
    with their parameter names and shapes, so their checkpoints load:

    * ``parallel_branches``: a 1x1 conv branch (``.0``: conv, norm, ReLU) and one depthwise-separable 3x3 branch
      per dilation (the paper configs: 6, 12, 18), ``channels`` (512) wide;
    * ``global_branch``: image pooling, 1x1 conv, norm, ReLU, broadcast back to the feature size;
    * ``bottleneck``: a 3x3 conv over the concatenated branches, norm, ReLU;
    * ``shortcut``: the low-level (layer1) features projected to 48 channels (1x1 conv, norm, ReLU);
    * ``decoder``: two depthwise-separable 3x3 blocks over [upsampled ASPP, shortcut], ``Dropout2d(0.1)``, and
      a 1x1 conv (with bias) to the classes.

    Every norm is ``norm`` (``frozen_bn`` in the paper configs: the identity, as the authors' frozen BN at its
    initial statistics); convolutions are Kaiming-normal initialised, as theirs.
    """

    LOW_CHANNELS = 48

    def __init__(self, cin: int, low_cin: int, num_classes: int, dilations=(6, 12, 18), norm: str = "frozen_bn",
                 channels: int = 512):
        super().__init__()
        branches = [nn.Sequential(nn.Conv2d(cin, channels, 1, bias=False), make_norm(norm, channels),
                                  nn.ReLU(inplace=True))]
        branches += [SeparableConvBlock(cin, channels, norm, d) for d in dilations]
        self.parallel_branches = nn.ModuleList(branches)
        self.global_branch = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, channels, 1, bias=False),
                                           make_norm(norm, channels), nn.ReLU(inplace=True))
        self.bottleneck = nn.Sequential(nn.Conv2d(channels * (len(branches) + 1), channels, 3, padding=1, bias=False),
                                        make_norm(norm, channels), nn.ReLU(inplace=True))
        low = self.LOW_CHANNELS
        self.shortcut = nn.Sequential(nn.Conv2d(low_cin, low, 1, bias=False), make_norm(norm, low),
                                      nn.ReLU(inplace=True))
        self.decoder = nn.Sequential(SeparableConvBlock(channels + low, channels, norm),
                                     SeparableConvBlock(channels, channels, norm),
                                     nn.Dropout2d(0.1),
                                     nn.Conv2d(channels, num_classes, 1))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x, low):
        size = x.shape[-2:]
        feats = [branch(x) for branch in self.parallel_branches]
        feats.append(self.global_branch(x).expand(-1, -1, *size))  # = bilinear upsampling of a 1x1 map
        x = self.bottleneck(torch.cat(feats, dim=1))
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=True)
        return self.decoder(torch.cat([x, self.shortcut(low)], dim=1))


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
    """Model from a :class:`ripu_kernels.driver.config.ModelConfig` (``pretrained: none`` = random weights)."""
    if cfg.name not in ("deeplabv2", "deeplabv3plus"):
        raise ValueError(f"model.name must be 'deeplabv2' or 'deeplabv3plus', got {cfg.name!r}")
    if cfg.backbone == "small":
        backbone = SmallBackbone(width=cfg.width, output_stride=cfg.output_stride, norm=cfg.norm)
    else:
        backbone = ResNet(cfg.backbone, output_stride=cfg.output_stride, norm=cfg.norm)
    if cfg.pretrained and cfg.pretrained != "none":
        load_pretrained(backbone, cfg.pretrained)
    if cfg.name == "deeplabv2":
        head = ASPPSum(backbone.out_channels, num_classes, tuple(cfg.aspp_dilations))
    else:
        head = DeepLabV3PlusHead(backbone.out_channels, backbone.low_level_channels, num_classes,
                                 tuple(cfg.aspp_dilations), norm=cfg.norm, channels=cfg.head_channels)
    model = SegmentationModel(backbone, head, cfg.name)
    for m in model.modules():
        if isinstance(m, FrozenBatchNorm2d):
            m.eps = float(cfg.frozen_bn_eps)
    return model
