"""Checkpoints in the authors' format: ``{"feature_extractor": ..., "classifier": ..., ...}``.

BIT-DA/RIPU's ``train.py:176-181`` saves ``{"iteration", "feature_extractor", "classifier", "optimizer_fea",
"optimizer_cls"}``. ``feature_extractor`` is the state dict of their ``resnet_feature_extractor``, whose ResNet
sits in a torchvision ``IntermediateLayerGetter`` called ``backbone`` (``core/models/feature_extractor.py:13-20``):
keys ``backbone.conv1.weight``, ``backbone.layer4.2.bn3.running_var``, ... (frozen BN keeps ``weight``, ``bias``,
``running_mean``, ``running_var`` as buffers, ``core/models/layers.py:13-16``). ``classifier`` is their
``ASPP_Classifier_V2`` (``conv2d_list.<i>.weight|bias``) or ``DepthwiseSeparableASPP`` (``parallel_branches``,
``global_branch``, ``bottleneck``, ``shortcut``, ``decoder``). Their ``test.py:26-33,90-93`` strips a ``module.``
prefix (DataParallel / DistributedDataParallel) when every key has it; so does this module.

Our :class:`~ripu_kernels.driver.models.deeplab.SegmentationModel` uses the same names under ``backbone.`` and
``head.``, so the conversion is a renaming: ``feature_extractor[k]`` -> ``model[k]`` and ``classifier[k]`` ->
``model["head." + k]``. The files are read with ``torch.load(weights_only=True)`` like every checkpoint here.
"""
from __future__ import annotations

import dataclasses
import os

import torch

from ..errors import CheckpointError
from .checkpoint import load_file

KEYS = ("feature_extractor", "classifier")


def is_authors_checkpoint(obj) -> bool:
    return isinstance(obj, dict) and all(isinstance(obj.get(k), dict) for k in KEYS)


def strip_module_prefix(state: dict) -> dict:
    """``state`` without a ``module.`` prefix when every key has one (as the authors' test.py)."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def head_kind(classifier: dict, where: str) -> tuple[str, int]:
    """(``deeplabv2`` | ``deeplabv3plus``, number of classes) of an authors' classifier state dict."""
    if any(k.startswith("conv2d_list.") for k in classifier):
        weight = classifier.get("conv2d_list.0.weight")
        return "deeplabv2", int(weight.shape[0]) if torch.is_tensor(weight) else -1
    if any(k.startswith("parallel_branches.") for k in classifier):
        weight = classifier.get("decoder.3.weight")
        return "deeplabv3plus", int(weight.shape[0]) if torch.is_tensor(weight) else -1
    raise CheckpointError(f"{where}: its 'classifier' is neither the authors' DeepLab-v2 (conv2d_list.*) nor their "
                          f"DeepLab-v3+ (parallel_branches.*); first keys: {sorted(classifier)[:4]}")


def to_model_state(ckpt: dict, where: str) -> dict:
    """Our model's state dict from an authors' checkpoint dict."""
    features = strip_module_prefix(ckpt["feature_extractor"])
    classifier = strip_module_prefix(ckpt["classifier"])
    bad = [k for k in features if not k.startswith("backbone.")]
    if bad:
        raise CheckpointError(f"{where}: 'feature_extractor' keys should start with 'backbone.' (the authors' "
                              f"resnet_feature_extractor), e.g. {bad[0]!r}")
    state = {k: v for k, v in features.items() if not k.endswith("num_batches_tracked")}
    state.update({"head." + k: v for k, v in classifier.items() if not k.endswith("num_batches_tracked")})
    return state


def from_model_state(model_state: dict) -> dict:
    """The authors' ``{"feature_extractor", "classifier"}`` layout of our model's state dict."""
    return {"feature_extractor": {k: v for k, v in model_state.items() if k.startswith("backbone.")},
            "classifier": {k[len("head."):]: v for k, v in model_state.items() if k.startswith("head.")}}


def load_weights(model: torch.nn.Module, state: dict, where: str) -> None:
    """``model.load_state_dict(state)`` (strict); a mismatch is a :class:`CheckpointError` naming ``where``."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise CheckpointError(f"{where}: the weights do not fit the model of the config: "
                              + " ".join(lines[:3])[:600]) from None


def model_for(cfg, ckpt: dict, where: str):
    """(model with the checkpoint's weights, in eval mode) for an authors' checkpoint and our config ``cfg``.

    The config says which network it is; the checkpoint must agree (head kind, number of classes).
    """
    from ..models import build_model

    kind, classes = head_kind(strip_module_prefix(ckpt["classifier"]), where)
    if kind != cfg.model.name:
        raise CheckpointError(f"{where} holds the authors' {kind} head, but the config has model.name="
                              f"{cfg.model.name!r}; use a {kind} config")
    if classes != cfg.data.num_classes:
        raise CheckpointError(f"{where} predicts {classes} classes, the config data.num_classes="
                              f"{cfg.data.num_classes}")
    model = build_model(dataclasses.replace(cfg.model, pretrained="none", init_checkpoint=""), classes)
    load_weights(model, to_model_state(ckpt, where), where)
    return model.eval()


def read_weights(path: str | os.PathLike, cfg) -> dict:
    """Our model's state dict from ``path``: one of our checkpoints or an authors' one (``model.init_checkpoint``)."""
    ckpt = load_file(path, "checkpoint (model.init_checkpoint)")
    if is_authors_checkpoint(ckpt):
        kind, classes = head_kind(strip_module_prefix(ckpt["classifier"]), str(path))
        if kind != cfg.model.name or classes != cfg.data.num_classes:
            raise CheckpointError(f"model.init_checkpoint {path} is an authors' {kind} with {classes} classes; the "
                                  f"config has model.name={cfg.model.name!r}, data.num_classes={cfg.data.num_classes}")
        return to_model_state(ckpt, str(path))
    if isinstance(ckpt.get("model"), dict):
        return ckpt["model"]
    raise CheckpointError(f"model.init_checkpoint {path} is neither a ripu_kernels checkpoint ('model') nor one of "
                          "the authors' ('feature_extractor' and 'classifier')")


def load_checkpoint_any(path: str | os.PathLike, config: str | None = None, overrides=()):
    """(model in eval mode, config, checkpoint dict) for ``ripu eval`` / ``ripu select``.

    One of our checkpoints carries its config (``config`` and ``overrides`` are merged over it); an authors'
    checkpoint carries none, so ``config`` (a packaged name or a YAML file) must say which network and data it
    belongs to.
    """
    from ..config import apply_overrides, load_config, merge_file
    from .trainer import load_checkpoint

    ckpt = load_file(path)
    if is_authors_checkpoint(ckpt):
        if not config:
            raise CheckpointError(f"{path} is a checkpoint in the authors' format (feature_extractor / classifier), "
                                  "which carries no config; give --config NAME, e.g. --config gtav_cityscapes_ra_2.2 "
                                  "for a DeepLab-v2 or gtav_cityscapes_ra_5_v3plus for a DeepLab-v3+ checkpoint")
        cfg = load_config(config, list(overrides))
        return model_for(cfg, ckpt, str(path)), cfg, {"iteration": int(ckpt.get("iteration", 0) or 0)}
    model, cfg, ckpt = load_checkpoint(path, loaded=ckpt)
    if config:
        cfg = merge_file(cfg, config)
    return model, apply_overrides(cfg, list(overrides)).validate(), ckpt
