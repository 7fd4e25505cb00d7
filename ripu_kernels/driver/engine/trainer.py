"""The RIPU training loop: source CE + LCR, target CE on revealed labels + NL, active rounds, checkpoints.

Every iteration draws a source batch and a target batch and forwards them separately (as the authors' code;
the two domains may have different sizes). The loss is

    CE(source) + lcr_weight * LCR(source, on label boundaries)
    + CE(target, revealed labels only) + nl_weight * NL(target)

(the target terms from iteration 0, or only from the first active round when
``train.target_losses_before_rounds`` is false, which makes the iterations before it source-only).
At each iteration listed in ``active.rounds_at`` the model acquires a round of regions (RA) or pixels
(PA) on the target train set; the simulated oracle reveals their ground truth. The LR follows
``lr * (1 - it / iters) ** power`` with the head at ``head_lr_mult`` x. Losses and acquisition go
through the public fused ops (``ripu_kernels.local_consistency_loss`` etc., backend ``auto``).
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import ripu_kernels as rk

from ..active import Acquirer, Budget, Ledger, MaskStore, SimulatedOracle
from ..active.shards import acquire_round
from ..config import Config, config_diff
from ..data import IGNORE_INDEX, build_datasets
from ..data.sampling import BatchStream
from ..errors import ConfigError
from ..evaluate import evaluate_sharded, format_table
from ..io import atomic_write_json
from ..models import build_model, upsample
from . import checkpoint as ckpt_io
from .distributed import DistEnv, current, wrap_ddp
from .schedule import poly_lr

log = logging.getLogger("ripu")

# config keys that may change when a run is resumed (where the data lives, how fast it runs, how it logs)
RESUME_MUTABLE = ("out_dir", "device", "threads", "data.source_root", "data.target_root", "data.source_list",
                  "data.target_train_list", "data.target_val_list", "train.log_every", "eval.batch_size",
                  "active.batch_size")


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def setup_logging(out_dir: str | os.PathLike, quiet: bool = False) -> logging.Logger:
    """Log to ``out_dir/train.log`` (beside the checkpoints) and, unless ``quiet``, to stderr."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    log.setLevel(logging.INFO)
    log.propagate = False
    fh = logging.FileHandler(Path(out_dir) / "train.log", encoding="utf-8")
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(fh)
    if not quiet:
        sh = logging.StreamHandler()
        sh.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(sh)
    return log


def silence_logging() -> None:
    """No log output (the non-zero ranks of a distributed run: one log, rank 0's)."""
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    log.addHandler(logging.NullHandler())
    log.propagate = False


def masked_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross entropy over non-ignored pixels; an exact 0 (with a graph) when there are none."""
    if bool((labels != IGNORE_INDEX).any()):
        return F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)
    return logits.sum() * 0.0


class DomainPair(torch.nn.Module):
    """Forwards a source batch and (optionally) a target batch separately through one model: one module call
    per step, so DistributedDataParallel sees one forward per backward."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, src: torch.Tensor, tgt: torch.Tensor | None = None):
        return self.model(src), (self.model(tgt) if tgt is not None else None)


class Trainer:
    """Datasets, model, optimiser and the active-learning state of one run in ``cfg.out_dir``."""

    def __init__(self, cfg: Config, progress: bool = True, datasets=None, resume: bool = False,
                 env: DistEnv | None = None):
        self.cfg = cfg
        self.progress = progress
        self.out = Path(cfg.out_dir)
        self.env = env if env is not None else current()
        self.resume = resume
        self.device = torch.device(cfg.device)
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        seed_everything(cfg.seed)
        self.source, self.target, self.val = datasets if datasets is not None else build_datasets(cfg)
        self.num_classes = cfg.data.num_classes
        self.class_names = getattr(self.val, "class_names", ()) or tuple(str(i) for i in range(self.num_classes))
        self.model = build_model(cfg.model, self.num_classes).to(self.device)
        self.train_model = wrap_ddp(DomainPair(self.model), self.env, self.device)  # DDP when distributed
        backbone, head = self.model.param_groups()
        t = cfg.train
        self.optimizer = torch.optim.SGD(
            [{"params": backbone, "lr": t.lr, "lr_mult": 1.0},
             {"params": head, "lr": t.lr * t.head_lr_mult, "lr_mult": t.head_lr_mult}],
            lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
        self.state_dir = self.out / "state"
        self.store = MaskStore(self.state_dir)
        self.budget = Budget.from_config(cfg) if cfg.active.mode != "none" else None
        self.ledger_path = self.state_dir / "ledger.json"
        used = [self.ledger_path, self.out / "metrics.json", ckpt_io.resume_path(self.out), self.state_dir / "ledgers"]
        if not resume and any(p.exists() for p in used):
            raise ConfigError(f"out_dir {str(self.out)!r} already holds a run (a ledger, metrics or a resume "
                              "checkpoint); choose a new out_dir, or continue it with `ripu train --resume DIR`")
        self.ledger = Ledger(cfg.active.mode, cfg.window_k)
        self.iteration = 0
        self.history: list[dict] = []

    # ------------------------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, name: str) -> Path:
        path = self.out / "checkpoints" / name
        if self.env.is_main:  # the replicas are identical: rank 0 writes
            ckpt_io.save_checkpoint(path, self.model, self.optimizer, self.iteration, self.cfg.to_dict(),
                                    self.num_classes, self.history)
        return path

    def save_resume(self, metrics: dict, running: dict, gen, src_batches, tgt_batches,
                    iteration: int | None = None) -> None:
        """The whole state needed to continue at ``iteration`` (default: the current one)."""
        if not self.env.is_main:
            return
        ckpt_io.save_resume(self.out, {
            "iteration": self.iteration if iteration is None else iteration, "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "config": self.cfg.to_dict(), "metrics": metrics,
            "running": running, "flip_generator": gen.get_state(), "source_batches": src_batches.state_dict(),
            "target_batches": tgt_batches.state_dict(), "num_classes": self.num_classes,
            "num_workers": self.cfg.data.num_workers, "world_size": self.env.world_size})

    def load_resume(self, gen, src_batches, tgt_batches):
        """Restore the state saved by :meth:`save_resume`; returns (iteration, metrics, running)."""
        state = ckpt_io.load_resume(self.out)
        diff = config_diff(state["config"], self.cfg.to_dict(), RESUME_MUTABLE)
        if diff:
            raise ConfigError(f"resume: the config differs from the run in {str(self.out)!r} in "
                              + ", ".join(diff) + "; only paths, device, threads and logging may change")
        if state.get("num_workers", 0) != self.cfg.data.num_workers:
            raise ConfigError(f"resume: the run used data.num_workers={state.get('num_workers', 0)}, now "
                              f"{self.cfg.data.num_workers}; the data loader's saved position is per worker, so "
                              "resume with the same data.num_workers")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        gen.set_state(state["flip_generator"])
        src_batches.load_state_dict(state["source_batches"])
        tgt_batches.load_state_dict(state["target_batches"])
        ckpt_io.set_rng_state(state["rng"])
        if self.budget is not None:
            self.ledger = Ledger.load(self.ledger_path, self.budget.mode, self.budget.k)
        self.history = state["metrics"].get("rounds", [])
        log.info("resumed %s at iteration %d", self.out, state["iteration"])
        return int(state["iteration"]), state["metrics"], state["running"]

    # -------------------------------------------------------------------------------------- one step
    def _flips(self, batch_size: int, gen: torch.Generator) -> torch.Tensor:
        """Per-sample flips of this rank's part, drawn for the global batch from the run's generator."""
        r, w = self.env.rank, self.env.world_size
        return (torch.rand(batch_size * w, generator=gen) < 0.5)[r * batch_size:(r + 1) * batch_size]

    def step(self, src: dict, tgt: dict, use_target: bool, gen: torch.Generator) -> dict:
        t = self.cfg.train
        for group in self.optimizer.param_groups:
            group["lr"] = poly_lr(t.lr, self.iteration, t.iters, t.power) * group["lr_mult"]
        src_img, src_lab = src["image"], src["label"]
        tgt_img = tgt_lab = None
        if use_target:
            tgt_img, tgt_lab = tgt["image"], self.store.revealed_batch(tgt["id"], tuple(tgt["image"].shape[-2:]))
        if t.flip:
            f = self._flips(src_img.shape[0], gen)
            src_img = torch.where(f[:, None, None, None], src_img.flip(-1), src_img)
            src_lab = torch.where(f[:, None, None], src_lab.flip(-1), src_lab)
            if use_target:
                f = self._flips(tgt_img.shape[0], gen)
                tgt_img = torch.where(f[:, None, None, None], tgt_img.flip(-1), tgt_img)
                tgt_lab = torch.where(f[:, None, None], tgt_lab.flip(-1), tgt_lab)
        self.model.train()
        src_out, tgt_out = self.train_model(src_img.to(self.device),
                                            tgt_img.to(self.device) if use_target else None)
        src_logits = upsample(src_out, tuple(src_lab.shape[-2:]))
        src_lab = src_lab.to(self.device)
        loss_src = F.cross_entropy(src_logits, src_lab, ignore_index=IGNORE_INDEX)
        loss_lcr = rk.local_consistency_loss(src_logits, src_lab, kind=t.lcr_kind, neighbors=t.lcr_neighbors,
                                             ignore_index=IGNORE_INDEX)
        loss = loss_src + t.lcr_weight * loss_lcr
        parts = {"src_ce": loss_src.item(), "lcr": loss_lcr.item()}
        if use_target:
            tgt_logits = upsample(tgt_out, tuple(tgt_lab.shape[-2:]))
            loss_tgt = masked_ce(tgt_logits, tgt_lab.to(self.device))
            loss_nl = rk.negative_learning_loss(tgt_logits, threshold=t.nl_threshold)
            loss = loss + loss_tgt + t.nl_weight * loss_nl
            parts.update(tgt_ce=loss_tgt.item(), nl=loss_nl.item())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training: the loss became {float(loss)} at iteration {self.iteration} "
                                     f"({parts}); lower train.lr")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        parts["loss"] = loss.item()
        return parts

    # ------------------------------------------------------------------------------------ evaluation
    def evaluate(self, tag: str) -> dict:
        res = evaluate_sharded(self.env, self.model, self.val, self.num_classes, self.device,
                               self.cfg.eval.batch_size, self.cfg.eval.flip, self.progress and self.env.is_main)
        log.info("[%s] iteration %d: mIoU %.2f\n%s", tag, self.iteration, res["miou"],
                 format_table(res, self.class_names))
        return res

    def acquire_round(self, round_idx: int) -> dict:
        """Round ``round_idx`` on every rank (sharded, journalled, resumable), then the merged masks and ledger."""
        start = time.time()
        acquirer = Acquirer(self.model, self.budget, self.device, self.cfg.active.batch_size,
                            self.cfg.active.align_corners, self.progress and self.env.is_main)
        stats = acquire_round(self.env, acquirer, self.target, self.state_dir, round_idx, self.iteration,
                              SimulatedOracle(self.target))
        # every rank reads the masks written by the others from disk from now on
        self.store = MaskStore(self.state_dir)
        self.ledger = Ledger.load(self.ledger_path, self.budget.mode, self.budget.k)
        log.info("[round %d] iteration %d: %d regions / %d pixels on %d images in %.1fs; labelled fraction %.4f%%",
                 round_idx, self.iteration, stats["regions"], stats["pixels"], stats["images"],
                 time.time() - start, 100 * self.ledger.labelled_fraction)
        return stats

    # ------------------------------------------------------------------------------------------ run
    def run(self, stop_at: int | None = None) -> dict:
        """Train for ``train.iters`` iterations with the active rounds; returns the metrics dict.

        ``stop_at=N`` stops before iteration N (before a round at N) with a resume point there and returns the
        metrics so far (``ripu ablate`` trains the source-only phase once and forks every strategy from it)."""
        from tqdm import tqdm

        cfg, t = self.cfg, self.cfg.train
        self.out.mkdir(parents=True, exist_ok=True)
        if self.env.is_main:
            atomic_write_json(self.out / "config.json", cfg.to_dict())
        rounds = list(cfg.active.rounds_at) if self.budget is not None else []
        r_, w_, nw = self.env.rank, self.env.world_size, cfg.data.num_workers
        src_batches = BatchStream(self.source, cfg.data.batch_size, cfg.seed + 1, nw, r_, w_)
        tgt_batches = BatchStream(self.target, cfg.data.batch_size, cfg.seed + 2, nw, r_, w_)
        gen = torch.Generator().manual_seed(cfg.seed + 3)
        backends = rk.available_backends(self.device)
        log.info("run in %s: %d source / %d target train / %d target val images; fused ops backend 'auto' "
                 "(available: %s); %d threads", self.out, len(self.source), len(self.target), len(self.val),
                 ", ".join(backends), torch.get_num_threads())
        metrics: dict = {"rounds": [], "ops_backends": backends}
        started = time.time()
        running: dict[str, float] = {}
        start = 0
        if self.resume:
            start, metrics, running = self.load_resume(gen, src_batches, tgt_batches)
        bar = tqdm(total=t.iters, initial=start, desc="train", disable=not self.progress)
        for self.iteration in range(start, t.iters):
            if self.iteration == stop_at:
                self.save_resume(metrics, running, gen, src_batches, tgt_batches)
                bar.close()
                return metrics
            if self.iteration in rounds:
                self._round(rounds.index(self.iteration), metrics, running, gen, src_batches, tgt_batches)
            use_target = t.target_losses_before_rounds or (bool(rounds) and self.iteration >= rounds[0])
            parts = self.step(next(src_batches), next(tgt_batches), use_target, gen)
            for key, v in parts.items():
                running[key] = running.get(key, 0.0) + v
            if (self.iteration + 1) % t.log_every == 0:
                avg = {k: v / t.log_every for k, v in running.items()}
                log.info("iter %d/%d lr %.2e %s", self.iteration + 1, t.iters,
                         self.optimizer.param_groups[0]["lr"], " ".join(f"{k} {v:.4f}" for k, v in avg.items()))
                bar.set_postfix(loss=f"{avg['loss']:.3f}")
                running = {}
            if (self.iteration + 1) % t.checkpoint_every == 0:
                self.save_checkpoint(f"iter_{self.iteration + 1:06d}.pth")
                self.save_resume(metrics, running, gen, src_batches, tgt_batches, self.iteration + 1)
            bar.update(1)
        bar.close()
        self.iteration = t.iters
        final = self.evaluate("final")
        if metrics["rounds"]:
            metrics["rounds"][-1]["miou"] = final["miou"]
        metrics.update(miou_final=final["miou"], iou_final=final["iou"], class_names=list(self.class_names),
                       labelled_fraction=self.ledger.labelled_fraction,
                       labelled_pixels=self.ledger.labelled_pixels, target_pixels=self.ledger.total_pixels,
                       train_seconds=time.time() - started, iterations=t.iters)
        self.history = metrics["rounds"]
        self.save_checkpoint("final.pth")
        if self.env.is_main:
            atomic_write_json(self.out / "metrics.json", metrics)
        return metrics

    def _round(self, r: int, metrics: dict, running: dict, gen, src_batches, tgt_batches) -> None:
        """Active round ``r`` at the current iteration: a resume point, the evaluation before it, acquisition."""
        # a resume point right before the round: masks only change inside rounds
        self.save_resume(metrics, running, gen, src_batches, tgt_batches)
        if self.cfg.train.eval_every_round:
            res = self.evaluate(f"before round {r}")
            if r == 0:
                metrics["miou_before_rounds"] = res["miou"]
                metrics["iou_before_rounds"] = res["iou"]
            else:
                metrics["rounds"][-1]["miou"] = res["miou"]
        self.acquire_round(r)
        metrics["rounds"].append({"round": r, "iteration": self.iteration,
                                  "labelled_fraction": self.ledger.labelled_fraction})
        self.save_checkpoint(f"round_{r}.pth")


def load_checkpoint(path: str | os.PathLike, device="cpu"):
    """(model in eval mode, :class:`Config`, checkpoint dict) from a checkpoint written by :class:`Trainer`."""
    from ..config import config_from_dict
    from ..errors import CheckpointError

    ckpt = ckpt_io.read_checkpoint(path)
    cfg = config_from_dict(ckpt["config"], str(path))
    model = build_model(cfg.model, int(ckpt["num_classes"]))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: the weights do not fit the model its config describes: "
                              f"{str(exc).splitlines()[0]}") from None
    return model.to(device).eval(), cfg, ckpt
