"""Run configs: dataclasses loaded from YAML, validated up front.

A config file has three sections::

    data:  {path: data/phonenums, n_eval: 1000}
    model: {method: v3, n_atoms: 10, ...}      # keys of the method's own config dataclass
    train: {steps: 3000, batch_size: 32, ...}

Unknown keys are errors that name the key and the closest valid one; values are type-checked against
the annotations, then each field against its one declarative rule (``RULES``, see :class:`Rule`).

Longer than our ~450-line guide on purpose: the rule classes, the section dataclasses that declare them
and the loader that applies them are one validation path, read together when a field is added.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from varinv.errors import ConfigError


# -- the methods --------------------------------------------------------------------------------------------
# name -> (module, method class, config class); a new method is one module plus an entry here. The registry
# lives in this module, below varinv.methods (whose config dataclasses import the rules from here), so
# neither package imports the other in a circle: a method's module is loaded by name only when its config
# class is asked for, which also keeps torch out of `import varinv.config`.
METHODS = {
    "v3": ("varinv.methods.v3", "V3", "V3Config"),
    "mine": ("varinv.methods.mine", "MINE", "MINEConfig"),
    "cycle": ("varinv.methods.cycle", "Cycle", "CycleConfig"),
    "dsae": ("varinv.methods.dsae", "DSAE", "DSAEConfig"),
    "tsdsae": ("varinv.methods.tsdsae", "TSDSAE", "TSDSAEConfig"),
    "mvtcvae": ("varinv.methods.mvtcvae", "MVTCVAE", "MVTCVAEConfig"),
    "betavae": ("varinv.methods.betavae", "BetaVAE", "BetaVAEConfig"),
    "supervised": ("varinv.methods.supervised", "Supervised", "SupervisedConfig"),
}


def method_module(name: str):
    """The module of method ``name`` (imported on first use); a ConfigError naming the methods there are."""
    if name not in METHODS:
        close = difflib.get_close_matches(name, list(METHODS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown method '{name}'{hint}; available: {', '.join(sorted(METHODS))}")
    return importlib.import_module(METHODS[name][0])


def config_class(name: str):
    """The config dataclass of method ``name``."""
    return getattr(method_module(name), METHODS[name][2])


# -- field rules ------------------------------------------------------------------------------------------
# Every config dataclass declares, in a class attribute ``RULES``, one rule for each field it introduces
# (subclasses inherit their bases' rules); ``check_fields`` applies them all and words every failure the
# same way. Rules as data rather than ``if`` statements in ``validate``: a test can prove that no field is
# left unchecked, and each message says what is allowed without restating it by hand.
class Rule:
    """One field's constraint. ``note`` adds a parenthesised hint to the message, ``example`` an "e.g.";
    ``text`` replaces the generated wording where a range is better said in words (a seed's int64 bound)."""

    def __init__(self, *, note: str = "", example: str = "", text: str = ""):
        self.note, self.example, self._text = note, example, text

    def ok(self, value) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def expected(self) -> str:
        text = self._text or self.describe()
        text = f"{text}, e.g. {self.example}" if self.example else text
        return f"{text} ({self.note})" if self.note else text

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.expected()!r})"


def _num(v) -> str:
    return str(int(v)) if float(v).is_integer() else repr(v)


class Interval(Rule):
    """A number of ``kind`` (int or float) between ``low`` and ``high`` (None: unbounded); ``closed`` is
    "both", "left", "right" or "neither" (which ends belong to the interval). ``symbol`` names the
    quantity in the message ("an integer K >= 1")."""

    def __init__(self, kind: type, low=None, high=None, *, closed: str = "both", symbol: str = "", **kw):
        super().__init__(**kw)
        if kind not in (int, float) or closed not in ("both", "left", "right", "neither"):
            raise ValueError(f"Interval({kind!r}, closed={closed!r})")
        self.kind, self.low, self.high, self.closed, self.symbol = kind, low, high, closed, symbol

    def ok(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, int if self.kind is int else (int, float)):
            return False
        left, right = self.closed in ("both", "left"), self.closed in ("both", "right")
        if self.low is not None and not (value >= self.low if left else value > self.low):
            return False
        return self.high is None or (value <= self.high if right else value < self.high)

    def describe(self, plural: bool = False) -> str:
        noun = ("integers" if plural else "an integer") if self.kind is int else ("numbers" if plural else "a number")
        noun = f"{noun} {self.symbol}" if self.symbol else noun
        left, right = self.closed in ("both", "left"), self.closed in ("both", "right")
        if self.low is None and self.high is None:
            return noun
        if self.high is None:
            if self.kind is float and self.low == 0 and not left and not self.symbol:
                return "positive numbers" if plural else "a positive number"
            return f"{noun} {'>=' if left else '>'} {_num(self.low)}"
        if self.low is None:
            return f"{noun} {'<=' if right else '<'} {_num(self.high)}"
        return f"{noun} in {'[' if left else '('}{_num(self.low)}, {_num(self.high)}{']' if right else ')'}"


class Options(Rule):
    """One of ``values`` (listed in the message in the given order)."""

    def __init__(self, values, **kw):
        super().__init__(**kw)
        self.values = tuple(values)

    def ok(self, value) -> bool:
        return any(value == v and type(value) is type(v) for v in self.values)

    def describe(self) -> str:
        shown = [repr(v) for v in self.values]
        return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"


class InstanceOf(Rule):
    """Any value of ``kind``; written in a RULES mapping as the bare type (``bool``)."""

    WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a text"}

    def __init__(self, kind: type, **kw):
        super().__init__(**kw)
        self.kind = kind

    def ok(self, value) -> bool:
        return isinstance(value, self.kind)

    def describe(self) -> str:
        return self.WORDS.get(self.kind, f"a {self.kind.__name__}")


class Any(Rule):
    """No constraint beyond the field's annotated type (which loading already enforces)."""

    def ok(self, value) -> bool:
        return True

    def describe(self) -> str:
        return "anything"


class Text(Rule):
    """A string matching regular expression ``pattern`` in full; ``text`` says what that means."""

    def __init__(self, pattern: str, *, text: str, **kw):
        super().__init__(text=text, **kw)
        self.pattern = re.compile(pattern)

    def ok(self, value) -> bool:
        return isinstance(value, str) and self.pattern.fullmatch(value) is not None

    def describe(self) -> str:
        return f"a text matching {self.pattern.pattern!r}"


class Odd(Rule):
    """An odd integer (kernel sizes: a window centred on its pixel)."""

    def ok(self, value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value % 2 == 1

    def describe(self) -> str:
        return "an odd integer"


class AnyOf(Rule):
    """Allowed when any of ``rules`` allows it (e.g. 0 for "automatic" beside a range)."""

    def __init__(self, *rules, **kw):
        super().__init__(**kw)
        self.rules = tuple(_as_rule(r) for r in rules)

    def ok(self, value) -> bool:
        return any(r.ok(value) for r in self.rules)

    def describe(self) -> str:
        return " or ".join(r.expected() for r in self.rules)


class Each(Rule):
    """A sequence of exactly ``n`` items, each allowed by the Interval ``rule``."""

    COUNTS = {2: "two", 3: "three", 4: "four"}

    def __init__(self, rule: Interval, n: int, **kw):
        super().__init__(**kw)
        self.rule, self.n = rule, n

    def ok(self, value) -> bool:
        return isinstance(value, (tuple, list)) and len(value) == self.n and all(self.rule.ok(v) for v in value)

    def describe(self) -> str:
        return f"{self.COUNTS.get(self.n, self.n)} {self.rule.describe(plural=True)}"


def _as_rule(rule) -> Rule:
    return InstanceOf(rule) if isinstance(rule, type) else rule


def field_rules(cls) -> dict[str, Rule]:
    """Field name -> rule for config dataclass ``cls``: its own ``RULES`` over those of its bases."""
    rules: dict[str, Rule] = {}
    for klass in reversed(cls.__mro__):
        rules.update({k: _as_rule(r) for k, r in vars(klass).get("RULES", {}).items()})
    return rules


def check_fields(obj, section: str) -> None:
    """ConfigError for the first field of ``obj`` (in declaration order) that its rule rejects."""
    rules = field_rules(type(obj))
    for f in dataclasses.fields(obj):
        rule = rules.get(f.name)
        value = getattr(obj, f.name)
        if rule is not None and not rule.ok(value):
            shown = list(value) if isinstance(value, tuple) else value  # as written in YAML
            raise ConfigError(f"config value {section}.{f.name} = {shown!r} is invalid: expected {rule.expected()}")


class Checked:
    """Base of the config dataclasses: ``validate`` applies the field rules. A subclass overrides
    ``validate`` (calling super first) only for constraints between fields, which one rule per field
    cannot state."""

    SECTION = "model"  # the config section its keys live in, for messages
    RULES: dict = {}
    # Fields whose default has changed, with their former values: a run's saved config names every field
    # that existed when it was trained, so a field it does not name was trained with its former value.
    FORMER: dict = {}
    # Fields since removed, with the value that meant "off": a saved run that names one at that value loads
    # without it; one trained with the option on cannot be rebuilt by this version.
    REMOVED: dict = {}

    def validate(self) -> None:
        check_fields(self, self.SECTION)


def check_value(ok: bool, key: str, value, expected: str) -> None:
    """A one-off check in the rules' message shape, for constraints between fields in ``validate``."""
    if not ok:
        raise ConfigError(f"config value {key} = {value!r} is invalid: expected {expected}")


@dataclass
class DataConfig(Checked):
    path: str = "data/phonenums"
    n_eval: int = 1000  # test fragments for retrieval metrics (the paper-era size)
    eval_split: str = "test"
    # K of the k-means content index for methods without a codebook (0: the number of content classes)
    n_clusters: int = 0

    SECTION = "data"
    RULES = {
        "path": Text(r"(?s).*\S.*", text="a dataset folder"),
        "n_eval": Interval(int, 10, None),
        "eval_split": Text(r"(?s).*\S.*", text="a split name, e.g. 'test'"),
        "n_clusters": Interval(int, 0, None, note="0 = the number of content classes"),
    }


@dataclass
class TrainConfig(Checked):
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
    # Over a run of a few thousand steps the paper's schedule stays near lr throughout. lr_final < 1 adds a
    # cosine from lr to lr_final·lr over the steps after lr_anneal_from of the run (1.0: off; at 0.1 it moved
    # no fragile suite domain beyond one seed's noise, 2026-12-06-generalisation-explore22.md).
    lr_final: float = 1.0
    lr_anneal_from: float = 0.5
    warmup_steps: int = 0
    seed: int = 0
    threads: int = 0  # 0 = all cores
    log_every: int = 25
    ckpt_every: int = 500
    grad_clip: float = 0.0
    # bf16 autocast: 1.1-1.2x faster steps here on top of the defaults, but it tipped one InsNotes seed of three into
    # atoms permuted across instruments (benchmarks/results/2026-12-05-speed-quality.md), so it stays opt-in.
    precision: str = "fp32"  # fp32 | bf16
    # On a GPU, let fp32 convolutions and matrix products round their inputs to TF32 (10-bit mantissa),
    # as cuDNN does by default. Off: full fp32, the arithmetic of a CPU run. No effect on the CPU.
    tf32: bool = False
    # NHWC ("channels-last") layout for the conv weights and activations: the same functions, different
    # rounding (varinv.train.speed). "auto": NHWC where a process computes on one CPU thread or on a GPU,
    # NCHW on several CPU threads, where oneDNN's NHWC kernels left the second core idle
    # (benchmarks/results/2026-12-06-train-speed-auto.md).
    channels_last: bool | str = "auto"
    # torch.compile of the conv trunks (varinv.train.speed): the same functions in fused kernels, a
    # one-off compilation per input shape, eager again (one warning) if compiling fails.
    compile: bool = False
    # Where training runs: "cpu" (the default, bit-reproducible here), "cuda" or "cuda:N". Under
    # torchrun, "cuda" means each process's own GPU (cuda:LOCAL_RANK). Evaluation runs on the CPU.
    device: str = "cpu"

    SECTION = "train"
    RULES = {
        "steps": Interval(int, 1, None),
        "batch_size": Interval(int, 2, None, note="V3 compares samples"),
        "lr": Interval(float, 0, None, closed="neither"),
        "weight_decay": Interval(float, 0, None),
        "betas": Each(Interval(float, 0, 1, closed="left"), 2, example="[0.9, 0.999]"),
        "lr_decay": Interval(float, 0, 1, closed="right"),
        "lr_decay_every": Interval(int, 1, None),
        "steps_per_epoch": Interval(int, 1, None),
        "lr_floor": Interval(float, 0, 1),
        "lr_final": Interval(float, 0, 1, closed="right", note="1 = no annealing"),
        "lr_anneal_from": Interval(float, 0, 1, closed="left"),
        "warmup_steps": Interval(int, 0, None),
        # torch seeds are int64; no one types a seed near the bound, so the message leaves it out
        "seed": Interval(int, 0, 2**63, closed="left", text="an integer >= 0"),
        "threads": Interval(int, 0, None, note="0 = all cores"),
        "log_every": Interval(int, 1, None),
        "ckpt_every": Interval(int, 1, None),
        "grad_clip": Interval(float, 0, None, note="0 = no clipping"),
        "precision": Options(("fp32", "bf16")),
        "tf32": bool,
        "channels_last": AnyOf(bool, Options(("auto",))),
        "compile": bool,
        "device": Text(r"cpu|cuda(:\d+)?", text="'cpu', 'cuda' or 'cuda:N'"),
    }


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


def for_data(cfg: RunConfig, kind: str) -> RunConfig:
    """``cfg`` with its data-dependent "auto" options fixed for a dataset of ``kind`` ("image", "spectrogram",
    ...), so that the run's saved config names what was trained."""
    if getattr(cfg.model, "pose", None) == "auto":
        pose = {"image": "similarity", "spectrogram": "time"}.get(kind, "none")
        return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, pose=pose))
    return cfg


def from_dict(raw: dict) -> RunConfig:
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
        model=build(mcls, model, "model"),
        train=build(TrainConfig, raw.get("train"), "train"),
        method=method,
    )


def from_saved(raw: dict) -> RunConfig:
    """The config of a trained run (its config.yaml or model.json mapping): fields it does not name take their
    former values (``Checked.FORMER``), not today's defaults."""
    model = raw.get("model") if isinstance(raw, dict) else None
    if isinstance(model, dict) and model.get("method", "v3") in METHODS:
        cls = config_class(model.get("method", "v3"))
        for key, value in cls.FORMER.items():
            model.setdefault(key, value)
        for key, off in cls.REMOVED.items():
            if model.get(key, off) != off:
                raise ConfigError(f"the run was trained with model.{key} = {model[key]!r}, an option this varinv no "
                                  f"longer has; load it with the varinv version that trained it")
            model.pop(key, None)
    return from_dict(raw)


def load_saved(path: str | Path) -> RunConfig:
    """A run folder's config.yaml, read as :func:`from_saved`."""
    return from_saved(read_yaml(path))


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
