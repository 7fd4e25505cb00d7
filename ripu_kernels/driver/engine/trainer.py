"""The RIPU training loop: source CE + LCR, target CE on revealed labels + NL, active rounds, checkpoints.

Every iteration draws a source batch and a target batch and forwards them separately (as the authors' code;
the two domains may have different sizes). The loss is

    CE(source) + lcr_weight * LCR(source, on label boundaries)
    + CE(target, revealed labels only) + nl_weight * NL(target)

(the target terms from iteration 0, or only from the first active round when
``train.target_losses_before_rounds`` is false, which makes the iterations before it source-only).
At each iteration listed in ``active.rounds_at`` the model acquires a round of regions (RA) or pixels
(PA) on the target train set; the simulated oracle reveals their ground truth. The LR follows
``lr * (1 - it / max_iter) ** power`` with the head at ``head_lr_mult`` x (``train.max_iter``, the authors'
MAX_ITER; training stops after ``train.iters`` iterations, their STOP_ITER, with the LR still above 0). A
source-free run (``data.source: none``) has only the target terms; a source-only run (``active.mode: none``
without target losses) only the source ones and reads no target train images. Losses and acquisition go
through the public fused ops (``ripu_kernels.local_consistency_loss`` etc., backend ``auto``).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import ripu_kernels as rk

from ..active import Acquirer, Budget, Ledger, MaskStore, SimulatedOracle
from ..active.resolution import label_hw
from ..active.shards import acquire_round
from ..annotate import human
from ..config import Config, config_diff
from ..data import IGNORE_INDEX, build_datasets
from ..data.sampling import BatchStream, source_stream
from ..errors import ConfigError, LabelImportError
from ..evaluate import evaluate_sharded, format_table
from ..io import atomic_write_json
from ..models import build_model, upsample
from . import checkpoint as ckpt_io
from ..preflight import check_weights, preflight
from .authors import load_weights, read_weights
from .device import resolve_device
from .distributed import DistEnv, current, wrap_ddp
from .schedule import poly_lr

log = logging.getLogger("ripu")

# config keys that may change when a run is resumed (where the data lives, how fast it runs, how it logs)
RESUME_MUTABLE = ("out_dir", "device", "threads", "data.source_root", "data.target_root", "data.source_list",
                  "data.target_train_list", "data.target_val_list", "data.prepared_dir", "data.preflight",
                  "train.log_every", "eval.batch_size", "active.batch_size")


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

    def forward(self, src: torch.Tensor | None, tgt: torch.Tensor | None = None):
        return (self.model(src) if src is not None else None), (self.model(tgt) if tgt is not None else None)


class Trainer:
    """Datasets, model, optimiser and the active-learning state of one run in ``cfg.out_dir``."""

    def __init__(self, cfg: Config, progress: bool = True, datasets=None, resume: bool = False,
                 env: DistEnv | None = None, allow_missing_labels: bool = False):
        self.cfg = cfg
        self.progress = progress
        self.out = Path(cfg.out_dir)
        self.env = env if env is not None else current()
        self.resume = resume
        self.device = torch.device(resolve_device(cfg.device))
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        seed_everything(cfg.seed)
        if not resume:  # (a resumed run takes every weight from its resume state)
            check_weights(cfg)  # no ResNet from random weights unless model.pretrained=none says so
        # target train images are needed for acquisition or target losses (not by a source-only run)
        self.uses_target = cfg.active.mode != "none" or cfg.train.target_losses_before_rounds
        if datasets is None:
            need = ("source",) * (cfg.data.source != "none") + ("target",) * self.uses_target + ("val",)
            datasets = build_datasets(cfg, need)
            if cfg.data.preflight != "off":  # every rank: each fails alike instead of waiting for rank 0
                preflight(datasets, decode=cfg.data.preflight == "decode", progress=progress and self.env.is_main)
        self.source, self.target, self.val = datasets
        self.num_classes = cfg.data.num_classes
        self.class_names = getattr(self.val, "class_names", ()) or tuple(str(i) for i in range(self.num_classes))
        init = cfg.model.init_checkpoint if not resume else ""
        # with an init checkpoint (or a resume state) every weight comes from it: no ImageNet file is read
        self.model = build_model(dataclasses.replace(cfg.model, pretrained="none") if init or resume else cfg.model,
                                 self.num_classes)
        if init:
            load_weights(self.model, read_weights(init, cfg), f"model.init_checkpoint {init}")
        self.model.to(self.device)
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
        # active.oracle=human: rounds export queries and the run stops until people's labels are imported
        self.human = cfg.active.oracle == "human" and self.budget is not None
        self.allow_missing_labels = allow_missing_labels
        self.awaiting: int | None = None  # the round a resumed run waited for labels of

    # ------------------------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, name: str) -> Path:
        path = self.out / "checkpoints" / name
        if self.env.is_main:  # the replicas are identical: rank 0 writes
            ckpt_io.save_checkpoint(path, self.model, self.optimizer, self.iteration, self.cfg.to_dict(),
                                    self.num_classes, self.history)
        return path

    def save_resume(self, metrics: dict, running: dict, gen, src_batches, tgt_batches,
                    iteration: int | None = None, extra: dict | None = None) -> None:
        """The whole state needed to continue at ``iteration`` (default: the current one)."""
        if not self.env.is_main:
            return
        ckpt_io.save_resume(self.out, {
            "iteration": self.iteration if iteration is None else iteration, "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "config": self.cfg.to_dict(), "metrics": metrics,
            "running": running, "flip_generator": gen.get_state(),
            "source_batches": src_batches.state_dict() if src_batches is not None else None,
            "target_batches": tgt_batches.state_dict() if tgt_batches is not None else None,
            "num_classes": self.num_classes,
            "num_workers": self.cfg.data.num_workers, "world_size": self.env.world_size, **(extra or {})})

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
        if src_batches is not None:
            src_batches.load_state_dict(state["source_batches"])
        if tgt_batches is not None:
            tgt_batches.load_state_dict(state["target_batches"])
        ckpt_io.set_rng_state(state["rng"])
        if self.budget is not None:
            self.ledger = Ledger.load(self.ledger_path, self.budget.mode, self.budget.k)
        self.history = state["metrics"].get("rounds", [])
        self.awaiting = state.get("awaiting_labels")
        log.info("resumed %s at iteration %d", self.out, state["iteration"])
        return int(state["iteration"]), state["metrics"], state["running"]

    # -------------------------------------------------------------------------------------- one step
    def _flips(self, batch_size: int, gen: torch.Generator) -> torch.Tensor:
        """Per-sample flips of this rank's part, drawn for the global batch from the run's generator."""
        r, w = self.env.rank, self.env.world_size
        return (torch.rand(batch_size * w, generator=gen) < 0.5)[r * batch_size:(r + 1) * batch_size]

    def revealed_labels(self, tgt: dict) -> torch.Tensor:
        """The revealed labels of a target batch at its input size (masks are stored at the label size the
        acquisition used, e.g. the original 1024x2048, and nearest-resized here, as the authors)."""
        hw = tuple(tgt["image"].shape[-2:])
        stored = [label_hw(self.target, int(i), hw) for i in tgt["index"].tolist()]
        return self.store.revealed_batch(tgt["id"], hw, stored)

    def step(self, src: dict | None, tgt: dict | None, use_target: bool, gen: torch.Generator) -> dict:
        """One SGD step on a source batch (None: source-free) and, with ``use_target``, a target batch."""
        t = self.cfg.train
        for group in self.optimizer.param_groups:
            group["lr"] = poly_lr(t.lr, self.iteration, self.cfg.lr_horizon, t.power) * group["lr_mult"]
        src_img = src_lab = tgt_img = tgt_lab = None
        if src is not None:
            src_img, src_lab = src["image"], src["label"]
        if use_target:
            tgt_img, tgt_lab = tgt["image"], self.revealed_labels(tgt)
        if t.flip:
            if src is not None:
                f = self._flips(src_img.shape[0], gen)
                src_img = torch.where(f[:, None, None, None], src_img.flip(-1), src_img)
                src_lab = torch.where(f[:, None, None], src_lab.flip(-1), src_lab)
            if use_target:
                f = self._flips(tgt_img.shape[0], gen)
                tgt_img = torch.where(f[:, None, None, None], tgt_img.flip(-1), tgt_img)
                tgt_lab = torch.where(f[:, None, None], tgt_lab.flip(-1), tgt_lab)
        self.model.train()
        src_out, tgt_out = self.train_model(src_img.to(self.device) if src is not None else None,
                                            tgt_img.to(self.device) if use_target else None)
        loss = torch.zeros((), device=self.device)
        parts = {}
        if src is not None:
            src_logits = upsample(src_out, tuple(src_lab.shape[-2:]))
            src_lab = src_lab.to(self.device)
            loss_src = F.cross_entropy(src_logits, src_lab, ignore_index=IGNORE_INDEX)
            loss = loss + loss_src
            parts["src_ce"] = loss_src.item()
            if t.lcr_weight > 0:  # as the authors' train.py:132, skipped at weight 0 (source-only)
                loss_lcr = rk.local_consistency_loss(src_logits, src_lab, kind=t.lcr_kind,
                                                     neighbors=t.lcr_neighbors, ignore_index=IGNORE_INDEX)
                loss = loss + t.lcr_weight * loss_lcr
                parts["lcr"] = loss_lcr.item()
        if use_target:
            tgt_logits = upsample(tgt_out, tuple(tgt_lab.shape[-2:]))
            loss_tgt = masked_ce(tgt_logits, tgt_lab.to(self.device))
            loss = loss + loss_tgt
            parts["tgt_ce"] = loss_tgt.item()
            if t.nl_weight > 0:
                loss_nl = rk.negative_learning_loss(tgt_logits, threshold=t.nl_threshold)
                loss = loss + t.nl_weight * loss_nl
                parts["nl"] = loss_nl.item()
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
                               self.cfg.eval.batch_size, self.cfg.eval.flip, self.progress and self.env.is_main,
                               self.class_names)
        log.info("[%s] iteration %d: mIoU %.2f\n%s", tag, self.iteration, res["miou"],
                 format_table(res, self.class_names))
        return res

    def acquire_round(self, round_idx: int) -> dict:
        """Round ``round_idx`` on every rank (sharded, journalled, resumable), then the merged masks and ledger."""
        start = time.time()
        acquirer = Acquirer(self.model, self.budget, self.device, self.cfg.active.batch_size,
                            self.cfg.active.align_corners, self.progress and self.env.is_main,
                            resize_via_input=self.cfg.active.resize_via_input)
        exporter = None
        if self.human:
            exporter = human.make_exporter(self.cfg, self.out, self.state_dir, round_idx, self.budget, self.target,
                                           self.iteration)
        stats = acquire_round(self.env, acquirer, self.target, self.state_dir, round_idx, self.iteration,
                              None if self.human else SimulatedOracle(self.target),
                              listeners=(exporter,) if exporter else ())
        # every rank reads the masks written by the others from disk from now on
        self.store = MaskStore(self.state_dir)
        self.ledger = Ledger.load(self.ledger_path, self.budget.mode, self.budget.k)
        if exporter is not None and self.env.is_main:
            exporter.finish(self.ledger)
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
        src_batches = source_stream(cfg, self.source, r_, w_) if self.source is not None else None
        tgt_batches = (BatchStream(self.target, cfg.data.batch_size, cfg.seed + 2, nw, r_, w_)
                       if self.uses_target else None)
        gen = torch.Generator().manual_seed(cfg.seed + 3)
        backends = rk.available_backends(self.device)
        log.info("run in %s: %s source / %s target train / %d target val images; fused ops backend 'auto' "
                 "(available: %s); %d threads; LR poly to iteration %d, training stops at %d", self.out,
                 len(self.source) if self.source is not None else "no", len(self.target) if self.target is not None
                 else "no", len(self.val), ", ".join(backends), torch.get_num_threads(), cfg.lr_horizon, t.iters)
        metrics: dict = {"rounds": [], "ops_backends": backends}
        started = time.time()
        running: dict[str, float] = {}
        start = 0
        if self.resume:
            start, metrics, running = self.load_resume(gen, src_batches, tgt_batches)
        if self.awaiting is not None:  # stopped for people's labels of that round: are they in?
            missing = human.unlabelled(self.out, self.awaiting, self.ledger)
            if missing and not self.allow_missing_labels:
                raise LabelImportError(f"resume: round {self.awaiting} still waits for the labels of {len(missing)} "
                                       f"image(s), e.g. {missing[0]!r}; import them, or continue without them with "
                                       f"`ripu train --resume {self.out} --allow-missing-labels`\n"
                                       + human.instructions(self.out, self.awaiting, missing))
            log.info("[round %d] continuing with people's labels (%d image(s) without)", self.awaiting, len(missing))
        bar = tqdm(total=t.iters, initial=start, desc="train", disable=not self.progress)
        for self.iteration in range(start, t.iters):
            if self.iteration == stop_at:
                self.save_resume(metrics, running, gen, src_batches, tgt_batches)
                bar.close()
                return metrics
            if self.iteration in rounds and rounds.index(self.iteration) != self.awaiting:
                r = rounds.index(self.iteration)
                self._round(r, metrics, running, gen, src_batches, tgt_batches)
                if self.human:  # a resume point after the round, then wait for people
                    self.save_resume(metrics, running, gen, src_batches, tgt_batches, extra={"awaiting_labels": r})
                    bar.close()
                    log.info("[round %d] waiting for people's labels: %s", r, human.export_dir(self.out, r))
                    return {**metrics, "awaiting_labels": {"round": r, "export": str(human.export_dir(self.out, r))}}
            use_target = self.uses_target and (t.target_losses_before_rounds or
                                               (bool(rounds) and self.iteration >= rounds[0]))
            parts = self.step(next(src_batches) if src_batches is not None else None,
                              next(tgt_batches) if tgt_batches is not None else None, use_target, gen)
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
        if "miou_13" in final:
            metrics["miou13_final"] = final["miou_13"]
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


def load_checkpoint(path: str | os.PathLike, device="cpu", loaded: dict | None = None):
    """(model in eval mode, :class:`Config`, checkpoint dict) from a checkpoint written by :class:`Trainer`
    (``loaded``: its dict when the file was read already)."""
    from ..config import config_from_dict
    from ..errors import CheckpointError

    ckpt = ckpt_io.read_checkpoint(path, loaded)
    cfg = config_from_dict(ckpt["config"], str(path))
    # the checkpoint holds every weight: no ImageNet file or init checkpoint is read for it
    model = build_model(dataclasses.replace(cfg.model, pretrained="none", init_checkpoint=""),
                        int(ckpt["num_classes"]))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: the weights do not fit the model its config describes: "
                              f"{str(exc).splitlines()[0]}") from None
    return model.to(device).eval(), cfg, ckpt
