"""train.device: training on a GPU. The CUDA tests run only where torch sees one (CI has none; they are
run on the lent GPU machine, see benchmarks/results/*-gpu-*.md); the option's validation runs everywhere."""

import json

import pytest
import torch

from conftest import TOY_CFG
from test_peers import EXTRA, SMALL
from varinv import config as config_mod
from varinv.errors import ConfigError
from varinv.train import checkpoint as ckpt
from varinv.runs import load_run
from varinv.train.trainer import train

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to torch")


def _cfg(ds, model=None, **train_opts):
    raw = json.loads(json.dumps(TOY_CFG))
    raw["data"]["path"] = str(ds.root)
    if model is not None:
        raw["model"] = model
    raw["train"].update(train_opts)
    return config_mod.from_dict(raw)


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "CUDA"])
def test_device_is_validated(bad):
    raw = json.loads(json.dumps(TOY_CFG))
    raw["train"]["device"] = bad
    with pytest.raises(ConfigError, match="train.device"):
        config_mod.from_dict(raw)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_a_gpu_is_one_clear_error(toy_dataset, tmp_path):
    with pytest.raises(ConfigError, match="no CUDA GPU.*train.device=cpu"):
        train(_cfg(toy_dataset, device="cuda"), tmp_path / "run", progress=False, tensorboard=False)


@cuda
def test_cuda_matches_cpu_first_step_resumes_and_loads_on_cpu(toy_dataset, tmp_path):
    opts = dict(steps=20, ckpt_every=10, log_every=1)
    train(_cfg(toy_dataset, **opts), tmp_path / "cpu", progress=False, tensorboard=False)
    gpu = _cfg(toy_dataset, device="cuda", **opts)
    train(gpu, tmp_path / "a", progress=False, tensorboard=False)
    train(gpu, tmp_path / "a2", progress=False, tensorboard=False)
    train(gpu, tmp_path / "b", progress=False, tensorboard=False, stop_after=7)
    train(gpu, tmp_path / "b", resume=True, progress=False, tensorboard=False)
    first = lambda run: json.loads((run / "train_log.jsonl").read_text().splitlines()[0])  # noqa: E731
    assert first(tmp_path / "a")["total"] == pytest.approx(first(tmp_path / "cpu")["total"], rel=1e-3)
    w = {r: ckpt._load_tensors(ckpt.model_path(tmp_path / r / "checkpoints", "final"), None) for r in ("a", "a2", "b")}
    gap = lambda r: max(float((w["a"][k].float() - w[r][k].float()).abs().max()) for k in w["a"])  # noqa: E731
    # cuDNN and atomics make two identical GPU runs differ slightly; a resumed run may differ from the
    # straight one by that noise, not more (a lost optimizer or RNG state shows up far above it)
    assert gap("b") <= 10 * gap("a2") + 1e-5, (gap("b"), gap("a2"))
    _, _, model, _ = load_run(tmp_path / "a")
    assert all(p.device.type == "cpu" for p in model.parameters())


@cuda
@pytest.mark.parametrize("name", ["v3", *sorted(EXTRA)])
def test_every_method_trains_on_cuda(name, toy_dataset, tmp_path):
    from varinv.eval.evaluate import evaluate

    model = {"method": "v3", "n_atoms": 4, **SMALL} if name == "v3" else {"method": name, **SMALL, **EXTRA[name]}
    cfg = _cfg(toy_dataset, model=model, device="cuda", steps=12, ckpt_every=100, log_every=1)
    train(cfg, tmp_path / "run", progress=False, tensorboard=False)
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 12 and all(v == v for r in log for v in r.values())
    assert "prauc_zc_content" in evaluate(tmp_path / "run", plots=False)


def test_tf32_is_validated():
    raw = json.loads(json.dumps(TOY_CFG))
    raw["train"]["tf32"] = "on"
    with pytest.raises(ConfigError, match="train.tf32"):
        config_mod.from_dict(raw)


@cuda
def test_full_fp32_first_step_on_cuda_is_the_cpu_step(toy_dataset, tmp_path):
    # The methods draw their random numbers from the CPU generator on every device and train.tf32 is off
    # by default, so the first loss differs from the CPU's by rounding alone; TF32's gap is printed beside.
    opts = dict(steps=1, log_every=1)
    first = {}
    for name, extra in {"cpu": {}, "fp32": dict(device="cuda"), "tf32": dict(device="cuda", tf32=True)}.items():
        train(_cfg(toy_dataset, **opts, **extra), tmp_path / name, progress=False, tensorboard=False)
        first[name] = json.loads((tmp_path / name / "train_log.jsonl").read_text().splitlines()[0])["total"]
    gap = {k: abs(first[k] - first["cpu"]) / abs(first["cpu"]) for k in ("fp32", "tf32")}
    print("first-step relative gap to the CPU:", gap)
    assert gap["fp32"] <= 1e-4, gap
