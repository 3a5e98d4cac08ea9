"""train.channels_last (varinv.train.speed): same model, NHWC layout; runs, resumes and loads like NCHW."""

import json

import pytest
import torch

from conftest import TOY_CFG
from varinv import config as config_mod
from varinv.errors import ConfigError
from varinv.methods import build_method
from varinv.train import checkpoint as ckpt
from varinv.train import speed
from varinv.train.trainer import load_run, train


def _cfg(ds, **train_opts):
    raw = json.loads(json.dumps(TOY_CFG))
    raw["data"]["path"] = str(ds.root)
    raw["train"].update(train_opts)
    return config_mod.from_dict(raw)


def test_channels_last_is_validated():
    raw = json.loads(json.dumps(TOY_CFG))
    raw["train"]["channels_last"] = "yes"
    with pytest.raises(ConfigError, match="channels_last"):
        config_mod.from_dict(raw)
    assert config_mod.from_dict(json.loads(json.dumps(TOY_CFG))).train.channels_last is False


def test_setup_converts_conv_weights_only_when_asked():
    cfg = config_mod.from_dict(json.loads(json.dumps(TOY_CFG)))
    convs = lambda m: [p for p in m.parameters() if p.dim() == 4]  # noqa: E731
    m = build_method(cfg.method, cfg.model, (3, 16, 16))
    speed.setup(m, cfg.train)
    assert all(p.is_contiguous() for p in convs(m))
    cfg.train.channels_last = True
    speed.setup(m, cfg.train)
    assert convs(m) and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs(m))


def test_channels_last_same_function_and_resume(toy_dataset, tmp_path):
    """Same loss as NCHW up to float rounding at the first step, bit-exact resume, and its
    checkpoints load into a plain (NCHW) model."""
    base = _cfg(toy_dataset, steps=20, ckpt_every=10, log_every=1)
    cl = _cfg(toy_dataset, steps=20, ckpt_every=10, log_every=1, channels_last=True)
    train(base, tmp_path / "nchw", progress=False, tensorboard=False)
    train(cl, tmp_path / "a", progress=False, tensorboard=False)
    train(cl, tmp_path / "b", progress=False, tensorboard=False, stop_after=7)
    train(cl, tmp_path / "b", resume=True, progress=False, tensorboard=False)
    first = lambda run: json.loads((run / "train_log.jsonl").read_text().splitlines()[0])  # noqa: E731
    assert first(tmp_path / "a")["total"] == pytest.approx(first(tmp_path / "nchw")["total"], rel=1e-4)
    wa = ckpt._load_tensors(ckpt.model_path(tmp_path / "a" / "checkpoints", "final"), None)
    wb = ckpt._load_tensors(ckpt.model_path(tmp_path / "b" / "checkpoints", "final"), None)
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    _, _, model, _ = load_run(tmp_path / "a")
    assert all(p.is_contiguous() for p in model.parameters())
