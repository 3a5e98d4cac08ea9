import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from conftest import TOY_CFG
from varinv import config as config_mod
from varinv.errors import CheckpointError, ConfigError, DataError
from varinv.train import checkpoint as ckpt
from varinv.runs import load_run
from varinv.train.trainer import lr_factor, train


def _cfg(ds, **train):
    raw = json.loads(json.dumps(TOY_CFG))
    raw["data"]["path"] = str(ds.root)
    raw["train"].update(train)
    return config_mod.from_dict(raw)


def _losses(run):
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


def test_short_training_reduces_loss(toy_dataset, tmp_path):
    cfg = _cfg(toy_dataset, steps=80)
    train(cfg, tmp_path / "run", progress=False, tensorboard=False)
    log = _losses(tmp_path / "run")
    first, last = log[0], log[-1]
    assert last["recon"] < 0.5 * first["recon"]
    assert last["total"] < first["total"]
    assert ckpt.model_path(tmp_path / "run" / "checkpoints", "final").exists()


def test_same_seed_same_numbers_and_resume_matches(toy_dataset, tmp_path):
    cfg = _cfg(toy_dataset, steps=40, ckpt_every=10)
    train(cfg, tmp_path / "a", progress=False, tensorboard=False)
    train(cfg, tmp_path / "b", progress=False, tensorboard=False, stop_after=17)  # "killed" at step 17
    train(cfg, tmp_path / "b", resume=True, progress=False, tensorboard=False)
    wa = ckpt._load_tensors(ckpt.model_path(tmp_path / "a" / "checkpoints", "final"), None)
    wb = ckpt._load_tensors(ckpt.model_path(tmp_path / "b" / "checkpoints", "final"), None)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert _losses(tmp_path / "a")[-1]["total"] == _losses(tmp_path / "b")[-1]["total"]


def test_lr_anneal_is_a_late_cosine_to_lr_final():
    t = config_mod.TrainConfig(steps=1001, lr_decay=1.0, lr_final=0.1, lr_anneal_from=0.5)
    assert [lr_factor(s, t) for s in (0, 250, 500)] == [1.0, 1.0, 1.0]  # untouched before the start
    assert lr_factor(750, t) == pytest.approx(0.55, abs=1e-3)  # half-way down the cosine
    assert lr_factor(1000, t) == pytest.approx(0.1)  # lr_final at the last step
    off = config_mod.TrainConfig(steps=1001, lr_decay=1.0)
    assert all(lr_factor(s, off) == 1.0 for s in (0, 750, 1000))  # the default: no annealing


def test_existing_run_needs_resume(toy_dataset, tmp_path):
    cfg = _cfg(toy_dataset, steps=10)
    train(cfg, tmp_path / "r", progress=False, tensorboard=False)
    with pytest.raises(Exception, match="--resume"):
        train(cfg, tmp_path / "r", progress=False, tensorboard=False)


def test_unknown_config_key_is_named(toy_dataset):
    raw = json.loads(json.dumps(TOY_CFG))
    raw["model"]["n_atom"] = 3
    with pytest.raises(ConfigError, match="model.n_atom.*n_atoms"):
        config_mod.from_dict(raw)
    raw = json.loads(json.dumps(TOY_CFG))
    raw["model"]["relativity"] = 1.0
    with pytest.raises(ConfigError, match="relativity"):
        config_mod.from_dict(raw)


def test_missing_dataset(tmp_path):
    raw = json.loads(json.dumps(TOY_CFG))
    raw["data"]["path"] = str(tmp_path / "nowhere")
    with pytest.raises(DataError, match="manifest.json missing"):
        train(config_mod.from_dict(raw), tmp_path / "r", progress=False)


def test_corrupt_checkpoint_is_refused(toy_dataset, tmp_path):
    cfg = _cfg(toy_dataset, steps=10)
    run = tmp_path / "r"
    train(cfg, run, progress=False, tensorboard=False)
    f = ckpt.model_path(run / "checkpoints", "final")
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        load_run(run)
    f.write_bytes(bytes(data[:100]))  # truncated
    with pytest.raises(CheckpointError):
        load_run(run)


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "varinv", *args], capture_output=True, text=True, cwd=cwd)


def test_cli_errors_are_one_line(toy_dataset, tmp_path):
    raw = json.loads(json.dumps(TOY_CFG))
    raw["data"]["path"] = str(toy_dataset.root)
    raw["train"]["stepz"] = 3
    cfgp = tmp_path / "bad.yaml"
    cfgp.write_text(yaml.safe_dump(raw))
    r = _cli("train", str(cfgp), "--run", str(tmp_path / "r"))
    assert r.returncode != 0
    assert r.stderr.strip().count("\n") == 0 and "train.stepz" in r.stderr and "steps" in r.stderr
    r = _cli("evaluate", str(tmp_path / "no-run"))
    assert r.returncode != 0 and r.stderr.startswith("error:") and r.stderr.strip().count("\n") == 0


def test_store_roundtrip_and_checksum(tmp_path):
    from varinv.data.store import from_arrays, open_dataset

    x = np.random.default_rng(0).integers(0, 255, (6, 3, 1, 8, 8)).astype(np.uint8)
    c = np.tile(np.arange(3), (6, 1))
    s = np.arange(6) % 2
    ds = from_arrays(tmp_path / "d", {"train": (x, c, s)})
    sp = open_dataset(tmp_path / "d").split("train")
    assert np.array_equal(sp.x, x) and np.array_equal(sp.content, c) and sp.style_per_fragment.shape == (6, 3)
    ds.verify()
    path = tmp_path / "d" / "train" / "x.npy"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="checksum"):
        ds.verify()
    with pytest.raises(DataError, match="L >= 2"):
        from_arrays(tmp_path / "e", {"train": (x[:, :1], c[:, :1], s)})


def test_resumed_run_drops_tensorboard_events_after_its_checkpoint(toy_dataset, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    cfg = _cfg(toy_dataset, steps=12, ckpt_every=5, log_every=1)
    train(cfg, tmp_path / "r", progress=False, tensorboard=True, stop_after=8)  # checkpoint at step 8
    with SummaryWriter(str(tmp_path / "r" / "tb")) as w:  # killed after logging step 10, one tag the run
        w.add_scalar("rare", 1.0, 10)  # logs seldom; TensorBoard's own out-of-order check never sees it again
    train(cfg, tmp_path / "r", resume=True, progress=False, tensorboard=True)
    acc = EventAccumulator(str(tmp_path / "r" / "tb"))
    acc.Reload()
    assert not acc.Scalars("rare") if "rare" in acc.Tags()["scalars"] else True
    tag = next(t for t in acc.Tags()["scalars"] if t.endswith("total"))
    assert [e.step for e in acc.Scalars(tag)] == list(range(1, 13))
