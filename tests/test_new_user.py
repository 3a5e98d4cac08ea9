"""Acceptance test of issue 16: a new user's own data, from a folder to a used model, through the CLI only.

Each path is a 2-command setup (`varinv data images|audio DIR`, `varinv train --data DS`) followed by
the two uses (`varinv encode`, `varinv transfer`), all run in-process through `varinv.cli.main()`.
The run folder is then moved (copied elsewhere, original deleted) and used again.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from varinv.data.store import open_dataset
from conftest import run_varinv

sf = pytest.importorskip("soundfile")

SR = 16000
TILE = 16
TILES = 4

# tiny model and training, one thread: a few seconds per run
TINY = ["--steps", 15, "--batch-size", 8,
        "--set", "train.threads=1", "--set", "train.log_every=5", "--set", "train.ckpt_every=15",
        "--set", "model.d_hidden=32", "--set", "model.n_channels=8", "--set", "model.n_layers=2",
        "--set", "model.d_content=8", "--set", "model.d_style=8", "--set", "data.n_eval=16",
        "--no-progress"]


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def varinv(monkeypatch, capsys, *args) -> str:
    """`varinv ARGS` in this process; asserts exit code 0 and returns stdout + stderr."""
    code, out, err = run_varinv(monkeypatch, capsys, *args)
    text = out + err
    assert code == 0, f"varinv {' '.join(map(str, args))} exited {code}:\n{text}"
    return text


def read_codes(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def check_codes(rows: list[dict[str, str]], ds) -> None:
    """One row per fragment of every split, with atom, zc_*, zs_* columns holding numbers."""
    n_frag = sum(ds.manifest["splits"][s]["n"] for s in ds.splits) * ds.n_fragments
    assert len(rows) == n_frag
    cols = list(rows[0])
    assert "atom" in cols
    zc = [c for c in cols if c.startswith("zc_")]
    zs = [c for c in cols if c.startswith("zs_")]
    assert zc and zs, cols
    for r in rows:
        int(r["atom"])
        for c in zc + zs:
            assert np.isfinite(float(r[c]))
    assert len({(r["split"], r["row"], r["position"]) for r in rows}) == n_frag


# -- 1. images ------------------------------------------------------------------------------------
SHAPES = ["square", "cross", "ring", "diagonal"]
COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 70, 230), "yellow": (230, 210, 40)}


def glyph(shape: str, colour: tuple[int, int, int], rng) -> np.ndarray:
    """One 16x16 RGB tile: a shape (content) drawn in a colour (style) on a dark, slightly noisy ground."""
    yy, xx = np.mgrid[:TILE, :TILE]
    if shape == "square":
        mask = (abs(yy - 7.5) < 5) & (abs(xx - 7.5) < 5)
    elif shape == "cross":
        mask = (abs(yy - 7.5) < 2) | (abs(xx - 7.5) < 2)
    elif shape == "ring":
        r = np.hypot(yy - 7.5, xx - 7.5)
        mask = (r > 3.5) & (r < 6.5)
    else:
        mask = abs(yy - xx) < 2
    tile = rng.integers(0, 30, (TILE, TILE, 3)).astype(np.int16)
    tile[mask] = np.asarray(colour) + rng.integers(-15, 16, 3)
    return np.clip(tile, 0, 255).astype(np.uint8)


def make_images(root: Path, n: int = 24) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    src = root / "strips"
    src.mkdir()
    lines = ["sample,fragment,content,style"]
    names = list(COLOURS)
    for i in range(n):
        colour = names[i % len(names)]
        shapes = [SHAPES[k] for k in rng.integers(0, len(SHAPES), TILES)]
        strip = np.concatenate([glyph(s, COLOURS[colour], rng) for s in shapes], axis=1)  # (16, 64, 3)
        Image.fromarray(strip).save(src / f"strip{i:02d}.png")
        lines.append(f"strip{i:02d},,,{colour}")
        lines += [f"strip{i:02d},{j},{s}," for j, s in enumerate(shapes)]
    labels = root / "labels.csv"
    labels.write_text("\n".join(lines) + "\n")
    return src, labels


def test_images_folder_to_codes_and_transfer_then_move_the_run(tmp_path, monkeypatch, capsys):
    src, labels = make_images(tmp_path)
    ds_path, run = tmp_path / "ds", tmp_path / "run"

    # setup: import, train
    varinv(monkeypatch, capsys, "data", "images", src, "--out", ds_path, "--tiles", TILES, "--labels", labels)
    ds = open_dataset(ds_path)  # default splits: 24 strips -> 20 train, 2 val, 2 test
    assert ds.kind == "image" and ds.n_fragments == TILES and ds.fragment_shape == (3, TILE, TILE)
    assert ds.manifest["splits"]["test"]["n"] >= 2
    assert sorted(ds.content_names) == sorted(SHAPES) and sorted(ds.style_names) == sorted(COLOURS)
    varinv(monkeypatch, capsys, "train", "--data", ds_path, "--run", run, *TINY)

    # use: encode, transfer
    codes = tmp_path / "codes.csv"
    varinv(monkeypatch, capsys, "encode", run, ds_path, "-o", codes, "--threads", 1)
    rows = read_codes(codes)
    check_codes(rows, ds)
    assert {"content_name", "style_name"} <= set(rows[0])
    assert {r["style_name"] for r in rows} == set(COLOURS)
    out = tmp_path / "out.png"
    varinv(monkeypatch, capsys, "transfer", run, "--content", "test:0", "--style", "test:1", "-o", out,
           "--threads", 1)
    with Image.open(out) as im:
        im.load()
        w, h = im.size
    assert h == TILE and w == TILES * TILE  # the 4 decoded tiles side by side (--upscale 1)

    # move: copy the run elsewhere, delete the original, use the copy
    moved = tmp_path / "elsewhere" / "my-run"
    shutil.copytree(run, moved)
    shutil.rmtree(run)
    codes2 = tmp_path / "codes-moved.csv"
    varinv(monkeypatch, capsys, "encode", moved, ds_path, "-o", codes2, "--threads", 1)
    rows2 = read_codes(codes2)
    assert [r["atom"] for r in rows2] == [r["atom"] for r in rows]
    assert [r["sample"] for r in rows2] == [r["sample"] for r in rows]
    out2 = tmp_path / "out-moved.png"
    varinv(monkeypatch, capsys, "transfer", moved, "--content", "test:0", "--style", "test:1", "-o", out2,
           "--threads", 1)
    with Image.open(out2) as im2, Image.open(out) as im:
        assert im2.size == im.size
        np.testing.assert_array_equal(np.asarray(im2), np.asarray(im))


# -- 2. audio -------------------------------------------------------------------------------------
WAVES = ["sine", "square", "saw", "triangle", "organ", "bright"]


def wave(kind: str, freq: float, t: np.ndarray) -> np.ndarray:
    ph = (freq * t) % 1.0
    if kind == "sine":
        return np.sin(2 * np.pi * ph)
    if kind == "square":
        return np.sign(np.sin(2 * np.pi * ph)) * 0.6
    if kind == "saw":
        return (2 * ph - 1) * 0.8
    if kind == "triangle":
        return 2 * np.abs(2 * ph - 1) - 1
    if kind == "organ":
        return (np.sin(2 * np.pi * ph) + 0.5 * np.sin(4 * np.pi * ph) + 0.3 * np.sin(6 * np.pi * ph)) / 1.8
    return (np.sin(2 * np.pi * ph) + 0.8 * np.sin(6 * np.pi * ph) + 0.6 * np.sin(10 * np.pi * ph)) / 2.4


def make_audio(root: Path, seconds: int = 8) -> Path:
    """6 files, one timbre each, 8 one-second tones of changing pitch."""
    rng = np.random.default_rng(1)
    src = root / "sounds"
    src.mkdir()
    t = np.arange(SR) / SR
    env = np.minimum(1.0, t / 0.01) * np.minimum(1.0, (1.0 - t) / 0.05)
    pitches = [220.0, 277.2, 329.6, 392.0, 440.0, 523.3]
    for i, kind in enumerate(WAVES):
        tones = [0.4 * env * wave(kind, pitches[k], t) for k in rng.integers(0, len(pitches), seconds)]
        sf.write(src / f"{kind}.wav", np.concatenate(tones).astype(np.float32), SR)
    return src


def test_audio_folder_to_codes_and_wav_transfer(tmp_path, monkeypatch, capsys):
    src = make_audio(tmp_path)
    ds_path, run = tmp_path / "ds", tmp_path / "run"

    # setup: import (6 files x 8 s = 12 samples of 4 one-second fragments), train
    varinv(monkeypatch, capsys, "data", "audio", src, "--out", ds_path, "--window", 1.0, "--length", 4,
           "--bins", 64, "--test", 0.2)  # 12 samples: the default 0.1 would leave 1 for test
    ds = open_dataset(ds_path)
    assert ds.kind == "spectrogram" and ds.n_fragments == 4 and ds.fragment_shape[:2] == (1, 64)
    assert ds.manifest["splits"]["test"]["n"] >= 2
    varinv(monkeypatch, capsys, "train", "--data", ds_path, "--run", run, "--k", 6, *TINY)

    # use: encode, transfer
    codes = tmp_path / "codes.csv"
    varinv(monkeypatch, capsys, "encode", run, ds_path, "-o", codes, "--threads", 1)
    check_codes(read_codes(codes), ds)
    out = tmp_path / "out.wav"
    varinv(monkeypatch, capsys, "transfer", run, "--content", "test:0", "--style", "test:1", "-o", out,
           "--threads", 1, "--griffin-lim-iters", 8)
    y, sr = sf.read(out, dtype="float32")
    assert sr == SR
    assert y.ndim == 1 and y.size >= 4 * 0.9 * SR
    assert np.isfinite(y).all() and np.sqrt(np.mean(y**2)) > 1e-3
