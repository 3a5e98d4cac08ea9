"""No lost work: SIGKILLed runs resume to the same bits; a crash mid-checkpoint keeps the previous one."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from conftest import TOY_CFG
from varinv import config as config_mod
from varinv.train import checkpoint as ckpt
from varinv.runs import load_run
from varinv.train.trainer import train


def _write_cfg(tmp_path, ds, steps):
    raw = json.loads(json.dumps(TOY_CFG))
    raw["data"]["path"] = str(ds.root)
    raw["train"].update({"steps": steps, "ckpt_every": 4})
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p, config_mod.from_dict(raw)


def final_weights(run):
    return ckpt._load_tensors(ckpt.model_path(run / "checkpoints", "final"), None)


def _last_step(run):
    try:
        return json.loads((run / "checkpoints" / "last.json").read_text())["step"]
    except (FileNotFoundError, json.JSONDecodeError):
        return -1


def kill_and_resume(cfg_path, run, n_kills, seed=0):
    """SIGKILL the training process at random moments after new checkpoints appear, resuming each time."""
    rng = random.Random(seed)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for i in range(n_kills + 1):
        cmd = [sys.executable, "-m", "varinv", "train", str(cfg_path), "--run", str(run), "--no-progress"]
        if i > 0:
            cmd.append("--resume")
        before = _last_step(run)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if i < n_kills:
            deadline = time.time() + 120
            while _last_step(run) <= before and proc.poll() is None and time.time() < deadline:
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 0.6))  # somewhere in the next steps, maybe inside a checkpoint write
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        else:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err.decode()


def test_sigkill_resume_is_bit_exact(toy_dataset, tmp_path):
    cfg_path, cfg = _write_cfg(tmp_path, toy_dataset, steps=40)
    train(cfg, tmp_path / "clean", progress=False, tensorboard=False)
    kill_and_resume(cfg_path, tmp_path / "killed", n_kills=2)
    a, b = final_weights(tmp_path / "clean"), final_weights(tmp_path / "killed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_crash_inside_checkpoint_write_keeps_previous(toy_dataset, tmp_path, monkeypatch):
    _, cfg = _write_cfg(tmp_path, toy_dataset, steps=12)
    run = tmp_path / "r"
    train(cfg, run, progress=False, tensorboard=False, stop_after=8)
    assert _last_step(run) == 8
    real = ckpt.save_file
    calls = {"n": 0}

    def dying_save(tensors, path):  # the optimizer file of the next checkpoint never gets written
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed mid-checkpoint")
        return real(tensors, path)

    monkeypatch.setattr(ckpt, "save_file", dying_save)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, run, resume=True, progress=False, tensorboard=False)
    monkeypatch.setattr(ckpt, "save_file", real)
    assert _last_step(run) == 8
    load_run(run, "last")  # the previous checkpoint still loads (checksums match)
    train(cfg, run, resume=True, progress=False, tensorboard=False)
    assert _last_step(run) == 12


def test_readonly_run_folder_is_detected(toy_dataset, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions")
    _, cfg = _write_cfg(tmp_path, toy_dataset, steps=4)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    from varinv.errors import TrainingError

    with pytest.raises(TrainingError, match="not writable"):
        train(cfg, ro / "run", progress=False)
