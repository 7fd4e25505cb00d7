"""The RIPU training loop: source CE + LCR, target CE on revealed labels + NL, active rounds, checkpoints.

Every iteration draws a source batch and a target batch. The loss is

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

from . import ops
from .active import Ledger, MaskStore, SimulatedOracle, budget_from_config, revealed_batch, upsample
from .config import Config
from .data import IGNORE_INDEX, build_datasets, collate
from .evaluate import evaluate, format_table
from .models.deeplab import build_model
from .utils.io import atomic_torch_save, atomic_write_json

log = logging.getLogger("ripu")


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


class InfiniteBatches:
    """Endless shuffled batches of a dataset with an explicitly seeded generator (reshuffled each epoch)."""

    def __init__(self, dataset, batch_size: int, seed: int, num_workers: int = 0):
        if len(dataset) == 0:
            raise ValueError(f"training: dataset {getattr(dataset, 'name', '?')} is empty")
        self.generator = torch.Generator().manual_seed(seed)
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_size=min(batch_size, len(dataset)), shuffle=True, drop_last=True, collate_fn=collate,
            generator=self.generator, num_workers=num_workers, persistent_workers=num_workers > 0)
        self._it = iter(self.loader)

    def __next__(self) -> dict:
        try:
            return next(self._it)
        except StopIteration:
            self._it = iter(self.loader)
            return next(self._it)


def poly_lr(base: float, it: int, max_iter: int, power: float) -> float:
    return base * (1 - it / max_iter) ** power


def masked_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross entropy over non-ignored pixels; an exact 0 (with a graph) when there are none."""
    if bool((labels != IGNORE_INDEX).any()):
        return F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)
    return logits.sum() * 0.0


class Trainer:
    """Holds datasets, model, optimiser and the active-learning state of one run in ``cfg.out_dir``."""

    def __init__(self, cfg: Config, progress: bool = True, datasets=None, resume: bool = False):
        from . import distributed

        self.cfg = cfg
        self.progress = progress
        self.out = Path(cfg.out_dir)
        self.dist = distributed.current()  # rank / world size (see ripu_kernels.distributed)
        self.resume = resume
        self.device = torch.device(cfg.device)
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        seed_everything(cfg.seed)
        self.source, self.target, self.val = datasets if datasets is not None else build_datasets(cfg)
        self.num_classes = cfg.data.num_classes
        self.class_names = getattr(self.val, "class_names", ()) or tuple(str(i) for i in range(self.num_classes))
        self.model = build_model(cfg.model, self.num_classes).to(self.device)
        self.train_model = distributed.wrap_ddp(self.model, self.dist, self.device)  # DDP when distributed
        backbone, head = self.model.param_groups()
        t = cfg.train
        self.optimizer = torch.optim.SGD(
            [{"params": backbone, "lr": t.lr, "lr_mult": 1.0}, {"params": head, "lr": t.lr * t.head_lr_mult,
                                                                "lr_mult": t.head_lr_mult}],
            lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
        self.state_dir = self.out / "state"
        self.store = MaskStore(self.state_dir)
        self.budget = budget_from_config(cfg) if cfg.active.mode != "none" else None
        self.ledger_path = self.state_dir / "ledger.json"
        used = [self.ledger_path, self.out / "metrics.json", self.out / "checkpoints" / "resume.pth",
                self.state_dir / "ledgers"]
        if not resume and any(p.exists() for p in used):
            from .config import ConfigError

            raise ConfigError(f"out_dir {str(self.out)!r} already holds a run (a ledger, metrics or a resume "
                              "checkpoint); choose a new out_dir, or continue it with `ripu train --resume DIR`")
        self.ledger = Ledger(cfg.active.mode, cfg.window_k)
        self.iteration = 0
        self.history: list[dict] = []

    # ------------------------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, name: str) -> Path:
        path = self.out / "checkpoints" / name
        if not self.dist.is_main:  # the replicas are identical: rank 0 writes
            return path
        atomic_torch_save(path, {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                                 "iteration": self.iteration, "config": self.cfg.to_dict(),
                                 "num_classes": self.num_classes, "history": self.history})
        return path

    # ----------------------------------------------------------------------------------------- resume
    def save_resume(self, metrics: dict, running: dict, gen, src_batches, tgt_batches,
                    iteration: int | None = None) -> None:
        """The whole state needed to continue at ``iteration`` (default: the current one; see
        :mod:`ripu_kernels.resume`)."""
        from .resume import resume_path, rng_state

        if not self.dist.is_main:
            return
        atomic_torch_save(resume_path(self.out), {
            "kind": "ripu-resume", "iteration": self.iteration if iteration is None else iteration,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "config": self.cfg.to_dict(), "metrics": metrics,
            "running": running, "flip_generator": gen.get_state(), "source_batches": src_batches.state_dict(),
            "target_batches": tgt_batches.state_dict(), "rng": rng_state(), "num_classes": self.num_classes,
            "world_size": self.dist.world_size})

    def load_resume(self, gen, src_batches, tgt_batches):
        """Restore the state saved by :meth:`save_resume`; returns (iteration, metrics, running)."""
        from .config import ConfigError
        from .resume import load_resume, set_rng_state

        state = load_resume(self.out)
        diff = config_diff(state["config"], self.cfg.to_dict())
        if diff:
            raise ConfigError(f"resume: the config differs from the run in {str(self.out)!r} in "
                              + ", ".join(diff) + "; only paths, device, threads, workers and logging may change")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        gen.set_state(state["flip_generator"])
        src_batches.load_state_dict(state["source_batches"])
        tgt_batches.load_state_dict(state["target_batches"])
        set_rng_state(state["rng"])
        if self.budget is not None:
            self.ledger = Ledger.load(self.ledger_path, self.budget.mode, self.budget.k)
        self.history = state["metrics"].get("rounds", [])
        log.info("resumed %s at iteration %d", self.out, state["iteration"])
        return int(state["iteration"]), state["metrics"], state["running"]

    # -------------------------------------------------------------------------------------- one step
    def step(self, src: dict, tgt: dict, use_target: bool, gen: torch.Generator) -> dict:
        t = self.cfg.train
        for group in self.optimizer.param_groups:
            group["lr"] = poly_lr(t.lr, self.iteration, t.iters, t.power) * group["lr_mult"]
        src_img, src_lab = src["image"], src["label"]
        images = [src_img]
        if use_target:
            shape = tuple(tgt["image"].shape[-2:])
            tgt_img, tgt_lab = tgt["image"], revealed_batch(self.store, tgt["id"], shape)
            images.append(tgt_img)
        if t.flip:  # per-sample horizontal flips, drawn for the global batch from the run's generator
            r, w = self.dist.rank, self.dist.world_size
            flips = [(torch.rand(x.shape[0] * w, generator=gen) < 0.5)[r * x.shape[0]:(r + 1) * x.shape[0]]
                     for x in images]
            src_img = torch.where(flips[0][:, None, None, None], src_img.flip(-1), src_img)
            src_lab = torch.where(flips[0][:, None, None], src_lab.flip(-1), src_lab)
            if use_target:
                tgt_img = torch.where(flips[1][:, None, None, None], tgt_img.flip(-1), tgt_img)
                tgt_lab = torch.where(flips[1][:, None, None], tgt_lab.flip(-1), tgt_lab)
        self.model.train()
        batch = torch.cat([src_img, tgt_img]) if use_target else src_img
        logits = self.train_model(batch.to(self.device))
        ns = src_img.shape[0]
        src_logits = upsample(logits[:ns], tuple(src_lab.shape[-2:]))
        src_lab = src_lab.to(self.device)
        loss_src = F.cross_entropy(src_logits, src_lab, ignore_index=IGNORE_INDEX)
        loss_lcr = ops.local_consistency_loss(src_logits, src_lab, kind=t.lcr_kind, neighbors=t.lcr_neighbors,
                                              ignore_index=IGNORE_INDEX)
        loss = loss_src + t.lcr_weight * loss_lcr
        parts = {"src_ce": loss_src.item(), "lcr": loss_lcr.item()}
        if use_target:
            tgt_logits = upsample(logits[ns:], tuple(tgt_lab.shape[-2:]))
            loss_tgt = masked_ce(tgt_logits, tgt_lab.to(self.device))
            loss_nl = ops.negative_learning_loss(tgt_logits, threshold=t.nl_threshold)
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
        from .distributed import distributed_evaluate

        res = distributed_evaluate(self, lambda val: evaluate(
            self.model, val, self.num_classes, self.device, self.cfg.eval.batch_size, self.cfg.eval.flip,
            self.progress and self.dist.is_main))
        log.info("[%s] iteration %d: mIoU %.2f\n%s", tag, self.iteration, res["miou"],
                 format_table(res, self.class_names))
        return res

    def acquire_round(self, round_idx: int) -> dict:
        start = time.time()
        from .distributed import distributed_acquire

        # sharded over ranks, journalled (resumable at any point), shard ledgers merged into ledger.json
        stats = distributed_acquire(self, round_idx, SimulatedOracle(self.target))
        log.info("[round %d] iteration %d: %d regions / %d pixels on %d images in %.1fs; labelled fraction %.4f%%",
                 round_idx, self.iteration, stats["regions"], stats["pixels"], stats["images"],
                 time.time() - start, 100 * self.ledger.labelled_fraction)
        return stats

    # ------------------------------------------------------------------------------------------ run
    def run(self) -> dict:
        """Train for ``train.iters`` iterations with the active rounds; returns the metrics dict."""
        from tqdm import tqdm

        cfg, t = self.cfg, self.cfg.train
        from .resume import ResumableBatches, crash_hook

        self.out.mkdir(parents=True, exist_ok=True)
        if self.dist.is_main:
            atomic_write_json(self.out / "config.json", cfg.to_dict())
        rounds = list(cfg.active.rounds_at) if self.budget is not None else []
        # the order of InfiniteBatches, with a saveable position, each rank loading its slice of the global batch
        r_, w_, nw = self.dist.rank, self.dist.world_size, cfg.data.num_workers
        src_batches = ResumableBatches(self.source, cfg.data.batch_size, cfg.seed + 1, nw, r_, w_)
        tgt_batches = ResumableBatches(self.target, cfg.data.batch_size, cfg.seed + 2, nw, r_, w_)
        gen = torch.Generator().manual_seed(cfg.seed + 3)
        metrics: dict = {"rounds": []}
        from ._dispatch import resolve

        backend = resolve("region_scores", "auto", self.device)
        log.info("run in %s: %d source / %d target train / %d target val images; fused ops backend %r; "
                 "%d threads", self.out, len(self.source), len(self.target), len(self.val), backend,
                 torch.get_num_threads())
        metrics["ops_backend"] = backend
        started = time.time()
        running: dict[str, float] = {}
        start = 0
        if self.resume:
            start, metrics, running = self.load_resume(gen, src_batches, tgt_batches)
        bar = tqdm(total=t.iters, initial=start, desc="train", disable=not self.progress)
        for self.iteration in range(start, t.iters):
            if self.iteration in rounds:
                # a resume point right before the round: masks only change inside rounds
                self.save_resume(metrics, running, gen, src_batches, tgt_batches)
                r = rounds.index(self.iteration)
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
            crash_hook(self.iteration + 1, "iteration")  # tests: RIPU_CRASH_AT=iteration:N
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
        if self.dist.is_main:
            atomic_write_json(self.out / "metrics.json", metrics)
        return metrics


# config keys that may change when a run is resumed (where the data lives, how fast it runs, how it logs)
RESUME_MUTABLE = ("out_dir", "device", "threads", "data.num_workers", "data.source_root", "data.target_root",
                  "data.source_list", "data.target_train_list", "data.target_val_list", "train.log_every",
                  "eval.batch_size", "active.batch_size")


def config_diff(saved: dict, now: dict, prefix: str = "") -> list[str]:
    """Keys (``section.key``) whose values differ between two config dicts, except :data:`RESUME_MUTABLE`."""
    out = []
    for key in sorted(set(saved) | set(now)):
        full = prefix + key
        a, b = saved.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_diff(a, b, full + ".")
        elif a != b and full not in RESUME_MUTABLE:
            out.append(f"{full} ({a!r} -> {b!r})")
    return out


def load_checkpoint(path: str | os.PathLike, device="cpu"):
    """(model, config dict, checkpoint) from a checkpoint written by :class:`Trainer`."""
    from .config import Config, _merge
    from .models.deeplab import build_model as _build

    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ValueError(f"cannot load checkpoint {path}: {exc}") from exc
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise ValueError(f"{path} is not a ripu_kernels checkpoint (no 'model'/'config' entries)")
    cfg = Config()
    _merge(cfg, ckpt["config"], "", f"{path}: ")
    model = _build(cfg.model, int(ckpt["num_classes"]))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), cfg, ckpt
