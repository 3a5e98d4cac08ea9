import json

import pytest
import yaml

from conftest import TOY_CFG
from varinv.bench import load_grid, run_grid


def test_benchmark_grid_runs_skips_finished_and_tabulates(toy_dataset, tmp_path):
    v3 = dict(json.loads(json.dumps(TOY_CFG)))
    v3["train"].update({"steps": 6, "log_every": 3, "ckpt_every": 3})
    beta = {"model": {"method": "betavae", "d_content": 4, "d_style": 4, "n_channels": 16, "n_layers": 2,
                      "d_hidden": 32},
            "train": {"steps": 6, "batch_size": 8, "log_every": 3, "threads": 1}, "data": {"n_eval": 40}}
    (tmp_path / "v3.yaml").write_text(yaml.safe_dump(v3))
    (tmp_path / "beta.yaml").write_text(yaml.safe_dump(beta))
    grid = {"name": "toy", "out": str(tmp_path / "runs"), "parallel": 2, "seeds": [0, 1],
            "set": [f"data.path={toy_dataset.root}"],
            "cells": [{"config": str(tmp_path / "v3.yaml"), "k": [4]},
                      {"config": str(tmp_path / "beta.yaml"), "k": [3]}]}
    gpath = tmp_path / "grid.yaml"
    gpath.write_text(yaml.safe_dump(grid))
    _, cells = load_grid(gpath)
    assert [c.k_key for c in cells] == ["model.n_atoms"] * 2 + ["data.n_clusters"] * 2
    md = run_grid(gpath, tmp_path / "results")
    text = md.read_text()
    assert "| toy | v3 | 4 | 2 |" in text and "| toy | betavae | 3 | 2 |" in text
    assert "; test split." in text  # the split the cells were scored on (a grid's `split: val` names val)
    beta_metrics = json.loads((tmp_path / "runs" / "beta-K3-seed0" / "metrics.json").read_text())
    assert beta_metrics["n_atoms"] == 3  # k-means K for a method without a codebook
    mtime = (tmp_path / "runs" / "v3-K4-seed0" / "metrics.json").stat().st_mtime
    run_grid(gpath, tmp_path / "results")  # everything finished: nothing is retrained
    assert (tmp_path / "runs" / "v3-K4-seed0" / "metrics.json").stat().st_mtime == mtime
    # The committed per-cell records stand in for run folders made on another machine or session.
    rec = tmp_path / "results" / "cells" / "toy" / "v3-K4-seed1.json"
    kept = json.loads(rec.read_text())
    assert kept["seed"] == 1 and "curves" not in kept
    assert kept["dataset_hash"] == json.loads((tmp_path / "runs" / "v3-K4-seed1" / "provenance.json").read_text())["dataset_hash"]
    import shutil

    shutil.rmtree(tmp_path / "runs")
    md = run_grid(gpath, tmp_path / "results")
    assert not (tmp_path / "runs" / "v3-K4-seed0").exists()  # not retrained
    assert "| toy | v3 | 4 | 2 |" in md.read_text()
    rec.unlink()  # --table-only: the table of what is recorded, nothing trained for the missing cell
    md = run_grid(gpath, tmp_path / "results", train=False)
    assert "| toy | v3 | 4 | 1 |" in md.read_text() and not (tmp_path / "runs" / "v3-K4-seed1").exists()


def test_benchmark_grid_mixes_datasets_and_evaluates_probes(toy_dataset, tmp_path):
    from conftest import toy_arrays
    from varinv.data.store import from_arrays
    from varinv.errors import ConfigError

    other = from_arrays(tmp_path / "toy2", {"train": toy_arrays(64, seed=2), "test": toy_arrays(24, seed=3)},
                        content_names=list("abcd"), style_names=["red", "green", "blue"])
    beta = {"model": {"method": "betavae", "d_content": 4, "d_style": 4, "n_channels": 16, "n_layers": 2,
                      "d_hidden": 32},
            "train": {"steps": 4, "batch_size": 8, "log_every": 2, "threads": 1}, "data": {"n_eval": 40}}
    paths = []
    for name, ds in (("a", toy_dataset), ("b", other)):  # each config carries its own data.path
        paths.append(tmp_path / f"{name}.yaml")
        paths[-1].write_text(yaml.safe_dump({**beta, "data": {"n_eval": 40, "path": str(ds.root)}}))
    grid = {"name": "mixed", "out": str(tmp_path / "runs"), "parallel": 1, "seeds": [0],
            "evaluate": ["core", "probes"], "cells": [{"config": str(p), "k": [4]} for p in paths]}
    gpath = tmp_path / "grid.yaml"
    gpath.write_text(yaml.safe_dump(grid))
    _, cells = load_grid(gpath)
    assert [c.dataset for c in cells] == ["toy", "toy2"]
    md = run_grid(gpath, tmp_path / "results")
    text = md.read_text()
    assert "| toy | betavae | 4 | 1 |" in text and "| toy2 | betavae | 4 | 1 |" in text
    assert "probes.z_s.style.linear" in text.splitlines()[4]
    m = json.loads((tmp_path / "runs" / "b-K4-seed0" / "metrics.json").read_text())
    assert m["dataset"].endswith("toy2") and 0 <= m["probes"]["z_s"]["style"]["linear"] <= 1
    assert "prauc_zc_content" in m  # the core part still runs
    rec = json.loads((tmp_path / "results" / "cells" / "mixed" / "b-K4-seed0.json").read_text())
    assert rec["probes"] == m["probes"]
    gpath.write_text(yaml.safe_dump({**grid, "evaluate": ["core", "probe"]}))
    with pytest.raises(ConfigError, match="probe"):
        load_grid(gpath)


def test_methods_without_codebook_train_once_per_seed_and_evaluate_every_k(toy_dataset, tmp_path):
    beta = {"model": {"method": "betavae", "d_content": 4, "d_style": 4, "n_channels": 16, "n_layers": 2,
                      "d_hidden": 32},
            "train": {"steps": 4, "batch_size": 8, "log_every": 2, "threads": 1}, "data": {"n_eval": 40}}
    (tmp_path / "beta.yaml").write_text(yaml.safe_dump(beta))
    grid = {"name": "twins", "out": str(tmp_path / "runs"), "parallel": 3, "seeds": [0], "split": "train",
            "set": [f"data.path={toy_dataset.root}"], "cells": [{"config": str(tmp_path / "beta.yaml"), "k": [2, 3, 5]}]}
    gpath = tmp_path / "grid.yaml"
    gpath.write_text(yaml.safe_dump(grid))
    run_grid(gpath, tmp_path / "results")
    runs = [tmp_path / "runs" / f"beta-K{k}-seed0" for k in (2, 3, 5)]
    logs = [(r.parent / f"{r.name}.log").read_text() for r in runs]
    assert sum("trained betavae" in text for text in logs) == 1  # one training, three evaluations
    metrics = [json.loads((r / "metrics.json").read_text()) for r in runs]
    assert [m["n_atoms"] for m in metrics] == [2, 3, 5]
    assert {m["split"] for m in metrics} == {"train"}  # the grid's split, not the default test
    assert len({m["prauc_zc_content"] for m in metrics}) == 1  # the same model


def test_also_split_scores_each_training_on_a_second_split(toy_dataset, tmp_path):
    from varinv.errors import ConfigError

    v3 = dict(json.loads(json.dumps(TOY_CFG)))
    v3["train"].update({"steps": 4, "log_every": 2})
    (tmp_path / "v3.yaml").write_text(yaml.safe_dump(v3))
    grid = {"name": "two", "out": str(tmp_path / "runs"), "seeds": [0], "split": "train", "also_split": "test",
            "set": [f"data.path={toy_dataset.root}"], "cells": [{"config": str(tmp_path / "v3.yaml"), "k": [4]}]}
    gpath = tmp_path / "grid.yaml"
    gpath.write_text(yaml.safe_dump(grid))
    run_grid(gpath, tmp_path / "results")
    run = tmp_path / "runs" / "v3-K4-seed0"
    assert (run.parent / f"{run.name}.log").read_text().count("trained v3") == 1
    assert json.loads((run / "metrics.json").read_text())["split"] == "train"  # the grid's own split stays the run's
    val, test = (json.loads((tmp_path / "results" / "cells" / name / "v3-K4-seed0.json").read_text())
                 for name in ("two", "two-test"))
    assert (val["split"], test["split"], val["seed"], test["seed"]) == ("train", "test", 0, 0)
    assert val["train_seconds"] == test["train_seconds"]  # one training
    for bad in ("train", ["test"]):
        gpath.write_text(yaml.safe_dump({**grid, "also_split": bad}))
        with pytest.raises(ConfigError, match="also_split"):
            load_grid(gpath)


def test_cell_sets_and_names_let_one_config_serve_two_datasets(toy_dataset, tmp_path):
    from conftest import toy_arrays
    from varinv.data.store import from_arrays

    other = from_arrays(tmp_path / "other", {"train": toy_arrays(32, seed=2), "test": toy_arrays(8, seed=3)})
    (tmp_path / "v3.yaml").write_text(yaml.safe_dump(TOY_CFG))
    grid = {"name": "two", "out": str(tmp_path / "runs"), "seeds": [0], "set": ["train.steps=3"],
            "cells": [{"config": str(tmp_path / "v3.yaml"), "k": [4], "name": f"{n}-v3",
                       "set": [f"data.path={p}", "train.steps=5"]}
                      for n, p in (("toy", toy_dataset.root), ("other", other.root))]}
    gpath = tmp_path / "grid.yaml"
    gpath.write_text(yaml.safe_dump(grid))
    _, cells = load_grid(gpath)
    assert [(c.dataset, c.run.name) for c in cells] == [("toy", "toy-v3-K4-seed0"), ("other", "other-v3-K4-seed0")]
    assert cells[0].sets == ("train.steps=3", f"data.path={toy_dataset.root}", "train.steps=5")  # the cell's last


def test_named_variants_of_one_method_get_a_row_each(toy_dataset, tmp_path):
    (tmp_path / "v3.yaml").write_text(yaml.safe_dump(TOY_CFG))
    grid = {"name": "variants", "out": str(tmp_path / "runs"), "seeds": [0],
            "set": [f"data.path={toy_dataset.root}", "train.steps=2", "train.log_every=1"],
            "cells": [{"config": str(tmp_path / "v3.yaml"), "k": [4], "name": "plain"},
                      {"config": str(tmp_path / "v3.yaml"), "k": [4], "name": "wide", "set": ["model.d_style=6"]}]}
    gpath = tmp_path / "grid.yaml"
    gpath.write_text(yaml.safe_dump(grid))
    text = run_grid(gpath, tmp_path / "results").read_text()
    assert "| toy | v3 (plain) | 4 | 1 |" in text and "| toy | v3 (wide) | 4 | 1 |" in text


def test_run_commands_pool_steps_failures_and_ready(tmp_path):
    """The scheduler behind run_grid (and the benchmark scripts): slot limit, steps in order in one slot,
    a failed step skips the job's later steps, ``ready`` holds a job back while another runs."""
    import sys
    import time

    from varinv.bench import Job, run_commands

    marks = tmp_path / "marks"
    marks.mkdir()

    def py(code: str) -> list[str]:
        return [sys.executable, "-c", code]

    def sleeper(name: str, seconds: float = 0.3):
        # the file's existence while it runs counts the jobs running at once
        return py(f"import pathlib, time; p = pathlib.Path({str(marks / name)!r}); p.touch(); "
                  f"n = len(list(p.parent.iterdir())); time.sleep({seconds}); p.unlink(); "
                  f"open({str(tmp_path / 'peak')!r}, 'a').write(f'{{n}}\\n')")

    done, failed, prepared = [], [], []

    def steps(name: str, fail: bool = False):
        prepared.append(name)  # a generator: runs when the job starts, not when it is made
        yield "first", sleeper(name)
        yield "second", py("import sys; sys.exit(3)") if fail else py("print('second')")
        yield "third", py("print('third')")

    jobs = [Job(n, steps(n, fail=(n == "b")), tmp_path / "logs" / f"{n}.log", done=lambda n=n: done.append(n),
                failed=lambda phase, code, n=n: failed.append((n, phase, code))) for n in "abcd"]
    assert prepared == []
    out = run_commands(jobs, 2, poll=0.05)
    assert out == {"a": "done", "b": "failed in second (exit 3)", "c": "done", "d": "done"}
    assert sorted(done) == ["a", "c", "d"] and failed == [("b", "second", 3)]
    assert max(int(x) for x in (tmp_path / "peak").read_text().split()) <= 2
    assert (tmp_path / "logs" / "a.log").read_text() == "second\nthird\n"
    assert "third" not in (tmp_path / "logs" / "b.log").read_text()

    # "z" may not start while "y" runs its "slow" phase, though a slot is free
    order = []

    def gated(name: str):
        order.append((name, time.monotonic()))
        yield ("slow" if name == "y" else "fast"), sleeper(name, 0.4)

    jobs = [Job(n, gated(n), tmp_path / f"{n}.log", data=n) for n in "yz"]
    out = run_commands(jobs, 2, poll=0.05,
                       ready=lambda job, running: not any(p == "slow" for _, p in running))
    assert out == {"y": "done", "z": "done"}
    assert [n for n, _ in order] == ["y", "z"] and order[1][1] - order[0][1] >= 0.4


def test_threads_per_cell_follow_the_cores_the_runner_may_use(monkeypatch):
    """Two grids pinned to one core each (taskset) must not each train with the machine's core count."""
    import varinv.bench as bench

    monkeypatch.setattr(bench.os, "sched_getaffinity", lambda pid: {3}, raising=False)
    monkeypatch.setattr(bench.os, "cpu_count", lambda: 2)
    assert bench.usable_cores() == 1
