"""`varinv benchmark GRID.yaml`: methods × K × seeds as separate processes, resumable, one table.

A grid file::

    name: phonenums-cpu            # results go to benchmarks/results/<date>-<name>.{md,csv}
    out: runs/bench-phonenums-cpu  # one run folder per cell: <config stem>-K<k>-seed<s>
    parallel: 2                    # processes at once; threads per process = usable cores // parallel
    seeds: [0, 1, 2]
    set: [data.path=data/phonenums-10k]        # overrides for every cell
    evaluate: [core, probes]       # optional: `varinv evaluate --what` parts per cell (default [core])
    split: val                     # optional: the split every cell is scored on (default test); choose
                                   # settings on val, report on test
    also_split: test               # optional: each trained cell is scored on this split too, its records in
                                   # <results>/cells/<name>-<split>/ (one training, both scores)
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

``--launcher slurm`` submits each cell as a Slurm job through submitit (``pip install 'varinv[cluster]'``;
job files in ``<out>/.submitit``), with the grid's optional ``slurm:`` block::

    slurm: {partition: gpu, time: 60, cpus_per_task: 4, gpus_per_node: 1, mem_gb: 16, account: lab,
            slurm_qos: normal}    # time in minutes per job (default 60); other slurm_* keys pass through

A job runs the same commands and writes the same record as a local cell (cells that train one model, see
``twin_key``, share one job). ``--launcher submitit-local`` does the same with submitit's local executor,
every job at once. ``--no-wait`` submits and exits; a later run of the same command skips the recorded
cells, waits for the jobs still running and resubmits only the rest.
One module (about 500 lines) because grid parsing, the cell scheduler and the table all read the same cell
records; the cluster launchers, which need submitit, are in ``varinv.launchers``.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from collections.abc import Callable, Iterable, Iterator
from typing import Annotated

import typer
import yaml

from varinv.errors import ConfigError
from varinv.eval.parts import headline_rows
from varinv.runs import (CHECKPOINTS_DIR, CONFIG_FILE, EVAL_CACHE_DIR, METRICS_FILE, PLOTS_DIR, PROVENANCE_FILE,
                         RECOMBINE_DIR, TB_DIR)

# The registry's headline metrics, then two run facts a benchmark table compares too (cost, not quality:
# they are no part's headline, so they are listed here).
METRICS = [row.key for row in headline_rows()] + ["train_seconds", "n_parameters"]
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
    name: str = ""  # the entry's name (run folders' stem)


_GRID_KEYS = ("name", "out", "parallel", "seeds", "set", "evaluate", "split", "also_split", "cells", "slurm")
_CELL_KEYS = ("config", "k", "set", "name")
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=-]*")


def _int_list(value, what: str, least: int) -> list[int]:
    if isinstance(value, (int, bool)) and not isinstance(value, bool):
        value = [value]
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= least for v in value)):
        raise ConfigError(f"benchmark key {what} must be a non-empty list of integers >= {least}, got {value!r}")
    if len(set(value)) != len(value):
        raise ConfigError(f"benchmark key {what} lists a value twice: {value!r}")
    return value


def _str_list(value, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"benchmark key {what} must be a list of section.key=value strings, got {value!r}")
    return value


def _safe_name(value, what: str) -> str:
    text = str(value)
    if isinstance(value, bool) or value is None or not _SAFE_NAME.fullmatch(text) or ".." in text:
        raise ConfigError(f"benchmark {what} {value!r} must be a plain name (letters, digits, '_', '-', '.'; no "
                          "'/' or '..'): it names files and folders")
    return text


def _read_grid(path: Path) -> dict:
    if path.is_dir():
        raise ConfigError(f"benchmark grid {path} is a folder; give a YAML grid file")
    if not path.exists():
        raise ConfigError(f"benchmark grid {path} does not exist")
    try:
        grid = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"benchmark grid {path} is not a text file; give a YAML grid") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"benchmark grid {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if grid is None:
        raise ConfigError(f"benchmark grid {path} is empty; it needs at least cells: [{{config: ...}}]")
    if not isinstance(grid, dict):
        raise ConfigError(f"benchmark grid {path} must be a YAML mapping (name, out, cells, ...)")
    return grid


def load_grid(path: Path) -> tuple[dict, list[Cell]]:
    from varinv import config as config_mod
    from varinv.methods import config_class

    path = Path(path)
    grid = _read_grid(path)
    unknown = set(grid) - set(_GRID_KEYS)
    if unknown:
        raise ConfigError(f"unknown benchmark key(s) {sorted(map(str, unknown))}; valid: {', '.join(_GRID_KEYS)}")
    if not grid.get("cells"):
        raise ConfigError(f"benchmark grid {path} has no cells")
    if not isinstance(grid["cells"], list):
        raise ConfigError(f"benchmark key 'cells' must be a list of {{config: ..., k: [...]}} entries, "
                          f"got {type(grid['cells']).__name__}")
    name = _safe_name(grid.get("name", path.stem), "name")
    if "parallel" in grid:
        p = grid["parallel"]
        if isinstance(p, bool) or not isinstance(p, int) or p < 1:
            raise ConfigError(f"benchmark key 'parallel' must be an integer >= 1, got {p!r}")
    seeds = _int_list(grid.get("seeds", [0]), "'seeds'", 0)
    grid_sets = _str_list(grid.get("set"), "'set'")
    if "out" in grid and (not isinstance(grid["out"], str) or not grid["out"].strip()):
        raise ConfigError(f"benchmark key 'out' must be a folder path, got {grid['out']!r}")
    eval_parts(grid)  # validates the parts up front
    also = grid.get("also_split")
    if also is not None and (not isinstance(also, str) or also == str(grid.get("split", "test"))):
        raise ConfigError(f"benchmark key 'also_split' must name a split other than the grid's own "
                          f"({grid.get('split', 'test')}), e.g. also_split: test beside split: val; got {also!r}")
    from varinv.launchers import slurm_options

    slurm_options(grid)  # likewise the slurm block, whatever the launcher
    out = Path(grid.get("out", f"runs/bench-{name}"))
    cells = []
    for i, entry in enumerate(grid["cells"]):
        where = f"cells[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"benchmark {where} must be a mapping {{config: FILE, k: [...]}}, got {entry!r}")
        bad = set(entry) - set(_CELL_KEYS)
        if bad:
            raise ConfigError(f"unknown key(s) {sorted(map(str, bad))} in benchmark {where}; valid: "
                              f"{', '.join(_CELL_KEYS)}")
        if not isinstance(entry.get("config"), str) or not entry["config"].strip():
            raise ConfigError(f"benchmark {where} needs config: a YAML config file, got {entry.get('config')!r}")
        cfg_path = Path(entry["config"])
        sets = tuple(grid_sets) + tuple(_str_list(entry.get("set"), f"{where}.set"))
        cfg = config_mod.load(cfg_path, list(sets))  # validates the config up front
        stem = _safe_name(entry.get("name", cfg_path.stem), f"{where}.name")
        has_book = any(f.name == "n_atoms" for f in dataclasses.fields(config_class(cfg.method)))
        dataset = Path(cfg.data.path).name
        ks = _int_list(entry.get("k", [getattr(cfg.model, "n_atoms", 0) or 10]), f"{where}.k", 1)
        for k in ks:
            for seed in seeds:
                run = out / f"{stem}-K{k}-seed{seed}"
                if any(c.run == run for c in cells):
                    raise ConfigError(f"benchmark {where} gives run folder {run} a second time; give the cell "
                                      "its own name (e.g. name: letters-v3)")
                cells.append(Cell(cfg_path, cfg.method, dataset, int(k), int(seed), run,
                                  "model.n_atoms" if has_book else "data.n_clusters", sets, stem))
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


def _evaluate_command(grid: dict, split: str | None = None) -> list[str]:
    split = split or grid.get("split")
    split = ["--split", str(split)] if split else []
    return [sys.executable, "-m", "varinv", "evaluate", "--no-tsne", "--what", ",".join(eval_parts(grid)), *split]


def _command(cell: Cell, grid: dict, threads: int) -> list[str]:
    cmd = [sys.executable, "-m", "varinv", "train", str(cell.config), "--run", str(cell.run), "--no-progress"]
    for s in [*cell.sets, f"{cell.k_key}={cell.k}", f"train.seed={cell.seed}", f"train.threads={threads}"]:
        cmd += ["--set", s]
    if (cell.run / CHECKPOINTS_DIR / "last.json").exists():
        cmd.append("--resume")
    return cmd


def twin_key(cell: Cell):
    """Cells with the same key train the same model: without a codebook K is only the k-means K of
    the evaluation, so the grid trains each (config, seed) once and evaluates it at every K."""
    return (str(cell.config), cell.sets, cell.seed) if cell.k_key == "data.n_clusters" else None


def _trained_twin(cell: Cell, cells: list[Cell]) -> Cell | None:
    key = twin_key(cell)
    if key is None or (cell.run / CHECKPOINTS_DIR / "last.json").exists():
        return None
    return next((c for c in cells if c is not cell and twin_key(c) == key
                 and (c.run / CHECKPOINTS_DIR / "final.json").exists()), None)


def _clone_run(twin: Cell, cell: Cell) -> None:
    import shutil

    shutil.copytree(twin.run, cell.run, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(METRICS_FILE, PLOTS_DIR, RECOMBINE_DIR, EVAL_CACHE_DIR, TB_DIR))
    cfg = yaml.safe_load((cell.run / CONFIG_FILE).read_text())
    cfg["data"]["n_clusters"] = cell.k
    (cell.run / CONFIG_FILE).write_text(yaml.safe_dump(cfg, sort_keys=False))


def cell_record(cell: Cell, grid: dict, results_dir: Path, split: str | None = None) -> Path:
    """Where a cell's record is kept; ``split``: its record on the grid's ``also_split``."""
    folder = str(grid.get("name", "grid")) + (f"-{split}" if split else "")
    return results_dir / "cells" / folder / f"{cell.run.name}.json"


def also_metrics(cell: Cell, split: str) -> Path:
    """The run's metrics on the grid's ``also_split``, set aside so that RUN/metrics.json is only ever the grid's own
    split (a cell whose metrics.json exists counts as done)."""
    return cell.run / f"metrics-{split}.json"


def cell_metrics(cell: Cell, grid: dict, results_dir: Path) -> dict | None:
    for p in (cell_record(cell, grid, results_dir), cell.run / METRICS_FILE):
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


def _keep_record(cell: Cell, grid: dict, results_dir: Path, split: str | None = None) -> None:
    m = json.loads((cell.run / METRICS_FILE if split is None else also_metrics(cell, split)).read_text())
    keep = {k: v for k, v in m.items() if not isinstance(v, (dict, list))}
    keep.update({p: m[p] for p in eval_parts(grid) if p != "core" and p in m})
    if "health" in m:
        keep["health"] = m["health"]
    keep.update(config=str(cell.config), set=list(cell.sets), seed=cell.seed, machine=_machine(),
                date=datetime.date.today().isoformat())
    prov = cell.run / PROVENANCE_FILE
    if prov.exists():  # cells of one grid that disagree across machines: the same data, or not
        keep["dataset_hash"] = json.loads(prov.read_text()).get("dataset_hash")
    rec = cell_record(cell, grid, results_dir, split)
    rec.parent.mkdir(parents=True, exist_ok=True)
    rec.write_text(json.dumps(keep, indent=1) + "\n")


def _cell_steps(cell: Cell, cells: list[Cell], grid: dict, threads: int) -> Iterator[tuple[str, list[str]]]:
    """One cell's commands in order, as (phase, command): its training, then its evaluation. Where a twin
    has already trained the same model, the cell evaluates a copy of the twin's run instead. A generator,
    so the copy is made when the first step is asked for: when the cell starts."""
    cell.run.parent.mkdir(parents=True, exist_ok=True)
    twin = _trained_twin(cell, cells)
    if twin is not None:  # same model, another k-means K: evaluate a copy of the trained run
        _clone_run(twin, cell)
    else:
        yield "train", _command(cell, grid, threads)
    also = grid.get("also_split")
    if also:  # first, so that the metrics.json the cell leaves is its own split's
        yield "evaluate", _evaluate_command(grid, also) + [str(cell.run)]
        if (cell.run / METRICS_FILE).exists():
            (cell.run / METRICS_FILE).replace(also_metrics(cell, also))
    yield "evaluate", _evaluate_command(grid) + [str(cell.run)]


def cell_log(cell: Cell) -> Path:
    return cell.run.parent / f"{cell.run.name}.log"


def _failed(cell: Cell, phase: str, code: int) -> str:
    return f"cell {cell.run.name} failed in {phase} (exit {code}); see {cell_log(cell)}"


def _finish(cell: Cell, grid: dict, results_dir: Path) -> bool:
    """After a cell's last step: keep its record (see _keep_record); False when it wrote no metrics."""
    if not (cell.run / METRICS_FILE).exists():
        return False
    _keep_record(cell, grid, results_dir)
    also = grid.get("also_split")
    if also and also_metrics(cell, also).exists():
        _keep_record(cell, grid, results_dir, also)
    return True


def meets(value: float, target: tuple[str, float]) -> bool:
    """Does ``value`` meet ``target`` = (">=" or "<=", bound)? The benchmark scripts' acceptance bars."""
    op, bound = target
    return value >= bound if op == ">=" else value <= bound


def target_text(target) -> str:
    """A results table's "target" cell: "op bound", or "" where there is none."""
    return "" if target is None else f"{target[0]} {target[1]}"


def verdict(value, target) -> str:
    """A results table's "met" cell: "yes", "**no**", or "" where there is no target or no value."""
    if target is None or value is None:
        return ""
    return "yes" if meets(value, target) else "**no**"


def usable_cores() -> int:
    """The cores this process may run on (``taskset``, a container's cpuset), not the machine's count: two
    grids pinned to one core each then train with one thread each instead of oversubscribing."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _threads_env(threads: int) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": str(threads)}


def train_then_evaluate(varinv: list[str], config: str, run: Path, sets: list[str], threads: int):
    """A run's steps for :class:`Job`: train (resuming an interrupted run), then evaluate. A generator, so
    the ``--resume`` decision is made when the run starts, not when the job list is built."""
    cmd = varinv + ["train", str(config), "--run", str(run), "--no-progress"]
    for s in [f"train.threads={threads}", *sets]:  # the caller's sets win
        cmd += ["--set", s]
    if (run / CHECKPOINTS_DIR / "last.json").exists():
        cmd.append("--resume")
    yield "train", cmd
    yield "evaluate", varinv + ["evaluate", str(run), "--no-tsne"]


@dataclasses.dataclass(eq=False)
class Job:
    """One slot's work for :func:`run_commands`.

    ``steps`` yields ``(phase, command)`` pairs that run one after another in the same slot, stdout and
    stderr appended to ``log``. It is advanced only when the previous command has exited 0, so a generator
    can prepare each command (a ``--resume`` flag, a copied run folder) when it is due. ``done()`` runs after
    the last step; ``failed(phase, exit_code)`` when a step fails (the job's later steps are skipped; None
    prints one line naming the log). ``data`` is the caller's own (e.g. the benchmark cell), for ``ready``.
    """

    name: str
    steps: Iterable[tuple[str, list[str]]]
    log: Path
    done: Callable[[], object] | None = None
    failed: Callable[[str, int], object] | None = None
    data: object = None


def run_commands(jobs: Iterable[Job], parallel: int, env: dict | None = None, poll: float = 1.0,
                 ready: Callable[[Job, list[tuple[Job, str]]], bool] | None = None) -> dict[str, str]:
    """Run ``jobs`` as subprocesses, at most ``parallel`` at once, and wait for all of them.

    Jobs start in the given order as slots free up; a job's next step takes its slot as soon as the previous
    one has finished (so a cell's evaluation follows its training without the other slots waiting).
    ``ready(job, running)``, with ``running`` the ``(job, phase)`` pairs now running, can hold a job back
    until a running one is further on (the first ready job in order starts); it never holds one back when
    nothing runs. Returns ``{job.name: "done" | "failed in PHASE (exit N)"}``.
    """
    pending, parallel = list(jobs), max(1, int(parallel))
    running: list[tuple[Job, Iterator, subprocess.Popen, str]] = []
    outcome: dict[str, str] = {}

    def advance(job: Job, steps: Iterator) -> None:
        step = next(steps, None)
        if step is None:
            outcome[job.name] = "done"
            if job.done is not None:
                job.done()
            return
        phase, cmd = step
        job.log.parent.mkdir(parents=True, exist_ok=True)
        with open(job.log, "a") as log:  # the child keeps its own handle
            running.append((job, steps, subprocess.Popen(cmd, env=env, stdout=log, stderr=log), phase))

    while pending or running:
        while pending and len(running) < parallel:
            now = [(j, phase) for j, _, _, phase in running]
            job = next((j for j in pending if ready is None or not running or ready(j, now)), None)
            if job is None:  # what is left waits for a running job
                break
            pending.remove(job)
            advance(job, iter(job.steps))
        if not running:
            continue  # the jobs just started had no steps left: start more without waiting
        time.sleep(poll)
        for item in list(running):
            job, steps, proc, phase = item
            if proc.poll() is None:
                continue
            running.remove(item)
            if proc.returncode != 0:
                outcome[job.name] = f"failed in {phase} (exit {proc.returncode})"
                if job.failed is not None:
                    job.failed(phase, proc.returncode)
                else:
                    print(f"{job.name} failed in {phase} (exit {proc.returncode}); see {job.log}", flush=True)
            else:
                advance(job, steps)
    return outcome


def run_cells(todo: list[Cell], cells: list[Cell], grid: dict, results_dir: Path, threads: int | None = None,
              cwd: str | None = None) -> list[str]:
    """Run ``todo``'s cells one after the other in this process, each step as the local pool runs it, and keep
    their records: the body of one submitit job. ``threads`` None: the CPUs this job was given. Returns one
    line per cell."""
    if cwd is not None:  # the grid's relative paths are relative to where it was submitted from
        os.chdir(cwd)
    if threads is None:
        threads = int(os.environ.get("SLURM_CPUS_PER_TASK", 0) or 0) or usable_cores()
    lines: list[str] = []

    def done(cell: Cell) -> None:
        lines.append(f"cell {cell.run.name} done" if _finish(cell, grid, results_dir)
                     else f"cell {cell.run.name} wrote no metrics; see {cell_log(cell)}")

    # one slot: the cells run in order, so a twin's training has finished before the cells that copy it start
    run_commands([Job(cell.run.name, _cell_steps(cell, cells, grid, threads), cell_log(cell),
                      done=lambda cell=cell: done(cell),
                      failed=lambda phase, code, cell=cell: lines.append(_failed(cell, phase, code)))
                  for cell in todo], 1, _threads_env(threads), poll=0.2)
    return lines


def run_grid(path: Path, results_dir: Path = Path("benchmarks/results"), train: bool = True) -> Path:
    """Train and evaluate the grid's unfinished cells (``train=False``: none), then write the table of
    every finished one."""
    grid, cells = load_grid(path)
    parallel = int(grid.get("parallel", 1))
    threads = max(1, usable_cores() // parallel)
    env = _threads_env(threads)
    # seed by seed, so that a grid stopped part-way has covered every (method, K) before repeating any
    pending = sorted((c for c in cells if train and cell_metrics(c, grid, results_dir) is None), key=lambda c: c.seed)
    t0 = time.time()

    def ready(job: Job, running: list[tuple[Job, str]]) -> bool:
        """A cell waits while a twin trains: it will then evaluate a copy of that run instead of training."""
        key = twin_key(job.data)
        return key is None or not any(phase == "train" and twin_key(other.data) == key for other, phase in running)

    # a cell's evaluation takes its slot after its training, so that the other slots keep training meanwhile
    jobs = [Job(cell.run.name, _cell_steps(cell, cells, grid, threads), cell_log(cell),
                done=lambda cell=cell: _finish(cell, grid, results_dir),
                failed=lambda phase, code, cell=cell: print(_failed(cell, phase, code)), data=cell)
            for cell in pending]
    run_commands(jobs, parallel, env, ready=ready)
    return write_table(grid, cells, path, results_dir, time.time() - t0 if train else None)


def write_table(grid: dict, cells: list[Cell], path: Path, results_dir: Path, wall: float | None) -> Path:
    groups: dict[tuple, list[dict]] = {}
    for c in cells:
        m = cell_metrics(c, grid, results_dir)
        if m is not None:
            groups.setdefault((c.dataset, c.method, c.k, c.name), []).append(m)
    # variants of one method (entries with their own names and settings) get a row each, named
    variants = collections.Counter(key[:3] for key in groups)
    today = datetime.date.today().isoformat()
    name = grid.get("name", path.stem)
    results_dir.mkdir(parents=True, exist_ok=True)
    columns = METRICS + (PROBE_METRICS if "probes" in eval_parts(grid) else [])
    rows = []
    for (dataset, method, k, stem), ms in sorted(groups.items()):
        label = f"{method} ({stem})" if variants[dataset, method, k] > 1 else method
        row = {"dataset": dataset, "method": label, "K": k, "seeds": len(ms)}
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
    def recorded(key: str, default: str) -> list[str]:
        return sorted({str(m.get(key, default)) for ms in groups.values() for m in ms})

    machines = recorded("machine", "unrecorded") or [_machine()]
    splits = recorded("split", "test") or [str(grid.get("split", "test"))]
    lines = [f"# Benchmark {name} ({today})", "",
             f"Command: `varinv benchmark {path}`; ran on {'; '.join(machines)}; parallel {grid.get('parallel', 1)}, "
             + (f"wall {wall / 60:.1f} min. " if wall is not None else "table of recorded cells only (--table-only). ")
             + f"Mean ± std over seeds; {' and '.join(splits)} split.", "",
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
        launcher: Annotated[str, typer.Option(help="local (a process pool here), slurm (one submitit job per cell) "
                                              "or submitit-local (the same jobs, run here).")] = "local",
        wait: Annotated[bool, typer.Option("--wait/--no-wait", help="slurm/submitit-local: wait for the jobs and "
                                           "write the table, or only submit them (re-run to collect).")] = True,
        slurm_partition: Annotated[str | None, typer.Option(help="Overrides the grid's slurm.partition.")] = None,
        slurm_time: Annotated[str | None, typer.Option(help="Overrides the grid's slurm.time (minutes per job).")]
        = None,
    ):
        """Run a grid of trainings as separate processes (resumable), evaluate each, and write a mean ± std table."""
        from varinv.launchers import LAUNCHERS, submit_grid  # submitit is imported only for a cluster launcher

        if launcher not in LAUNCHERS:
            raise ConfigError(f"unknown --launcher {launcher!r}; valid: {', '.join(LAUNCHERS)}")
        if launcher == "local" and (not wait or slurm_partition is not None or slurm_time is not None):
            raise ConfigError("--no-wait, --slurm-partition and --slurm-time apply to --launcher slurm or "
                              "submitit-local only")
        if launcher == "local" or table_only:
            md = run_grid(grid, results, train=not table_only)
        else:
            md = submit_grid(grid, results, launcher, wait, slurm_partition, slurm_time)
            if md is None:
                typer.echo(f"submitted; re-run `varinv benchmark {grid} --launcher {launcher}` to collect the results")
                return
        typer.echo(f"wrote {md} and {md.with_suffix('.csv')}")
