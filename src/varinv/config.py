"""Run configs: dataclasses loaded from YAML, validated up front.

A config file has three sections::

    data:  {path: data/phonenums, n_eval: 1000}
    model: {method: v3, n_atoms: 10, ...}      # keys of the method's own config dataclass
    train: {steps: 3000, batch_size: 32, ...}

Unknown keys are errors that name the key and the closest valid one; values are type-checked and
range-checked by each dataclass's ``validate``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from varinv.errors import ConfigError


@dataclass
class DataConfig:
    path: str = "data/phonenums"
    n_eval: int = 1000  # test fragments for retrieval metrics (the paper-era size)
    eval_split: str = "test"
    # K of the k-means content index for methods without a codebook (0: the number of content classes)
    n_clusters: int = 0

    def validate(self) -> None:
        _check(self.n_eval >= 10, "data.n_eval", self.n_eval, "an integer >= 10")
        _check(self.n_clusters >= 0, "data.n_clusters", self.n_clusters,
               "an integer >= 0 (0 = the number of content classes)")
        _check(bool(str(self.path).strip()), "data.path", self.path, "a dataset folder")
        _check(bool(str(self.eval_split).strip()), "data.eval_split", self.eval_split, "a split name, e.g. 'test'")


@dataclass
class TrainConfig:
    steps: int = 3000
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    # The paper's schedule is max(0.02, 0.98^(epoch/20)); we express it per step with an epoch length.
    lr_decay: float = 0.98
    lr_decay_every: int = 20  # "epochs" (of steps_per_epoch steps) per decay factor
    steps_per_epoch: int = 100
    lr_floor: float = 0.02
    warmup_steps: int = 0
    seed: int = 0
    threads: int = 0  # 0 = all cores
    log_every: int = 25
    ckpt_every: int = 500
    grad_clip: float = 0.0
    precision: str = "fp32"  # fp32 | bf16
    # NHWC ("channels-last") layout for the conv weights and activations: the same functions, a faster
    # oneDNN path on CPU, different rounding (benchmarks/results/2026-11-22-speed.md; varinv.train.speed).
    channels_last: bool = False
    # torch.compile of the conv trunks (varinv.train.speed): the same functions in fused kernels, a
    # one-off compilation per input shape, eager again (one warning) if compiling fails.
    compile: bool = False
    # Where training runs: "cpu" (the default, bit-reproducible here), "cuda" or "cuda:N". Under
    # torchrun, "cuda" means each process's own GPU (cuda:LOCAL_RANK). Evaluation runs on the CPU.
    device: str = "cpu"

    def validate(self) -> None:
        _check(self.steps >= 1, "train.steps", self.steps, "an integer >= 1")
        _check(self.batch_size >= 2, "train.batch_size", self.batch_size, "an integer >= 2 (V3 compares samples)")
        _check(self.lr > 0, "train.lr", self.lr, "a positive number")
        _check(0 <= self.seed < 2**63, "train.seed", self.seed, "an integer >= 0")
        _check(self.threads >= 0, "train.threads", self.threads, "an integer >= 0 (0 = all cores)")
        _check(self.log_every >= 1, "train.log_every", self.log_every, "an integer >= 1")
        _check(self.ckpt_every >= 1, "train.ckpt_every", self.ckpt_every, "an integer >= 1")
        _check(self.steps_per_epoch >= 1, "train.steps_per_epoch", self.steps_per_epoch, "an integer >= 1")
        _check(self.lr_decay_every >= 1, "train.lr_decay_every", self.lr_decay_every, "an integer >= 1")
        _check(0 <= self.lr_floor <= 1, "train.lr_floor", self.lr_floor, "a number in [0, 1]")
        _check(self.warmup_steps >= 0, "train.warmup_steps", self.warmup_steps, "an integer >= 0")
        _check(self.weight_decay >= 0, "train.weight_decay", self.weight_decay, "a number >= 0")
        _check(self.grad_clip >= 0, "train.grad_clip", self.grad_clip, "a number >= 0 (0 = no clipping)")
        _check(all(0 <= b < 1 for b in self.betas), "train.betas", list(self.betas),
               "two numbers in [0, 1), e.g. [0.9, 0.999]")
        _check(self.precision in ("fp32", "bf16"), "train.precision", self.precision, "'fp32' or 'bf16'")
        _check(isinstance(self.channels_last, bool), "train.channels_last", self.channels_last, "true or false")
        _check(isinstance(self.compile, bool), "train.compile", self.compile, "true or false")
        _check(0 < self.lr_decay <= 1, "train.lr_decay", self.lr_decay, "a number in (0, 1]")
        _check(re.fullmatch(r"cpu|cuda(:\d+)?", str(self.device)) is not None, "train.device", self.device,
               "'cpu', 'cuda' or 'cuda:N'")


# Fields several method configs share (their own ``validate`` lives in varinv.methods): field -> (rule, expected).
MODEL_FIELD_RULES = {
    "d_hidden": (lambda v: v >= 2, "an integer >= 2"),
    "blocks_per_layer": (lambda v: v >= 1, "an integer >= 1"),
    "n_atoms": (lambda v: v >= 1, "an integer >= 1"),
}


def check_model_fields(model, section: str = "model") -> None:
    """The :data:`MODEL_FIELD_RULES` of the fields ``model`` (a method's config dataclass) has."""
    names = {f.name for f in dataclasses.fields(model)}
    for key, (rule, expected) in MODEL_FIELD_RULES.items():
        if key in names:
            value = getattr(model, key)
            _check(rule(value), f"{section}.{key}", value, expected)


def _check(ok: bool, key: str, value, expected: str) -> None:
    if not ok:
        raise ConfigError(f"config value {key} = {value!r} is invalid: expected {expected}")


_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _coerce(value, tp, key: str):
    """Coerce YAML scalars to the annotated type (ints for floats, lists for tuples)."""
    origin = typing.get_origin(tp)
    if tp is float and isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
        value = float(value)  # PyYAML reads 1e-4 (no dot) as a string
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ConfigError(f"config value {key} = {value!r} is invalid: expected a finite number")
        return float(value)
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is bool and isinstance(value, bool):
        return value
    if tp is str and isinstance(value, str):
        return value
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(tp)
        if len(args) == len(value):
            return tuple(_coerce(v, a, key) for v, a in zip(value, args))
    if origin is list and isinstance(value, (list, tuple)):
        (arg,) = typing.get_args(tp)
        return [_coerce(v, arg, key) for v in value]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType")):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError:
                pass
    raise ConfigError(f"config value {key} = {value!r} has the wrong type: expected {getattr(tp, '__name__', tp)}")


def build(cls, values: dict | None, section: str):
    """Instantiate dataclass ``cls`` from a dict, rejecting unknown keys by name."""
    values = dict(values or {})
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (valid keys: {', '.join(names)})"
            raise ConfigError(f"unknown config key '{section}.{key}'{hint}")
        kwargs[key] = _coerce(value, hints[key], f"{section}.{key}")
    obj = cls(**kwargs)
    if hasattr(obj, "validate"):
        obj.validate()
    return obj


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: typing.Any = None  # the method's config dataclass
    train: TrainConfig = field(default_factory=TrainConfig)
    method: str = "v3"

    def to_dict(self) -> dict:
        model = dataclasses.asdict(self.model)
        model = {"method": self.method, **model}
        return {
            "data": dataclasses.asdict(self.data),
            "model": model,
            "train": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self.train).items()},
        }


def from_dict(raw: dict) -> RunConfig:
    from varinv.methods import config_class

    if not isinstance(raw, dict):
        raise ConfigError("a config must be a mapping with sections data, model, train")
    for key in raw:
        if key not in ("data", "model", "train"):
            close = difflib.get_close_matches(key, ["data", "model", "train"], n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else " (valid sections: data, model, train)"
            raise ConfigError(f"unknown config section '{key}'{hint}")
    model = dict(raw.get("model") or {})
    method = model.pop("method", "v3")
    mcls = config_class(method)
    return RunConfig(
        data=build(DataConfig, raw.get("data"), "data"),
        model=_checked_model(build(mcls, model, "model")),
        train=build(TrainConfig, raw.get("train"), "train"),
        method=method,
    )


def _checked_model(model):
    check_model_fields(model)
    return model


def read_yaml(path: str | Path) -> dict:
    """The raw mapping of a YAML config file (ConfigError if missing, a folder, not text, empty or not
    valid YAML)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config {path} is a folder; give a YAML file or a shipped config name (`varinv configs`)")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; `varinv configs` lists the shipped configs")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not a text file (not UTF-8); give a YAML config") from None
    except OSError as e:
        raise ConfigError(f"config file {path} cannot be read ({e.strerror or e}); check its permissions") from None
    if "\x00" in text:
        raise ConfigError(f"config file {path} is not a text file (it holds NUL bytes); give a YAML config")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if raw is None:
        raise ConfigError(f"config file {path} is empty; give at least the sections you change (data, model, "
                          "train), e.g. start from a shipped config (`varinv configs`)")
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must be a mapping with sections data, model, train")
    return raw


def apply_overrides(raw: dict, overrides: list[str] | None) -> dict:
    """Apply ``section.key=value`` strings (YAML-parsed values) to a raw config mapping, in place."""
    for item in overrides or []:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"override {item!r} must look like section.key=value, e.g. train.steps=500")
        dotted, value = item.split("=", 1)
        section, key = dotted.split(".", 1)
        raw.setdefault(section, {})
        if raw[section] is None:
            raw[section] = {}
        if not isinstance(raw[section], dict):
            raise ConfigError(f"config section '{section}' must be a mapping")
        raw[section][key] = yaml.safe_load(value)
    return raw


def load(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Load a YAML config; ``overrides`` are ``section.key=value`` strings (YAML-parsed values)."""
    return from_dict(apply_overrides(read_yaml(path), overrides))


# -- the configs shipped inside the package (src/varinv/configs/, also reachable as ./configs) -------------
SHIPPED_DIR = Path(__file__).resolve().parent / "configs"


def shipped() -> dict[str, Path]:
    """Shipped config name (file name without .yaml) -> path, sorted by name."""
    return {p.stem: p for p in sorted(SHIPPED_DIR.glob("*.yaml"))}


def describe(path: str | Path) -> dict:
    """name, method, data path and one-line description (the first comment line) of a config file."""
    path = Path(path)
    text = path.read_text()
    description = ""
    for line in text.splitlines():
        if line.strip().startswith("#"):
            description = line.strip().lstrip("#").strip()
            break
    raw = yaml.safe_load(text) or {}
    model = raw.get("model") or {}
    data = raw.get("data") or {}
    return {"name": path.stem, "method": str(model.get("method", "v3")), "data": str(data.get("path", "")),
            "description": description}


def resolve(config: str | Path) -> Path:
    """The config file ``config`` names: an existing file path (always wins), else a shipped config name
    (``phonenums_v3_small``, with or without ``.yaml``). Anything else is a ConfigError naming the closest
    shipped configs."""
    path = Path(config)
    if path.is_file():
        return path
    if path.is_dir():
        raise ConfigError(f"config {config} is a folder; give a YAML file or a shipped config name (`varinv configs`)")
    names = shipped()
    text = str(config)
    bare = "/" not in text and "\\" not in text
    name = text[:-5] if text.endswith(".yaml") else text[:-4] if text.endswith(".yml") else text
    if bare and name in names:
        return names[name]
    stem = Path(name).name
    if not bare and stem in names:
        raise ConfigError(f"config file {text} does not exist; the shipped config of that name is "
                          f"`varinv train {stem}`")
    close = difflib.get_close_matches(stem, list(names), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    if bare:
        raise ConfigError(f"config {text!r} is neither an existing file nor a shipped config name{hint} "
                          "(`varinv configs` lists them)")
    raise ConfigError(f"config file {text} does not exist{hint.replace('mean ', 'mean the shipped ')} "
                      "(`varinv configs` lists the shipped configs)")


def has_codebook(method: str) -> bool:
    """Whether ``method``'s config has a codebook size (model.n_atoms); else K is data.n_clusters."""
    from varinv.methods import config_class

    return "n_atoms" in {f.name for f in dataclasses.fields(config_class(method))}


def compose(
    config: str | Path | None = None,
    data: str | Path | None = None,
    *,
    method: str | None = None,
    k: int | None = None,
    steps: int | None = None,
    batch_size: int | None = None,
    overrides: list[str] | None = None,
) -> RunConfig:
    """The config of ``varinv train [CONFIG] [--data DS] [--method M] [--k K] [--steps N] [--batch-size B]``.

    ``config`` is a file or a shipped name (:func:`resolve`). Without it, ``data`` is required and the
    config starts from the method's shipped generic config (``configs/<method>.yaml``) when there is
    one, else from the method's defaults; either way the backbone (n_layers = n_channels = 0) follows
    from the fragment shape, K (model.n_atoms for methods with a codebook, else data.n_clusters)
    defaults to the dataset's number of content names and the supervised method's class counts come
    from the manifest. With ``config``, ``data`` replaces data.path and only the options given change
    it. ``overrides`` (``--set``) apply last.
    """
    from varinv.methods import config_class

    if config is None and data is None:
        raise ConfigError("give a config (a YAML file or a shipped name, see `varinv configs`) or --data DS "
                          "to train with the method's generic config")
    if config is not None:
        raw = read_yaml(resolve(config))
        named = str((raw.get("model") or {}).get("method", "v3"))
        if method is not None and method != named:
            raise ConfigError(f"--method {method} contradicts the config's model.method ({named}); "
                              "drop --method or the config")
        method = named
    else:
        from varinv.data.store import open_dataset

        method = method or "v3"
        config_class(method)  # names the methods there are when it is not one of them
        ds = open_dataset(data)
        generic = shipped().get(method)
        raw = read_yaml(generic) if generic is not None else {"model": {"method": method}}
        if k is None:
            k = len(ds.content_names)
            if k < 2:
                raise ConfigError(f"dataset {ds.root} names {k} content classes, so K cannot default to that "
                                  "number; pass --k K")
        if method == "supervised":
            raw["model"] = dict(raw.get("model") or {})
            raw["model"]["n_content_classes"] = len(ds.content_names)
            raw["model"]["n_style_classes"] = len(ds.style_names)
    for section in ("data", "model", "train"):
        if raw.get(section) is None:
            raw[section] = {}
        elif not isinstance(raw[section], dict):
            raise ConfigError(f"config section '{section}' must be a mapping")
    raw["model"].setdefault("method", method)
    if data is not None:
        raw["data"]["path"] = str(data)
    if k is not None:
        if k < 1:
            raise ConfigError(f"--k must be >= 1, got {k}")
        raw["model" if has_codebook(method) else "data"]["n_atoms" if has_codebook(method) else "n_clusters"] = int(k)
    if steps is not None:
        raw["train"]["steps"] = int(steps)
    if batch_size is not None:
        raw["train"]["batch_size"] = int(batch_size)
    return from_dict(apply_overrides(raw, overrides))
