"""Models: ResNet-50/101 at output stride 8 with frozen BN, DeepLab-v2 / v3+ heads, local pretrained weights."""
from __future__ import annotations

import pytest
import torch

from ripu_kernels.driver.config import ModelConfig
from ripu_kernels.driver.models.deeplab import build_model
from ripu_kernels.driver.models.resnet import FrozenBatchNorm2d, ResNet, load_pretrained


def test_resnet_output_stride_8_and_frozen_bn():
    net = ResNet("resnet50", output_stride=8).eval()
    feats, low = net(torch.randn(1, 3, 64, 64))
    assert feats.shape == (1, 2048, 8, 8) and low.shape == (1, 256, 16, 16)
    assert any(isinstance(m, FrozenBatchNorm2d) for m in net.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    n_params = sum(p.numel() for p in net.parameters())
    assert 23_000_000 < n_params < 24_000_000  # the torchvision ResNet-50 trunk without BN parameters / fc
    assert sum(isinstance(m, torch.nn.Conv2d) for m in ResNet("resnet101").modules()) == 104


@pytest.mark.parametrize("name", ["deeplabv2", "deeplabv3plus"])
def test_heads(name):
    cfg = ModelConfig(name=name, backbone="small", width=8, output_stride=8, norm="gn",
                      aspp_dilations=[1, 2, 3, 4] if name == "deeplabv2" else [1, 2, 3], head_channels=16)
    model = build_model(cfg, 5)
    out = model(torch.randn(2, 3, 32, 48))
    assert out.shape == (2, 5, 4 if name == "deeplabv2" else 8, 6 if name == "deeplabv2" else 12)
    backbone, head = model.param_groups()
    assert backbone and head


def test_deeplabv2_resnet_dilations():
    model = build_model(ModelConfig(backbone="resnet50"), 19)
    assert [b.dilation for b in model.head.conv2d_list] == [(6, 6), (12, 12), (18, 18), (24, 24)]
    assert model.backbone.layer4[1].conv2.dilation == (4, 4) and model.backbone.layer3[1].conv2.dilation == (2, 2)


def test_pretrained_from_local_file(tmp_path):
    src = ResNet("resnet50")
    with torch.no_grad():
        for p in src.parameters():
            p.normal_()
    state = {k: v for k, v in src.state_dict().items()}
    state["fc.weight"] = torch.zeros(1000, 2048)  # classifier of an ImageNet checkpoint: skipped
    state["bn1.num_batches_tracked"] = torch.tensor(0)
    torch.save(state, tmp_path / "r50.pth")
    dst = ResNet("resnet50")
    load_pretrained(dst, str(tmp_path / "r50.pth"))
    assert torch.equal(dst.layer3[2].conv2.weight, src.layer3[2].conv2.weight)
    cfg = ModelConfig(backbone="resnet50", pretrained=str(tmp_path / "r50.pth"))
    assert torch.equal(build_model(cfg, 19).backbone.conv1.weight, src.conv1.weight)
    with pytest.raises(FileNotFoundError, match="model.pretrained: no such file"):
        load_pretrained(dst, str(tmp_path / "missing.pth"))
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="does not match the backbone"):
        load_pretrained(dst, str(tmp_path / "bad.pth"))
    (tmp_path / "corrupt.pth").write_bytes(b"junk")
    with pytest.raises(ValueError, match="cannot load"):
        load_pretrained(dst, str(tmp_path / "corrupt.pth"))


def test_bad_model_config():
    with pytest.raises(ValueError, match="model.name"):
        build_model(ModelConfig(name="unet"), 3)
    with pytest.raises(ValueError, match="model.backbone"):
        build_model(ModelConfig(backbone="vgg"), 3)
    with pytest.raises(ValueError, match="model.norm"):
        build_model(ModelConfig(backbone="small", norm="ln"), 3)
