"""The active-learning state and its acquisition: strategies, budgets and their units, the mask store, the
ledger, crash-safe commits, acquisition rounds (one process, sharded, or planned over the whole pool) and oracles
(annotators' files: ``driver.annotate``).

| module | holds |
| --- | --- |
| ``budget`` | :class:`Budget`: the strategy, the unit (ratio, pixels, pool, images) and its amounts, what a pick reveals and suppresses |
| ``store`` | :class:`MaskStore`: revealed labels and suppression masks per image |
| ``ledger`` | :class:`Ledger`: pixels, picks and whole images per image and round, round-level budgets |
| ``scoring`` | the strategies (ra, pa, impurity, uncertainty, entropy, random; a registry) through the public fused ops |
| ``acquire`` | :class:`Acquirer`: one round over a list of images; pool- and image-level candidates and plans |
| ``commit`` | the crash journal and the batch writer |
| ``shards`` | shards of a round, shard ledgers and their merge, a round over the ranks, round plans |
| ``oracle`` | :class:`SimulatedOracle` |
| ``join`` | ``STATE/state.json`` and whether a selection may join a state |
"""
from __future__ import annotations

from ..errors import AcquisitionError
from .acquire import Acquirer
from .budget import Budget
from .commit import BatchWriter, Journal, Pick
from .ledger import Ledger
from .oracle import SimulatedOracle
from .store import IGNORE_INDEX, MaskStore, image_relpath

__all__ = ["AcquisitionError", "Acquirer", "Budget", "BatchWriter", "Journal", "Pick", "Ledger", "SimulatedOracle",
           "IGNORE_INDEX", "MaskStore", "image_relpath"]
