"""``ripu ablate``: acquisition strategies side by side at equal budget, over seeds, with both bounds.

For every seed the source-only phase (the iterations before the first round, which never see a target label)
is trained once; every strategy is then *forked* from its resume point (identical weights, optimiser, data
order and RNG at the first round) and trained to the end on the same budget schedule. Two bounds come with
it: the source-only model itself (the lower bound; evaluated before the first round) and a target-supervised
run forked the same way that gets every target train label at the first round (the upper bound: all labels,
same iterations). Runs are independent processes (``--jobs``), each in its own folder:

``DIR/ablate.json``                      the settings (a folder of other settings is refused, naming them)
``DIR/runs/seed_S/source_only/``         the shared source-only phase (stops before the first round)
``DIR/runs/seed_S/<strategy>/``          a full ``ripu train`` run folder (metrics, ledger, masks, log)
``DIR/runs/seed_S/target_supervised/``   the upper bound
``DIR/ablation.json``, ``.md``, ``.png`` the results

A killed ablation resumes when run again: finished runs (``metrics.json``) are reused, interrupted ones
continue from their last resume point (``ripu train --resume`` semantics), missing ones start.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_STRATEGIES = ("ra", "random", "entropy", "uncertainty", "impurity")
SOURCE, UPPER = "source_only", "target_supervised"
FINGERPRINT = "ablate.json"
FINGERPRINT_VERSION = 1
# `--quick`: the same pipeline on a few tiny images in seconds (for tests and a smoke check)
QUICK = ["data.batch_size=2", "data.synthetic.height=24", "data.synthetic.width=48", "data.synthetic.n_source=8",
         "data.synthetic.n_target_train=6", "data.synthetic.n_target_val=4", "model.width=8", "train.iters=6",
         "active.rounds_at=[2, 4]", "train.log_every=2", "train.checkpoint_every=3", "active.batch_size=4",
         "eval.batch_size=4"]
# config keys a fork may change: nothing before the first round depends on them
FORK_MUTABLE_PREFIXES = ("active.",)


@dataclass
class Job:
    """One run of the study: the shared source-only phase of a seed, a strategy, or the upper bound."""

    name: str                      # SOURCE, UPPER or a strategy
    seed: int
    run_dir: str
    config: dict                   # Config.to_dict() of this run
    source_dir: str = ""           # forks: the source-only run they start from
    stop_at: int | None = None     # the source-only phase stops before the first round

    @property
    def label(self) -> str:
        return f"seed {self.seed} {self.name}"


# ------------------------------------------------------------------------------------------------ planning
def study_configs(cfg, strategies, seeds, out: Path, upper: bool = True, flat: bool = False) -> list[Job]:
    """The jobs of a study: per seed the source-only phase, one fork per strategy and (``upper``) the bound."""
    from .config import apply_overrides

    if cfg.active.mode not in ("ra", "pa"):
        raise ValueError(f"ripu ablate: active.mode must be 'ra' or 'pa' (the budget schedule), got "
                         f"{cfg.active.mode!r}")
    if not cfg.active.rounds_at:
        raise ValueError("ripu ablate: active.rounds_at is empty; the strategies need at least one round")
    if cfg.train.target_losses_before_rounds:
        raise ValueError("ripu ablate: train.target_losses_before_rounds must be false, so that the iterations "
                         "before the first round are source-only and can be shared by every strategy")
    jobs = []
    for seed in seeds:
        base = out if flat else out / "runs" / f"seed_{seed}"
        src_dir = base / SOURCE
        src = apply_overrides(cfg, [f"seed={seed}", f"out_dir={src_dir}"])
        jobs.append(Job(SOURCE, seed, str(src_dir), src.to_dict(), stop_at=int(cfg.active.rounds_at[0])))
        for name in strategies:
            run = apply_overrides(src, [f"out_dir={base / name}", f"active.strategy={name}"])
            jobs.append(Job(name, seed, str(base / name), run.validate().to_dict(), str(src_dir)))
        if upper:
            run = apply_overrides(src, [f"out_dir={base / UPPER}", "active.strategy=random", "active.unit=images",
                                        "active.ratio=1.0", f"active.rounds_at=[{cfg.active.rounds_at[0]}]"])
            jobs.append(Job(UPPER, seed, str(base / UPPER), run.validate().to_dict(), str(src_dir)))
    return jobs


def fingerprint(cfg, strategies, seeds, upper: bool) -> dict:
    settings = cfg.to_dict()
    settings.pop("out_dir", None)
    settings.pop("threads", None)
    return {"version": FINGERPRINT_VERSION, "config": settings, "strategies": list(strategies),
            "seeds": list(seeds), "target_supervised": bool(upper)}


def check_fingerprint(out: Path, fp: dict) -> None:
    """Write ``out/ablate.json``, or refuse a folder that holds an ablation of other settings (naming them)."""
    from .config import config_diff
    from .errors import ConfigError
    from .io import atomic_write_json

    path = out / FINGERPRINT
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"ripu ablate: cannot read {path}: {exc}") from exc
        diff = config_diff(old.get("config", {}), fp["config"], (), "config.")
        for key in ("version", "strategies", "seeds", "target_supervised"):
            if old.get(key) != fp[key]:
                diff.append(f"{key} ({old.get(key)!r} -> {fp[key]!r})")
        if diff:
            raise ConfigError(f"ripu ablate: {out} holds an ablation of other settings: " + ", ".join(diff) +
                              "; use another --out, or the same settings to resume it")
        return
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"ripu ablate: {out} is not empty and holds no {FINGERPRINT}; use an empty or new --out")
    atomic_write_json(path, fp)


# ---------------------------------------------------------------------------------------------- one run
def _finished(job: Job) -> bool:
    run = Path(job.run_dir)
    if job.name == SOURCE:
        return (run / "source_done.json").is_file()
    return (run / "metrics.json").is_file()


def fork(source_dir: str | os.PathLike, cfg, run_dir: str | os.PathLike) -> None:
    """Start ``run_dir`` from the resume point of a source-only run: the same weights, optimiser state, data
    positions and RNG states; only the config (strategy, unit, budget, out_dir) is the fork's own."""
    from .config import config_diff
    from .engine import checkpoint as ckpt_io
    from .engine.trainer import RESUME_MUTABLE
    from .errors import ConfigError
    from .io import atomic_torch_save, atomic_write_json

    state = ckpt_io.load_resume(source_dir)
    mine = cfg.to_dict()
    diff = [d for d in config_diff(state["config"], mine, RESUME_MUTABLE)
            if not d.startswith(FORK_MUTABLE_PREFIXES)]
    first = (state["config"]["active"]["rounds_at"] or [None])[0], (mine["active"]["rounds_at"] or [None])[0]
    if diff or first[0] != first[1] or state["iteration"] != first[1]:
        raise ConfigError(f"ablate: cannot fork {run_dir} from {source_dir}: "
                          + ", ".join(diff + [f"first round at {first[0]} -> {first[1]}, source stopped at "
                                              f"{state['iteration']}"]))
    state["config"] = mine
    run_dir = Path(run_dir)
    atomic_write_json(run_dir / "config.json", mine)
    atomic_torch_save(ckpt_io.resume_path(run_dir), state)  # kind, RNG states and all, as saved by the source


def run_job(job: Job) -> dict:
    """Run (or finish, or just read) one job; returns its summary. Used in worker processes and inline."""
    from .config import config_from_dict
    from .engine.trainer import Trainer, setup_logging
    from .engine import checkpoint as ckpt_io
    from .io import atomic_write_json

    run = Path(job.run_dir)
    started = time.time()
    if not _finished(job):
        cfg = config_from_dict(job.config, job.label)
        setup_logging(run, quiet=True)
        if job.name == SOURCE:
            resume = ckpt_io.resume_path(run).is_file()
            Trainer(cfg, progress=False, resume=resume).run(stop_at=job.stop_at)
            atomic_write_json(run / "source_done.json", {"iteration": job.stop_at})
        else:
            if not ckpt_io.resume_path(run).is_file():
                fork(job.source_dir, cfg, run)
            Trainer(cfg, progress=False, resume=True).run()
    return summarize(job, time.time() - started)


def summarize(job: Job, seconds: float = 0.0) -> dict:
    out = {"name": job.name, "seed": job.seed, "run_dir": job.run_dir, "seconds": seconds}
    if job.name == SOURCE:
        return out
    m = json.loads((Path(job.run_dir) / "metrics.json").read_text(encoding="utf-8"))
    out.update(rounds=[{"round": r["round"], "labelled_fraction": r["labelled_fraction"], "miou": r.get("miou")}
                       for r in m["rounds"]],
               miou_source_only=m.get("miou_before_rounds"), miou_final=m["miou_final"],
               labelled_fraction=m["labelled_fraction"])
    return out


# ------------------------------------------------------------------------------------------ the study
def run_jobs(jobs: list[Job], n_jobs: int = 1, progress: bool = False, echo=None) -> list[dict]:
    """Run the jobs (forks after their source-only phase), ``n_jobs`` processes at a time; summaries in order."""
    from tqdm import tqdm

    results: dict[int, dict] = {}
    sources = {j.run_dir: i for i, j in enumerate(jobs) if j.name == SOURCE}
    waiting = {i: j for i, j in enumerate(jobs) if j.name != SOURCE}
    bar = tqdm(total=len(jobs), desc="ablate runs", disable=not progress, unit="run")

    def done(i: int, res: dict) -> None:
        results[i] = res
        bar.update(1)
        if echo is not None and jobs[i].name != SOURCE:
            echo(f"{jobs[i].label}: final mIoU {res['miou_final']:.2f} with {100 * res['labelled_fraction']:.2f}% "
                 f"labelled ({res['seconds']:.0f}s)")

    def ready(source_dir: str) -> list[int]:
        return [i for i, j in list(waiting.items()) if j.source_dir == source_dir]

    if n_jobs <= 1:
        for i in sorted(sources.values()):
            bar.set_postfix_str(jobs[i].label)
            done(i, run_job(jobs[i]))
            for k in ready(jobs[i].run_dir):
                bar.set_postfix_str(jobs[k].label)
                done(k, run_job(waiting.pop(k)))
        bar.close()
        return [results[i] for i in range(len(jobs))]

    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    with ProcessPoolExecutor(max_workers=n_jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        running = {pool.submit(run_job, jobs[i]): i for i in sorted(sources.values())}
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                i = running.pop(fut)
                done(i, fut.result())  # a failed run raises here, naming nothing more: its train.log has it
                if jobs[i].name == SOURCE:
                    for k in ready(jobs[i].run_dir):
                        running[pool.submit(run_job, waiting.pop(k))] = k
            bar.set_postfix_str(", ".join(sorted(jobs[i].label for i in running.values()))[:60])
    bar.close()
    return [results[i] for i in range(len(jobs))]


def _mean_std(values: list[float]) -> tuple[float, float]:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return float("nan"), float("nan")
    mean = sum(vals) / len(vals)
    var = sum((v - mean) ** 2 for v in vals) / (len(vals) - 1) if len(vals) > 1 else 0.0
    return mean, math.sqrt(var)


def aggregate(summaries: list[dict], strategies, seeds, cfg, upper: bool) -> dict:
    """``ablation.json``: per strategy the per-seed curves and their mean and std per round; both bounds."""
    by = {(s["name"], s["seed"]): s for s in summaries}
    result = {"strategies": {}, "source_only": {}, "target_supervised": {},
              "settings": {"config": cfg.to_dict(), "strategies": list(strategies), "seeds": list(seeds),
                           "unit": cfg.active.unit or ("ratio" if cfg.active.mode == "ra" else "pixels"),
                           "mode": cfg.active.mode, "k": cfg.window_k, "ratio": cfg.active.ratio,
                           "pixels": cfg.active.pixels, "rounds_at": list(cfg.active.rounds_at),
                           "iters": cfg.train.iters}}
    for name in strategies:
        curves = {str(seed): by[(name, seed)]["rounds"] for seed in seeds}
        n_rounds = min(len(c) for c in curves.values())
        mean, std = [], []
        for r in range(n_rounds):
            lf = _mean_std([curves[str(s)][r]["labelled_fraction"] for s in seeds])
            mi = _mean_std([curves[str(s)][r]["miou"] for s in seeds])
            mean.append({"round": r, "labelled_fraction": lf[0], "miou": mi[0]})
            std.append({"round": r, "labelled_fraction": lf[1], "miou": mi[1]})
        result["strategies"][name] = {"seeds": curves, "mean": mean, "std": std}
    # the lower bound: the shared source-only model, evaluated by every fork before the first round
    src = {}
    spread = 0.0
    for seed in seeds:
        vals = [by[(n, seed)]["miou_source_only"] for n in [*strategies, *([UPPER] if upper else [])]
                if by[(n, seed)].get("miou_source_only") is not None]
        if vals:
            src[str(seed)] = vals[0]
            spread = max(spread, max(vals) - min(vals))
    m, s = _mean_std(list(src.values()))
    result["source_only"] = {"miou": m, "std": s, "seeds": src, "max_spread_between_forks": spread}
    if upper:
        ups = {str(seed): by[(UPPER, seed)]["miou_final"] for seed in seeds}
        m, s = _mean_std(list(ups.values()))
        result["target_supervised"] = {"miou": m, "std": s, "seeds": ups}
    else:
        result["target_supervised"] = {"miou": None}
    return result


def _fmt(mean: float, std: float) -> str:
    return "n/a" if mean is None or math.isnan(mean) else f"{mean:.2f} ± {std:.2f}"


def format_markdown(res: dict) -> str:
    st = res["settings"]
    names = list(res["strategies"])
    n_rounds = min(len(v["mean"]) for v in res["strategies"].values()) if names else 0
    rounds = len(st["rounds_at"])
    if st["unit"] in ("ratio", "pool", "images"):
        nominal = [f"{100 * st['ratio'] * (r + 1) / rounds:.2f}%" for r in range(n_rounds)]
    else:
        nominal = [f"{st['pixels'] * (r + 1) / rounds:g} px/img" for r in range(n_rounds)]
    lines = [f"# Ablation: mIoU (%) at equal budget, mean ± std over seeds {st['seeds']}", "",
             f"Unit `{st['unit']}` (mode {st['mode']}, k={st['k']}), rounds at iterations {st['rounds_at']} of "
             f"{st['iters']}; each cell: target val mIoU after training on the labels of that round.", "",
             "| budget | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for r in range(n_rounds):
        cells = [_fmt(res["strategies"][n]["mean"][r]["miou"], res["strategies"][n]["std"][r]["miou"]) for n in names]
        lines.append(f"| {nominal[r]} | " + " | ".join(cells) + " |")
    lines += ["", "Labelled fraction of target train pixels actually revealed (mean over seeds, %):", "",
              "| budget | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for r in range(n_rounds):
        cells = [f"{100 * res['strategies'][n]['mean'][r]['labelled_fraction']:.3f}" for n in names]
        lines.append(f"| {nominal[r]} | " + " | ".join(cells) + " |")
    so, ts = res["source_only"], res["target_supervised"]
    lines += ["", f"Source only (lower bound, the shared model before the first round): {_fmt(so['miou'], so['std'])}"]
    if ts.get("miou") is not None:
        lines.append(f"Target supervised (upper bound, every target train label from the first round, same "
                     f"iterations): {_fmt(ts['miou'], ts['std'])}")
    return "\n".join(lines) + "\n"


def write_results(out: Path, res: dict) -> None:
    from .io import atomic_write_json, atomic_write_text
    from .plots import plot_ablation

    atomic_write_json(out / "ablation.json", res)
    atomic_write_text(out / "ablation.md", format_markdown(res))
    plot_ablation(res, out / "ablation.png")


def default_jobs() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def run_ablation(config: str, strategies=DEFAULT_STRATEGIES, seeds: int = 3, out: str = "ablate-out",
                 overrides=(), quick: bool = False, n_jobs: int | None = None, progress: bool = False,
                 echo=None) -> dict:
    """The whole study; returns the content of ``out/ablation.json``."""
    from .active.scoring import STRATEGIES
    from .config import load_config
    from .errors import ConfigError

    strategies = [s.strip() for s in strategies if s.strip()]
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown or not strategies:
        raise ConfigError(f"ripu ablate: --strategies must name strategies among {', '.join(sorted(STRATEGIES))}; "
                          f"got {', '.join(unknown) or 'none'}")
    if len(set(strategies)) != len(strategies):
        raise ConfigError(f"ripu ablate: --strategies names a strategy twice: {','.join(strategies)}")
    if seeds < 1:
        raise ConfigError(f"ripu ablate: --seeds must be >= 1, got {seeds}")
    cfg = load_config(config, [*(QUICK if quick else []), *overrides, f"out_dir={out}"])
    seed_list = [cfg.seed + i for i in range(seeds)]
    out_p = Path(out)
    jobs = study_configs(cfg, strategies, seed_list, out_p)
    check_fingerprint(out_p, fingerprint(cfg, strategies, seed_list, True))
    started = time.time()
    summaries = run_jobs(jobs, n_jobs or default_jobs(), progress, echo)
    res = aggregate(summaries, strategies, seed_list, cfg, True)
    res["wall_seconds"] = time.time() - started
    res["jobs"] = n_jobs or default_jobs()
    write_results(out_p, res)
    return res


def clear_runs(out: Path, names) -> None:
    """Remove run folders of an earlier study in ``out`` (used by the demo, which always starts afresh)."""
    for name in names:
        if (out / name).is_dir():
            shutil.rmtree(out / name)


def print_err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)

