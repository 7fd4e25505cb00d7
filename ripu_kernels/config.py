"""Driver configuration: nested dataclasses, YAML files and ``section.key=value`` overrides.

Unknown keys (in a file or an override) and values of the wrong type raise :class:`ConfigError` naming the
key and the file. Sizes are ``[width, height]`` as in the paper (source 1280x720, target 1280x640).
"""
from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml


class ConfigError(ValueError):
    """A bad configuration file, key or value."""


@dataclass
class SyntheticConfig:
    height: int = 60
    width: int = 120
    n_source: int = 300
    n_target_train: int = 200
    n_target_val: int = 100
    seed: int = 0


@dataclass
class DataConfig:
    source: str = "synthetic"            # synthetic | gtav | synthia
    target: str = "synthetic"            # synthetic | cityscapes
    source_root: str = ""
    target_root: str = ""
    source_list: str = ""                # optional list files (one relative image path or id per line)
    target_train_list: str = ""
    target_val_list: str = ""
    source_size: list = field(default_factory=lambda: [1280, 720])   # [width, height]
    target_size: list = field(default_factory=lambda: [1280, 640])   # [width, height]
    num_classes: int = 19                 # 19, or 16 for SYNTHIA -> Cityscapes; 8 for the synthetic data
    batch_size: int = 2                   # per domain
    num_workers: int = 0
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class ModelConfig:
    name: str = "deeplabv2"               # deeplabv2 | deeplabv3plus
    backbone: str = "resnet101"           # resnet101 | resnet50 | small
    pretrained: str = ""                  # local path to ImageNet weights (torchvision key names); "" = none
    output_stride: int = 8
    norm: str = "frozen_bn"               # frozen_bn | bn | gn
    aspp_dilations: list = field(default_factory=lambda: [6, 12, 18, 24])
    head_channels: int = 256              # DeepLab-v3+ head width
    width: int = 32                       # small backbone width


@dataclass
class TrainConfig:
    iters: int = 40000
    lr: float = 2.5e-4
    head_lr_mult: float = 10.0
    power: float = 0.9
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lcr_weight: float = 0.1
    lcr_kind: str = "l1"
    lcr_neighbors: int = 8
    nl_weight: float = 1.0
    nl_threshold: float = 0.05
    target_losses_before_rounds: bool = True   # False: target CE/NL only from the first active round
    flip: bool = True                     # random horizontal flips
    checkpoint_every: int = 5000
    log_every: int = 50
    eval_every_round: bool = True


@dataclass
class ActiveConfig:
    mode: str = "ra"                      # ra (region) | pa (pixel) | none (source only)
    ratio: float = 0.022                  # RA: total fraction of target pixels over all rounds
    pixels: float = 40.0                  # PA: total pixels per 1280x640 image over all rounds
    k: int = -1                           # window radius; -1 = 1 for RA, 32 for PA
    rounds_at: list = field(default_factory=lambda: [10000, 12000, 14000, 16000, 18000])
    align_corners: bool = True
    batch_size: int = 4


@dataclass
class EvalConfig:
    flip: bool = False                    # flip test-time augmentation
    batch_size: int = 4


@dataclass
class Config:
    out_dir: str = "out"
    seed: int = 0
    device: str = "cpu"
    threads: int = 0                      # torch intra-op threads; 0 = torch's default
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    active: ActiveConfig = field(default_factory=ActiveConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> "Config":
        """Cross-field checks; raises :class:`ConfigError` naming the key."""
        d, a, t = self.data, self.active, self.train
        if d.source not in ("synthetic", "gtav", "synthia"):
            raise ConfigError(f"data.source must be 'synthetic', 'gtav' or 'synthia', got {d.source!r}")
        if d.target not in ("synthetic", "cityscapes"):
            raise ConfigError(f"data.target must be 'synthetic' or 'cityscapes', got {d.target!r}")
        for key in ("source_size", "target_size"):
            v = getattr(d, key)
            if not (isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) and x > 0 for x in v)):
                raise ConfigError(f"data.{key} must be [width, height] of positive ints, got {v!r}")
        if a.mode not in ("ra", "pa", "none"):
            raise ConfigError(f"active.mode must be 'ra', 'pa' or 'none', got {a.mode!r}")
        if not 0 <= a.ratio <= 1:
            raise ConfigError(f"active.ratio must be in [0, 1], got {a.ratio}")
        if a.pixels < 0:
            raise ConfigError(f"active.pixels must be >= 0, got {a.pixels}")
        if not all(isinstance(x, int) and 0 <= x < t.iters for x in a.rounds_at) or list(a.rounds_at) != sorted(
                set(a.rounds_at)):
            raise ConfigError(f"active.rounds_at must be increasing iterations in [0, train.iters={t.iters}), "
                              f"got {a.rounds_at!r}")
        if t.lcr_kind not in ("l1", "kl"):
            raise ConfigError(f"train.lcr_kind must be 'l1' or 'kl', got {t.lcr_kind!r}")
        if t.lcr_neighbors not in (4, 8):
            raise ConfigError(f"train.lcr_neighbors must be 4 or 8, got {t.lcr_neighbors!r}")
        for key in ("iters", "checkpoint_every", "log_every"):
            if getattr(t, key) < 1:
                raise ConfigError(f"train.{key} must be >= 1, got {getattr(t, key)}")
        if d.batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, got {d.batch_size}")
        return self

    @property
    def window_k(self) -> int:
        if self.active.k >= 0:
            return self.active.k
        return 32 if self.active.mode == "pa" else 1


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value, typ, key: str, where: str):
    """Check/convert ``value`` for a field of type ``typ``; raise naming ``key``."""
    if typ is bool:
        if isinstance(value, bool):
            return value
    elif typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif typ is str:
        if isinstance(value, str):
            return value
        if value is None:
            return ""
    elif typ is list:
        if isinstance(value, (list, tuple)):
            return list(value)
    raise ConfigError(f"{where}config key {key!r} expects {getattr(typ, '__name__', typ)}, "
                      f"got {value!r} ({type(value).__name__})")


def _merge(obj, values: dict, prefix: str, where: str) -> None:
    if not isinstance(values, dict):
        raise ConfigError(f"{where}config key {prefix.rstrip('.') or '<root>'!r} must be a mapping, got {values!r}")
    hints = _hints(type(obj))
    for key, value in values.items():
        full = f"{prefix}{key}"
        if key not in hints:
            known = ", ".join(sorted(hints))
            raise ConfigError(f"{where}unknown config key {full!r} (known keys here: {known})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _merge(current, value, full + ".", where)
        else:
            setattr(obj, key, _coerce(value, hints[key], full, where))


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply ``section.key=value`` strings (values parsed as YAML scalars/lists)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: cannot parse the value: {exc}") from exc
        nested: Any = value
        for part in reversed(key.split(".")):
            nested = {part: nested}
        _merge(cfg, nested, "", "override: ")
    return cfg


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> Config:
    """A :class:`Config` from defaults, then the YAML file ``path`` (if any), then ``overrides``.

    A file may name ``base: other.yaml`` (relative to it, or a packaged config name) to start from.
    """
    cfg = Config()
    if path is not None:
        _merge_file(cfg, resolve_config_path(str(path)), seen=set())
    apply_overrides(cfg, overrides or [])
    return cfg.validate()


def packaged_config(name: str) -> str:
    """Path of a config shipped in ``ripu_kernels/configs`` (``name`` with or without ``.yaml``)."""
    here = os.path.join(os.path.dirname(__file__), "configs")
    return os.path.join(here, name if name.endswith(".yaml") else name + ".yaml")


def resolve_config_path(path: str) -> str:
    if os.path.isfile(path):
        return path
    packaged = packaged_config(path)
    if os.path.isfile(packaged):
        return packaged
    raise ConfigError(f"config file not found: {path!r} (nor a packaged config of that name)")


def _merge_file(cfg: Config, path: str, seen: set) -> None:
    real = os.path.realpath(path)
    if real in seen:
        raise ConfigError(f"{path}: 'base' chain loops back to this file")
    seen.add(real)
    try:
        with open(path, encoding="utf-8") as fh:
            values = yaml.safe_load(fh) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of config keys")
    base = values.pop("base", None)
    if base:
        candidate = os.path.join(os.path.dirname(path), base)
        _merge_file(cfg, candidate if os.path.isfile(candidate) else resolve_config_path(base), seen)
    _merge(cfg, values, "", f"{path}: ")
