"""Active learning state and acquisition: budgets, the simulated oracle, the mask store and the ledger.

State lives in one folder, keyed by stable image ids (ids may contain ``/``; they become sub-folders):

``labels/<id>.png``   uint8 revealed labels (train ids), 255 where nothing is revealed (or the truth is void)
``active/<id>.png``   uint8 suppression mask (255 = no window centre may be picked here any more)
``ledger.json``       pixels and regions per image and per round, the iteration of each round

Every file is written atomically (temporary file + fsync + rename), revealed labels are only ever added
(a union, never overwritten), and every round checks that no image gets more picks than its budget.
Acquisition is a function over a list of image ids so that it can be sharded; ledgers of shards merge
with :meth:`Ledger.merge`.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F

from . import ops
from .data.base import IGNORE_INDEX
from .utils.io import atomic_save_png, atomic_write_json

PAPER_PIXELS = 1280 * 640  # the paper counts PA pixel budgets per 1280x640 image


class AcquisitionError(RuntimeError):
    """Acquisition cannot go on (non-finite logits, a budget overrun, a corrupt mask); names the image."""


def _ceil(x: float) -> int:
    """``ceil`` that ignores float round-off (``7200 * 0.01 / 9`` is 8, not 9)."""
    return int(math.ceil(x - 1e-9 * max(1.0, abs(x))))


def ra_regions_per_round(height: int, width: int, ratio: float, rounds: int, k: int) -> int:
    """RA regions per image per round: ``ceil(H*W*ratio_per_round / (2k+1)^2)``, ``ratio_per_round = ratio/rounds``."""
    if rounds < 1:
        raise ValueError(f"active: the number of rounds must be >= 1, got {rounds}")
    return _ceil(height * width * (ratio / rounds) / (2 * k + 1) ** 2)


def pa_pixels_per_round(height: int, width: int, pixels: float, rounds: int) -> int:
    """PA pixels per image per round: ``ceil(pixels_per_round * H*W / (1280*640))``, ``= pixels/rounds``."""
    if rounds < 1:
        raise ValueError(f"active: the number of rounds must be >= 1, got {rounds}")
    return _ceil((pixels / rounds) * height * width / PAPER_PIXELS)


@dataclass(frozen=True)
class Budget:
    """How one round picks: ``n`` picks per image, revealing ``(2*radius+1)^2`` windows, suppressing ``mask_radius``."""

    mode: str
    k: int
    rounds: int
    ratio: float = 0.0
    pixels: float = 0.0

    @property
    def radius(self) -> int:
        return self.k if self.mode == "ra" else 0

    @property
    def mask_radius(self) -> int:
        return 2 * self.k if self.mode == "ra" else self.k

    def picks(self, height: int, width: int) -> int:
        if self.mode == "ra":
            return ra_regions_per_round(height, width, self.ratio, self.rounds, self.k)
        if self.mode == "pa":
            return pa_pixels_per_round(height, width, self.pixels, self.rounds)
        raise ValueError(f"active.mode must be 'ra' or 'pa', got {self.mode!r}")

    def max_pixels(self, height: int, width: int) -> int:
        return self.picks(height, width) * (2 * self.radius + 1) ** 2


def budget_from_config(cfg) -> Budget:
    """The :class:`Budget` of a :class:`ripu_kernels.config.Config`."""
    return Budget(mode=cfg.active.mode, k=cfg.window_k, rounds=max(1, len(cfg.active.rounds_at)),
                  ratio=cfg.active.ratio, pixels=cfg.active.pixels)


# --------------------------------------------------------------------------------------------- mask store
def _safe_id(image_id: str) -> str:
    parts = image_id.replace("\\", "/").split("/")
    if not image_id or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"mask store: image id {image_id!r} is not a safe relative name")
    return "/".join(parts)


class MaskStore:
    """Per-image revealed labels and suppression masks under ``root`` (see the module docstring)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self._labels: dict[str, np.ndarray] = {}
        self._active: dict[str, np.ndarray] = {}

    def label_path(self, image_id: str) -> Path:
        return self.root / "labels" / (_safe_id(image_id) + ".png")

    def active_path(self, image_id: str) -> Path:
        return self.root / "active" / (_safe_id(image_id) + ".png")

    def _read(self, path: Path, shape: tuple[int, int], image_id: str) -> np.ndarray | None:
        if not path.exists():
            return None
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as img:
                arr = np.asarray(img)
        except (UnidentifiedImageError, OSError) as exc:
            raise AcquisitionError(f"mask store: cannot read {path} (image {image_id!r}): {exc}") from exc
        if arr.shape != tuple(shape):
            raise AcquisitionError(f"mask store: {path} is {arr.shape[1]}x{arr.shape[0]} but image {image_id!r} "
                                   f"has labels of {shape[1]}x{shape[0]}")
        return arr

    def labels(self, image_id: str, shape: tuple[int, int]) -> np.ndarray:
        """Revealed labels (uint8, 255 elsewhere) of ``image_id`` at label size ``shape`` = (H, W)."""
        if image_id not in self._labels:
            arr = self._read(self.label_path(image_id), shape, image_id)
            self._labels[image_id] = arr if arr is not None else np.full(shape, IGNORE_INDEX, np.uint8)
        return self._labels[image_id]

    def active(self, image_id: str, shape: tuple[int, int]) -> np.ndarray:
        """Suppression mask (bool) of ``image_id``."""
        if image_id not in self._active:
            arr = self._read(self.active_path(image_id), shape, image_id)
            self._active[image_id] = arr > 0 if arr is not None else np.zeros(shape, bool)
        return self._active[image_id]

    def update_active(self, image_id: str, active: np.ndarray) -> None:
        """Add ``active`` to the stored suppression mask (selection without an oracle)."""
        act = self.active(image_id, active.shape) | active
        atomic_save_png(self.active_path(image_id), act.astype(np.uint8) * 255)
        self._active[image_id] = act

    def update(self, image_id: str, selected: np.ndarray, truth: np.ndarray, active: np.ndarray) -> int:
        """Reveal ``truth`` inside ``selected`` (union with what was revealed), store ``active``; new pixels."""
        shape = selected.shape
        if truth.shape != shape:
            raise AcquisitionError(f"oracle: the label of image {image_id!r} is {truth.shape[1]}x{truth.shape[0]}, "
                                   f"the selection is {shape[1]}x{shape[0]}")
        old = self.labels(image_id, shape)
        new = old.copy()
        take = selected & (old == IGNORE_INDEX)
        new[take] = truth[take].astype(np.uint8)
        act = self.active(image_id, shape) | active
        # suppression first: a crash in between loses budget, it never reveals twice or overwrites labels
        atomic_save_png(self.active_path(image_id), act.astype(np.uint8) * 255)
        atomic_save_png(self.label_path(image_id), new)
        self._labels[image_id], self._active[image_id] = new, act
        return int(selected.sum())


# ------------------------------------------------------------------------------------------------- ledger
class Ledger:
    """Pixels and regions revealed per image and per round; JSON that merges across shards."""

    VERSION = 1

    def __init__(self, mode: str = "ra", k: int = 1):
        self.mode, self.k = mode, k
        self.images: dict[str, dict] = {}
        self.round_iterations: dict[str, int] = {}

    # ---- recording
    def register(self, image_id: str, height: int, width: int) -> None:
        entry = self.images.setdefault(image_id, {"height": height, "width": width, "rounds": {}})
        if (entry["height"], entry["width"]) != (height, width):
            raise AcquisitionError(f"ledger: image {image_id!r} was {entry['width']}x{entry['height']}, "
                                   f"now {width}x{height}")

    def record(self, image_id: str, round_idx: int, iteration: int, pixels: int, regions: int, budget: int) -> None:
        entry = self.images[image_id]
        key = str(round_idx)
        if key in entry["rounds"]:
            raise AcquisitionError(f"ledger: image {image_id!r} already has an acquisition in round {round_idx}")
        if regions > budget:
            raise AcquisitionError(f"ledger: image {image_id!r} got {regions} picks in round {round_idx}, "
                                   f"over its budget of {budget}")
        entry["rounds"][key] = {"pixels": int(pixels), "regions": int(regions), "budget": int(budget)}
        self.set_round_iteration(round_idx, iteration)

    def set_round_iteration(self, round_idx: int, iteration: int) -> None:
        prev = self.round_iterations.get(str(round_idx))
        if prev is not None and prev != iteration:
            raise AcquisitionError(f"ledger: round {round_idx} ran at iteration {prev}, not {iteration}")
        self.round_iterations[str(round_idx)] = int(iteration)

    # ---- queries
    def has_round(self, image_id: str, round_idx: int) -> bool:
        return str(round_idx) in self.images.get(image_id, {}).get("rounds", {})

    def image_pixels(self, image_id: str) -> int:
        return sum(r["pixels"] for r in self.images.get(image_id, {}).get("rounds", {}).values())

    def image_regions(self, image_id: str) -> int:
        return sum(r["regions"] for r in self.images.get(image_id, {}).get("rounds", {}).values())

    @property
    def total_pixels(self) -> int:
        return sum(e["height"] * e["width"] for e in self.images.values())

    @property
    def labelled_pixels(self) -> int:
        return sum(self.image_pixels(i) for i in self.images)

    @property
    def labelled_fraction(self) -> float:
        total = self.total_pixels
        return self.labelled_pixels / total if total else 0.0

    def rounds(self) -> list[dict]:
        """Per round: iteration, pixels, regions, images, cumulative labelled fraction."""
        out, cumulative = [], 0
        total = self.total_pixels
        for key in sorted(self.round_iterations, key=int):
            px = sum(e["rounds"][key]["pixels"] for e in self.images.values() if key in e["rounds"])
            rg = sum(e["rounds"][key]["regions"] for e in self.images.values() if key in e["rounds"])
            n = sum(1 for e in self.images.values() if key in e["rounds"])
            cumulative += px
            out.append({"round": int(key), "iteration": self.round_iterations[key], "pixels": px, "regions": rg,
                        "images": n, "labelled_fraction": cumulative / total if total else 0.0})
        return out

    # ---- persistence
    def to_dict(self) -> dict:
        return {"version": self.VERSION, "mode": self.mode, "k": self.k, "images": self.images,
                "round_iterations": self.round_iterations, "summary": {
                    "total_pixels": self.total_pixels, "labelled_pixels": self.labelled_pixels,
                    "labelled_fraction": self.labelled_fraction, "rounds": self.rounds()}}

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, d: dict, where: str = "ledger") -> "Ledger":
        try:
            if d.get("version") != cls.VERSION:
                raise AcquisitionError(f"{where}: unsupported ledger version {d.get('version')!r}")
            led = cls(d["mode"], int(d["k"]))
            led.images = {str(k): v for k, v in d["images"].items()}
            led.round_iterations = {str(k): int(v) for k, v in d["round_iterations"].items()}
        except (KeyError, TypeError, AttributeError) as exc:
            raise AcquisitionError(f"{where}: malformed ledger ({exc!r})") from exc
        return led

    @classmethod
    def load(cls, path: str | os.PathLike, mode: str = "ra", k: int = 1) -> "Ledger":
        """The ledger at ``path``, or a new empty one when the file does not exist."""
        path = Path(path)
        if not path.exists():
            return cls(mode, k)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise AcquisitionError(f"ledger: cannot read {path}: {exc}") from exc
        led = cls.from_dict(d, where=str(path))
        if (led.mode, led.k) != (mode, k):
            raise AcquisitionError(f"ledger: {path} was written for mode={led.mode} k={led.k}, "
                                   f"not mode={mode} k={k}")
        return led

    def merge(self, other: "Ledger") -> "Ledger":
        """Union of two ledgers (e.g. from shards over disjoint images); conflicts raise."""
        if (self.mode, self.k) != (other.mode, other.k):
            raise AcquisitionError(f"ledger: cannot merge mode={other.mode} k={other.k} into "
                                   f"mode={self.mode} k={self.k}")
        for key, it in other.round_iterations.items():
            self.set_round_iteration(int(key), it)
        for image_id, entry in other.images.items():
            mine = self.images.get(image_id)
            if mine is None:
                self.images[image_id] = json.loads(json.dumps(entry))
                continue
            if (mine["height"], mine["width"]) != (entry["height"], entry["width"]):
                raise AcquisitionError(f"ledger: image {image_id!r} has two different sizes")
            for rk_, rec in entry["rounds"].items():
                old = mine["rounds"].get(rk_)
                if old is not None and any(old.get(f) != rec.get(f) for f in ("pixels", "regions", "budget")):
                    raise AcquisitionError(f"ledger: image {image_id!r} round {rk_} differs between ledgers")
                mine["rounds"][rk_] = {**(old or {}), **rec}  # extra keys (``labelled`` of imports) are kept
        return self


# ------------------------------------------------------------------------------------------- acquisition
class SimulatedOracle:
    """Reveals the ground truth of a dataset whose labels are hidden from training."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __call__(self, index: int) -> np.ndarray:
        return np.asarray(self.dataset.load_label(index))


def check_finite(logits: torch.Tensor, image_ids: list[str]) -> None:
    """Raise :class:`AcquisitionError` naming the first image whose logits are not all finite."""
    bad = ~torch.isfinite(logits.detach()).flatten(1).all(dim=1)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        n = int((~torch.isfinite(logits[i])).sum())
        raise AcquisitionError(f"acquisition: the model produced {n} non-finite logits (NaN/inf) for image "
                               f"{image_ids[i]!r}; refusing to select regions from them")


def score_maps(logits: torch.Tensor, budget: Budget, size: tuple[int, int], align_corners: bool = True):
    """RA region scores or PA pixel scores at label resolution ``size`` (fused resize)."""
    if budget.mode == "ra":
        return ops.region_scores(logits, k=budget.k, size=size, align_corners=align_corners)
    return ops.pixel_scores(logits, k=budget.k, size=size, align_corners=align_corners)


@torch.no_grad()
def acquire(model: torch.nn.Module, dataset, indices: Iterable[int], store: MaskStore, ledger: Ledger,
            budget: Budget, round_idx: int, iteration: int, oracle=None, device="cpu",
            batch_size: int = 4, align_corners: bool = True, progress: bool = False,
            selection_dir: str | os.PathLike | None = None,
            ledger_path: str | os.PathLike | None = None, on_commit=None, on_written=None) -> dict:
    """One acquisition round over ``dataset[indices]``.

    For each image: logits -> RA/PA scores at label resolution -> greedy selection outside the stored
    suppression mask -> the oracle reveals the truth inside the selected windows (union into the store) ->
    the ledger records pixels and picks (never above the budget). Images already acquired in this round
    (per the ledger) are skipped, so an interrupted round can be rerun. Without an ``oracle`` only the
    suppression masks and (when ``selection_dir`` is given) the selection masks are written.
    With ``ledger_path`` the ledger is saved after every batch, *before* that batch's masks.
    Hooks (used by :mod:`ripu_kernels.resume` for its crash journal and by the annotator export):
    ``on_commit(ledger, records)`` runs before the batch's ledger is saved, with one dict per image
    (``id``, ``index``, ``selected``, ``truth``, ``active``, ``centers`` (picks x 2, row/col)); ``on_written()``
    runs once the batch's masks are written.
    Returns {"images", "pixels", "regions"} for this call.
    """
    from tqdm import tqdm

    model.eval()
    todo = [i for i in indices if not ledger.has_round(dataset.image_id(i), round_idx)]
    stats = {"images": 0, "pixels": 0, "regions": 0}
    bar = tqdm(total=len(todo), desc=f"acquire r{round_idx}", disable=not progress, leave=False)
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        items = [dataset[i] for i in chunk]
        ids = [it["id"] for it in items]
        shapes = {tuple(it["image"].shape[-2:]) for it in items}
        if len(shapes) != 1:  # images of different sizes: one at a time
            for i in chunk:
                sub = acquire(model, dataset, [i], store, ledger, budget, round_idx, iteration, oracle, device,
                              1, align_corners, False, selection_dir, ledger_path, on_commit, on_written)
                for key in stats:
                    stats[key] += sub[key]
            bar.update(len(chunk))
            continue
        h, w = shapes.pop()
        images = torch.stack([it["image"] for it in items]).to(device)
        logits = model(images)
        check_finite(logits, ids)
        scores = score_maps(logits.float(), budget, (h, w), align_corners)
        n = budget.picks(h, w)
        active_in = torch.from_numpy(np.stack([store.active(i, (h, w)) for i in ids])).to(scores.score.device)
        sel = ops.select_regions(scores.score, n, radius=budget.radius, mask_radius=budget.mask_radius,
                                 active=active_in)
        counts = sel.counts.cpu().tolist()
        centers = sel.centers.cpu().numpy()
        selected = sel.selected.cpu().numpy()
        active = sel.active.cpu().numpy()
        writes = []
        for j, (index, image_id) in enumerate(zip(chunk, ids)):
            pixels = int(selected[j].sum())
            if counts[j] > n or pixels > budget.max_pixels(h, w):
                raise AcquisitionError(f"acquisition: image {image_id!r} got {counts[j]} picks / {pixels} "
                                       f"pixels, over its budget of {n} picks")
            truth = oracle(index) if oracle is not None else None
            if truth is not None and truth.shape != (h, w):
                raise AcquisitionError(f"oracle: the label of image {image_id!r} is {truth.shape[1]}x"
                                       f"{truth.shape[0]}, the image is {w}x{h}")
            ledger.register(image_id, h, w)
            ledger.record(image_id, round_idx, iteration, pixels, counts[j], n)
            writes.append((image_id, selected[j], truth, active[j]))
            stats["images"] += 1
            stats["pixels"] += pixels
            stats["regions"] += counts[j]
        if on_commit is not None:
            on_commit(ledger, [{"id": w[0], "index": index, "selected": w[1], "truth": w[2], "active": w[3],
                                "centers": centers[j, :counts[j]]} for j, (w, index) in enumerate(zip(writes, chunk))])
        # the ledger is committed before the masks: a crash in between loses budget, never exceeds it
        if ledger_path is not None:
            ledger.save(ledger_path)
        for image_id, sel_j, truth, act_j in writes:
            if truth is not None:
                store.update(image_id, sel_j, truth, act_j)
            else:
                store.update_active(image_id, act_j)
            if selection_dir is not None:
                atomic_save_png(Path(selection_dir) / (_safe_id(image_id) + ".png"), sel_j.astype(np.uint8) * 255)
        if on_written is not None:
            on_written()
        bar.update(len(chunk))
    bar.close()
    ledger.set_round_iteration(round_idx, iteration)
    if ledger_path is not None:
        ledger.save(ledger_path)
    return stats


def revealed_batch(store: MaskStore, ids: list[str], shape: tuple[int, int]) -> torch.Tensor:
    """(B, H, W) int64 revealed labels of ``ids`` (255 where nothing is revealed)."""
    return torch.from_numpy(np.stack([store.labels(i, shape) for i in ids]).astype(np.int64))


def upsample(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of logits to the label size (align_corners=True, as the authors' code)."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=True)
