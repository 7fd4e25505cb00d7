"""At which resolution acquisition scores, selects and stores masks (``active.label_size``).

The authors (BIT-DA/RIPU ``core/active/build.py:111-129``) run the model on the resized image (1280x640), resize
its logits to that input size, then again to the *original* label size (1024x2048 for Cityscapes), and select
there: budgets count pixels of the original label map, windows are original pixels, and the revealed mask is
stored at full resolution (``gtMask/``) and resized with the image for training (``core/datasets/cityscapes.py:
264-270``, PIL nearest). ``active.label_size: original`` does the same here; ``input`` selects on labels
resized to the input size. ``active.resize_via_input`` reproduces the two consecutive bilinear resizes; without
it the fused ops resize the logits once, straight to the label size.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def label_hw(dataset, index: int, image_hw: tuple[int, int]) -> tuple[int, int]:
    """(H, W) of the labels acquisition works on for image ``index``: the dataset's ``label_hw`` when it has one
    (original-size labels), else the image size."""
    get = getattr(dataset, "label_hw", None)
    return tuple(int(v) for v in get(index)) if get is not None else tuple(image_hw)


def resize_for_scoring(logits: torch.Tensor, input_hw: tuple[int, int], label_hw_: tuple[int, int],
                       via_input: bool, align_corners: bool = True) -> torch.Tensor:
    """``logits`` as the scores should see them: first resized to the input size when ``via_input`` (the
    authors' classifier(..., size=input) before their second resize), else unchanged (the fused ops resize)."""
    # when the labels are at the input size the second resize is the identity: one resize is the same thing
    if via_input and tuple(label_hw_) != tuple(input_hw) and tuple(input_hw) != tuple(logits.shape[-2:]):
        return F.interpolate(logits, size=tuple(input_hw), mode="bilinear", align_corners=align_corners)
    return logits
