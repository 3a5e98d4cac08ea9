"""Cluster launchers for `varinv benchmark --launcher slurm|submitit-local`: each cell becomes a submitit
job that runs ``bench.run_cells`` and writes the same cell records as the local pool, so a grid may be
trained here, on a cluster, or partly on each, and one table collects them."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from varinv.bench import (Cell, cell_log, cell_metrics, cell_record, load_grid, run_cells, twin_key, usable_cores,
                          write_table)
from varinv.errors import ConfigError


LAUNCHERS = ("local", "slurm", "submitit-local")
# The slurm block's own keys: (type, what the type is called, the submitit AutoExecutor parameter).
_SLURM_KEYS = {"partition": (str, "a string", "slurm_partition"), "time": (int, "an integer", "timeout_min"),
               "cpus_per_task": (int, "an integer", "cpus_per_task"),
               "gpus_per_node": (int, "an integer", "gpus_per_node"),
               "mem_gb": ((int, float), "a number", "mem_gb"), "account": (str, "a string", "slurm_account")}
_SLURM_DEFAULT_TIME = 60  # minutes per job


def slurm_options(grid: dict, partition: str | None = None, time_min: str | int | None = None) -> dict:
    """The grid's ``slurm:`` block, validated, with the --slurm-partition/--slurm-time overrides: submitit
    AutoExecutor parameters. Extra ``slurm_*`` keys pass through (submitit checks their names)."""
    block = grid.get("slurm") or {}
    if not isinstance(block, dict):
        raise ConfigError(f"benchmark key 'slurm' must be a mapping (partition, time, ...), got {block!r}")
    block = dict(block)
    if partition is not None:
        block["partition"] = partition
    if time_min is not None:
        try:
            block["time"] = int(time_min)
        except ValueError:
            raise ConfigError(f"--slurm-time must be an integer number of minutes, got {time_min!r}") from None
    params: dict = {}
    for key, value in block.items():
        if key in _SLURM_KEYS:
            typ, name, param = _SLURM_KEYS[key]
            if isinstance(value, bool) or not isinstance(value, typ):
                raise ConfigError(f"slurm.{key} must be {name}, got {value!r}")
            if typ is not str and value <= 0:
                raise ConfigError(f"slurm.{key} must be positive, got {value!r}")
            params[param] = value
        elif isinstance(key, str) and key.startswith("slurm_"):
            params[key] = value
        else:
            raise ConfigError(f"unknown slurm key {key!r}; valid: {', '.join(_SLURM_KEYS)} and slurm_* "
                              "parameters of submitit")
    params.setdefault("timeout_min", _SLURM_DEFAULT_TIME)
    return params


def _executor(launcher: str, folder: Path, params: dict):
    try:
        import submitit
    except ImportError:
        raise ConfigError(f"--launcher {launcher} needs submitit: pip install 'varinv[cluster]'") from None
    from submitit.slurm.slurm import SlurmExecutor

    unknown = sorted(k for k in params if k.startswith("slurm_") and k[len("slurm_"):] not in
                     SlurmExecutor._valid_parameters())
    if unknown:
        raise ConfigError(f"unknown slurm parameter(s) {unknown}; the slurm_* keys are submitit's SlurmExecutor "
                          "parameters prefixed with slurm_ (e.g. slurm_qos, slurm_constraint)")
    if launcher == "slurm":
        import shutil

        if shutil.which("sbatch") is None:
            raise ConfigError("--launcher slurm needs Slurm's sbatch on PATH (run it on a cluster's login node); "
                              "--launcher submitit-local runs the jobs here")
        try:
            executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
        except RuntimeError as e:  # e.g. no srun
            raise ConfigError(f"--launcher slurm: {str(e).splitlines()[0]}") from None
    else:  # the parameters the local executor knows; every job starts at once
        executor = submitit.LocalExecutor(folder=folder)
        params = {k: v for k, v in params.items() if k in ("timeout_min", "gpus_per_node")}
    try:
        executor.update_parameters(**params)
    except (ValueError, NameError, AssertionError, TypeError) as e:
        raise ConfigError(f"slurm options rejected by submitit: {str(e).splitlines()[0]}") from None
    return executor


def _alive(launcher: str, folder: Path, job_id: str) -> bool:
    """Whether a job submitted by an earlier run (``--no-wait``) is still queued or running."""
    import submitit

    if launcher == "slurm":
        return not submitit.SlurmJob(folder, job_id).done(force_check=True)
    if submitit.local.local.LocalJob(folder, job_id).paths.result_pickle.exists():
        return False
    try:  # a local job's id is its controller's pid
        os.kill(int(job_id), 0)
    except (OSError, ValueError):
        return False
    return True


def submit_grid(path: Path, results_dir: Path, launcher: str, wait: bool = True, partition: str | None = None,
                time_min: str | None = None) -> Path | None:
    """Run the grid's unfinished cells as submitit jobs (one per cell; cells that train one model share one),
    each running ``run_cells``. ``wait``: print one line per finished cell and write the table; otherwise
    print the job ids and return None. Jobs still running from an earlier ``--no-wait`` are waited for, not
    resubmitted."""
    grid, cells = load_grid(path)
    params = slurm_options(grid, partition, time_min)
    folder = cells[0].run.parent / ".submitit"
    executor = _executor(launcher, folder, params)
    ledger = folder / "jobs.json"  # run name -> [launcher, job id] of the jobs submitted for it
    known = json.loads(ledger.read_text()) if ledger.exists() else {}
    pending = sorted((c for c in cells if cell_metrics(c, grid, results_dir) is None), key=lambda c: c.seed)
    jobs: list[tuple[str, list[Cell], object]] = []  # (job id, its cells, the submitit job or None if adopted)
    for cell in list(pending):
        entry = known.get(cell.run.name)
        if entry and entry[0] == launcher and _alive(launcher, folder, entry[1]):
            pending.remove(cell)
            adopted = next((j for j in jobs if j[0] == entry[1]), None)
            if adopted is None:
                jobs.append((entry[1], [cell], None))
            else:
                adopted[1].append(cell)
    groups: dict = {}
    for cell in pending:  # twins train once: the first cell of the job trains, the others copy its run
        groups.setdefault(twin_key(cell) or cell.run.name, []).append(cell)
    threads = None if launcher == "slurm" else max(1, usable_cores() // int(grid.get("parallel", 1)))
    folder.mkdir(parents=True, exist_ok=True)
    for todo in groups.values():
        executor.update_parameters(name=f"varinv-{todo[0].run.name}")
        try:
            job = executor.submit(run_cells, todo, cells, grid, results_dir, threads, os.getcwd())
        except Exception as e:  # sbatch refused it (a bad partition, account, time limit)
            lines = [ln for ln in str(e).splitlines() if ln.strip()] or [type(e).__name__]
            raise ConfigError(f"submitting {todo[0].run.name} failed: {lines[-1]}") from None
        jobs.append((job.job_id, todo, job))
        known.update({c.run.name: [launcher, job.job_id] for c in todo})
        ledger.write_text(json.dumps(known, indent=1) + "\n")
    for job_id, todo, job in jobs:
        print(f"job {job_id}: {', '.join(c.run.name for c in todo)}" + (" (still running)" if job is None else ""))
    if not wait:
        return None
    t0 = time.time()
    while jobs:
        time.sleep(1 if launcher != "slurm" else 15)
        for item in list(jobs):
            job_id, todo, job = item
            if not (job.done() if job is not None else not _alive(launcher, folder, job_id)):
                continue
            jobs.remove(item)
            stderr = (job.paths if job is not None else _job_paths(folder, job_id)).stderr
            for cell in todo:
                if cell_record(cell, grid, results_dir).exists():
                    print(f"cell {cell.run.name} done (job {job_id})")
                else:
                    print(f"cell {cell.run.name} failed (job {job_id}); see {cell_log(cell)} and {stderr}")
    return write_table(grid, cells, path, results_dir, time.time() - t0)


def _job_paths(folder: Path, job_id: str):
    from submitit.core.utils import JobPaths

    return JobPaths(folder, job_id)
