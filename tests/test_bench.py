import json

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
    beta_metrics = json.loads((tmp_path / "runs" / "beta-K3-seed0" / "metrics.json").read_text())
    assert beta_metrics["n_atoms"] == 3  # k-means K for a method without a codebook
    mtime = (tmp_path / "runs" / "v3-K4-seed0" / "metrics.json").stat().st_mtime
    run_grid(gpath, tmp_path / "results")  # everything finished: nothing is retrained
    assert (tmp_path / "runs" / "v3-K4-seed0" / "metrics.json").stat().st_mtime == mtime
    # The committed per-cell records stand in for run folders made on another machine or session.
    rec = tmp_path / "results" / "cells" / "toy" / "v3-K4-seed1.json"
    assert json.loads(rec.read_text())["seed"] == 1 and "curves" not in json.loads(rec.read_text())
    import shutil

    shutil.rmtree(tmp_path / "runs")
    md = run_grid(gpath, tmp_path / "results")
    assert not (tmp_path / "runs" / "v3-K4-seed0").exists()  # not retrained
    assert "| toy | v3 | 4 | 2 |" in md.read_text()
