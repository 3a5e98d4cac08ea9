"""`varinv benchmark GRID --launcher slurm|submitit-local`: cells as submitit jobs (issue 17, item 6)."""
import json

import pytest
import yaml

from conftest import TOY_CFG, one_error_line, run_varinv

pytest.importorskip("submitit")


def _grid(tmp_path, toy_dataset, name: str, seeds, **extra):
    cfg = json.loads(json.dumps(TOY_CFG))
    cfg["train"].update({"steps": 4, "log_every": 2, "ckpt_every": 2})
    (tmp_path / "v3.yaml").write_text(yaml.safe_dump(cfg))
    grid = {"name": name, "out": str(tmp_path / f"runs-{name}"), "parallel": 2, "seeds": list(seeds),
            "set": [f"data.path={toy_dataset.root}"], "cells": [{"config": str(tmp_path / "v3.yaml"), "k": [4]}],
            **extra}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


def test_submitit_local_writes_the_local_records_and_resumes(toy_dataset, tmp_path, monkeypatch, capsys):
    results = tmp_path / "results"
    local = _grid(tmp_path, toy_dataset, "loc", [0])
    code, out, err = run_varinv(monkeypatch, capsys, "benchmark", local, "--results", results)
    assert code == 0, out + err
    grid = _grid(tmp_path, toy_dataset, "sub", [0, 1], slurm={"time": 10})
    code, out, err = run_varinv(monkeypatch, capsys, "benchmark", grid, "--results", results,
                                "--launcher", "submitit-local")
    assert code == 0, out + err
    assert "cell v3-K4-seed0 done (job " in out and "cell v3-K4-seed1 done (job " in out, out
    assert "| toy | v3 | 4 | 2 |" in (results / next(p.name for p in results.glob("*-sub.md"))).read_text()
    ref = json.loads((results / "cells" / "loc" / "v3-K4-seed0.json").read_text())
    recs = [json.loads((results / "cells" / "sub" / f"v3-K4-seed{s}.json").read_text()) for s in (0, 1)]
    assert all(set(r) == set(ref) for r in recs)  # the same record as the local pool's
    assert [r["seed"] for r in recs] == [0, 1] and all(0 <= r["codebook_purity"] <= 1 for r in recs)
    assert recs[0]["config"] == ref["config"] and recs[0]["set"] == ref["set"]

    metrics = tmp_path / "runs-sub" / "v3-K4-seed0" / "metrics.json"
    mtime = metrics.stat().st_mtime
    code, out, err = run_varinv(monkeypatch, capsys, "benchmark", grid, "--results", results,
                                "--launcher", "submitit-local")
    assert code == 0 and "job " not in out and metrics.stat().st_mtime == mtime, out + err  # nothing resubmitted

    # --no-wait submits the missing cell and exits; a plain re-run waits for that job instead of resubmitting
    (results / "cells" / "sub" / "v3-K4-seed1.json").unlink()
    (tmp_path / "runs-sub" / "v3-K4-seed1" / "metrics.json").unlink()
    code, out, err = run_varinv(monkeypatch, capsys, "benchmark", grid, "--results", results,
                                "--launcher", "submitit-local", "--no-wait")
    assert code == 0 and "v3-K4-seed1" in out and "seed0" not in out and "submitted" in out, out + err
    job_id = out.split("job ")[1].split(":")[0]
    code, out, err = run_varinv(monkeypatch, capsys, "benchmark", grid, "--results", results,
                                "--launcher", "submitit-local")
    assert code == 0, out + err
    assert out.count("job ") <= 2 and all(f"job {job_id}" in ln for ln in out.splitlines() if "job " in ln), out
    assert (results / "cells" / "sub" / "v3-K4-seed1.json").exists()


@pytest.mark.parametrize("args, slurm, needles", [
    (["--launcher", "pbs"], None, ["--launcher", "pbs"]),
    (["--launcher", "slurm"], {"time": "an hour"}, ["slurm.time", "an hour"]),
    (["--launcher", "slurm"], {"cpus_per_task": 2.5}, ["slurm.cpus_per_task"]),
    (["--launcher", "slurm"], {"queue": "gpu"}, ["queue"]),
    (["--launcher", "slurm"], "gpu", ["slurm"]),
    (["--launcher", "submitit-local"], {"slurm_bogus": 1}, ["slurm_bogus"]),
    (["--launcher", "slurm", "--slurm-time", "soon"], None, ["--slurm-time", "soon"]),
    (["--launcher", "slurm"], None, ["sbatch"]),  # no Slurm on this PATH
    (["--no-wait"], None, ["--no-wait"]),
])
def test_bad_launcher_input_is_one_error_line(toy_dataset, tmp_path, monkeypatch, capsys, args, slurm, needles):
    grid = _grid(tmp_path, toy_dataset, "bad", [0], **({"slurm": slurm} if slurm is not None else {}))
    monkeypatch.setenv("PATH", str(tmp_path))
    code, out, err = run_varinv(monkeypatch, capsys, "benchmark", grid, "--results", tmp_path / "r", *args)
    one_error_line(code, out + err, *needles)
    assert not (tmp_path / "runs-bad").exists()


def test_missing_submitit_names_the_extra(toy_dataset, tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "submitit", None)
    grid = _grid(tmp_path, toy_dataset, "nosub", [0])
    code, out, err = run_varinv(monkeypatch, capsys, "benchmark", grid, "--launcher", "slurm")
    assert one_error_line(code, out + err) == "error: --launcher slurm needs submitit: pip install 'varinv[cluster]'"


def test_slurm_executor_gets_the_grid_block_and_overrides(tmp_path, monkeypatch):
    from varinv.launchers import _executor, slurm_options

    (tmp_path / "bin").mkdir()
    for tool in ("sbatch", "srun"):  # stand-ins: nothing is submitted
        (tmp_path / "bin" / tool).write_text("#!/bin/sh\nexit 1\n")
        (tmp_path / "bin" / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    grid = {"slurm": {"partition": "cpu", "time": 30, "cpus_per_task": 4, "mem_gb": 8, "account": "lab",
                      "slurm_qos": "high"}}
    params = slurm_options(grid, partition="gpu", time_min="90")
    ex = _executor("slurm", tmp_path / ".submitit", params)
    p = ex._executor.parameters
    assert (p["partition"], p["time"], p["cpus_per_task"], p["account"], p["qos"]) == ("gpu", 90, 4, "lab", "high")
    assert p["mem"] == "8GB"
