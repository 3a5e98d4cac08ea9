"""`varinv benchmark GRID.yaml`: methods × K × seeds as separate processes, resumable, one table.

A grid file::

    name: phonenums-cpu            # results go to benchmarks/results/<date>-<name>.{md,csv}
    out: runs/bench-phonenums-cpu  # one run folder per cell: <config stem>-K<k>-seed<s>
    parallel: 2                    # processes at once; threads per process = cores // parallel
    seeds: [0, 1, 2]
    set: [data.path=data/phonenums-10k]        # overrides for every cell
    evaluate: [core, probes]       # optional: `varinv evaluate --what` parts per cell (default [core])
    cells:
      - {config: configs/phonenums_v3_small.yaml, k: [10, 20, 40]}
      - {config: configs/phonenums_betavae_small.yaml, k: [10, 20, 40]}
      - {config: configs/v3.yaml, k: [10], set: [data.path=data/gen/letters], name: letters-v3}

A cell's own ``set`` comes after the grid's, and ``name`` (default: the config's stem) starts its run
folders' names, so one config can serve several datasets in one grid. K is the codebook size for methods with a codebook and the k-means K (data.n_clusters) otherwise.
Finished cells are skipped; interrupted ones resume from their checkpoint. Each finished cell's metrics
(without the curves) are also kept in ``<results>/cells/<name>/<run>.json``: that folder is meant to be
committed, so a grid too large for one machine or session accumulates across them (a cell recorded there
counts as done even where its run folder is absent). Parts other than ``core`` named in ``evaluate`` keep
their metrics.json entry in the record, and ``probes`` adds the z_c/z_s × content/style probe accuracies
to the table.

Leave ``data.path`` out of ``set`` to mix datasets in one grid: each config's own path then holds.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
import yaml

from varinv.errors import ConfigError

METRICS = ["codebook_purity", "one_to_one_accuracy", "prauc_zc_content", "prauc_zs_style", "prauc_zs_content",
           "prauc_zc_style", "atoms_used", "recon_mse", "train_seconds", "n_parameters"]
# Table columns added when a grid evaluates "probes": dotted paths into metrics.json["probes"].
PROBE_METRICS = [f"probes.{z}.{factor}.{kind}" for kind in ("linear", "mlp") for z in ("z_c", "z_s")
                 for factor in ("content", "style")]


@dataclasses.dataclass
class Cell:
    config: Path
    method: str
    dataset: str
    k: int
    seed: int
    run: Path
    k_key: str
    sets: tuple[str, ...] = ()


def load_grid(path: Path) -> tuple[dict, list[Cell]]:
    from varinv import config as config_mod
    from varinv.methods import config_class

    if not path.exists():
        raise ConfigError(f"benchmark grid {path} does not exist")
    grid = yaml.safe_load(path.read_text()) or {}
    unknown = set(grid) - {"name", "out", "parallel", "seeds", "set", "evaluate", "cells"}
    if unknown:
        raise ConfigError(f"unknown benchmark key(s) {sorted(unknown)}; valid: name, out, parallel, seeds, set, "
                          "evaluate, cells")
    if not grid.get("cells"):
        raise ConfigError(f"benchmark grid {path} has no cells")
    eval_parts(grid)  # validates the parts up front
    out = Path(grid.get("out", f"runs/bench-{grid.get('name', path.stem)}"))
    cells = []
    for entry in grid["cells"]:
        cfg_path = Path(entry["config"])
        sets = tuple(grid.get("set", [])) + tuple(entry.get("set", []))
        cfg = config_mod.load(cfg_path, list(sets))  # validates the config up front
        stem = str(entry.get("name", cfg_path.stem))
        has_book = any(f.name == "n_atoms" for f in dataclasses.fields(config_class(cfg.method)))
        dataset = Path(cfg.data.path).name
        for k in entry.get("k", [getattr(cfg.model, "n_atoms", 0) or 10]):
            for seed in grid.get("seeds", [0]):
                cells.append(Cell(cfg_path, cfg.method, dataset, int(k), int(seed), out / f"{stem}-K{k}-seed{seed}",
                                  "model.n_atoms" if has_book else "data.n_clusters", sets))
    return grid, cells


def eval_parts(grid: dict) -> list[str]:
    """The grid's ``evaluate`` parts, validated and in evaluation order (default ``["core"]``)."""
    from varinv.eval.evaluate import parse_parts

    parts = grid.get("evaluate") or ["core"]
    if isinstance(parts, str):
        parts = [parts]
    if not isinstance(parts, list) or not all(isinstance(p, str) for p in parts):
        raise ConfigError(f"benchmark key 'evaluate' must be a list of part names, got {parts!r}")
    return parse_parts(",".join(parts))


def _command(cell: Cell, grid: dict, threads: int) -> list[str]:
    cmd = [sys.executable, "-m", "varinv", "train", str(cell.config), "--run", str(cell.run), "--no-progress"]
    for s in [*cell.sets, f"{cell.k_key}={cell.k}", f"train.seed={cell.seed}", f"train.threads={threads}"]:
        cmd += ["--set", s]
    if (cell.run / "checkpoints" / "last.json").exists():
        cmd.append("--resume")
    return cmd


def _twin_key(cell: Cell):
    """Cells with the same key train the same model: without a codebook K is only the k-means K of
    the evaluation, so the grid trains each (config, seed) once and evaluates it at every K."""
    return (str(cell.config), cell.sets, cell.seed) if cell.k_key == "data.n_clusters" else None


def _trained_twin(cell: Cell, cells: list[Cell]) -> Cell | None:
    key = _twin_key(cell)
    if key is None or (cell.run / "checkpoints" / "last.json").exists():
        return None
    return next((c for c in cells if c is not cell and _twin_key(c) == key
                 and (c.run / "checkpoints" / "final.json").exists()), None)


def _clone_run(twin: Cell, cell: Cell) -> None:
    import shutil

    shutil.copytree(twin.run, cell.run, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("metrics.json", "plots", "recombine", "eval_cache", "tb"))
    cfg = yaml.safe_load((cell.run / "config.yaml").read_text())
    cfg["data"]["n_clusters"] = cell.k
    (cell.run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def _record(cell: Cell, grid: dict, results_dir: Path) -> Path:
    return results_dir / "cells" / str(grid.get("name", "grid")) / f"{cell.run.name}.json"


def _metrics(cell: Cell, grid: dict, results_dir: Path) -> dict | None:
    for p in (_record(cell, grid, results_dir), cell.run / "metrics.json"):
        if p.exists():
            return json.loads(p.read_text())
    return None


def cpu_model() -> str:
    """The CPU's model name (benchmark records and results files say what they ran on)."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _machine() -> str:
    import torch

    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{os.cpu_count()} cores, {cpu_model()}{gpu}"


def _keep_record(cell: Cell, grid: dict, results_dir: Path) -> None:
    m = json.loads((cell.run / "metrics.json").read_text())
    keep = {k: v for k, v in m.items() if not isinstance(v, (dict, list))}
    keep.update({p: m[p] for p in eval_parts(grid) if p != "core" and p in m})
    if "health" in m:
        keep["health"] = m["health"]
    keep.update(config=str(cell.config), set=list(cell.sets), seed=cell.seed, machine=_machine(),
                date=datetime.date.today().isoformat())
    rec = _record(cell, grid, results_dir)
    rec.parent.mkdir(parents=True, exist_ok=True)
    rec.write_text(json.dumps(keep, indent=1) + "\n")


def run_grid(path: Path, results_dir: Path = Path("benchmarks/results"), train: bool = True) -> Path:
    """Train and evaluate the grid's unfinished cells (``train=False``: none), then write the table of
    every finished one."""
    grid, cells = load_grid(path)
    parallel = int(grid.get("parallel", 1))
    threads = max(1, (os.cpu_count() or 1) // parallel)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    evaluate = [sys.executable, "-m", "varinv", "evaluate", "--no-tsne", "--what", ",".join(eval_parts(grid))]
    # seed by seed, so that a grid stopped part-way has covered every (method, K) before repeating any
    pending = sorted((c for c in cells if train and _metrics(c, grid, results_dir) is None), key=lambda c: c.seed)
    # (cell, process, phase): a cell's evaluation takes its slot after its training, so that the
    # other slots keep training meanwhile
    running: list[tuple[Cell, subprocess.Popen, str]] = []
    t0 = time.time()

    def launch(cell: Cell, cmd: list[str], phase: str) -> str:
        with open(cell.run.parent / f"{cell.run.name}.log", "a") as log:  # the child keeps its own handle
            running.append((cell, subprocess.Popen(cmd, env=env, stdout=log, stderr=log), phase))
        return phase

    def start(cell: Cell) -> str:
        cell.run.parent.mkdir(parents=True, exist_ok=True)
        twin = _trained_twin(cell, cells)
        if twin is not None:  # same model, another k-means K: evaluate a copy of the trained run
            _clone_run(twin, cell)
            return launch(cell, evaluate + [str(cell.run)], "evaluate")
        return launch(cell, _command(cell, grid, threads), "train")

    while pending or running:
        training = {_twin_key(c) for c, _, phase in running if phase == "train"} - {None}
        while len(running) < parallel:
            cell = next((c for c in pending if _twin_key(c) not in training), None)
            if cell is None:  # what is left waits for a twin's training
                break
            pending.remove(cell)
            if start(cell) == "train" and _twin_key(cell) is not None:
                training.add(_twin_key(cell))
        time.sleep(1)
        for item in list(running):
            cell, proc, phase = item
            if proc.poll() is None:
                continue
            running.remove(item)
            if proc.returncode != 0:
                print(f"cell {cell.run.name} failed in {phase} (exit {proc.returncode}); "
                      f"see {cell.run.parent / cell.run.name}.log")
            elif phase == "train":
                launch(cell, evaluate + [str(cell.run)], "evaluate")
            elif (cell.run / "metrics.json").exists():
                _keep_record(cell, grid, results_dir)
    return write_table(grid, cells, path, results_dir, time.time() - t0 if train else None)


def write_table(grid: dict, cells: list[Cell], path: Path, results_dir: Path, wall: float | None) -> Path:
    groups: dict[tuple, list[dict]] = {}
    for c in cells:
        m = _metrics(c, grid, results_dir)
        if m is not None:
            groups.setdefault((c.dataset, c.method, c.k), []).append(m)
    today = datetime.date.today().isoformat()
    name = grid.get("name", path.stem)
    results_dir.mkdir(parents=True, exist_ok=True)
    columns = METRICS + (PROBE_METRICS if "probes" in eval_parts(grid) else [])
    rows = []
    for (dataset, method, k), ms in sorted(groups.items()):
        row = {"dataset": dataset, "method": method, "K": k, "seeds": len(ms)}
        for key in columns:
            vals = [float(v) for v in (_lookup(m, key) for m in ms) if v is not None]
            row[key] = statistics.mean(vals) if vals else float("nan")
            row[key + "_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        rows.append(row)
    csv_path = results_dir / f"{today}-{name}.csv"
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["dataset"])
        writer.writeheader()
        writer.writerows(rows)
    machines = sorted({str(m.get("machine", "unrecorded")) for ms in groups.values() for m in ms}) or [_machine()]
    lines = [f"# Benchmark {name} ({today})", "",
             f"Command: `varinv benchmark {path}`; ran on {'; '.join(machines)}; parallel {grid.get('parallel', 1)}, "
             + (f"wall {wall / 60:.1f} min. " if wall is not None else "table of recorded cells only (--table-only). ")
             + "Mean ± std over seeds; test split.", "",
             "| dataset | method | K | seeds | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 4)]
    for r in rows:
        cells_txt = [f"{r[k]:.3g} ± {r[k + '_std']:.2g}" for k in columns]
        lines.append(f"| {r['dataset']} | {r['method']} | {r['K']} | {r['seeds']} | " + " | ".join(cells_txt) + " |")
    md_path = results_dir / f"{today}-{name}.md"
    md_path.write_text("\n".join(lines) + "\n")
    return md_path


def _lookup(m: dict, key: str):
    """``m[key]``, or for a dotted key (``probes.z_s.style.linear``) the nested value; None when absent."""
    if key in m:
        return m[key]
    for part in key.split("."):
        if not isinstance(m, dict) or part not in m:
            return None
        m = m[part]
    return m


def register(app) -> None:
    @app.command()
    def benchmark(
        grid: Annotated[Path, typer.Argument(help="Benchmark grid YAML (methods × K × seeds).")],
        results: Annotated[Path, typer.Option(help="Where the dated .md/.csv table goes.")] = Path("benchmarks/results"),
        table_only: Annotated[bool, typer.Option("--table-only", help="Train nothing: write the table of the cells "
                                                 "already recorded (e.g. run elsewhere).")] = False,
    ):
        """Run a grid of trainings as separate processes (resumable), evaluate each, and write a mean ± std table."""
        md = run_grid(grid, results, train=not table_only)
        typer.echo(f"wrote {md} and {md.with_suffix('.csv')}")
