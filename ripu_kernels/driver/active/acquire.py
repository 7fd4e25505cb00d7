"""One acquisition round: logits -> scores at label resolution -> exact greedy selection -> oracle -> ledger.

The label resolution is the dataset's (``label_hw``): the original label size with ``active.label_size:
original`` (as the authors), the resized input size otherwise; see ``active.resolution``.

:class:`Acquirer` holds what stays fixed over a round (model, budget, device, batching); :meth:`Acquirer.run`
walks a list of dataset indices (a shard, or all images) in batches. For each image: RA/PA scores at label
resolution (``region_scores`` / ``pixel_scores`` with the fused resize), ``select_regions`` outside the stored
suppression mask, the oracle's truth inside the selected windows, and a ledger record (never above the
budget). Each batch is handed to a :class:`~ripu_kernels.driver.active.commit.BatchWriter`, which persists it
crash-safely. Images the ledger already has for the round are skipped, so an interrupted round can be rerun.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import torch

import ripu_kernels as rk

from ..errors import AcquisitionError
from .budget import Budget
from .commit import BatchWriter, Pick
from .ledger import Ledger
from .resolution import label_hw, resize_for_scoring
from .scoring import check_finite, score_maps
from .store import MaskStore


@dataclass
class Acquirer:
    """Scores and selects with one model under one budget."""

    model: torch.nn.Module
    budget: Budget
    device: torch.device | str = "cpu"
    batch_size: int = 4
    align_corners: bool = True
    progress: bool = False

    resize_via_input: bool = False  # logits -> input size -> label size (two resizes, as the authors)

    @torch.no_grad()
    def select(self, images: torch.Tensor, ids: list[str], store: MaskStore,
               label_hw: tuple[int, int] | None = None) -> tuple[int, rk.Selection]:
        """(picks per image, selection) for a batch of same-size images, outside their stored suppression masks,
        at the label size ``label_hw`` (default: the image size)."""
        h, w = label_hw or images.shape[-2:]
        logits = self.model(images.to(self.device))
        check_finite(logits, ids)
        logits = resize_for_scoring(logits, tuple(images.shape[-2:]), (h, w), self.resize_via_input,
                                    self.align_corners)
        scores = score_maps(logits.float(), self.budget, (h, w), self.align_corners)
        n = self.budget.picks(h, w)
        active = torch.from_numpy(np.stack([store.active(i, (h, w)) for i in ids])).to(scores.score.device)
        sel = rk.select_regions(scores.score, n, radius=self.budget.radius, mask_radius=self.budget.mask_radius,
                                active=active)
        return n, sel

    def run(self, dataset, indices: Iterable[int], ledger: Ledger, store: MaskStore, writer: BatchWriter,
            round_idx: int, iteration: int, oracle: Callable[[int], np.ndarray] | None = None) -> dict:
        """Round ``round_idx`` over ``dataset[indices]``; returns {"images", "pixels", "regions"} of this call."""
        from tqdm import tqdm

        self.model.eval()
        todo = [i for i in indices if not ledger.has_round(dataset.image_id(i), round_idx)]
        stats = {"images": 0, "pixels": 0, "regions": 0}
        with tqdm(total=len(todo), desc=f"acquire r{round_idx}", disable=not self.progress, leave=False) as bar:
            for batch in self._batches(dataset, todo):
                picks = self._round_batch(dataset, batch, ledger, store, round_idx, iteration, oracle, stats)
                writer.write(ledger, picks)
                bar.update(len(batch))
        ledger.set_round_iteration(round_idx, iteration)
        if writer.ledger_path is not None:
            ledger.save(writer.ledger_path)
        return stats

    def _batches(self, dataset, todo: list[int]):
        """Batches of up to ``batch_size`` images; images of another size than their batch go alone."""
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start:start + self.batch_size]
            items = [dataset[i] for i in chunk]
            for it in items:
                it["label_hw"] = label_hw(dataset, it["index"], tuple(it["image"].shape[-2:]))
            if len({(tuple(it["image"].shape[-2:]), it["label_hw"]) for it in items}) == 1:
                yield items
            else:
                yield from ([it] for it in items)

    def _round_batch(self, dataset, items, ledger, store, round_idx, iteration, oracle, stats) -> list[Pick]:
        ids = [it["id"] for it in items]
        images = torch.stack([it["image"] for it in items])
        h, w = items[0]["label_hw"]
        n, sel = self.select(images, ids, store, (h, w))
        counts = sel.counts.cpu().tolist()
        centers, selected, active = sel.centers.cpu().numpy(), sel.selected.cpu().numpy(), sel.active.cpu().numpy()
        picks = []
        for j, item in enumerate(items):
            image_id, pixels = ids[j], int(selected[j].sum())
            if counts[j] > n or pixels > self.budget.max_pixels(h, w):
                raise AcquisitionError(f"acquisition: image {image_id!r} got {counts[j]} picks / {pixels} "
                                       f"pixels, over its budget of {n} picks")
            truth = oracle(item["index"]) if oracle is not None else None
            if truth is not None and truth.shape != (h, w):
                raise AcquisitionError(f"oracle: the label of image {image_id!r} is {truth.shape[1]}x"
                                       f"{truth.shape[0]}, the image is {w}x{h}")
            ledger.register(image_id, h, w)
            ledger.record(image_id, round_idx, iteration, pixels, counts[j], n)
            picks.append(Pick(image_id, item["index"], selected[j], active[j], centers[j, :counts[j]], truth))
            stats["images"] += 1
            stats["pixels"] += pixels
            stats["regions"] += counts[j]
        return picks
