"""Pretrained models shipped inside the package: ``pretrained:NAME`` wherever a run folder is taken.

Each model is a run folder, ``varinv/pretrained/NAME/``, cut down to what inference and the demo page
need: model.json, config.yaml, checkpoints/final.json with the weights it names (safetensors, no
optimizer state), metrics.json and a README.md (how it was trained, on what, its metrics). They are
made by ``benchmarks/make_pretrained.py NAME RUN`` from a finished, evaluated run.

:func:`resolve` is the one place that turns ``pretrained:NAME`` into that folder (``varinv encode``,
``transfer``, ``report``, ``varinv.load_model`` read it in place). The package copy is never written:
commands that write into a run folder (``evaluate``, ``recombine``, ``varinv demo``) work on a copy made
by :func:`copy_run`.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

from varinv.errors import ConfigError
from varinv.runs import CHECKPOINTS_DIR, CONFIG_FILE, METRICS_FILE, MODEL_FILE

__all__ = ["PREFIX", "ROOT", "MAKE_SCRIPT", "DEFAULT_COPY_DIR", "root", "names", "is_ref", "name_of", "resolve",
           "path", "describe", "copy_run", "is_copy_of", "missing_message"]

PREFIX = "pretrained:"
ROOT = Path(__file__).resolve().parent  # tests point this elsewhere (monkeypatch)
MAKE_SCRIPT = "benchmarks/make_pretrained.py"
DEFAULT_COPY_DIR = Path("runs/pretrained")  # evaluate / recombine of pretrained:NAME write to runs/pretrained/NAME
PACKAGED_METRICS = "pretrained_metrics.json"  # in a copy: the packaged metrics.json, kept apart from new ones
COPY_MARKER = ".varinv-pretrained"  # in a copy: which packaged model it holds


def root() -> Path:
    return Path(ROOT)


def names() -> list[str]:
    """The packaged models (folders holding model.json and a final checkpoint), sorted."""
    r = root()
    if not r.is_dir():
        return []
    return sorted(p.name for p in r.iterdir()
                  if p.is_dir() and (p / MODEL_FILE).is_file() and (p / CHECKPOINTS_DIR / "final.json").is_file())


def is_ref(run) -> bool:
    """Whether ``run`` (a str or Path) is ``pretrained:NAME``."""
    return str(run).startswith(PREFIX)


def name_of(run) -> str:
    return str(run)[len(PREFIX):].strip().strip("/")


def missing_message(name: str | None = None) -> str:
    """The one line for a model that is not packaged (or none at all)."""
    have = names()
    if not have:
        return (f"no pretrained model is packaged in this install ({root()} holds none); make one from a "
                f"finished run with `python {MAKE_SCRIPT} phonenums RUN` (see `python {MAKE_SCRIPT} --help`)")
    return (f"no pretrained model {name!r}; packaged: {', '.join(have)} (`varinv pretrained` lists them; "
            f"`python {MAKE_SCRIPT} NAME RUN` packages another)")


def path(name: str) -> Path:
    """The packaged folder of model ``name``; ConfigError when it is not packaged."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ConfigError(f"{PREFIX}{name} is not a pretrained model name; use {PREFIX}NAME, e.g. "
                          f"{PREFIX}phonenums (`varinv pretrained` lists them)")
    if name not in names():
        raise ConfigError(missing_message(name))
    return root() / name


def resolve(run) -> Path:
    """``pretrained:NAME`` → the packaged folder (read-only: do not write into it); anything else → Path(run)."""
    if is_ref(run):
        return path(name_of(run))
    return Path(run)


def describe(name: str) -> dict:
    """Name, method, K, fragment shape, step and headline metrics of a packaged model."""
    folder = path(name)
    meta = json.loads((folder / MODEL_FILE).read_text())
    metrics = {}
    if (folder / METRICS_FILE).is_file():
        metrics = json.loads((folder / METRICS_FILE).read_text())
    state = json.loads((folder / CHECKPOINTS_DIR / "final.json").read_text())
    cfg = meta.get("config") or {}
    k = metrics.get("n_atoms") or (cfg.get("model") or {}).get("n_atoms")
    from varinv.eval.parts import headline_rows

    # scores only: counts and errors (atoms used, recon MSE) say little about a model off its own data
    keys = tuple(row.key for row in headline_rows() if row.score)
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return {"name": name, "method": str(meta.get("method") or cfg.get("model", {}).get("method") or "?"),
            "k": int(k) if k else None, "fragment_shape": meta.get("fragment_shape"), "kind": meta.get("kind"),
            "step": state.get("step"), "dataset": metrics.get("dataset") or (cfg.get("data") or {}).get("path"),
            "metrics": {key: metrics[key] for key in keys if isinstance(metrics.get(key), (int, float))},
            "bytes": size, "path": str(folder)}


def is_copy_of(folder: Path, name: str) -> bool:
    """Whether ``folder`` is a copy of packaged model ``name`` (same model.json and weights record)."""
    src = path(name)
    try:
        return ((folder / MODEL_FILE).read_bytes() == (src / MODEL_FILE).read_bytes()
                and json.loads((folder / CHECKPOINTS_DIR / "final.json").read_text()).get("model_sha256")
                == json.loads((src / CHECKPOINTS_DIR / "final.json").read_text()).get("model_sha256"))
    except (OSError, ValueError):
        return False


def _marker_name(marker: Path) -> str | None:
    try:
        return json.loads(marker.read_text()).get("pretrained")
    except (OSError, ValueError, AttributeError):
        return None


def _make_writable(folder: Path) -> None:
    """Installed package files may be read-only; a copy must not be."""
    for p in [folder, *folder.rglob("*")]:
        mode = p.stat().st_mode
        want = mode | stat.S_IWUSR | (stat.S_IXUSR if p.is_dir() else 0)
        if want != mode:
            os.chmod(p, want)


def copy_run(run, dest: str | Path | None = None, *, data: str | Path | None = None, fresh: bool = False) -> Path:
    """A writable run folder holding packaged model ``run`` (``pretrained:NAME``): ``dest`` (default
    runs/pretrained/NAME). An existing copy of the same model is reused (its results kept) unless
    ``fresh``, which starts it again; any other existing, non-empty folder is refused. The packaged
    metrics.json is kept as pretrained_metrics.json so that new evaluations do not mix with it.
    ``data``: the dataset to use from now on (written into the copy's config.yaml as data.path)."""
    import yaml

    name = name_of(run)
    src = path(name)
    dest = Path(dest) if dest is not None else DEFAULT_COPY_DIR / name
    if dest.resolve() == src.resolve() or src.resolve() in dest.resolve().parents:
        raise ConfigError(f"{dest} is inside the installed package; choose a folder outside {root()}")
    if dest.exists() and not dest.is_dir():
        raise ConfigError(f"{dest} is a file; give a folder to copy {PREFIX}{name} into")
    marker = dest / COPY_MARKER
    ours = marker.is_file() and _marker_name(marker) == name  # made by this function, from this model
    reuse = ours and is_copy_of(dest, name)
    if dest.is_dir() and any(dest.iterdir()) and not ours:
        raise ConfigError(f"{dest} exists and is not a copy of {PREFIX}{name}; remove it or choose another folder "
                          f"for the copy")
    if ours and (fresh or not reuse):  # a fresh start, or a copy of an earlier version of the model
        shutil.rmtree(dest)
        reuse = False
    if not reuse:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_dir():
            dest.rmdir()  # empty
        shutil.copytree(src, dest, copy_function=shutil.copyfile,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        _make_writable(dest)
        if (dest / METRICS_FILE).is_file():
            os.replace(dest / METRICS_FILE, dest / PACKAGED_METRICS)
        marker.write_text(json.dumps({"pretrained": name, "source": str(src)}) + "\n")
    if data is not None:
        cpath = dest / CONFIG_FILE
        raw = yaml.safe_load(cpath.read_text()) or {}
        raw.setdefault("data", {})["path"] = str(data)
        cpath.write_text(yaml.safe_dump(raw, sort_keys=False))
    return dest
