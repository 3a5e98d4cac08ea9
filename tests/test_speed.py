"""Speed options (varinv.train.speed) and their benchmark: train.channels_last (same model, NHWC layout;
runs, resumes and loads like NCHW), train.compile (compiled conv trunks, plain checkpoints, eager fallback)
and benchmarks/bench_train_speed.py."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import TOY_CFG
from varinv import config as config_mod
from varinv.errors import ConfigError
from varinv.methods import build_method
from varinv.train import checkpoint as ckpt
from varinv.train import speed
from varinv.runs import load_run
from varinv.train.trainer import RESUME_MAY_CHANGE, train


def _cfg(ds, model: dict | None = None, **train_opts):
    raw = json.loads(json.dumps(TOY_CFG))
    raw["data"]["path"] = str(ds.root)
    raw["model"].update(model or {})
    raw["train"].update(train_opts)
    return config_mod.from_dict(raw)


def test_channels_last_is_validated():
    raw = json.loads(json.dumps(TOY_CFG))
    raw["train"]["channels_last"] = "yes"
    with pytest.raises(ConfigError, match="channels_last"):
        config_mod.from_dict(raw)
    assert config_mod.from_dict(json.loads(json.dumps(TOY_CFG))).train.channels_last == "auto"  # the default
    raw["train"]["channels_last"] = "auto"
    assert config_mod.from_dict(raw).train.channels_last == "auto"


def test_channels_last_auto_follows_the_thread_count():
    """auto: NHWC on one CPU thread, NCHW on several (where NHWC left the second core idle)."""
    m = torch.nn.Conv2d(1, 2, 3)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert speed.use_channels_last("auto", m) is True
        torch.set_num_threads(2)
        assert speed.use_channels_last("auto", m) is False
        assert speed.use_channels_last(True, m) is True and speed.use_channels_last(False, m) is False
    finally:
        torch.set_num_threads(before)


def test_setup_converts_conv_weights_only_when_asked():
    cfg = config_mod.for_data(config_mod.from_dict(json.loads(json.dumps(TOY_CFG))), "image")
    convs = lambda m: [p for p in m.parameters() if p.dim() == 4]  # noqa: E731
    m = build_method(cfg.method, cfg.model, (3, 16, 16))
    cfg.train.channels_last = False
    speed.setup(m, cfg.train)
    assert all(p.is_contiguous() for p in convs(m))
    cfg.train.channels_last = True
    speed.setup(m, cfg.train)
    assert convs(m) and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs(m))


def test_channels_last_decoders_hand_back_nchw():
    # the separable decoders slice their output along channels; slices of an NHWC map fall off the
    # elementwise fast paths (and so does every gradient flowing back through them)
    from varinv.nn.backbones import BackboneSpec, build_decoder

    for kind in ("joint", "gain"):
        dec = build_decoder((3, 16, 16), BackboneSpec(n_channels=8, n_layers=2, decoder=kind), 4, 2)
        dec.to(memory_format=torch.channels_last)
        y = dec(torch.randn(6, 4), torch.randn(6, 2))
        assert y.shape == (6, 3, 16, 16) and y.is_contiguous(), kind


def test_channels_last_gradients_stay_channels_last():
    # a flatten, a contiguous() or a strided slice hands autograd's NCHW gradient back into an NHWC trunk, where
    # every backward kernel (GELU, batch norm, conv) mixes layouts and runs several times slower
    from varinv.nn.backbones import BackboneSpec, Encoder, ResBlock, build_decoder

    spec = BackboneSpec(n_channels=16, n_layers=3, decoder="gain", upsample="shuffle")
    enc = Encoder((3, 24, 16), spec, 4, 2).to(memory_format=torch.channels_last)
    dec = build_decoder((3, 24, 16), spec, 4, 2).to(memory_format=torch.channels_last)
    layouts = []

    def watch(module, args, out):
        out.register_hook(lambda g: layouts.append(g.is_contiguous(memory_format=torch.channels_last)))

    for block in [m for m in [*enc.modules(), *dec.modules()] if isinstance(m, ResBlock)]:
        block.register_forward_hook(watch)
    c, s = enc(torch.randn(6, 3, 24, 16).to(memory_format=torch.channels_last))
    (c.square().sum() + s.square().sum() + dec(c, s).square().sum()).backward()
    assert len(layouts) == 7 and all(layouts), layouts


def test_strided_shortcut_is_the_strided_conv_and_trains_channels_last():
    from varinv.nn.backbones import StridedPointwise

    torch.manual_seed(0)
    skip = StridedPointwise(3, 8, (2, 2))
    ref = torch.nn.Conv2d(3, 8, 1, 2, bias=False)
    ref.weight.data.copy_(skip.weight.data)
    x = torch.randn(4, 3, 9, 8)
    torch.testing.assert_close(skip(x), ref(x))
    skip(x).square().sum().backward()
    ref(x).square().sum().backward()
    torch.testing.assert_close(skip.weight.grad, ref.weight.grad)
    assert set(skip.state_dict()) == {"weight"}  # checkpoints of the plain strided conv load
    # The weight gradient of a strided 1x1 conv in channels-last layout corrupted the heap on an AVX2-only CPU
    # (3 input channels, one thread); run it in a child process so that a crash fails this test only.
    code = ("import torch; torch.set_num_threads(1); from varinv.nn.backbones import ResBlock\n"
            "b = ResBlock(3, 8, 3, (2, 2), 'batch').to(memory_format=torch.channels_last)\n"
            "x = torch.randn(320, 3, 32, 32)\n"
            "for _ in range(5): b(x).square().mean().backward()\nprint('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-500:]


def test_shuffle_decoder_places_each_sub_pixel():
    # "shuffle" draws the last layer's stride-block of pixels from the half-size map's output channels: channel
    # c·sh·sw + i·sw + j must land at pixel (sh·y + i, sw·x + j), and an odd side is cropped, not padded
    from varinv.nn.backbones import BackboneSpec, build_decoder

    for shape, stride in (((3, 16, 16), (2, 2)), ((1, 33, 4), (2, 1)), ((2, 9, 7), (2, 2))):
        dec = build_decoder(shape, BackboneSpec(n_channels=8, n_layers=2, upsample="shuffle"), 4, 2)
        assert dec.shuffle == stride
        sub = stride[0] * stride[1]
        half = ((shape[1] + stride[0] - 1) // stride[0], (shape[2] + stride[1] - 1) // stride[1])
        code = torch.arange(shape[0] * sub, dtype=torch.float32)[None, :, None, None].expand(5, -1, *half)
        dec.out.register_forward_hook(lambda mod, args, out, code=code: code)  # its channels, labelled
        y = dec(torch.randn(5, 4), torch.randn(5, 2))
        assert y.shape == (5, *shape)
        c, r, q = torch.meshgrid(*(torch.arange(n) for n in shape), indexing="ij")
        want = c * sub + (r % stride[0]) * stride[1] + q % stride[1]
        assert torch.equal(y[0], want.float()), shape
    spec = BackboneSpec(n_channels=8, n_layers=2, decoder="gain", upsample="shuffle")
    y = build_decoder((3, 16, 16), spec, 4, 2)(torch.randn(6, 4), torch.randn(6, 2))
    assert y.shape == (6, 3, 16, 16)


def test_channels_last_same_function_and_resume(toy_dataset, tmp_path):
    """Same loss as NCHW up to float rounding at the first step, bit-exact resume, and its
    checkpoints load into a plain (NCHW) model."""
    # neighbour pairs in the raw input: in the model's canonical pose, rounding can swap a pair at the first step
    raw_pairs = {"neighbour_canonical": False}
    base = _cfg(toy_dataset, raw_pairs, steps=20, ckpt_every=10, log_every=1, channels_last=False)
    cl = _cfg(toy_dataset, raw_pairs, steps=20, ckpt_every=10, log_every=1, channels_last=True)
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


# -- train.compile ---------------------------------------------------------------------------------------


def test_compile_is_validated():
    raw = json.loads(json.dumps(TOY_CFG))
    raw["train"]["compile"] = "yes"
    with pytest.raises(ConfigError, match="train.compile"):
        config_mod.from_dict(raw)
    assert config_mod.from_dict(json.loads(json.dumps(TOY_CFG))).train.compile is False
    assert "train.compile" in RESUME_MAY_CHANGE  # speed only: a run may be resumed with it toggled


def _aot_eager(monkeypatch):
    """Dynamo and AOT autograd as with inductor, without inductor's minutes of C++ compilation."""
    monkeypatch.setattr(speed, "_compile", lambda fn: torch.compile(fn, backend="aot_eager", dynamic=False))


def test_compile_trains_and_checkpoints_load_uncompiled(toy_dataset, tmp_path, monkeypatch):
    """A 2-step compiled run: finite losses, compiled trunks inside the step, plain state-dict keys,
    and its checkpoint loads into an uncompiled model (load_run); a resume may switch compile off."""
    _aot_eager(monkeypatch)
    from torch._dynamo.utils import counters

    counters.clear()
    cfg = _cfg(toy_dataset, steps=2, log_every=1, compile=True)
    train(cfg, tmp_path / "c", progress=False, tensorboard=False)
    assert counters["stats"]["unique_graphs"] >= 2  # encoder and decoder went through dynamo
    rows = [json.loads(line) for line in (tmp_path / "c" / "train_log.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(math.isfinite(v) for r in rows for v in r.values())
    weights = ckpt._load_tensors(ckpt.model_path(tmp_path / "c" / "checkpoints", "final"), None)
    assert not any("_orig_mod" in k for k in weights)
    _, _, model, state = load_run(tmp_path / "c")  # strict load into a plain model
    assert state["step"] == 2 and "forward" not in vars(model.encoder)
    train(_cfg(toy_dataset, steps=3, log_every=1), tmp_path / "c", resume=True, progress=False, tensorboard=False)


def test_compile_failure_falls_back_to_eager_with_one_warning(toy_dataset, tmp_path, monkeypatch, capsys):
    def broken(fn):
        def run(*args, **kwargs):
            raise RuntimeError("inductor: no C++ compiler\nsecond line")
        return run

    monkeypatch.setattr(speed, "_compile", broken)
    cfg = _cfg(toy_dataset, steps=3, log_every=1, compile=True)
    train(cfg, tmp_path / "f", progress=False, tensorboard=False)
    eager = _cfg(toy_dataset, steps=3, log_every=1)
    train(eager, tmp_path / "e", progress=False, tensorboard=False)
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("warning: train.compile")]
    assert len(warnings) == 1 and "no C++ compiler" in warnings[0]
    log = lambda run: (run / "train_log.jsonl").read_text()  # noqa: E731
    assert log(tmp_path / "f") == log(tmp_path / "e")  # eager fallback: the very same run


def test_compile_inside_the_step_only(monkeypatch):
    """The trunks are compiled, each once; only calls within model.loss take the compiled path."""
    cfg = config_mod.for_data(config_mod.from_dict(json.loads(json.dumps(TOY_CFG))), "image")
    calls = []
    monkeypatch.setattr(speed, "_compile", lambda fn: (lambda *a, **k: calls.append(fn) or fn(*a, **k)))
    m = build_method(cfg.method, cfg.model, (3, 16, 16))
    trunks = ["encoder", "decoder.content_maps", "decoder.style_maps"]  # the recipe's gain decoder: two trunks
    assert speed.compile_trunks(m) == trunks
    assert speed.compile_trunks(m) == trunks  # idempotent
    x = torch.rand(2, 4, 3, 16, 16)
    m.encode(x)  # inference: eager
    assert calls == []
    m.loss({"x": x}, 0)
    assert len(calls) >= len(trunks) and speed.compile_summary(m).startswith("compiled " + ", ".join(trunks))


@pytest.mark.slow
def test_compile_with_inductor(toy_dataset, tmp_path):
    """The real backend (minutes of C++ compilation on a cold cache): 2 finite steps, loadable."""
    train(_cfg(toy_dataset, steps=2, log_every=1, compile=True), tmp_path / "i", progress=False, tensorboard=False)
    rows = [json.loads(line) for line in (tmp_path / "i" / "train_log.jsonl").read_text().splitlines()]
    assert all(math.isfinite(v) for r in rows for v in r.values())
    load_run(tmp_path / "i")


# -- benchmarks/bench_train_speed.py ----------------------------------------------------------------------

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_train_speed.py"


def _bench(*args, cwd=None):
    return subprocess.run([sys.executable, str(BENCH), *map(str, args)], capture_output=True, text=True, timeout=300,
                          cwd=cwd or BENCH.parents[1])


def test_bench_train_speed_end_to_end(toy_dataset, tmp_path):
    """Two eager variants, one round of one step (~15 s: two worker processes)."""
    raw = json.loads(json.dumps(TOY_CFG))
    raw["data"]["path"] = "data/toy"  # the benchmark's --data-root points it at the test's dataset
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(raw))
    out = tmp_path / "report.md"
    r = _bench("--configs", tmp_path / "tiny.yaml", "--variants", "former", "default", "--rounds", "1",
               "--steps-per-round", "1", "--warmup", "1", "--data-root", toy_dataset.root.parent, "--out", out)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert "command: `python benchmarks/bench_train_speed.py" in text and "`uptime` at start:" in text
    assert f"torch {torch.__version__}" in text and "* machine:" in text
    rows = [ln for ln in text.splitlines() if ln.startswith("| former |") or ln.startswith("| default |")]
    assert len(rows) == 2 and rows[0].split("|")[4].strip() == "1.00" and "| × former |" in text


def test_bench_train_speed_names_a_missing_dataset(tmp_path):
    r = _bench("--configs", "configs/phonenums_v3_small.yaml", "--data-root", tmp_path, "--out", tmp_path / "r.md")
    assert r.returncode == 2 and not (tmp_path / "r.md").exists()
    assert r.stderr.startswith("error: no dataset at ") and "phonenums-10k" in r.stderr and "Traceback" not in r.stderr
