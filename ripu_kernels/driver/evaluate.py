"""Evaluation: confusion matrix, mIoU, a per-class IoU table, optional flip test-time augmentation.

Flip TTA averages the softmax of the image and of its mirror (mirrored back), each bilinearly upsampled to the
label size first, as the authors' ``test.py:36-48``. SYNTHIA -> Cityscapes results are reported, as in the paper,
as mIoU over the 16 shared classes and mIoU* over the 13 of them without wall, fence and pole (``miou_13``).
mIoU averages the classes present in the truth or the prediction (the authors' ``test.py:140-142`` divides by
``union + 1e-10`` and so counts an absent class as 0; on the Cityscapes val set every class is present).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .data.base import IGNORE_INDEX, collate
from .data.sampling import shard_indices
from .models import upsample


def confusion(pred: torch.Tensor, label: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, C) int64 counts, rows = truth, columns = prediction; ignore-labelled pixels are skipped."""
    valid = (label != IGNORE_INDEX) & (label >= 0) & (label < num_classes)
    idx = label[valid].to(torch.int64) * num_classes + pred[valid].to(torch.int64)
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_from_confusion(conf: torch.Tensor) -> tuple[list[float], float]:
    """Per-class IoU (NaN for classes absent from truth and prediction) and their mean over the others."""
    conf = conf.to(torch.float64)
    inter = conf.diag()
    union = conf.sum(0) + conf.sum(1) - inter
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.full_like(inter, float("nan")))
    vals = [float(v) for v in iou]
    return vals, nanmean(vals)


@torch.no_grad()
def predict(model: torch.nn.Module, images: torch.Tensor, size: tuple[int, int], flip: bool = False) -> torch.Tensor:
    """Softmax probabilities (B, C, H, W) at label size; with ``flip`` averaged with the mirrored image."""
    prob = torch.softmax(upsample(model(images), size).float(), dim=1)
    if flip:
        prob_f = torch.softmax(upsample(model(images.flip(-1)), size).float(), dim=1).flip(-1)
        prob = (prob + prob_f) / 2
    return prob


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset, num_classes: int, device="cpu", batch_size: int = 4,
             flip: bool = False, progress: bool = False, class_names=()) -> dict:
    """mIoU (percent) over ``dataset``; returns {"miou", "iou" (per class, percent), "confusion"} and, for the 16
    SYNTHIA classes (named by ``class_names``), "miou_13"."""
    from tqdm import tqdm

    was_training = model.training
    model.eval()
    conf = torch.zeros((num_classes, num_classes), dtype=torch.int64)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    for batch in tqdm(loader, desc="eval", disable=not progress, leave=False):
        if "label" not in batch:
            raise ValueError(f"evaluate: dataset {getattr(dataset, 'name', '?')} has no labels")
        labels = batch["label"]
        prob = predict(model, batch["image"].to(device), tuple(labels.shape[-2:]), flip)
        conf += confusion(prob.argmax(1).cpu(), labels, num_classes)
    model.train(was_training)
    iou, miou = iou_from_confusion(conf)
    return add_miou13({"miou": 100 * miou, "iou": [100 * v for v in iou], "confusion": conf.tolist()}, class_names)


# the 13 classes of the paper's SYNTHIA mIoU* (the 16 shared classes without wall, fence, pole)
MIOU13_CLASSES = ("road", "sidewalk", "building", "traffic light", "traffic sign", "vegetation", "sky", "person",
                  "rider", "car", "bus", "motorcycle", "bicycle")


def nanmean(values) -> float:
    present = [v for v in values if not math.isnan(v)]
    return sum(present) / len(present) if present else float("nan")


def add_miou13(result: dict, class_names) -> dict:
    """``result`` with ``miou_13`` (percent) when ``class_names`` are the 16 SYNTHIA -> Cityscapes classes."""
    names = list(class_names)
    if len(names) == 16 and set(MIOU13_CLASSES) <= set(names):
        result["miou_13"] = nanmean([result["iou"][names.index(n)] for n in MIOU13_CLASSES])
    return result


def format_table(result: dict, class_names) -> str:
    """A plain-text per-class IoU table followed by the mIoU (and SYNTHIA's mIoU* over 13 classes)."""
    names = list(class_names) or [str(i) for i in range(len(result["iou"]))]
    width = max(len(n) for n in names + ["mIoU* (13 classes)"])
    lines = [f"{'class'.ljust(width)}  IoU (%)"]
    for name, v in zip(names, result["iou"]):
        lines.append(f"{name.ljust(width)}  {'   n/a' if np.isnan(v) else f'{v:6.2f}'}")
    if "miou_13" in result:
        lines.append(f"{f'mIoU ({len(names)} classes)'.ljust(width)}  {result['miou']:6.2f}")
        lines.append(f"{'mIoU* (13 classes)'.ljust(width)}  {result['miou_13']:6.2f}")
    else:
        lines.append(f"{'mIoU'.ljust(width)}  {result['miou']:6.2f}")
    return "\n".join(lines)


def evaluate_sharded(env, model: torch.nn.Module, dataset, num_classes: int, device="cpu", batch_size: int = 4,
                     flip: bool = False, progress: bool = False, class_names=()) -> dict:
    """:func:`evaluate` with each rank of ``env`` on its shard of ``dataset``; confusion matrices summed (exact)."""
    if not env.enabled:
        return evaluate(model, dataset, num_classes, device, batch_size, flip, progress, class_names)
    part = torch.utils.data.Subset(dataset, shard_indices(dataset.ids, env.rank, env.world_size))
    part.name = getattr(dataset, "name", "val")
    res = evaluate(model, part, num_classes, device, batch_size, flip, progress)
    conf = env.all_reduce_sum(torch.tensor(res["confusion"], dtype=torch.int64))
    iou, miou = iou_from_confusion(conf)
    return add_miou13({"miou": 100 * miou, "iou": [100 * v for v in iou], "confusion": conf.tolist()}, class_names)
