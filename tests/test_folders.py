"""Folder importers (`varinv data images DIR`, `varinv data audio DIR`; src/varinv/data/folders.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from varinv.data import folders
from varinv.data.folder_common import file_key
from varinv.data.store import open_dataset
from varinv.errors import ConfigError, DataError
from conftest import one_error_line, run_varinv

sf = pytest.importorskip("soundfile")

SR = 16000
HOP = 512


# -- helpers -------------------------------------------------------------------------------------
def cli(monkeypatch, capsys, *args) -> tuple[int, str]:
    """`varinv ARGS` in-process: (exit code, stdout + stderr)."""
    code, out, err = run_varinv(monkeypatch, capsys, *args)
    return code, out + err


def ok(monkeypatch, capsys, *args) -> str:
    code, text = cli(monkeypatch, capsys, *args)
    assert code == 0, text
    return text


def rows_by_name(ds) -> dict[str, tuple[str, int]]:
    """sample name -> (split, row) for samples that are whole sources (no windows)."""
    out = {}
    for split, names in ds.manifest["params"]["samples"].items():
        for i, n in enumerate(names):
            out[n] = (split, i)
    return out


def save(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def tone(freq: float, seconds: float, sr: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def bursts(times, seconds: float, sr: int = SR, dur: float = 0.25, abrupt: bool = False) -> np.ndarray:
    """Tone bursts (5 ms attack, exponential decay, 30 ms fade unless abrupt) starting at ``times``."""
    x = np.zeros(int(seconds * sr), np.float32)
    t = np.arange(int(dur * sr)) / sr
    env = np.minimum(1.0, t / 0.005) * np.exp(-4 * t)
    if not abrupt:
        nf = int(0.03 * sr)
        env[-nf:] *= np.linspace(1, 0, nf)
    for i, s in enumerate(times):
        n = int(round(s * sr))
        b = 0.5 * env * (np.sin(2 * np.pi * (300 + 80 * i) * t) + 0.3 * np.sin(4 * np.pi * (300 + 80 * i) * t))
        x[n : n + b.size] += b[: x.size - n]
    return x


def ogg_ok(tmp_path: Path) -> bool:
    try:
        sf.write(tmp_path / "probe.ogg", np.zeros(1600, np.float32), SR, format="OGG", subtype="VORBIS")
        return sf.read(tmp_path / "probe.ogg")[0].size > 0
    except Exception:
        return False
    finally:
        (tmp_path / "probe.ogg").unlink(missing_ok=True)


# -- images --------------------------------------------------------------------------------------
def test_images_one_file_per_sample(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(0)
    src = tmp_path / "imgs"
    imgs = {}
    for i in range(10):
        imgs[f"img{i}"] = rng.integers(0, 256, (12, 42, 3), dtype=np.uint8)  # 42 = 4 * 10 + 2 dropped columns
        save(src / f"img{i}.png", imgs[f"img{i}"])
    (src / "notes.txt").write_text("ignored")
    labels = tmp_path / "labels.csv"
    labels.write_text("sample,fragment,content,style\n"
                      "img0,,,<b>x</b>\nimg1,,,plain & simple\n"
                      "img0,2,seven,\nimg1,0,<i>one</i>,\nimg1,3,seven,\n")
    text = ok(monkeypatch, capsys, "data", "images", src, "--out", tmp_path / "ds", "--tiles", 4,
              "--labels", labels, "--seed", 3)
    assert "wrote images" in text
    ds = open_dataset(tmp_path / "ds")
    ds.verify()
    assert ds.kind == "image" and ds.n_fragments == 4 and ds.fragment_shape == (3, 12, 10)
    assert {s: ds.manifest["splits"][s]["n"] for s in ds.splits} == {"train": 8, "val": 1, "test": 1}
    assert ds.content_names == ["<i>one</i>", "seven"] and ds.style_names == ["<b>x</b>", "plain & simple"]
    assert ds.manifest["params"]["channels"] == "rgb" and ds.manifest["seed"] == 3
    where = rows_by_name(ds)
    for name, (split, i) in where.items():
        sp = ds.split(name=split)
        assert sp.x.dtype == np.uint8 and sp.style.ndim == 1
        for j in range(4):  # tile j = columns 10j .. 10j+9, (C, H, W)
            np.testing.assert_array_equal(sp.x[i, j], imgs[name][:, 10 * j : 10 * j + 10].transpose(2, 0, 1))
    split, i = where["img0"]
    sp = ds.split(split)
    assert sp.content[i].tolist() == [-1, -1, 1, -1] and sp.style[i] == 0
    split, i = where["img1"]
    sp = ds.split(split)
    assert sp.content[i].tolist() == [0, -1, -1, 1] and sp.style[i] == 1
    split, i = where["img5"]
    assert ds.split(split).content[i].tolist() == [-1] * 4 and ds.split(split).style[i] == -1
    raw = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert raw["style_names"][0] == "<b>x</b>"  # verbatim, escaping is the report's job

    # same seed, same split; another seed, another split
    ok(monkeypatch, capsys, "data", "images", src, "--out", tmp_path / "ds2", "--tiles", 4, "--seed", 3)
    assert open_dataset(tmp_path / "ds2").manifest["params"]["samples"] == ds.manifest["params"]["samples"]


def test_images_folder_per_sample_natural_order_grey_and_windows(tmp_path, monkeypatch, capsys):
    src = tmp_path / "seqs"
    values = {"frag1": 10, "frag2": 20, "frag10": 100, "frag3": 30}
    for s in range(5):
        for stem, v in values.items():
            save(src / f"s{s}" / f"{stem}.png", np.full((6, 5), v + s, np.uint8))
    labels = tmp_path / "labels.csv"
    labels.write_text("sample,fragment,content,style\ns0,frag10.png,ten,\ns0,0,one,\ns0,,,A\ns2,frag2.png,two,B\n")
    ok(monkeypatch, capsys, "data", "images", src, "--out", tmp_path / "ds", "--labels", labels,
       "--val", 0.2, "--test", 0)
    ds = open_dataset(tmp_path / "ds")
    assert ds.fragment_shape == (1, 6, 5) and ds.n_fragments == 4 and ds.manifest["params"]["channels"] == "grey"
    assert {s: ds.manifest["splits"][s]["n"] for s in ds.splits} == {"train": 4, "val": 1}  # test 0: absent
    where = rows_by_name(ds)
    for name, (split, i) in where.items():
        s = int(name[1:])
        assert ds.split(split).x[i, :, 0, 0, 0].tolist() == [10 + s, 20 + s, 30 + s, 100 + s]  # natural order
    split, i = where["s0"]
    sp = ds.split(split)
    assert ds.content_names == ["one", "ten", "two"] and ds.style_names == ["A", "B"]
    assert sp.content[i].tolist() == [0, -1, -1, 1]
    split2, i2 = where["s2"]
    # style per fragment where a sample has mixed styles: (N, L)
    assert ds.split(split2).style_per_fragment[i2].tolist() == [-1, 1, -1, -1]
    assert ds.split(split).style_per_fragment[i].tolist() == [0, 0, 0, 0]

    # forced rgb on grey images: 3 equal channels
    ok(monkeypatch, capsys, "data", "images", src, "--out", tmp_path / "rgb", "--channels", "rgb")
    x = open_dataset(tmp_path / "rgb").split("train").x
    assert x.shape[2] == 3 and (x[:, :, 0] == x[:, :, 2]).all()

    # different fragment counts: windows of --length, leftovers dropped
    save(src / "s9" / "a.png", np.zeros((6, 5), np.uint8))
    for k in range(1, 9):
        save(src / "s9" / f"b{k}.png", np.full((6, 5), k, np.uint8))  # 9 fragments
    code, text = cli(monkeypatch, capsys, "data", "images", src, "--out", tmp_path / "bad")
    one_error_line(code, text, "s9", "has 9 fragments", "--length 4")
    ok(monkeypatch, capsys, "data", "images", src, "--out", tmp_path / "win", "--length", 3, "--val", 0, "--test", 0)
    ds = open_dataset(tmp_path / "win")
    assert ds.n_fragments == 3 and ds.manifest["splits"]["train"]["n"] == 5 * 1 + 3  # 4 // 3 = 1 each, 9 // 3 = 3
    firsts = ds.manifest["params"]["first_fragment"]["train"]
    names = ds.manifest["params"]["samples"]["train"]
    assert sorted(f for n, f in zip(names, firsts) if n == "s9") == [0, 3, 6]
    x = ds.split("train").x
    row = [i for i, (n, f) in enumerate(zip(names, firsts)) if n == "s9" and f == 3][0]
    assert x[row, :, 0, 0, 0].tolist() == [3, 4, 5]


def test_images_size_and_channels(tmp_path, monkeypatch, capsys):
    src = tmp_path / "imgs"
    colour = np.zeros((20, 40, 3), np.uint8)
    colour[..., 0] = 200
    colour[..., 1] = 100
    colour[..., 2] = 50
    save(src / "a.png", colour)
    save(src / "b.jpg", np.full((30, 60, 3), 90, np.uint8))
    save(src / "c.bmp", np.full((20, 40), 90, np.uint8))
    rgba = np.zeros((20, 40, 4), np.uint8)
    rgba[..., 3] = 0  # fully transparent: white
    save(src / "d.png", rgba)
    code, text = cli(monkeypatch, capsys, "data", "images", src, "--out", tmp_path / "x", "--tiles", 2)
    one_error_line(code, text, "b.jpg", "30x30", "--size 20x20")
    assert not (tmp_path / "x").exists()
    ok(monkeypatch, capsys, "data", "images", src, "--out", tmp_path / "ds", "--tiles", 2, "--size", "8x12",
       "--val", 0, "--test", 0)
    ds = open_dataset(tmp_path / "ds")
    x = ds.split("train").x
    assert x.shape == (4, 2, 3, 8, 12) and x.dtype == np.uint8 and ds.manifest["params"]["size"] == [8, 12]
    names = ds.manifest["params"]["samples"]["train"]
    a = x[names.index("a")]
    assert (a[:, 0] == 200).all() and (a[:, 1] == 100).all() and (a[:, 2] == 50).all()  # resizing keeps a flat colour
    assert (x[names.index("d")] == 255).all()
    ok(monkeypatch, capsys, "data", "images", src, "--out", tmp_path / "grey", "--tiles", 2, "--size", "8x12",
       "--channels", "grey", "--val", 0, "--test", 0)
    g = open_dataset(tmp_path / "grey").split("train").x
    assert g.shape == (4, 2, 1, 8, 12)
    assert int(g[names.index("a"), 0, 0, 0, 0]) == round(200 * 0.299 + 100 * 0.587 + 50 * 0.114)
    assert (g[names.index("c")] == 90).all()


# -- audio ---------------------------------------------------------------------------------------
def test_audio_windows_resampling_and_labels(tmp_path, monkeypatch, capsys):
    src = tmp_path / "audio"
    (src / "sub").mkdir(parents=True)
    sr44 = 44100
    a440 = tone(440.0, 8.6, sr44)
    sf.write(src / "a440.wav", np.stack([a440, a440], 1), sr44)  # stereo 44.1 kHz: 8 windows -> 2 samples
    sf.write(src / "sub" / "b.flac", tone(700.0, 5.3, SR), SR)  # 5 windows -> 1 sample, 1 left over
    have_ogg = ogg_ok(tmp_path)
    if have_ogg:
        sf.write(src / "c.ogg", tone(1000.0, 4.1, SR), SR, format="OGG", subtype="VORBIS")
    labels = tmp_path / "labels.csv"
    labels.write_text("sample,fragment,content,style\na440,,A4,sine\nb,4,,flute\nb,1,high,\n")
    ok(monkeypatch, capsys, "data", "audio", src, "--out", tmp_path / "ds", "--length", 4, "--labels", labels,
       "--val", 0, "--test", 0)
    ds = open_dataset(tmp_path / "ds")
    n = 3 + have_ogg
    x = ds.split("train").x
    assert ds.kind == "spectrogram" and x.dtype == np.float16 and x.shape == (n, 4, 1, 128, 32)
    p = ds.manifest["params"]
    assert (p["sr"], p["n_fft"], p["hop"], p["n_bins"], p["frames"], p["window"]) == (16000, 1024, 512, 128, 32, 1.0)
    assert p["segmentation"] == "windows" and p["onsets"] is None
    assert folders.AudioSettings.from_params(p) == folders.AudioSettings(length=4)
    names, firsts = p["samples"]["train"], p["first_fragment"]["train"]
    assert sorted(zip(names, firsts))[:3] == [("a440", 0), ("a440", 4), ("b", 0)]
    expected_bin = {"a440": round(440 / 15.625), "b": round(700 / 15.625), "c": round(1000 / 15.625)}
    for i, name in enumerate(names):
        spec = x[i, :, 0, :, 1:-1].astype(np.float32).mean(axis=(0, 2))  # inner frames
        assert int(np.argmax(spec)) == expected_bin[name], name
    sp = ds.split("train")
    assert ds.content_names == ["A4", "high"] and ds.style_names == ["flute", "sine"]
    for i, (name, f0) in enumerate(zip(names, firsts)):
        if name == "a440":
            assert sp.content[i].tolist() == [0] * 4 and sp.style_per_fragment[i].tolist() == [1] * 4
        if name == "b":  # fragment 4 lies in the dropped leftover: ignored
            assert sp.content[i].tolist() == [-1, 1, -1, -1] and sp.style_per_fragment[i].tolist() == [-1] * 4

    # 0.5-s windows: 1 + 8000 // 512 = 16 frames; --bins
    ok(monkeypatch, capsys, "data", "audio", src, "--out", tmp_path / "half", "--window", 0.5, "--bins", 64,
       "--length", 8, "--val", 0, "--test", 0)
    half = open_dataset(tmp_path / "half")
    assert half.fragment_shape == (1, 64, 16) and half.manifest["params"]["frames"] == 16


def test_audio_onsets_cli(tmp_path, monkeypatch, capsys):
    src = tmp_path / "audio"
    src.mkdir()
    times = [0.2 + 0.45 * k for k in range(8)]
    sf.write(src / "melody.wav", bursts(times, 4.2), SR)
    sf.write(src / "fast.wav", bursts([0.1 + 0.3 * k for k in range(5)], 2.0, sr=SR), SR)  # 5 onsets -> 1 sample
    ok(monkeypatch, capsys, "data", "audio", src, "--out", tmp_path / "ds", "--onsets", "--length", 4,
       "--window", 0.25, "--min-gap", 0.1, "--val", 0, "--test", 0)
    ds = open_dataset(tmp_path / "ds")
    p = ds.manifest["params"]
    assert p["segmentation"] == "onsets" and p["onsets"]["min_gap"] == 0.1
    assert p["fragments_per_file"] == {"fast": 5, "melody": 8}
    assert ds.split("train").x.shape == (3, 4, 1, 128, 1 + 4000 // 512)
    # each fragment starts at its onset: the first frame is not silent
    x = ds.split("train").x.astype(np.float32)
    assert (x[:, :, 0, :, 1].max(axis=-1) > -5).all()


@pytest.mark.parametrize("sr", [SR, 44100])
def test_onset_detector_known_onsets(sr):
    rng = np.random.default_rng(1)
    times = np.array([0.1013, 0.52, 0.9771, 1.43, 1.8333, 2.31, 2.9, 3.37])
    clicks = np.zeros(int(3.8 * sr), np.float32)
    for s in times:
        n = int(round(s * sr))
        clicks[n : n + 40] += 0.8 * rng.standard_normal(40).astype(np.float32)
    for name, sig in [("clicks", clicks), ("bursts", bursts(times, 3.8, sr)),
                      ("abrupt bursts", bursts(times, 3.8, sr, abrupt=True)),
                      ("bursts in noise", bursts(times, 3.8, sr) + 1e-3 * rng.standard_normal(int(3.8 * sr)))]:
        found = folders.detect_onsets(sig.astype(np.float32), sr) / SR
        assert len(found) == len(times), (name, found)
        err = np.abs(found[:, None] - times[None]).min(axis=0)
        assert (err <= HOP / SR).all(), (name, err)


def test_onset_detector_edge_cases():
    assert folders.detect_onsets(np.zeros(16000, np.float32)).size == 0
    assert folders.detect_onsets(tone(440, 2.0, SR)).tolist() == [0]  # a sound from the start: one onset at 0
    env = folders.onset_envelope(bursts([0.3, 0.9], 1.5))
    assert env.min() >= 0 and env.max() == 1.0


# -- bad input -----------------------------------------------------------------------------------
def _grid(src: Path, n: int = 4, shape=(8, 24), ext: str = "png") -> None:
    for i in range(n):
        save(src / f"im{i}.{ext}", np.full(shape, 40 * i, np.uint8))


def _bad_images(tmp_path: Path, case: str):
    """(source folder, extra args, words the one error line must hold)."""
    src = tmp_path / "src"
    src.mkdir()
    args = ["--tiles", 3]
    if case == "corrupt":
        _grid(src)
        (src / "im9.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
        return src, args, ["im9.png", "cannot be read", "--skip-bad"]
    if case == "truncated":
        _grid(src)
        data = (src / "im0.png").read_bytes()
        (src / "im0.png").write_bytes(data[: len(data) // 2])
        return src, args, ["im0.png", "cannot be read"]
    if case == "mixed sizes":
        _grid(src)
        save(src / "im7.png", np.zeros((9, 24), np.uint8))
        return src, args, ["im7.png", "9x8", "--size 8x8"]
    if case == "too narrow":
        _grid(src)
        save(src / "thin.png", np.zeros((8, 2), np.uint8))
        return src, args, ["thin.png", "too narrow", "--tiles 3"]
    if case == "too few fragments":
        for s in range(3):
            for k in range(3):
                save(src / f"s{s}" / f"{k}.png", np.zeros((4, 4), np.uint8))
        save(src / "short" / "0.png", np.zeros((4, 4), np.uint8))
        return src, ["--length", 3], ["short", "too few fragments"]
    if case == "empty dir":
        return src, args, ["src", "no images"]
    if case == "missing dir":
        return tmp_path / "nowhere", args, ["nowhere", "does not exist"]
    if case == "bad size":
        _grid(src)
        return src, [*args, "--size", "12by4"], ["'12by4'", "HxW"]
    if case == "labels columns":
        _grid(src)
        (tmp_path / "l.csv").write_text("sample,content,style\nim0,a,b\n")
        return src, [*args, "--labels", tmp_path / "l.csv"], ["l.csv", "fragment", "header"]
    if case == "labels unknown sample":
        _grid(src)
        (tmp_path / "l.csv").write_text("sample,fragment,content,style\nim0,0,a,b\nim42,,a,\n")
        return src, [*args, "--labels", tmp_path / "l.csv"], ["l.csv line 3", "'im42'"]
    if case == "mixed layout":
        _grid(src)
        save(src / "seq" / "0.png", np.zeros((4, 4), np.uint8))
        return src, args, ["mixes", "im0.png", "seq"]
    if case == "no tiles":
        _grid(src)
        return src, [], ["--tiles L"]
    if case == "too few samples":
        _grid(src, n=1)
        return src, args, ["train split", "at least 2"]
    raise AssertionError(case)


IMAGE_CASES = ["corrupt", "truncated", "mixed sizes", "too narrow", "too few fragments", "empty dir", "missing dir",
               "bad size", "labels columns", "labels unknown sample", "mixed layout", "no tiles", "too few samples"]


@pytest.mark.parametrize("case", IMAGE_CASES)
def test_images_bad_input(tmp_path, monkeypatch, capsys, case):
    src, args, needles = _bad_images(tmp_path, case)
    out = tmp_path / "out"
    code, text = cli(monkeypatch, capsys, "data", "images", src, "--out", out, *args)
    one_error_line(code, text, *needles)
    assert not out.exists() and not (tmp_path / "out.tmp-writing").exists()
    # an existing dataset folder is left untouched, even with --overwrite
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, text = cli(monkeypatch, capsys, "data", "images", src, "--out", out, *args, "--overwrite")
    one_error_line(code, text, *needles)
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"


def _bad_audio(tmp_path: Path, case: str):
    src = tmp_path / "src"
    src.mkdir()
    args = ["--length", 3]
    if case != "empty dir":
        for i in range(3):
            sf.write(src / f"ok{i}.wav", tone(300 + 100 * i, 3.2, SR), SR)
    if case == "corrupt":
        (src / "bad.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
        return src, args, ["bad.wav", "cannot be read as audio"]
    if case == "too short":
        sf.write(src / "blip.flac", tone(440, 0.3, SR), SR)
        return src, args, ["blip.flac", "too short for one fragment", "--window"]
    if case == "too few fragments":
        sf.write(src / "two.wav", tone(440, 2.5, SR), SR)
        return src, args, ["two.wav", "2 fragment(s)", "--length 3"]
    if case == "empty dir":
        (src / "readme.txt").write_text("no audio here")
        return src, args, ["no audio files"]
    if case == "missing dir":
        return tmp_path / "nowhere", args, ["nowhere", "does not exist"]
    if case == "labels columns":
        (tmp_path / "l.csv").write_text("name,fragment,content,style\n")
        return src, [*args, "--labels", tmp_path / "l.csv"], ["l.csv", "sample"]
    if case == "bad window":
        return src, [*args, "--window", -1], ["--window -1.0"]
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["corrupt", "too short", "too few fragments", "empty dir", "missing dir",
                                  "labels columns", "bad window"])
def test_audio_bad_input(tmp_path, monkeypatch, capsys, case):
    src, args, needles = _bad_audio(tmp_path, case)
    out = tmp_path / "out"
    code, text = cli(monkeypatch, capsys, "data", "audio", src, "--out", out, *args)
    one_error_line(code, text, *needles)
    assert not out.exists()
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, text = cli(monkeypatch, capsys, "data", "audio", src, "--out", out, *args, "--overwrite")
    one_error_line(code, text, *needles)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_existing_out_needs_overwrite(tmp_path, monkeypatch, capsys):
    src = tmp_path / "src"
    _grid(src)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, text = cli(monkeypatch, capsys, "data", "images", src, "--out", out, "--tiles", 3)
    one_error_line(code, text, "already exists", "--overwrite")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    # --overwrite replaces a varinv dataset, never a folder of other files (issue 18)
    code, text = cli(monkeypatch, capsys, "data", "images", src, "--out", out, "--tiles", 3, "--overwrite")
    one_error_line(code, text, "not a varinv dataset", "--overwrite")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    (out / "keep.txt").unlink()  # an empty folder may be written into
    ok(monkeypatch, capsys, "data", "images", src, "--out", out, "--tiles", 3, "--overwrite")
    ok(monkeypatch, capsys, "data", "images", src, "--out", out, "--tiles", 2, "--overwrite")
    assert (out / "manifest.json").exists() and open_dataset(out).n_fragments == 2


def test_skip_bad(tmp_path, monkeypatch, capsys):
    src = tmp_path / "imgs"
    _grid(src, n=5)
    (src / "broken.png").write_bytes(b"garbage")
    (src / "broken2.jpg").write_bytes(b"")
    save(src / "odd.png", np.zeros((9, 24), np.uint8))
    code, text = cli(monkeypatch, capsys, "data", "images", src, "--out", tmp_path / "ds", "--tiles", 3,
                     "--skip-bad", "--val", 0, "--test", 0)
    assert code == 0, text
    note = [ln for ln in text.splitlines() if ln.startswith("skipped")]
    assert len(note) == 1 and note[0].startswith("skipped 3 bad files (first: ") and "broken.png" in note[0]
    ds = open_dataset(tmp_path / "ds")
    assert ds.manifest["splits"]["train"]["n"] == 5 and ds.manifest["params"]["n_skipped"] == 3
    assert len(ds.manifest["params"]["skipped"]) == 3

    asrc = tmp_path / "audio"
    asrc.mkdir()
    for i in range(2):
        sf.write(asrc / f"ok{i}.wav", tone(300, 2.1, SR), SR)
    (asrc / "bad.wav").write_bytes(b"RIFF")
    sf.write(asrc / "short.wav", tone(300, 0.2, SR), SR)
    code, text = cli(monkeypatch, capsys, "data", "audio", asrc, "--out", tmp_path / "ads", "--length", 2,
                     "--skip-bad", "--val", 0, "--test", 0)
    assert code == 0, text
    assert "skipped 2 bad files (first: " in text
    assert open_dataset(tmp_path / "ads").manifest["splits"]["train"]["n"] == 2

    # everything bad: one error line
    bsrc = tmp_path / "allbad"
    bsrc.mkdir()
    (bsrc / "x.png").write_bytes(b"nope")
    code, text = cli(monkeypatch, capsys, "data", "images", bsrc, "--out", tmp_path / "none", "--tiles", 2,
                     "--skip-bad")
    one_error_line(code, text, "no usable samples", "x.png")
    assert not (tmp_path / "none").exists()


def test_option_misuse_is_one_line(tmp_path, monkeypatch, capsys):
    src = tmp_path / "src"
    _grid(src)
    out = tmp_path / "out"
    one_error_line(*cli(monkeypatch, capsys, "data", "images", "--out", out), "needs the folder")
    one_error_line(*cli(monkeypatch, capsys, "data", "phonenums", src, "--out", out), "DIR", "phonenums")
    one_error_line(*cli(monkeypatch, capsys, "data", "images", src, "--out", out, "--tiles", 3, "--window", 1),
                   "--window")
    one_error_line(*cli(monkeypatch, capsys, "data", "audio", src, "--out", out, "--tiles", 3), "--tiles")
    one_error_line(*cli(monkeypatch, capsys, "data", "images", src, "--out", out, "--tiles", 3, "--channels", "cmyk"),
                   "--channels")
    one_error_line(*cli(monkeypatch, capsys, "data", "images", src, "--out", out, "--tiles", 3, "--val", 0.6,
                        "--test", 0.5), "--val")
    assert not out.exists()
    # the source folder itself is never a valid --out, not even with --overwrite
    one_error_line(*cli(monkeypatch, capsys, "data", "images", src, "--out", src, "--tiles", 3, "--overwrite"),
                   "source folder")
    assert sorted(p.name for p in src.iterdir()) == [f"im{i}.png" for i in range(4)]


def test_error_in_a_real_process(tmp_path):
    """The installed entry point: one stderr line, exit 2, no traceback."""
    import subprocess

    res = subprocess.run([sys.executable, "-m", "varinv", "data", "audio", str(tmp_path / "nowhere"), "--out",
                          str(tmp_path / "out")], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and res.stdout == ""
    one_error_line(res.returncode, res.stderr, "does not exist")
    assert not (tmp_path / "out").exists()


def test_pure_helpers():
    assert folders.parse_size("32x64") == (32, 64) and folders.parse_size(" 8 X 9 ") == (8, 9)
    for bad in ("32", "0x5", "axb", "3x-1", ""):
        with pytest.raises(ConfigError):
            folders.parse_size(bad)
    names = ["f10.png", "f2.png", "f1.png", "f.png", "F3.png"]
    assert sorted(names, key=lambda n: file_key(Path(n))) == ["f.png", "f1.png", "f2.png", "F3.png",
                                                                       "f10.png"]
    parts = folders.split_indices(10, 0.1, 0.2, seed=0)
    assert {k: len(v) for k, v in parts.items()} == {"train": 7, "val": 1, "test": 2}
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(10))
    assert set(folders.split_indices(4, 0.1, 0.1)) == {"train"}  # round(0.4) = 0: val and test absent
    with pytest.raises(DataError):
        folders.split_indices(2, 0.3, 0.0)
    w = folders.cut_windows(np.arange(10, dtype=np.float32), 3)
    assert w.shape == (3, 3) and w[-1].tolist() == [6, 7, 8]
    c = folders.cut_at(np.arange(10, dtype=np.float32), np.array([0, 8]), 4)
    assert c.tolist() == [[0, 1, 2, 3], [8, 9, 0, 0]]
    r = folders.resample(tone(440, 1.0, 44100), 44100)
    assert r.shape == (16000,) and r.dtype == np.float32
