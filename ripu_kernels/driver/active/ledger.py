"""The ledger: pixels and picks revealed per image and per round, and the iteration of each round.

``STATE/ledger.json`` holds, per image id, its label size and per round ``{"pixels", "regions", "budget"}``
(plus ``"labelled"`` once annotators' labels are imported), the iteration of every round, and a summary
(labelled fraction per round). Ledgers of shards over disjoint images merge with :meth:`Ledger.merge`;
conflicting records raise. Every record checks that no image gets more picks than its budget.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import AcquisitionError
from ..io import atomic_write_json


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

    def set_labelled(self, image_id: str, round_idx: int, pixels: int) -> None:
        """Record how many pixels annotators actually labelled (non-void) in an image's round."""
        rec = self.images.get(image_id, {}).get("rounds", {}).get(str(round_idx))
        if rec is None:
            raise AcquisitionError(f"ledger: image {image_id!r} has no acquisition in round {round_idx}")
        rec["labelled"] = int(pixels)

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
