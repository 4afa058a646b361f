"""Run settings: the original study's config keys plus nbkit's own, one typed dataclass.

A YAML file in the original's format (`dataset: cifar100`, `model: resnet18`,
`mixstyle_level: 2`, ...) loads into the same `Settings`, so its configs work unchanged.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path

from nbkit.errors import SettingsError, closest


class Kwargs(dict):
    """model_kwargs' value: a JSON object that is read-only and hashable, like every other setting."""

    def __hash__(self):
        return hash(json.dumps(self, sort_keys=True))

    def __reduce__(self):
        return Kwargs, (dict(self),)

    def _read_only(self, *args, **kwargs):
        raise TypeError("settings are read-only; use Settings.replace(model_kwargs={...})")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _read_only


@dataclass(frozen=True)
class Settings:
    # --- the original study's keys (src/config.py), same names and defaults ---
    dataset: str = "cifar100"
    model: str = "resnet18"
    use_augmentation: bool = False
    constant_lr: float | None = None  # a constant learning rate instead of warm-up + decay
    resnet_norm_type: str = "bn"  # bn or gn (GroupNorm, 16 groups)
    mixstyle_level: int = 0  # MixStyle after layer1 .. layer<level>; 0 = off
    normalizer: bool = True  # running-statistics input normaliser
    per_channel_normalizer: bool = False
    tailor_num_classes: bool = False  # head sized to the dataset, else 1000-way as the original
    finetune_level: int = 5  # below 5 freezes ResNet stages from the stem up
    batch_size: int = 128
    eval_batch_size: int = 1024  # the original used 128; the value does not change any result
    max_iter: int = 5000
    eval_every: int = 100
    warmup_min_lr: float = 1e-6
    warmup_max_lr: float = 2e-4
    warmup_num_steps: int = 500
    gradient_clipping: float = 100.0
    save_every: int = 5000
    # --- nbkit's additions ---
    seed: int = 0
    val_size: int = 0  # training images held out as a `val` split (0 = none, as the original)
    data_dir: str = "data"
    compile: bool = False  # torch.compile the model
    log_every: int = 10  # a train row is the mean of this many steps' loss and accuracy
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 elsewhere; fp32 as the original; bf16
    cuda_graph: bool = True  # on a GPU, capture the training step as a CUDA graph (one process, no compile)
    original_schedule: bool = False  # the rates the original's optimiser saw: 1e-3 first, then one step late
    model_kwargs: dict = field(default_factory=Kwargs)  # keyword arguments of a timm/ or import-path model
    # --- the epochs experiment (nbkit's own, off by default) ---
    sampling: str = "epoch"  # epoch: a fresh permutation each epoch; fixed: one order every epoch; replacement
    train_size: int = 0  # train on the first N of a fixed seeded permutation of the training split (0 = all)
    train_fraction: float = 1.0  # then on the first share of those (nested: a half set lies in the whole)
    seen_probe: bool = False  # log each window's loss by how many times its examples were trained on before
    boundary_eval: int = 0  # steps either side of each epoch end in which val is also scored every log_every steps
    switch_epoch: int = 0  # sampling disjoint: epochs on one half of the training set before the other, unseen half

    def __post_init__(self):
        for f in fields(self):
            object.__setattr__(self, f.name, _coerce(f.name, getattr(self, f.name)))
        _check_ranges(self)

    def replace(self, **changes) -> "Settings":
        check_keys(changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "model_kwargs": dict(self.model_kwargs)}  # plain JSON values

    def identity(self) -> dict:
        """to_dict() without later-added settings left at their default: what makes two runs the
        same run, for runs made before those settings existed too."""
        return {k: v for k, v in self.to_dict().items() if LATER_KEYS.get(k, _NOT_LATER) != v}


_NOT_LATER = object()
KEYS = tuple(f.name for f in fields(Settings))
PRECISIONS = ("auto", "bf16", "fp32")
SAMPLINGS = ("epoch", "fixed", "replacement", "disjoint")
# settings added after runs were shipped: at their default they are left out of a run's identity
# (sweep folder names, checkpoint checks), so earlier runs keep theirs
LATER_KEYS = {"precision": "auto", "cuda_graph": True, "original_schedule": False, "model_kwargs": {},
              "sampling": "epoch", "train_size": 0, "train_fraction": 1.0, "seen_probe": False, "boundary_eval": 0,
              "switch_epoch": 0}
MAX_INT = 2**63 - 1  # what a seed generator and a run log's integer column hold
MAX_STEP = 10**10  # ten billion steps (years of training): a run log's step beyond it is absurd, left out
_TYPES = typing.get_type_hints(Settings)


def check_keys(keys) -> None:
    for key in keys:
        if key not in KEYS:
            raise SettingsError(f"unknown setting '{key}'{closest(key, KEYS)} Valid settings: {', '.join(KEYS)}")


def _coerce(key: str, value):
    """Accept a value of the field's type, or a string that spells one (YAML, --set)."""
    kind = _TYPES[key]
    optional = isinstance(kind, types.UnionType) and type(None) in kind.__args__
    if optional:
        kind = next(a for a in kind.__args__ if a is not type(None))
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
    expected = f"{key} expects {'an optional ' if optional else 'a '}{kind.__name__}"
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads `1e-4` as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif kind is str:
        if isinstance(value, str) and value:
            return value
    elif kind is dict:
        return _kwargs(key, value)
    raise SettingsError(f"{expected}, got {value!r:.120}")


def _kwargs(key: str, value) -> Kwargs:
    """A mapping of keyword arguments with JSON values, or a string spelling one (JSON or YAML
    flow style, as --set model_kwargs='{img_size: 32}' gives it)."""
    expected = f"{key} expects a mapping of keyword arguments, e.g. {{img_size: 32, patch_size: 4}}"
    if isinstance(value, str):
        import yaml

        try:
            value = yaml.load(value, Loader=plain_yaml_loader()) if value.strip() else {}  # noqa: S506
        except yaml.YAMLError:
            raise SettingsError(f"{expected}, got {value!r:.120}") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) and k.isidentifier() for k in value):
        raise SettingsError(f"{expected}, got {value!r:.120}")
    try:
        return Kwargs(json.loads(json.dumps(value, allow_nan=False)))  # plain JSON: lists, not tuples
    except (TypeError, ValueError):
        raise SettingsError(f"{expected} whose values are numbers, strings, booleans or lists, got {value!r:.120}") from None


def _check_ranges(s: Settings) -> None:
    def need(ok: bool, message: str):
        if not ok:
            raise SettingsError(message)

    for f in fields(s):
        v = getattr(s, f.name)
        need(not isinstance(v, int) or isinstance(v, bool) or abs(v) <= MAX_INT,
             f"{f.name} expects a number within +-{MAX_INT}, got {v}")
    need(0 <= s.seed, f"seed expects 0..{MAX_INT}, got {s.seed}")
    need(s.precision in PRECISIONS, f"precision expects one of {', '.join(PRECISIONS)}, got {s.precision!r}")
    need(s.resnet_norm_type in ("bn", "gn"), f"resnet_norm_type expects 'bn' or 'gn', got {s.resnet_norm_type!r}")
    need(0 <= s.mixstyle_level <= 4, f"mixstyle_level expects 0..4, got {s.mixstyle_level}")
    need(0 <= s.finetune_level <= 5, f"finetune_level expects 0..5, got {s.finetune_level}")
    for key in ("batch_size", "eval_batch_size", "max_iter", "eval_every", "save_every", "log_every"):
        need(getattr(s, key) > 0, f"{key} expects a positive integer, got {getattr(s, key)}")
    need(s.max_iter <= MAX_STEP, f"max_iter expects at most {MAX_STEP:,} steps, got {s.max_iter}")
    need(s.warmup_num_steps >= 0, f"warmup_num_steps expects >= 0, got {s.warmup_num_steps}")
    need(s.val_size >= 0, f"val_size expects >= 0, got {s.val_size}")
    for key in ("warmup_min_lr", "warmup_max_lr", "gradient_clipping"):
        need(getattr(s, key) > 0, f"{key} expects a positive number, got {getattr(s, key)}")
    need(s.constant_lr is None or s.constant_lr > 0, f"constant_lr expects a positive number or none, got {s.constant_lr}")
    _check_epochs(s, need)
    resnet_only = s.resnet_norm_type != "bn" or s.mixstyle_level or s.finetune_level != 5
    need(not resnet_only or (s.model.startswith("resnet") and not external_model(s.model)),
         f"resnet_norm_type, mixstyle_level and finetune_level apply to resnet models only, not {s.model!r}")
    need(not s.model_kwargs or external_model(s.model),
         f"model_kwargs applies to timm/<name> and package.module:callable models, not {s.model!r}")


def fit_warmup(s: Settings, explicit: bool) -> tuple[Settings, str | None]:
    """A run launched shorter than its learning-rate warm-up (it would end before the rate reaches
    its peak and barely learn): the warm-up scaled to a tenth of the run, with a note saying so,
    where the user did not choose it; refused in one line where they did (explicit)."""
    if s.constant_lr is not None or s.max_iter > s.warmup_num_steps:
        return s, None
    short = s.max_iter // 10
    if explicit:
        raise SettingsError(f"warmup_num_steps={s.warmup_num_steps} is not shorter than the run (max_iter={s.max_iter}): "
                            f"the learning rate would never reach its peak; expected a warm-up below {s.max_iter} steps, "
                            f"e.g. warmup_num_steps={short}")
    return s.replace(warmup_num_steps=short), (
        f"the {s.warmup_num_steps}-step learning-rate warm-up is longer than this {s.max_iter}-step run: scaled to "
        f"{short} steps (a tenth of the run), so the rate reaches its peak; --set warmup_num_steps=N chooses another")


def external_model(model: str) -> bool:
    """Whether a model name is a timm architecture (timm/<name>) or an import path (package.module:callable)."""
    return model.startswith("timm/") or ":" in model


def _check_epochs(s: Settings, need) -> None:
    need(s.sampling in SAMPLINGS,
         f"sampling expects one of {', '.join(SAMPLINGS)}, got {s.sampling!r}{closest(s.sampling, SAMPLINGS)}")
    need(s.train_size == 0 or s.train_size >= s.batch_size,
         f"train_size {s.train_size} is below one batch (batch_size {s.batch_size}); expected at least "
         f"{s.batch_size}, or 0 for the whole training split")
    need(0 < s.train_fraction <= 1, f"train_fraction expects a share in (0, 1], got {s.train_fraction}")
    need(s.boundary_eval >= 0, f"boundary_eval expects >= 0 steps, got {s.boundary_eval}")
    need(not s.boundary_eval or s.val_size > 0,
         f"boundary_eval {s.boundary_eval} scores the held-out val split; set val_size too (e.g. val_size=1000)")
    need(s.switch_epoch >= 0, f"switch_epoch expects >= 0 epochs, got {s.switch_epoch}")
    need(s.sampling != "disjoint" or s.switch_epoch >= 1,
         "sampling disjoint trains on one half of the training set, then on the other: set switch_epoch to the "
         "epochs before the switch (e.g. switch_epoch=6)")
    need(not s.switch_epoch or s.sampling == "disjoint",
         f"switch_epoch {s.switch_epoch} applies to sampling disjoint only, not {s.sampling!r}")


def parse_assignments(pairs: list[str]) -> dict[str, str]:
    """`["key=value", ...]` from the command line into a dict, keys checked."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SettingsError(f"--set expects key=value, got {pair!r}")
        out[key.strip()] = value.strip()
    check_keys(out)
    return out


MAX_YAML_BYTES = 1 << 20  # an original-format config is a few hundred bytes
MAX_YAML_VALUE = 4096  # characters of one value (a path at most)


def load_yaml(path: str | Path) -> dict:
    """The key/value pairs of an original-format YAML config, keys checked. Only plain key: value
    lines load: no aliases (a few hundred bytes of them expand to gigabytes), no lists or
    mappings as values but model_kwargs' mapping, at most MAX_YAML_BYTES."""
    import yaml

    path = Path(path)
    try:
        if path.stat().st_size > MAX_YAML_BYTES:
            raise SettingsError(f"{path} is {path.stat().st_size:,} bytes, more than the {MAX_YAML_BYTES:,} a config "
                                "may have; expected key: value lines")
        data = yaml.load(path.read_text(errors="replace"), Loader=plain_yaml_loader())
    except FileNotFoundError:
        raise SettingsError(f"config file not found: {path}") from None
    except yaml.YAMLError as e:
        first = str(e).strip().splitlines()[0]
        raise SettingsError(f"{path} is not valid YAML ({first}); expected key: value lines") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SettingsError(f"{path} expects a mapping of setting: value, got {type(data).__name__}")
    check_keys(data)
    for key, value in data.items():
        if _TYPES[key] is dict and isinstance(value, dict):  # model_kwargs: a mapping (checked by _kwargs)
            if len(json.dumps(value, default=str)) <= MAX_YAML_BYTES:
                continue
        if not isinstance(value, (str, int, float, bool, type(None))) or len(str(value)) > MAX_YAML_VALUE:
            raise SettingsError(f"{path}: {key} expects one value (a number, word or path of at most "
                                f"{MAX_YAML_VALUE} characters), got a {type(value).__name__}")
    return data


@functools.cache
def plain_yaml_loader():
    """yaml's SafeLoader refusing aliases, before any node is built from them."""
    import yaml

    class PlainLoader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(None, None, f"found an alias (*{event.anchor}); "
                                                  "expected plain values without anchors or aliases", event.start_mark)
            return super().compose_node(parent, index)

    return PlainLoader
