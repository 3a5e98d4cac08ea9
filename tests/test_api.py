"""Portable runs, the Python API (varinv.load_model) and `varinv encode` / `varinv transfer`, as a new
user meets them: train, move the run folder, rename the dataset away, and use the run."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import varinv
from conftest import TOY_CFG, run_varinv, toy_arrays
from varinv import config as config_mod
from varinv.data.store import from_arrays
from varinv.errors import DataError
from varinv.train.trainer import train


def _train(data_root: Path, run: Path, steps: int = 20) -> None:
    raw = json.loads(json.dumps(TOY_CFG))
    raw["data"]["path"] = str(data_root)
    raw["train"].update(steps=steps, ckpt_every=10)
    train(config_mod.from_dict(raw), run, progress=False, tensorboard=False)


@pytest.fixture(scope="module")
def moved(tmp_path_factory):
    """An image run trained on a toy dataset, then moved, with its dataset renamed away."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("api")
    x, c, s = toy_arrays(96)
    xt, ct, st = toy_arrays(24, seed=1)
    from_arrays(root / "toy", {"train": (x, c, s), "test": (xt, ct, st)},
                content_names=list("abcd"), style_names=["red", "green", "blue"])
    _train(root / "toy", root / "run")
    before = varinv.load_model(root / "run").encode(xt[:5])
    (root / "elsewhere").mkdir()
    shutil.move(root / "run", root / "elsewhere" / "run")
    os.rename(root / "toy", root / "toy-renamed")
    return SimpleNamespace(run=root / "elsewhere" / "run", data=root / "toy-renamed", missing=root / "toy",
                           before=before, xt=xt, root=root)


@pytest.fixture(scope="module")
def spec_run(tmp_path_factory):
    """A spectrogram run (float32 (N, 4, 1, 16, 8) log-magnitudes, 16 kHz feature params)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("spec")
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((64, 4, 1, 16, 8)) * 0.5 - 3).astype(np.float32)
    from_arrays(root / "spec", {"train": (x, None, None), "test": (x[:8], None, None)}, kind="spectrogram",
                params={"sr": 16000, "n_fft": 64, "hop": 32, "n_bins": 16})
    _train(root / "spec", root / "run", steps=10)
    return SimpleNamespace(run=root / "run", data=root / "spec", x=x)


_cli = run_varinv


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# -- the Python API ------------------------------------------------------------------------------------
def test_moved_run_loads_and_encodes_without_dataset(moved):
    assert not moved.missing.exists()
    meta = json.loads((moved.run / "model.json").read_text())
    for key in ("method", "config", "fragment_shape", "scale", "kind", "params", "content_names", "style_names",
                "n_fragments", "dataset_hash", "dataset_path"):
        assert key in meta, key
    assert meta["dataset_path"] == str(moved.missing) and meta["scale"] == 255.0 and meta["n_fragments"] == 4

    model = varinv.load_model(moved.run)
    assert model.fragment_shape == (3, 16, 16) and model.kind == "image"
    assert model.content_names == list("abcd") and model.style_names == ["red", "green", "blue"]
    codes = model.encode(moved.xt[:5])
    assert codes.index.shape == (5, 4) and codes.index.dtype == np.int64
    assert codes.content.shape == (5, 4, 8) and codes.style.shape == (5, 4, 8)
    np.testing.assert_array_equal(codes.index, moved.before.index)  # the same codes as before the move
    np.testing.assert_allclose(codes.content, moved.before.content, atol=1e-6)
    assert (codes.index >= 0).all() and (codes.index < model.n_atoms).all()
    # torch input, one sample, and small batches give the same numbers
    one = model.encode(torch.from_numpy(moved.xt[0]), batch_size=1)
    np.testing.assert_array_equal(one.index, codes.index[:1])

    y = model.decode(codes.index, codes.style)
    assert y.shape == (5, 4, 3, 16, 16) and y.dtype == np.float32
    y_mean = model.decode(codes.index, codes.style.mean(1))  # one style per sample
    assert y_mean.shape == y.shape
    z = model.transfer(moved.xt[0], moved.xt[1])
    assert z.shape == (4, 3, 16, 16)
    zb = model.transfer(moved.xt[:3], moved.xt[1])  # a batch of contents, one style donor
    assert zb.shape == (3, 4, 3, 16, 16)
    np.testing.assert_allclose(zb[0], z, atol=1e-5)
    # transfer = decode(atoms of a, mean style of b)
    sb = model.encode(moved.xt[1]).style.mean(1)
    np.testing.assert_allclose(model.decode(codes.index[:1], sb)[0], z, atol=1e-5)

    with pytest.raises(DataError, match="fragments"):
        model.encode(np.zeros((2, 4, 3, 8, 8), np.uint8))
    with pytest.raises(DataError, match="atom ids"):
        model.decode(np.full((1, 4), 99), codes.style[:1])


def test_old_run_without_model_json_loads_from_dataset(moved, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(moved.run, old)
    (old / "model.json").unlink()
    with pytest.raises(DataError, match="model.json"):
        varinv.load_model(old)  # its dataset is gone: the error says what to pass
    model = varinv.load_model(old, data=moved.data)
    assert model.content_names == list("abcd") and model.fragment_shape == (3, 16, 16)
    np.testing.assert_array_equal(model.encode(moved.xt[:5]).index, moved.before.index)
    from varinv.runs import load_run

    cfg, ds, net, state = load_run(old, data=moved.data)
    assert ds is not None and state["step"] == 20


# -- the commands ----------------------------------------------------------------------------------------
def test_cli_encode_csv_and_npz(moved, tmp_path, monkeypatch, capsys):
    code, out, err = _cli(monkeypatch, capsys, "encode", moved.run, moved.data, "-o", tmp_path / "codes.csv",
                          "--threads", "1")
    assert code == 0, err
    assert "480 fragments" in out
    with open(tmp_path / "codes.csv") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    assert header == (["sample", "split", "row", "position", "atom"] + [f"zc_{i}" for i in range(8)]
                      + [f"zs_{i}" for i in range(8)] + ["content", "content_name", "style", "style_name"])
    assert len(body) == (96 + 24) * 4
    first_test = next(r for r in body if r[1] == "test")
    assert first_test[0] == "test:0" and first_test[3] == "0"

    code, _, err = _cli(monkeypatch, capsys, "encode", moved.run, moved.data, "-o", tmp_path / "codes.npz",
                        "--split", "test")
    assert code == 0, err
    z = np.load(tmp_path / "codes.npz")
    assert len(z["atom"]) == 24 * 4 and z["zc"].shape == (96, 8) and z["zs"].shape == (96, 8)
    test_rows = [r for r in body if r[1] == "test"]
    np.testing.assert_array_equal(z["atom"], [int(r[4]) for r in test_rows])
    np.testing.assert_allclose(z["zc"], np.array([[float(v) for v in r[5:13]] for r in test_rows]), rtol=1e-6)
    assert list(z["sample"][:5]) == [r[0] for r in test_rows[:5]]
    assert set(z["content_name"]) <= set("abcd") and set(z["style_name"]) <= {"red", "green", "blue"}
    # the same numbers as the API
    np.testing.assert_array_equal(z["atom"][:20], moved.before.index.reshape(-1))


def test_cli_transfer_png(moved, tmp_path, monkeypatch, capsys):
    from PIL import Image

    out = tmp_path / "t.png"
    code, _, err = _cli(monkeypatch, capsys, "transfer", moved.run, "--content", "test:0", "--style", "train:5",
                        "--data", moved.data, "-o", out)
    assert code == 0, err
    with Image.open(out) as im:
        assert im.size == (4 * 16, 16)  # L fragments of W = 16 side by side


def test_cli_transfer_spectrogram_wav_and_png(spec_run, tmp_path, monkeypatch, capsys):
    import soundfile
    from PIL import Image

    code, _, err = _cli(monkeypatch, capsys, "transfer", spec_run.run, "--content", "train:0", "--style", "test:3",
                        "-o", tmp_path / "x.wav", "--griffin-lim-iters", "4")
    assert code == 0, err
    wave, sr = soundfile.read(tmp_path / "x.wav")
    assert sr == 16000 and wave.ndim == 1 and len(wave) > 4 * 7 * 32 and np.isfinite(wave).all()
    code, _, err = _cli(monkeypatch, capsys, "transfer", spec_run.run, "--content", "train:0", "--style", "test:3",
                        "-o", tmp_path / "x.png")
    assert code == 0, err
    with Image.open(tmp_path / "x.png") as im:
        assert im.size == (4 * 8, 16)


def test_evaluate_names_missing_dataset_and_takes_data(moved, monkeypatch, capsys):
    code, _, err = _cli(monkeypatch, capsys, "evaluate", moved.run, "--no-tsne", "--threads", "1")
    assert code == 2
    line = _one_error_line(err)
    assert str(moved.missing) in line and "--data" in line and "varinv evaluate" in line
    code, out, err = _cli(monkeypatch, capsys, "evaluate", moved.run, "--no-tsne", "--threads", "1",
                          "--data", moved.data)
    assert code == 0, err
    m = json.loads((moved.run / "metrics.json").read_text())
    assert m["dataset"] == str(moved.data) and 0 <= m["codebook_purity"] <= 1


def test_bad_inputs_are_one_error_line(moved, tmp_path, monkeypatch, capsys):
    cases = [
        (["encode", tmp_path / "no-run", moved.data, "-o", tmp_path / "c.csv"], "does not exist"),
        (["encode", moved.run, moved.data, "-o", tmp_path / "c.txt"], ".csv or .npz"),
        (["encode", moved.run, tmp_path, "-o", tmp_path / "c.csv"], "holds no image or audio files"),
        (["encode", moved.run, moved.data, "-o", tmp_path / "c.csv", "--split", "nope"], "no split 'nope'"),
        (["transfer", moved.run, "--content", "test:0", "--style", "test:1", "--data", moved.data,
          "-o", tmp_path / "t.jpg"], ".png or .wav"),
        (["transfer", moved.run, "--content", "test:24", "--style", "test:1", "--data", moved.data,
          "-o", tmp_path / "t.png"], "out of range"),
        (["transfer", moved.run, "--content", "test0", "--style", "test:1", "--data", moved.data,
          "-o", tmp_path / "t.png"], "SPLIT:INDEX"),
        (["transfer", moved.run, "--content", "test:0", "--style", "test:1", "--data", moved.data,
          "-o", tmp_path / "t.wav"], "write a .png"),
        (["transfer", moved.run, "--content", "test:0", "--style", "test:1", "-o", tmp_path / "t.png"],
         "pass one with --data"),
    ]
    for args, expected in cases:
        code, out, err = _cli(monkeypatch, capsys, *args)
        assert code == 2, (args, out, err)
        assert expected in _one_error_line(err), (args, err)
    assert not list(tmp_path.glob("c.*")) and not list(tmp_path.glob("t.*"))


def test_version():
    exe = Path(sys.executable).parent / "varinv"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "varinv"]
    res = subprocess.run(cmd + ["--version"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"varinv {varinv.__version__}"
