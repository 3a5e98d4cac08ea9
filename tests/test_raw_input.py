"""Raw files as input of a trained run: `varinv encode RUN INPUT` and `varinv transfer RUN --content A
--style B` with image or audio files/folders read with the run's own settings (varinv.api.read_raw)."""

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import varinv
from conftest import TOY_CFG, one_error_line, run_varinv, toy_arrays
from varinv import config as config_mod
from varinv.api import encode_raw, read_raw
from varinv.data import folders
from varinv.data.store import from_arrays
from varinv.errors import DataError
from varinv.train.trainer import train

sf = pytest.importorskip("soundfile")
SR = 16000
AUDIO = folders.AudioSettings(window=0.25, bins=16, length=2)  # fragments (1, 16, 8), L = 2


def _train(data_root: Path, run: Path, steps: int = 4) -> None:
    raw = json.loads(json.dumps(TOY_CFG))
    raw["data"]["path"] = str(data_root)
    raw["train"].update(steps=steps, ckpt_every=steps)
    train(config_mod.from_dict(raw), run, progress=False, tensorboard=False)


def _tone(freq: float, seconds: float, sr: int = SR) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (0.4 * np.sin(2 * np.pi * freq * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def _wide(sample: np.ndarray) -> np.ndarray:
    """(L, 3, H, W) uint8 → one (H, L*W, 3) image with the fragments side by side (layout a)."""
    return np.concatenate(list(sample.transpose(0, 2, 3, 1)), axis=1)


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """A tiny image run (fragments 3x16x16, L = 4), trained for a few steps."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("rawimg")
    x, c, s = toy_arrays(32)
    from_arrays(root / "toy", {"train": (x, c, s), "test": (x[:4], c[:4], s[:4])})
    _train(root / "toy", root / "run")
    return SimpleNamespace(run=root / "run", x=x, model=varinv.load_model(root / "run"))


@pytest.fixture(scope="module")
def audio_run(tmp_path_factory):
    """A tiny spectrogram run on imported audio (0.25-s windows, 16 bins, L = 2)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("rawaudio")
    (root / "wavs").mkdir()
    for i in range(3):
        sf.write(root / "wavs" / f"t{i}.wav", _tone(300 + 150 * i, 2.0), SR)
    folders.import_audio(root / "wavs", root / "ds", AUDIO)
    _train(root / "ds", root / "run")
    return SimpleNamespace(run=root / "run", model=varinv.load_model(root / "run"))


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path) as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def test_encode_raw_images_both_layouts(image_run, tmp_path, monkeypatch, capsys):
    x, model = image_run.x, image_run.model
    a = tmp_path / "a"  # layout (a): one wide image per sample, cut into the run's L = 4 tiles
    a.mkdir()
    for i in range(3):
        Image.fromarray(_wide(x[i])).save(a / f"s{i}.png")
    b = tmp_path / "b"  # layout (b): one sub-folder per sample, one image per fragment
    for i in range(2):
        (b / f"seq{i}").mkdir(parents=True)
        for k in range(4):
            Image.fromarray(x[i, k].transpose(1, 2, 0)).save(b / f"seq{i}" / f"frag{k}.png")
    # one more sample in (b): 32x32 grey fragments, 6 of them (resized, made RGB, windows of L = 4)
    (b / "zbig").mkdir()
    for k in range(6):
        Image.fromarray(np.full((32, 32), 40 * k, np.uint8), "L").save(b / "zbig" / f"{k}.png")

    want = model.encode(x[:3])
    code, out, err = run_varinv(monkeypatch, capsys, "encode", image_run.run, a, "-o", tmp_path / "a.csv")
    assert code == 0, err
    assert "12 fragments of 3 samples" in out
    header, body = _read_csv(tmp_path / "a.csv")
    assert header == (["sample", "row", "fragment", "position", "atom"] + [f"zc_{i}" for i in range(8)]
                      + [f"zs_{i}" for i in range(8)])  # no split, no labels
    assert [r[0] for r in body] == [f"s{i}" for i in range(3) for _ in range(4)]
    assert [int(r[3]) for r in body] == list(range(4)) * 3
    np.testing.assert_array_equal([int(r[4]) for r in body], want.index.reshape(-1))  # as encoding the arrays
    np.testing.assert_allclose([[float(v) for v in r[5:13]] for r in body], want.content.reshape(12, 8),
                               rtol=1e-5, atol=1e-6)

    code, out, err = run_varinv(monkeypatch, capsys, "encode", image_run.run, b, "-o", tmp_path / "b.npz")
    assert code == 0, err
    z = np.load(tmp_path / "b.npz")
    assert list(z["sample"]) == ["seq0"] * 4 + ["seq1"] * 4 + ["zbig"] * 4
    np.testing.assert_array_equal(z["atom"][:8], want.index[:2].reshape(-1))
    assert z["fragment"].tolist() == [0, 1, 2, 3] * 3 and z["zs"].shape == (12, 8)
    assert "split" not in z and "content" not in z

    raw = read_raw(model, b)  # the API: uint8 (N, L, C, H, W) in the run's shape, grey made RGB
    assert raw.x.shape == (3, 4, 3, 16, 16) and raw.x.dtype == np.uint8
    assert (raw.x[2, :, 0] == raw.x[2, :, 1]).all() and raw.rows[2] == ("zbig", 0)
    arrays, _ = encode_raw(model, a / "s1.png")  # a single image file is one sample
    np.testing.assert_array_equal(arrays["atom"], want.index[1])


def test_transfer_between_raw_pngs(image_run, tmp_path, monkeypatch, capsys):
    x, model = image_run.x, image_run.model
    Image.fromarray(_wide(x[0])).save(tmp_path / "a.png")
    Image.fromarray(_wide(x[5])).save(tmp_path / "b.png")
    (tmp_path / "frags").mkdir()
    for k in range(3):  # a folder of fragments is one sample (of any length)
        Image.fromarray(x[5, k].transpose(1, 2, 0)).save(tmp_path / "frags" / f"{k}.png")
    out = tmp_path / "t.png"
    code, text, err = run_varinv(monkeypatch, capsys, "transfer", image_run.run, "--content", tmp_path / "a.png",
                                 "--style", tmp_path / "b.png", "-o", out)
    assert code == 0, err
    assert "a.png" in text and "b.png" in text
    want = (np.clip(model.transfer(x[0], x[5]), 0, 1) * 255).round()
    with Image.open(out) as im:
        got = np.asarray(im.convert("RGB"), np.float64)
    assert got.shape == (16, 4 * 16, 3)
    assert np.abs(got - _wide(want)).max() <= 1
    code, _, err = run_varinv(monkeypatch, capsys, "transfer", image_run.run, "--content", tmp_path / "a.png",
                              "--style", tmp_path / "frags", "-o", tmp_path / "t2.png")
    assert code == 0, err


def test_encode_raw_audio_folder(audio_run, tmp_path, monkeypatch, capsys):
    src = tmp_path / "wavs"
    src.mkdir()
    sf.write(src / "low.wav", _tone(220, 1.0), SR)  # 4 fragments of 0.25 s: 2 samples of L = 2
    sf.write(src / "high.wav", _tone(660, 1.1, 22050), 22050)  # resampled to 16 kHz
    code, out, err = run_varinv(monkeypatch, capsys, "encode", audio_run.run, src, "-o", tmp_path / "c.csv")
    assert code == 0, err
    assert "8 fragments of 4 samples" in out, out
    header, body = _read_csv(tmp_path / "c.csv")
    assert header[:5] == ["sample", "row", "fragment", "position", "atom"] and "content" not in header
    assert [r[0] for r in body] == ["high"] * 4 + ["low"] * 4
    assert [int(r[2]) for r in body] == [0, 1, 2, 3] * 2 and [int(r[3]) for r in body] == [0, 1] * 4
    # the run's own settings, exactly as `varinv data audio` would import the folder
    raw = read_raw(audio_run.model, src)
    np.testing.assert_array_equal(raw.x, folders.read_audio(src, AUDIO).x)
    # a run whose dataset did not record its cutting (a benchmark): windows of the fragment's duration
    model = varinv.load_model(audio_run.run)
    for k in ("window", "segmentation", "length", "onsets"):
        model.meta["params"].pop(k)
    assert read_raw(model, src / "low.wav").x.shape == (2, 2, 1, 16, 8)
    model.meta["params"]["n_fft"] = 64
    with pytest.raises(DataError, match="n_fft 64"):
        read_raw(model, src)
    # transfer: an audio file is one sample of all its fragments
    code, _, err = run_varinv(monkeypatch, capsys, "transfer", audio_run.run, "--content", src / "low.wav",
                              "--style", src / "high.wav", "-o", tmp_path / "t.wav", "--griffin-lim-iters", "2")
    assert code == 0, err
    wave, sr = sf.read(tmp_path / "t.wav")
    assert sr == SR and np.isfinite(wave).all() and len(wave) > 4 * 0.2 * SR


def test_raw_input_errors(image_run, audio_run, tmp_path, monkeypatch, capsys):
    x = image_run.x
    wavs = tmp_path / "wavs"
    wavs.mkdir()
    sf.write(wavs / "a.wav", _tone(300, 1.0), SR)
    few = tmp_path / "few"  # layout (b): a sample with 2 fragments for L = 4
    for name, n in (("ok", 4), ("short", 2)):
        (few / name).mkdir(parents=True)
        for k in range(n):
            Image.fromarray(x[0, k].transpose(1, 2, 0)).save(few / name / f"{k}.png")
    bad = tmp_path / "bad"
    bad.mkdir()
    Image.fromarray(_wide(x[0])).save(bad / "good.png")
    (bad / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    short = tmp_path / "short"
    short.mkdir()
    sf.write(short / "blip.wav", _tone(300, 0.3), SR)  # one fragment, L = 2
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "o.csv"
    cases = [
        (["encode", image_run.run, wavs], ["wavs", "audio files", "trained on image data", "pass image files"]),
        (["encode", audio_run.run, few], ["few", "image files", "trained on spectrogram data"]),
        (["encode", image_run.run, few], ["short", "too few fragments (2)", "L = 4", "add fragment images"]),
        (["encode", image_run.run, bad], ["broken.png", "cannot be read as an image", "fix or remove the file"]),
        (["encode", audio_run.run, short], ["blip.wav", "1 fragment(s)", "L = 2", "remove it"]),
        (["encode", image_run.run, empty], ["empty", "holds no image or audio files", "dataset folder"]),
        (["encode", image_run.run, tmp_path / "nowhere"], ["nowhere", "does not exist"]),
        (["encode", image_run.run, bad, "--split", "test"], ["--split", "raw files"]),
    ]
    for args, needles in cases:
        code, o, err = run_varinv(monkeypatch, capsys, *args, "-o", out)
        one_error_line(code, o + err, *needles)
        assert not out.exists(), args
    t = tmp_path / "t.png"
    for args, needles in [
        (["--content", wavs / "a.wav", "--style", bad / "good.png"], ["a.wav", "is an audio file"]),
        (["--content", bad / "good.png", "--style", tmp_path / "nope.png"], ["nope.png", "neither an existing"]),
        (["--content", bad / "good.png", "--style", bad / "broken.png"], ["broken.png", "cannot be read"]),
    ]:
        code, o, err = run_varinv(monkeypatch, capsys, "transfer", image_run.run, *args, "-o", t)
        one_error_line(code, o + err, *needles)
        assert not t.exists(), args
