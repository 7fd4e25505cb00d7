"""One acquisition round: logits -> strategy scores at label resolution -> exact greedy selection -> oracle -> ledger.

:class:`Acquirer` holds what stays fixed over a round (model, budget, device, batching).

The label resolution is the dataset's (``label_hw``): the original label size with ``active.label_size:
original`` (as the authors), the resized input size otherwise; see ``active.resolution``.

Units with a per-image quota (``ratio``, ``pixels``): :meth:`Acquirer.run` walks a list of dataset indices (a
shard, or all images) in batches. For each image: the strategy's score map at label resolution (through the
public fused ops), ``select_regions`` outside the stored suppression mask with the image's quota, the
oracle's truth inside the selected windows, and a ledger record (never above the budget). Each batch is handed
to a :class:`~ripu_kernels.driver.active.commit.BatchWriter`, which persists it crash-safely. Images the ledger
already has for the round are skipped, so an interrupted round can be rerun.

Round-level units (``pool``, ``images``) take two passes. :meth:`Acquirer.pool_candidates` /
:meth:`Acquirer.image_candidates` score this shard's images and return candidates; the candidates of every
shard are merged into a *plan* (:func:`merge_pool`, :func:`merge_images`); :meth:`Acquirer.run_plan` then
reveals what the plan says, batch by batch through the same writer and ledger.

Why the pool-level merge is exact: suppression acts inside one image only, so the pool-level greedy (take the
highest-scoring available window of any image, suppress around it, repeat until B picks) takes, in every
image, a prefix of that image's own greedy sequence; and each image's sequence comes in non-increasing score
order (the available set only shrinks). The pool greedy is therefore the merge of the per-image sequences by
score, and its first B picks are the B best of all per-image picks under the order (score descending, image
position in the sorted ids, pick order). Each image's sequence is computed by ``select_regions`` with a cap
that no pool-level prefix can exceed (``min(B, max_picks)``, see ``budget``). A test checks this against a
naive pool-level loop.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F

import ripu_kernels as rk

from ..errors import AcquisitionError
from .budget import Budget
from .commit import BatchWriter, Pick
from .ledger import Ledger
from .resolution import label_hw, resize_for_scoring
from .scoring import check_finite, get_strategy, score_maps
from .store import MaskStore

log = logging.getLogger("ripu")


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

    # ----------------------------------------------------------------------------------------- scoring
    @torch.no_grad()
    def scores(self, images: torch.Tensor, ids: list[str], round_idx: int = 0,
               label_hw: tuple[int, int] | None = None) -> torch.Tensor:
        """The strategy's score map (B, H, W) of a batch of same-size images at their label size ``label_hw``
        (default: the image size)."""
        h, w = label_hw or images.shape[-2:]
        logits = None
        if get_strategy(self.budget.strategy).uses_model:
            logits = self.model(images.to(self.device))
            check_finite(logits, ids)
            logits = resize_for_scoring(logits, tuple(images.shape[-2:]), (h, w), self.resize_via_input,
                                        self.align_corners).float()
        return score_maps(logits, self.budget, (h, w), self.align_corners, ids, round_idx).to(self.device)

    def _active(self, ids, shape, store: MaskStore, device) -> torch.Tensor:
        return torch.from_numpy(np.stack([store.active(i, shape) for i in ids])).to(device)

    @torch.no_grad()
    def select(self, images: torch.Tensor, ids: list[str], store: MaskStore, round_idx: int = 0,
               label_hw: tuple[int, int] | None = None) -> tuple[int, rk.Selection]:
        """(picks per image, selection) for a batch of same-size images, outside their stored suppression masks,
        at the label size ``label_hw`` (default: the image size)."""
        h, w = label_hw or images.shape[-2:]
        score = self.scores(images, ids, round_idx, (h, w))
        n = self.budget.picks(h, w)
        sel = rk.select_regions(score, n, radius=self.budget.radius, mask_radius=self.budget.mask_radius,
                                active=self._active(ids, (h, w), store, score.device))
        return n, sel

    # ------------------------------------------------------------------------------ per-image quota units
    def run(self, dataset, indices: Iterable[int], ledger: Ledger, store: MaskStore, writer: BatchWriter,
            round_idx: int, iteration: int, oracle: Callable[[int], np.ndarray] | None = None) -> dict:
        """Round ``round_idx`` over ``dataset[indices]``; returns {"images", "pixels", "regions"} of this call.

        An image with fewer available windows than its quota takes what there is (a warning says how many)."""
        if not self.budget.per_image:
            raise AcquisitionError(f"acquisition: active.unit={self.budget.unit!r} is ranked over the whole pool; "
                                   "run it through shards.acquire_round / acquire_shard")
        from tqdm import tqdm

        self.model.eval()
        todo = [i for i in indices if not ledger.has_round(dataset.image_id(i), round_idx)]
        stats = {"images": 0, "pixels": 0, "regions": 0, "short": 0}
        with tqdm(total=len(todo), desc=f"acquire r{round_idx}", disable=not self.progress, leave=False) as bar:
            for batch in self._batches(dataset, todo):
                picks = self._round_batch(dataset, batch, ledger, store, round_idx, iteration, oracle, stats)
                writer.write(ledger, picks)
                bar.update(len(batch))
        ledger.set_round_iteration(round_idx, iteration)
        if writer.ledger_path is not None:
            ledger.save(writer.ledger_path)
        short = stats.pop("short")
        if short:
            log.warning("[round %d] %d image(s) had fewer available %s than their quota: each stopped when "
                        "nothing was left to pick; the ledger records what was taken", round_idx, short,
                        "windows" if self.budget.geometry == "regions" else "pixels")
        return stats

    def _batches(self, dataset, todo: list[int]):
        """Batches of up to ``batch_size`` images, each item with its ``label_hw``; images of another image or
        label size than their batch go alone."""
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start:start + self.batch_size]
            items = [dataset[i] for i in chunk]
            for it in items:
                it["label_hw"] = label_hw(dataset, it["index"], tuple(it["image"].shape[-2:]))
            if len({(tuple(it["image"].shape[-2:]), it["label_hw"]) for it in items}) == 1:
                yield items
            else:
                yield from ([it] for it in items)

    def _truth(self, oracle, item, image_id, h, w):
        truth = oracle(item["index"]) if oracle is not None else None
        if truth is not None and truth.shape != (h, w):
            raise AcquisitionError(f"oracle: the label of image {image_id!r} is {truth.shape[1]}x"
                                   f"{truth.shape[0]}, the image is {w}x{h}")
        return truth

    def _round_batch(self, dataset, items, ledger, store, round_idx, iteration, oracle, stats) -> list[Pick]:
        ids = [it["id"] for it in items]
        images = torch.stack([it["image"] for it in items])
        h, w = items[0]["label_hw"]
        n, sel = self.select(images, ids, store, round_idx, (h, w))
        counts = sel.counts.cpu().tolist()
        centers, selected, active = sel.centers.cpu().numpy(), sel.selected.cpu().numpy(), sel.active.cpu().numpy()
        picks = []
        for j, item in enumerate(items):
            image_id, pixels = ids[j], int(selected[j].sum())
            if counts[j] > n or pixels > self.budget.max_pixels(h, w):
                raise AcquisitionError(f"acquisition: image {image_id!r} got {counts[j]} picks / {pixels} "
                                       f"pixels, over its budget of {n} picks")
            truth = self._truth(oracle, item, image_id, h, w)
            ledger.register(image_id, h, w)
            ledger.record(image_id, round_idx, iteration, pixels, counts[j], n)
            picks.append(Pick(image_id, item["index"], selected[j], active[j], centers[j, :counts[j]], truth))
            stats["images"] += 1
            stats["pixels"] += pixels
            stats["regions"] += counts[j]
            stats["short"] += int(counts[j] < n)
        return picks

    # ------------------------------------------------------------------------------- round-level units
    @torch.no_grad()
    def pool_candidates(self, dataset, indices: Iterable[int], positions: dict[str, int], store: MaskStore,
                        round_idx: int, pool: int) -> dict:
        """This shard's best ``pool`` picks for a pool-level round: each image's greedy sequence (capped so that
        no pool-level prefix is cut), merged and cut to ``pool``.

        Returns ``{"score", "position", "order" (float64 / int64 arrays, one entry per candidate), "centers":
        {image id: int64 (picks, 2) in pick order}, "sizes": {image id: (H, W)}}``.
        """
        self.model.eval()
        keep = _Candidates(pool)
        centers_of, sizes = {}, {}
        for batch in self._batches(dataset, list(indices)):
            ids = [it["id"] for it in batch]
            images = torch.stack([it["image"] for it in batch])
            h, w = batch[0]["label_hw"]
            score = self.scores(images, ids, round_idx, (h, w))
            cap = self.budget.per_image_cap(h, w, pool)
            sel = rk.select_regions(score, cap, radius=self.budget.radius, mask_radius=self.budget.mask_radius,
                                    active=self._active(ids, (h, w), store, score.device))
            counts = sel.counts.cpu().tolist()
            centers = sel.centers.cpu()
            flat = score.detach().cpu().to(torch.float64)
            for j, image_id in enumerate(ids):
                c = centers[j, :counts[j]]
                s = flat[j, c[:, 0], c[:, 1]].numpy() if counts[j] else np.zeros(0)
                keep.add(s, positions[image_id], np.arange(counts[j]))
                centers_of[image_id] = c.numpy().astype(np.int64)
                sizes[image_id] = (int(h), int(w))
        cand = keep.result()
        return {**cand, "centers": centers_of, "sizes": sizes}

    @torch.no_grad()
    def image_candidates(self, dataset, indices: Iterable[int], positions: dict[str, int], store: MaskStore,
                         round_idx: int) -> dict:
        """Mean score of every image of this shard that is not yet wholly revealed (unit ``images``)."""
        self.model.eval()
        scores, pos, sizes = [], [], {}
        for batch in self._batches(dataset, list(indices)):
            ids = [it["id"] for it in batch]
            images = torch.stack([it["image"] for it in batch])
            h, w = batch[0]["label_hw"]
            score = self.scores(images, ids, round_idx, (h, w)).detach().cpu().to(torch.float64)
            for j, image_id in enumerate(ids):
                sizes[image_id] = (int(h), int(w))
                if store.active(image_id, (h, w)).all():
                    continue  # already revealed as a whole
                scores.append(float(torch.nanmean(score[j])))
                pos.append(positions[image_id])
        return {"score": np.asarray(scores, np.float64), "position": np.asarray(pos, np.int64),
                "order": np.zeros(len(pos), np.int64), "sizes": sizes}

    def run_plan(self, dataset, indices: Iterable[int], plan: dict, ledger: Ledger, store: MaskStore,
                 writer: BatchWriter, round_idx: int, iteration: int,
                 oracle: Callable[[int], np.ndarray] | None = None) -> dict:
        """Reveal what ``plan`` gives this shard's images (``plan["centers"]`` for ``pool``, ``plan["images"]``
        for ``images``), journalled batch by batch; images the ledger has for the round are skipped.

        ``plan["sizes"]`` holds the label size of every image of the round."""
        from tqdm import tqdm

        todo = [i for i in indices if not ledger.has_round(dataset.image_id(i), round_idx)]
        stats = {"images": 0, "pixels": 0, "regions": 0}
        whole = set(plan.get("images", ()))
        centers = plan.get("centers", {})
        with tqdm(total=len(todo), desc=f"reveal r{round_idx}", disable=not self.progress, leave=False) as bar:
            for start in range(0, len(todo), self.batch_size):
                picks = []
                for i in todo[start:start + self.batch_size]:
                    image_id = dataset.image_id(i)
                    if image_id not in plan["sizes"]:
                        raise AcquisitionError(f"acquisition: image {image_id!r} is not in the plan of round "
                                               f"{round_idx}; the target images changed since it was made")
                    h, w = plan["sizes"][image_id]
                    truth = self._truth(oracle, {"index": i}, image_id, h, w)
                    old = store.active(image_id, (h, w))
                    if plan["unit"] == "images":
                        take = image_id in whole
                        selected = ~old if take else np.zeros((h, w), bool)
                        active = np.ones((h, w), bool) if take else old.copy()
                        c = np.zeros((0, 2), np.int64)
                        regions, wholes, budget = 0, int(take), int(take)
                    else:
                        c = np.asarray(centers.get(image_id, np.zeros((0, 2))), np.int64).reshape(-1, 2)
                        selected = paint(c, (h, w), self.budget.radius)
                        active = old | paint(c, (h, w), self.budget.mask_radius)
                        regions, wholes, budget = len(c), 0, len(c)
                    pixels = int(selected.sum())
                    ledger.register(image_id, h, w)
                    ledger.record(image_id, round_idx, iteration, pixels, regions, budget, wholes)
                    picks.append(Pick(image_id, i, selected, active, c, truth))
                    stats["images"] += 1
                    stats["pixels"] += pixels
                    stats["regions"] += regions
                writer.write(ledger, picks)
                bar.update(len(picks))
        ledger.set_round_iteration(round_idx, iteration)
        if writer.ledger_path is not None:
            ledger.save(writer.ledger_path)
        return stats


def paint(centers: np.ndarray, shape: tuple[int, int], radius: int) -> np.ndarray:
    """bool (H, W): the union of the clipped ``(2*radius+1)^2`` windows around ``centers`` (row, col)."""
    h, w = shape
    seed = torch.zeros((1, 1, h, w))
    c = torch.as_tensor(np.asarray(centers, np.int64).reshape(-1, 2))
    if len(c):
        seed[0, 0, c[:, 0], c[:, 1]] = 1.0
    if radius > 0:
        seed = F.max_pool2d(seed, 2 * radius + 1, stride=1, padding=radius)
    return seed[0, 0].numpy() > 0


class _Candidates:
    """The best ``limit`` of many (score, position, order) triples under (score desc, position, order); memory
    stays O(limit + one batch)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.size = 0

    def add(self, score: np.ndarray, position: int, order: np.ndarray) -> None:
        if len(score):
            self.parts.append((np.asarray(score, np.float64), np.full(len(score), position, np.int64),
                               np.asarray(order, np.int64)))
            self.size += len(score)
        if self.size > 2 * self.limit + 4096:
            self._prune()

    def _prune(self) -> None:
        s, p, o = (np.concatenate([part[i] for part in self.parts]) if self.parts else np.zeros(0)
                   for i in range(3))
        idx = rank_order(s, p, o)[:self.limit]
        self.parts = [(s[idx], p[idx].astype(np.int64), o[idx].astype(np.int64))]
        self.size = len(idx)

    def result(self) -> dict:
        self._prune()
        s, p, o = self.parts[0] if self.parts else (np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64))
        return {"score": s, "position": p, "order": o}


def rank_order(score: np.ndarray, position: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Indices sorting candidates by score (descending), then position in the sorted ids, then pick order."""
    return np.lexsort((np.asarray(order), np.asarray(position), -np.asarray(score, np.float64)))


def merge_pool(parts: list[dict], pool: int) -> dict:
    """The pool-level plan from every shard's candidates: ``{"taken", "per_position": {position: picks}}``."""
    s, p, o = (np.concatenate([np.asarray(part[k]) for part in parts]) if parts else np.zeros(0)
               for k in ("score", "position", "order"))
    idx = rank_order(s, p, o)[:pool]
    per = {}
    for pos in p[idx].astype(np.int64).tolist():
        per[pos] = per.get(pos, 0) + 1
    return {"taken": int(len(idx)), "available": int(len(s)), "per_position": per}


def merge_images(parts: list[dict], n_images: int) -> dict:
    """The image-level plan: the ``n_images`` best images by mean score (ties: position in the sorted ids)."""
    s, p, o = (np.concatenate([np.asarray(part[k]) for part in parts]) if parts else np.zeros(0)
               for k in ("score", "position", "order"))
    idx = rank_order(s, p, o)[:n_images]
    return {"taken": int(len(idx)), "available": int(len(s)), "positions": sorted(p[idx].astype(np.int64).tolist())}
