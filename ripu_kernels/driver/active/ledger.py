"""The ledger: pixels, picks and whole images revealed per image and per round, and the iteration of each round.

``STATE/ledger.json`` holds the acquisition's ``mode``, ``k``, ``strategy`` and ``unit``; per image id its label
size and per round ``{"pixels", "regions", "images", "budget"}`` (pixels revealed, picks, 1 when the whole image
was revealed, and the picks the image was allowed; plus ``"labelled"`` once annotators' labels are imported);
the iteration of every round; the round-level budgets of the units ``pool`` (``{"unit": "pool", "regions": B}``)
and ``images`` (``{"unit": "images", "images": B}``); and a summary (labelled fraction per round). Ledgers of
shards over disjoint images merge with :meth:`Ledger.merge`; conflicting records raise. Every record checks
that no image gets more picks than its budget, and :meth:`Ledger.check_round` that no round exceeds its
round-level budget.
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

    def __init__(self, mode: str = "ra", k: int = 1, strategy: str = "", unit: str = ""):
        self.mode, self.k = mode, k
        self.strategy, self.unit = strategy, unit      # "" in ledgers written before strategies and units
        self.images: dict[str, dict] = {}
        self.round_iterations: dict[str, int] = {}
        self.round_budgets: dict[str, dict] = {}

    # ---- recording
    def register(self, image_id: str, height: int, width: int) -> None:
        entry = self.images.setdefault(image_id, {"height": height, "width": width, "rounds": {}})
        if (entry["height"], entry["width"]) != (height, width):
            raise AcquisitionError(f"ledger: image {image_id!r} was {entry['width']}x{entry['height']}, "
                                   f"now {width}x{height}")

    def record(self, image_id: str, round_idx: int, iteration: int, pixels: int, regions: int, budget: int,
               images: int = 0) -> None:
        """One image's acquisition in a round: pixels revealed, picks, whole images (0 or 1), its budget."""
        entry = self.images[image_id]
        key = str(round_idx)
        if key in entry["rounds"]:
            raise AcquisitionError(f"ledger: image {image_id!r} already has an acquisition in round {round_idx}")
        if regions > budget or images > budget:
            raise AcquisitionError(f"ledger: image {image_id!r} got {max(regions, images)} picks in round "
                                   f"{round_idx}, over its budget of {budget}")
        if pixels > entry["height"] * entry["width"] or images not in (0, 1):
            raise AcquisitionError(f"ledger: image {image_id!r} cannot reveal {pixels} pixels / {images} images in "
                                   f"round {round_idx} (it has {entry['height'] * entry['width']} pixels)")
        entry["rounds"][key] = {"pixels": int(pixels), "regions": int(regions), "images": int(images),
                                "budget": int(budget)}
        self.set_round_iteration(round_idx, iteration)

    def set_round_budget(self, round_idx: int, unit: str, amount: int) -> None:
        """The round-level budget of the units ``pool`` (picks) and ``images`` (whole images)."""
        field = {"pool": "regions", "images": "images"}[unit]
        new = {"unit": unit, field: int(amount)}
        prev = self.round_budgets.get(str(round_idx))
        if prev is not None and prev != new:
            raise AcquisitionError(f"ledger: round {round_idx} has the budget {prev}, not {new}")
        self.round_budgets[str(round_idx)] = new

    def round_totals(self, round_idx: int) -> dict:
        """Pixels, regions (picks) and whole images of round ``round_idx`` over every image."""
        key = str(round_idx)
        recs = [e["rounds"][key] for e in self.images.values() if key in e["rounds"]]
        return {"pixels": sum(r["pixels"] for r in recs), "regions": sum(r["regions"] for r in recs),
                "images": sum(r.get("images", 0) for r in recs)}

    def check_round(self, round_idx: int) -> None:
        """Raise when round ``round_idx`` took more than its round-level budget (units ``pool`` and ``images``)."""
        budget = self.round_budgets.get(str(round_idx))
        if budget is None:
            return
        field = "regions" if budget["unit"] == "pool" else "images"
        got = self.round_totals(round_idx)[field]
        if got > budget[field]:
            raise AcquisitionError(f"ledger: round {round_idx} took {got} {field}, over its {budget['unit']} "
                                   f"budget of {budget[field]}")

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

    def image_wholes(self, image_id: str) -> int:
        return sum(r.get("images", 0) for r in self.images.get(image_id, {}).get("rounds", {}).values())

    def rounds(self) -> list[dict]:
        """Per round: iteration, pixels, regions, images acquired on, whole images revealed, cumulative labelled
        fraction (and the round-level budget, if any)."""
        out, cumulative = [], 0
        total = self.total_pixels
        for key in sorted(self.round_iterations, key=int):
            tot = self.round_totals(int(key))
            n = sum(1 for e in self.images.values() if key in e["rounds"])
            cumulative += tot["pixels"]
            row = {"round": int(key), "iteration": self.round_iterations[key], "pixels": tot["pixels"],
                   "regions": tot["regions"], "images": n, "whole_images": tot["images"],
                   "labelled_fraction": cumulative / total if total else 0.0}
            if key in self.round_budgets:
                row["budget"] = dict(self.round_budgets[key])
            out.append(row)
        return out

    # ---- persistence
    def to_dict(self) -> dict:
        return {"version": self.VERSION, "mode": self.mode, "k": self.k, "strategy": self.strategy,
                "unit": self.unit, "images": self.images, "round_iterations": self.round_iterations,
                "round_budgets": self.round_budgets, "summary": {
                    "total_pixels": self.total_pixels, "labelled_pixels": self.labelled_pixels,
                    "labelled_fraction": self.labelled_fraction, "rounds": self.rounds()}}

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, d: dict, where: str = "ledger") -> "Ledger":
        try:
            if d.get("version") != cls.VERSION:
                raise AcquisitionError(f"{where}: unsupported ledger version {d.get('version')!r}")
            led = cls(d["mode"], int(d["k"]), str(d.get("strategy", "")), str(d.get("unit", "")))
            led.images = {str(k): v for k, v in d["images"].items()}
            led.round_iterations = {str(k): int(v) for k, v in d["round_iterations"].items()}
            led.round_budgets = {str(k): dict(v) for k, v in d.get("round_budgets", {}).items()}
        except (KeyError, TypeError, AttributeError) as exc:
            raise AcquisitionError(f"{where}: malformed ledger ({exc!r})") from exc
        return led

    @classmethod
    def load(cls, path: str | os.PathLike, mode: str = "ra", k: int = 1, strategy: str = "",
             unit: str = "") -> "Ledger":
        """The ledger at ``path``, or a new empty one when the file does not exist.

        ``strategy`` and ``unit``, when given, must match the file's (a file without them takes them)."""
        path = Path(path)
        if not path.exists():
            return cls(mode, k, strategy, unit)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise AcquisitionError(f"ledger: cannot read {path}: {exc}") from exc
        led = cls.from_dict(d, where=str(path))
        if (led.mode, led.k) != (mode, k):
            raise AcquisitionError(f"ledger: {path} was written for mode={led.mode} k={led.k}, "
                                   f"not mode={mode} k={k}")
        led._adopt(strategy, unit, str(path))
        return led

    def _adopt(self, strategy: str, unit: str, where: str) -> None:
        for name, want in (("strategy", strategy), ("unit", unit)):
            have = getattr(self, name)
            if want and have and want != have:
                raise AcquisitionError(f"ledger: {where} was written for active.{name}={have}, not {want}")
            if want and not have:
                setattr(self, name, want)

    def merge(self, other: "Ledger") -> "Ledger":
        """Union of two ledgers (e.g. from shards over disjoint images); conflicts raise."""
        if (self.mode, self.k) != (other.mode, other.k):
            raise AcquisitionError(f"ledger: cannot merge mode={other.mode} k={other.k} into "
                                   f"mode={self.mode} k={self.k}")
        for name in ("strategy", "unit"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine and theirs and mine != theirs:
                raise AcquisitionError(f"ledger: cannot merge a ledger of active.{name}={theirs} into one of "
                                       f"active.{name}={mine}")
        self._adopt(other.strategy, other.unit, "the merged ledger")
        for key, it in other.round_iterations.items():
            self.set_round_iteration(int(key), it)
        for key, b in other.round_budgets.items():
            self.set_round_budget(int(key), b["unit"], b["regions" if b["unit"] == "pool" else "images"])
        for image_id, entry in other.images.items():
            mine = self.images.get(image_id)
            if mine is None:
                self.images[image_id] = json.loads(json.dumps(entry))
                continue
            if (mine["height"], mine["width"]) != (entry["height"], entry["width"]):
                raise AcquisitionError(f"ledger: image {image_id!r} has two different sizes")
            for rk_, rec in entry["rounds"].items():
                old = mine["rounds"].get(rk_)
                if old is not None and any(old.get(f, 0) != rec.get(f, 0) for f in ("pixels", "regions", "images",
                                                                                 "budget")):
                    raise AcquisitionError(f"ledger: image {image_id!r} round {rk_} differs between ledgers")
                mine["rounds"][rk_] = {**(old or {}), **rec}  # extra keys (``labelled`` of imports) are kept
        return self
