"""Driver configuration: an OmegaConf structured config (dataclass schema), YAML files, dotted overrides.

``load_config(path, overrides)`` starts from the dataclass defaults, merges the YAML file (after the chain of
files it names with ``base:``), then ``section.key=value`` overrides, and returns a :class:`Config`. The
schema is in struct mode: an unknown key or a value of the wrong type raises :class:`ConfigError` naming
the key and the file (or "override"). Sizes are ``[width, height]`` as in the paper (source 1280x720,
target 1280x640). Files are parsed with a safe YAML loader; nothing in a config runs code.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, List

from .errors import ConfigError

__all__ = ["Config", "ConfigError", "load_config", "apply_overrides", "merge_file", "packaged_config",
           "packaged_config_names", "config_from_dict", "config_diff", "dump_yaml"]


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
    source: str = "synthetic"            # synthetic | gtav | synthia | none (source-free: target only)
    target: str = "synthetic"            # synthetic | cityscapes
    source_root: str = ""
    target_root: str = ""
    source_list: str = ""                # optional list files (one relative image path or id per line)
    target_train_list: str = ""
    target_val_list: str = ""
    source_size: List[int] = field(default_factory=lambda: [1280, 720])   # [width, height]
    target_size: List[int] = field(default_factory=lambda: [1280, 640])   # [width, height]
    num_classes: int = 19                 # 19 (also the synthetic data), or 16 for SYNTHIA -> Cityscapes
    batch_size: int = 2                   # per domain, global (split over ranks)
    num_workers: int = 0
    image_interpolation: str = "bicubic"  # bicubic (PIL, as the authors) | bilinear
    balanced_sampling: bool = False       # class-balanced source sampling (needs `ripu prepare`)
    prepared_dir: str = ""                # output of `ripu prepare` for the source; "" = SOURCE_ROOT/ripu_prepared
    preflight: str = "headers"            # check every file before training: headers | decode | off
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class ModelConfig:
    name: str = "deeplabv2"               # deeplabv2 | deeplabv3plus
    backbone: str = "resnet101"           # resnet101 | resnet50 | small
    pretrained: str = ""                  # local path to ImageNet weights (torchvision key names); none = random
    init_checkpoint: str = ""             # start from these weights (ours or the authors' format), e.g. source-free
    output_stride: int = 8
    norm: str = "frozen_bn"               # frozen_bn | bn | gn
    aspp_dilations: List[int] = field(default_factory=lambda: [6, 12, 18, 24])
    head_channels: int = 512              # DeepLab-v3+ head width (the authors': 512)
    frozen_bn_eps: float = 0.0            # eps of frozen BN: 0 as the authors' layers.py, 1e-5 as torchvision
    width: int = 32                       # small backbone width


@dataclass
class TrainConfig:
    iters: int = 40000                    # iterations run (the authors' STOP_ITER)
    max_iter: int = 0                     # poly LR horizon (the authors' MAX_ITER); 0 = train.iters
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
    eval_every_round: bool = True         # evaluate on target val before every round (False: only at the end)


@dataclass
class ActiveConfig:
    mode: str = "ra"                      # ra (region) | pa (pixel) | none (source only)
    strategy: str = ""                    # ra | pa | impurity | uncertainty | entropy | random | ...; "" = mode
    unit: str = ""                        # ratio | pixels | pool | images; "" = ratio for ra, pixels for pa
    ratio: float = 0.022                  # RA: total fraction of target pixels over all rounds
    pixels: float = 40.0                  # PA: total pixels per 1280x640 image over all rounds
    k: int = -1                           # window radius; -1 = 1 for RA, 32 for PA
    rounds_at: List[int] = field(default_factory=lambda: [10000, 12000, 14000, 16000, 18000])
    align_corners: bool = True
    label_size: str = "input"             # select on labels at: original (as the authors) | input (resized) size
    resize_via_input: bool = False        # logits -> input size -> label size, two resizes as the authors
    batch_size: int = 4
    oracle: str = "simulated"             # simulated (ground truth) | human (stop after each round's export)
    export_formats: List[str] = field(default_factory=lambda: ["cvat", "cvat-mask", "coco", "label-studio"])


@dataclass
class EvalConfig:
    flip: bool = False                    # flip test-time augmentation
    batch_size: int = 4


@dataclass
class Config:
    out_dir: str = "out"
    seed: int = 0
    device: str = "auto"                  # auto (CUDA when available, else CPU with a warning) | cpu | cuda[:N]
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
        if d.source not in ("synthetic", "gtav", "synthia", "none"):
            raise ConfigError(f"data.source must be 'synthetic', 'gtav', 'synthia' or 'none', got {d.source!r}")
        if d.target not in ("synthetic", "cityscapes"):
            raise ConfigError(f"data.target must be 'synthetic' or 'cityscapes', got {d.target!r}")
        for key in ("source_size", "target_size"):
            v = getattr(d, key)
            if not (len(v) == 2 and all(x > 0 for x in v)):
                raise ConfigError(f"data.{key} must be [width, height] of positive ints, got {list(v)!r}")
        if d.image_interpolation not in ("bicubic", "bilinear"):
            raise ConfigError("data.image_interpolation must be 'bicubic' or 'bilinear', got "
                              f"{d.image_interpolation!r}")
        if d.preflight not in ("headers", "decode", "off"):
            raise ConfigError(f"data.preflight must be 'headers', 'decode' or 'off', got {d.preflight!r}")
        if d.source == "none" and a.mode == "none":
            raise ConfigError("data.source=none (source-free) needs active.mode 'ra' or 'pa': with neither source "
                              "data nor target labels there is nothing to train on")
        if a.label_size not in ("original", "input"):
            raise ConfigError(f"active.label_size must be 'original' or 'input', got {a.label_size!r}")
        if t.max_iter and t.max_iter < t.iters:
            raise ConfigError(f"train.max_iter (the poly LR horizon) must be 0 or >= train.iters={t.iters}, "
                              f"got {t.max_iter}")
        if a.mode not in ("ra", "pa", "none"):
            raise ConfigError(f"active.mode must be 'ra', 'pa' or 'none', got {a.mode!r}")
        if a.oracle not in ("simulated", "human"):
            raise ConfigError(f"active.oracle must be 'simulated' or 'human', got {a.oracle!r}")
        bad = [f for f in a.export_formats if f not in ("cvat", "cvat-mask", "coco", "label-studio")]
        if bad:
            raise ConfigError(f"active.export_formats: unknown format {bad[0]!r}; choose from cvat, cvat-mask, "
                              "coco, label-studio")
        if a.strategy:
            from .active.scoring import STRATEGIES

            if a.strategy not in STRATEGIES:
                raise ConfigError(f"active.strategy must be one of {', '.join(sorted(STRATEGIES))}, "
                                  f"got {a.strategy!r}")
        if a.unit:
            from .active.budget import UNITS

            if a.unit not in UNITS:
                raise ConfigError(f"active.unit must be one of {', '.join(UNITS)}, got {a.unit!r}")
        if not 0 <= a.ratio <= 1:
            raise ConfigError(f"active.ratio must be in [0, 1], got {a.ratio}")
        if a.pixels < 0:
            raise ConfigError(f"active.pixels must be >= 0, got {a.pixels}")
        if not all(0 <= x < t.iters for x in a.rounds_at) or list(a.rounds_at) != sorted(set(a.rounds_at)):
            raise ConfigError(f"active.rounds_at must be increasing iterations in [0, train.iters={t.iters}), "
                              f"got {list(a.rounds_at)!r}")
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
    def lr_horizon(self) -> int:
        """The iteration at which the poly LR reaches 0 (``train.max_iter``, or ``train.iters`` when 0)."""
        return self.train.max_iter or self.train.iters

    @property
    def window_k(self) -> int:
        if self.active.k >= 0:
            return self.active.k
        return 32 if self.active.mode == "pa" else 1


# ------------------------------------------------------------------------------------------------ loading
def _wrap(exc: Exception, where: str) -> ConfigError:
    """A ConfigError naming the key (OmegaConf's ``full_key``) and ``where`` it came from."""
    from omegaconf.errors import ConfigKeyError

    key = getattr(exc, "full_key", None) or getattr(exc, "key", None) or "?"
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, ConfigKeyError) or "not in" in msg:
        return ConfigError(f"{where}unknown config key {key!r} ({msg})")
    return ConfigError(f"{where}bad value for config key {key!r}: {msg}")


def _merge(node, values, where: str):
    """``node`` (a structured DictConfig) merged with ``values`` (a dict or DictConfig); errors name the key."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if not isinstance(values, dict) and not OmegaConf.is_dict(values):
        raise ConfigError(f"{where}the top level must be a mapping of config keys, got {type(values).__name__}")
    try:
        return OmegaConf.merge(node, values)
    except OmegaConfBaseException as exc:
        raise _wrap(exc, where) from None


def _schema():
    from omegaconf import OmegaConf

    return OmegaConf.structured(Config)


def _to_config(node, where: str = "") -> Config:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_object(node)
    except OmegaConfBaseException as exc:
        raise _wrap(exc, where) from None


def packaged_config_names() -> list[str]:
    here = os.path.join(os.path.dirname(__file__), "configs")
    return sorted(f[:-5] for f in os.listdir(here) if f.endswith(".yaml"))


def packaged_config(name: str) -> str:
    """Path of a config shipped in ``ripu_kernels/driver/configs`` (``name`` with or without ``.yaml``)."""
    here = os.path.join(os.path.dirname(__file__), "configs")
    return os.path.join(here, name if name.endswith(".yaml") else name + ".yaml")


def resolve_config_path(path: str) -> str:
    if os.path.isfile(path):
        return path
    packaged = packaged_config(path)
    if os.path.isfile(packaged):
        return packaged
    raise ConfigError(f"config file not found: {path!r} (nor a packaged config of that name; packaged: "
                      f"{', '.join(packaged_config_names())})")


def _read_yaml(path: str) -> dict:
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            values = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of config keys")
    return values


def _merge_file(node, path: str, seen: set):
    real = os.path.realpath(path)
    if real in seen:
        raise ConfigError(f"{path}: 'base' chain loops back to this file")
    seen.add(real)
    values = _read_yaml(path)
    base = values.pop("base", None)
    if base:
        candidate = os.path.join(os.path.dirname(path), str(base))
        node = _merge_file(node, candidate if os.path.isfile(candidate) else resolve_config_path(str(base)), seen)
    return _merge(node, values, f"{path}: ")


def _overrides_node(overrides: list[str]):
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    for item in overrides:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise ConfigError(f"override {item!r} must look like section.key=value")
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"override: cannot parse {overrides!r}: {str(exc).splitlines()[0]}") from None


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> Config:
    """A :class:`Config` from defaults, then the YAML file ``path`` (if any), then ``overrides``.

    A file may name ``base: other.yaml`` (relative to it, or a packaged config name) to start from.
    """
    node = _schema()
    where = ""
    if path is not None:
        where = f"{path}: "
        node = _merge_file(node, resolve_config_path(str(path)), seen=set())
    if overrides:
        node = _merge(node, _overrides_node(overrides), "override: ")
    return _to_config(node, where).validate()


def merge_file(cfg: Config, path: str) -> Config:
    """``cfg`` with the YAML file ``path`` (and its ``base:`` chain) merged over it."""
    from omegaconf import OmegaConf

    node = _merge(_schema(), OmegaConf.structured(cfg), "")
    return _to_config(_merge_file(node, resolve_config_path(str(path)), seen=set()), f"{path}: ")


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """``cfg`` with ``section.key=value`` overrides applied (values parsed as YAML-like scalars/lists)."""
    from omegaconf import OmegaConf

    if not overrides:
        return cfg
    node = _merge(_schema(), OmegaConf.structured(cfg), "")
    return _to_config(_merge(node, _overrides_node(overrides), "override: "), "override: ")


def config_from_dict(values: dict[str, Any], where: str) -> Config:
    """A :class:`Config` from a plain dict (e.g. stored in a checkpoint); errors name ``where``."""
    return _to_config(_merge(_schema(), values, f"{where}: "), f"{where}: ")


def dump_yaml(cfg: Config) -> str:
    """``cfg`` as YAML, every key, in schema order (``ripu config``): loadable again with ``--config``."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def short_lists(dumper, data):  # lists of numbers on one line: [1280, 720]
        flow = all(isinstance(v, (int, float, str, bool)) for v in data)
        return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)

    Dumper.add_representer(list, short_lists)
    return yaml.dump(cfg.to_dict(), Dumper=Dumper, sort_keys=False, default_flow_style=False, width=120)


def config_diff(saved: dict, now: dict, ignore: tuple[str, ...] = (), prefix: str = "") -> list[str]:
    """Keys (``section.key``) whose values differ between two config dicts, except those in ``ignore``."""
    out = []
    for key in sorted(set(saved) | set(now)):
        full = prefix + key
        a, b = saved.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_diff(a, b, ignore, full + ".")
        elif a != b and full not in ignore:
            out.append(f"{full} ({a!r} -> {b!r})")
    return out
