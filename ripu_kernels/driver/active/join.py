"""One state layout for every command: what ``STATE/`` belongs to, and whether a selection may join it.

A training run's state is ``OUT/state`` beside ``OUT/config.json``: its images are the run's target train set
(the ledger's images once a round ran, else the target set of that config). ``ripu select`` records its own
pool in ``STATE/state.json`` (``{"version": 1, "kind": "select", "ids": [...]}``) and adds the images of later
rounds to it. Before a selection writes
anything, :func:`check_join` refuses, naming the state, the image and the value, when

* the state belongs to a training run and an image is not in that run's target train set (the ids differ: e.g.
  ``--images`` names another folder level), since its masks and ledger would live beside the run's;
* none of the images is known to a non-empty ledger (another identity scheme, another dataset);
* an image's label size differs from the size its ledger records (another ``data.target_size`` or label size);
* the ledger was written for another mode or ``k`` (:meth:`Ledger.load`).

With matching ids the suppression masks of earlier rounds (``STATE/active/<id>.png``) are found and honoured,
every image keeps one ledger entry, and ``total_pixels`` stays that of the pool.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import AcquisitionError
from ..io import atomic_write_json
from .ledger import Ledger

MANIFEST = "state.json"
VERSION = 1


def read_manifest(state_dir) -> dict | None:
    path = Path(state_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise AcquisitionError(f"state: cannot read {path}: {exc}") from exc
    if d.get("version") != VERSION or d.get("kind") not in ("train", "select") or not isinstance(d.get("ids"), list):
        raise AcquisitionError(f"state: {path} is not a ripu state manifest (version {VERSION})")
    return d


def write_manifest(state_dir, kind: str, ids) -> None:
    atomic_write_json(Path(state_dir) / MANIFEST, {"version": VERSION, "kind": kind, "ids": sorted(set(ids))})


def _training_ids(state_dir, manifest, ledger: Ledger):
    """The target ids of the training run that owns ``state_dir``, or None when no run owns it."""
    if manifest is not None:
        return set(manifest["ids"]) if manifest["kind"] == "train" else None
    state = Path(state_dir).resolve()
    if state.name == "state" and (state.parent / "config.json").is_file():  # OUT/state of `ripu train`
        if ledger.images:
            return set(ledger.images)
        from ..config import load_config
        from ..data import build_datasets

        return set(build_datasets(load_config(str(state.parent / "config.json")))[1].ids)
    return None


def _hint(new_ids: list[str], known: list[str]) -> str:
    for a in new_ids[:50]:
        for b in known:
            if a.endswith("/" + b):
                return (f" (image {a!r} looks like the run's {b!r}: point --images one folder level deeper, "
                        f"at the folder that holds {b.split('/')[0]!r})")
            if b.endswith("/" + a):
                return f" (image {a!r} looks like the run's {b!r}: point --images one folder level higher)"
    return ""


def check_join(state_dir, ids: list[str], label_hw: tuple[int, int] | None, mode: str, k: int,
               what: str = "--images") -> None:
    """Refuse (AcquisitionError) a selection over ``ids`` at label size ``label_hw`` that would not join the state
    in ``state_dir`` correctly; see the module docstring."""
    state = Path(state_dir)
    ledger = Ledger.load(state / "ledger.json", mode, k)  # refuses another mode / k
    manifest = read_manifest(state)
    run_ids = _training_ids(state, manifest, ledger)
    ids = list(ids)
    if run_ids is not None:
        extra = [i for i in ids if i not in run_ids]
        if extra:
            known = sorted(run_ids)
            raise AcquisitionError(
                f"select: {state} belongs to a training run whose target train set has {len(run_ids)} images, but "
                f"{len(extra)} of the {len(ids)} images of {what} are not among them (e.g. {extra[0]!r}; the run's "
                f"ids look like {known[0]!r}){_hint(extra, known)}; select over the run's own target set by "
                "leaving out --images, or use another --out")
    known = ledger.images
    if known and ids and not any(i in known for i in ids):
        some = sorted(known)
        raise AcquisitionError(
            f"select: none of the {len(ids)} images of {what} is in the ledger {state / 'ledger.json'} "
            f"({len(known)} images, ids like {some[0]!r}; yours like {sorted(ids)[0]!r}){_hint(sorted(ids), some)}; "
            "they would be counted twice. Use the same image folder (ids are paths relative to it, without "
            "extension), or another --out")
    if label_hw is not None:
        for i in ids:
            rec = known.get(i)
            if rec is not None and (rec["height"], rec["width"]) != tuple(label_hw):
                raise AcquisitionError(
                    f"select: image {i!r} was acquired at {rec['width']}x{rec['height']} (ledger "
                    f"{state / 'ledger.json'}), this selection works at {label_hw[1]}x{label_hw[0]}; use the "
                    "config (data.target_size / label size) of the run that made the state")


def record_pool(state_dir, ids) -> None:
    """``state.json`` of a ``ripu select`` state: its pool grows with the images of every round."""
    manifest = read_manifest(state_dir)
    if manifest is not None and manifest["kind"] == "train":
        return
    old = set(manifest["ids"]) if manifest else set()
    if not set(ids) <= old:
        write_manifest(state_dir, "select", old | set(ids))
