"""Find run folders, read what each holds, and group them for the report.

A *run folder* is any folder with a ``config.yaml`` (made by ``varinv train``); a *benchmark folder*
is any folder that holds run folders somewhere below it (plus, optionally, results ``*.csv`` files).
Runs are grouped by (dataset name, method, K): the dataset name is the last component of the config's
``data.path`` (or of ``metrics.json``'s ``dataset``), K is ``metrics.json``'s ``n_atoms`` (else the
config's ``model.n_atoms``). Within a group the pictures come from one run (seed 0 when present and
complete, else the lowest complete seed) and the metrics are averaged over all seeds.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from varinv.errors import VarinvError
from varinv.eval.parts import headline_rows, metric_value
from varinv.runs import CHECKPOINTS_DIR, CONFIG_FILE, METRICS_FILE, PLOTS_DIR, RECOMBINE_DIR, TB_DIR

__all__ = ["ReportError", "RunInfo", "Group", "find_runs", "read_run", "group_runs", "aggregate",
           "METRIC_COLUMNS", "method_title", "resolve_dataset_path"]

# Folders below a run that never hold further runs: not walked.
_SKIP_DIRS = {CHECKPOINTS_DIR, TB_DIR, PLOTS_DIR, RECOMBINE_DIR, ".git", ".venv", "__pycache__", "node_modules"}

# The page's table has always led with the four retrieval pairs (matched, then crossed, z_c first);
# the other headline metrics of the registry follow in registry order.
_REPORT_FIRST = ("prauc_zc_content", "prauc_zs_style", "prauc_zc_style", "prauc_zs_content")


def _metric_columns() -> list[tuple[str, str, str]]:
    rows = headline_rows()
    first = [r for key in _REPORT_FIRST for r in rows if r.key == key]
    return [(r.key, r.label, r.direction) for r in first + [r for r in rows if r.key not in _REPORT_FIRST]]


# (metrics.json key, column title, better direction: "up", "down" or ""), from the parts' declarations
METRIC_COLUMNS: list[tuple[str, str, str]] = _metric_columns()

_METHOD_TITLES = {
    "v3": "V3",
    "mine": "MINE-based",
    "cycle": "Cycle loss",
    "dsae": "DSAE",
    "tsdsae": "TS-DSAE",
    "ts_dsae": "TS-DSAE",
    "betatcvae": "Multi-view β-TCVAE",
    "mv_betatcvae": "Multi-view β-TCVAE",
    "betavae": "β-VAE",
    "beta_vae": "β-VAE",
}


def method_title(method: str) -> str:
    return _METHOD_TITLES.get(method.lower(), method)


def method_sort_key(method: str) -> tuple:
    keys = list(_METHOD_TITLES)
    return (0 if method.lower() == "v3" else 1, keys.index(method.lower()) if method.lower() in keys else 99, method)


class ReportError(VarinvError):
    """The report cannot be built from what was given (no runs, an output folder that is not ours)."""


@dataclass
class RunInfo:
    path: Path
    config: dict
    metrics: dict | None
    dataset_name: str
    dataset_path: str
    method: str
    k: int | None
    seed: int

    @property
    def plots(self) -> Path:
        return self.path / PLOTS_DIR

    @property
    def recombine(self) -> Path:
        return self.path / RECOMBINE_DIR

    @property
    def has_confusion(self) -> bool:
        return (self.plots / "confusion.svg").is_file()

    @property
    def has_latents(self) -> bool:
        return (self.plots / "latents.json").is_file()

    @property
    def has_recombine(self) -> bool:
        return self.recombine.is_dir() and any(self.recombine.glob("atom_*_all_styles.png"))

    @property
    def completeness(self) -> int:
        return int(self.metrics is not None) + int(self.has_confusion) + int(self.has_latents) + int(self.has_recombine)


@dataclass
class Group:
    dataset: str
    method: str
    k: int | None
    runs: list[RunInfo] = field(default_factory=list)

    @property
    def seeds(self) -> list[int]:
        return sorted(r.seed for r in self.runs)

    @property
    def picture_run(self) -> RunInfo:
        """Seed 0 when it is as complete as any other seed, else the most complete, lowest seed."""
        best = max(r.completeness for r in self.runs)
        return min((r for r in self.runs if r.completeness == best), key=lambda r: (r.seed != 0, r.seed, str(r.path)))


def find_runs(paths) -> tuple[list[Path], list[Path]]:
    """Run folders under ``paths`` (each a run or a benchmark folder) and the results CSVs found
    beside them. Raises ReportError for a path that does not exist or holds no run."""
    runs: list[Path] = []
    csvs: list[Path] = []
    seen: set[Path] = set()
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise ReportError(f"{p} does not exist; pass run folders (made by `varinv train`) or a benchmark folder")
        if not p.is_dir():
            raise ReportError(f"{p} is not a folder; pass run folders (made by `varinv train`) or a benchmark folder")
        found = []
        if (p / CONFIG_FILE).is_file():
            found.append(p)
        else:
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("."))
                rp = Path(root)
                if CONFIG_FILE in files:
                    found.append(rp)
                    dirs[:] = []  # a run folder holds no further runs
                    continue
                csvs.extend(rp / f for f in sorted(files) if f.lower().endswith(".csv"))
        if not found:
            raise ReportError(
                f"{p} holds no run folder (no config.yaml in it or below it); train one with `varinv train`"
            )
        for r in found:
            key = r.resolve()
            if key not in seen:
                seen.add(key)
                runs.append(r)
    return runs, csvs


def _load_yaml(path: Path) -> dict:
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ReportError(f"{path} cannot be read as YAML ({e}); is it a run folder made by `varinv train`?") from None
    if not isinstance(doc, dict):
        raise ReportError(f"{path} is not a run config (expected a mapping with data/model/train sections)")
    return doc


def read_run(path: Path) -> RunInfo:
    cfg = _load_yaml(path / CONFIG_FILE)
    metrics = None
    mpath = path / METRICS_FILE
    if mpath.is_file():
        try:
            metrics = json.loads(mpath.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ReportError(f"{mpath} is not valid JSON ({e}); re-run `varinv evaluate {path}`") from None
    data = cfg.get("data") or {}
    model = cfg.get("model") or {}
    train = cfg.get("train") or {}
    dpath = str(data.get("path") or (metrics or {}).get("dataset") or "")
    name = Path(dpath).name if dpath else ""
    if not name and metrics and metrics.get("dataset"):
        name = Path(str(metrics["dataset"])).name
    method = str((metrics or {}).get("method") or model.get("method") or "unknown")
    k = (metrics or {}).get("n_atoms") or model.get("n_atoms")
    return RunInfo(
        path=path,
        config=cfg,
        metrics=metrics,
        dataset_name=name or "unknown",
        dataset_path=dpath,
        method=method,
        k=int(k) if k else None,
        seed=int(train.get("seed", 0) or 0),
    )


def group_runs(runs: list[RunInfo]) -> dict[str, list[Group]]:
    """{dataset name: [Group, ...]} with groups ordered by method (V3 first) then K."""
    groups: dict[tuple, Group] = {}
    for r in runs:
        key = (r.dataset_name, r.method, r.k)
        groups.setdefault(key, Group(r.dataset_name, r.method, r.k)).runs.append(r)
    out: dict[str, list[Group]] = {}
    for key in sorted(groups, key=lambda t: (t[0], method_sort_key(t[1]), t[2] or 0)):
        out.setdefault(key[0], []).append(groups[key])
    return out


def aggregate(group: Group) -> dict[str, dict]:
    """{metric key: {"mean", "std", "n"}} over the group's evaluated seeds (std: sample std, 0 for n=1)."""
    out = {}
    for key, _, _ in METRIC_COLUMNS:
        vals = []
        for r in group.runs:
            v = metric_value(r.metrics or {}, key)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v)):
                vals.append(float(v))
        if vals:
            n = len(vals)
            mean = sum(vals) / n
            std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else 0.0
            out[key] = {"mean": mean, "std": std, "n": n}
    return out


def resolve_dataset_path(run: RunInfo) -> Path | None:
    """The run's dataset folder: the config path as given (relative to the working folder), else
    relative to the run folder's ancestors (a benchmark copied elsewhere). None when not found."""
    if not run.dataset_path:
        return None
    p = Path(run.dataset_path)
    cands = [p] if p.is_absolute() else [p] + [a / p for a in run.path.resolve().parents]
    for c in cands:
        if (c / "manifest.json").is_file():
            return c
    return None
