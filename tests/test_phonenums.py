"""PhoneNums generator: format, labels, determinism, no wrap-around, OOD splits, font fallback."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from varinv.data import phonenums as P
from varinv.data.store import open_dataset
from varinv.errors import DataError

N_ROWS = 80


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return P.generate(tmp_path_factory.mktemp("pn") / "phonenums", n_rows=N_ROWS, seed=0, progress=False)


def _ink(x: np.ndarray) -> np.ndarray:
    """Per-patch ink map in 0..1 (darkness below the patch's background), colour-independent."""
    g = x.astype(np.float32).mean(axis=-3)
    bg = np.median(g, axis=(-2, -1), keepdims=True)
    d = np.clip(bg - g, 0, None)
    return d / (d.max(axis=(-2, -1), keepdims=True) + 1e-6)


def _nearest_colour(x: np.ndarray, palette: dict) -> np.ndarray:
    """Colour index per row: direction (ink mean - background) closest to (colour - 245)."""
    x = x.astype(np.float32)  # (N, L, 3, H, W)
    bg = np.median(x, axis=(1, 3, 4))  # (N, 3)
    depth = bg.mean(1)[:, None, None, None] - x.mean(2)
    mask = depth > 0.5 * depth.reshape(len(x), -1).max(1)[:, None, None, None]
    ink = np.stack([x[i].transpose(1, 0, 2, 3)[:, mask[i]].mean(1) for i in range(len(x))])
    dirs = ink - bg
    ref = np.array(list(palette.values())) * 240 + 8 - P.BACKGROUND
    cos = (dirs / np.linalg.norm(dirs, axis=1, keepdims=True)) @ (ref / np.linalg.norm(ref, axis=1, keepdims=True)).T
    return cos.argmax(1)


def test_shapes_dtypes_and_splits(ds):
    assert ds.kind == "image"
    assert ds.fragment_shape == (3, 48, 32)
    assert ds.n_fragments == 10
    assert ds.content_names == [str(d) for d in range(10)]
    assert ds.style_names == ["black", "blue", "green", "red", "teal", "purple", "orange", "brown"]
    assert ds.manifest["generator"] == "varinv.data.phonenums"
    assert ds.manifest["seed"] == 0
    expected = {"train": 64, "val": 8, "test": 8, "ood_test": 8, "ood_1shot": 8, "ood_5shot": 40, "ood_10shot": 80}
    assert set(ds.splits) == set(expected)
    for name, n in expected.items():
        s = ds.split(name)
        assert s.x.shape == (n, 10, 3, 48, 32) and s.x.dtype == np.uint8
        assert s.content.shape == (n, 10) and s.content.dtype == np.int64
        assert s.style.shape == (n,) and s.style.dtype == np.int64
    ds.verify()


def test_every_digit_once_and_balanced_colours(ds):
    for name in ds.splits:
        s = ds.split(name)
        assert (np.sort(s.content, axis=1) == np.arange(10)).all()
        counts = np.bincount(s.style, minlength=8)
        assert len(counts) == 8 and counts.max() - counts.min() <= 1
    # digit orders really are shuffled
    assert len({tuple(r) for r in ds.split("train").content}) > 50


def test_deterministic_same_seed_different_seed(tmp_path, ds):
    again = P.generate(tmp_path / "a", n_rows=N_ROWS, seed=0, progress=False)
    other = P.generate(tmp_path / "b", n_rows=N_ROWS, seed=1, ood=False, progress=False)
    for name in ds.splits:
        a, b = ds.split(name), again.split(name)
        assert np.array_equal(a.x, b.x) and np.array_equal(a.content, b.content)
        assert np.array_equal(a.style, b.style)
    assert ds.manifest["splits"] == again.manifest["splits"]  # byte-identical files (same sha256)
    assert not np.array_equal(ds.split("train").x, other.split("train").x)
    assert not np.array_equal(ds.split("train").content, other.split("train").content)
    # the in-distribution rows do not depend on the OOD settings
    no_ood = P.generate(tmp_path / "c", n_rows=N_ROWS, seed=0, ood=False, progress=False)
    assert set(no_ood.splits) == {"train", "val", "test"}
    assert np.array_equal(no_ood.split("train").x, ds.split("train").x)


def test_glyphs_match_content_labels(ds):
    tr, te = ds.split("train"), ds.split("test")
    ink, lab = _ink(np.asarray(tr.x)), np.asarray(tr.content)
    cent = np.stack([ink[lab == d].mean(0) for d in range(10)])
    assert np.abs(cent[1] - cent[0]).mean() > 0.05  # a "1" does not look like a "0"
    ink_t = _ink(np.asarray(te.x))
    dist = ((ink_t[:, :, None] - cent[None, None]) ** 2).sum((-2, -1))
    acc = (dist.argmin(-1) == np.asarray(te.content)).mean()
    assert acc > 0.6, f"nearest-centroid digit accuracy {acc:.2f} (chance 0.1)"


def test_ink_colour_matches_style_labels(ds):
    for name, palette in (("train", P.COLOURS), ("test", P.COLOURS), ("ood_test", P.OOD_COLOURS)):
        s = ds.split(name)
        assert (_nearest_colour(np.asarray(s.x), palette) == np.asarray(s.style)).all(), name


def test_background_near_245_and_no_wrap_around(ds):
    x = np.asarray(ds.split("train").x).astype(np.float32)
    assert abs(np.median(x) - 245) <= 4  # most of a patch is background
    # a uint8 wrap-around shows as a dark pixel whose 8 neighbours are all light; ink never does
    gray = x.mean(axis=2).reshape(-1, 48, 32)
    ring = np.ones((1, 3, 3), bool)
    ring[0, 1, 1] = False
    light_around = ndimage.minimum_filter(gray, footprint=ring, mode="nearest") >= 200
    assert light_around.mean() > 0.5
    assert gray[light_around].min() >= 150


def test_noise_is_clipped_not_wrapped():
    rng_digits = np.random.default_rng(3)
    digits = rng_digits.permuted(np.tile(np.arange(10), (40, 1)), axis=1)
    colours = np.array(list(P.COLOURS.values()))[np.arange(40) % 8]
    bank = P.make_bank(np.random.default_rng(0))
    noisy = P.render_rows(digits, colours, np.random.default_rng(7), bank=bank).astype(np.int32)
    clean = P.render_rows(digits, colours, np.random.default_rng(7), bank=bank, noise_max=0.0).astype(np.int32)
    assert np.abs(noisy - clean).max() <= 8 * 7  # std <= 8 levels; a uint8 wrap would give ~255
    background = clean >= 235
    assert noisy[background].min() >= 150
    # huge noise piles up at 0 and 255 instead of wrapping around
    loud = P.render_rows(digits, colours, np.random.default_rng(7), bank=bank, noise_max=400.0)
    assert (loud == 255).mean() > 0.1 and (loud == 0).mean() > 0.05


def test_render_rows_rejects_bad_input():
    bank = P.make_bank(np.random.default_rng(0), n_variants=2)
    rng = np.random.default_rng(0)
    with pytest.raises(DataError, match="digits"):
        P.render_rows(np.full((2, 10), 12), np.zeros((2, 3)), rng, bank=bank)
    with pytest.raises(DataError, match="colours"):
        P.render_rows(np.zeros((2, 10), int), np.zeros((3, 3)), rng, bank=bank)
    with pytest.raises(DataError, match="0..1"):
        P.render_rows(np.zeros((2, 10), int), np.full((2, 3), 200.0), rng, bank=bank)


def test_ood_splits(ds):
    for name in ("ood_test", "ood_1shot", "ood_5shot", "ood_10shot"):
        s = ds.split(name)
        assert s.style_names == ["pink", "salmon", "gold", "lime", "cyan", "magenta", "gray", "peru"]
        assert s.style.min() >= 0 and s.style.max() <= 7
    assert ds.split("train").style_names == P.STYLE_NAMES
    for k in (1, 5, 10):
        assert (np.bincount(ds.split(f"ood_{k}shot").style, minlength=8) == k).all()
    one, five, ten = (np.asarray(ds.split(f"ood_{k}shot").x) for k in (1, 5, 10))
    assert np.array_equal(five[: len(one)], one) and np.array_equal(ten[: len(five)], five)  # nested
    shot_rows = {r.tobytes() for r in ten}
    assert not any(r.tobytes() in shot_rows for r in np.asarray(ds.split("ood_test").x))  # disjoint


def test_ood_test_size(tmp_path):
    d = P.generate(tmp_path / "d", n_rows=20, seed=2, n_ood_test=13, progress=False)
    assert len(d.split("ood_test")) == 13
    assert len(d.split("train")) == 16 and len(d.split("val")) == 2 and len(d.split("test")) == 2
    assert d.manifest["params"]["n_ood_test"] == 13


def test_font_fallback_warns(monkeypatch):
    monkeypatch.setattr(P, "find_handwriting_font", lambda: None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bank = P.make_bank(np.random.default_rng(0), n_variants=4)
    msgs = [str(w.message) for w in caught]
    assert len(msgs) == 1 and "pip install handwriting-generator" in msgs[0]
    assert bank.fallback and "DejaVu" in bank.font.name
    assert bank.masks.shape == (10, 4, 48 + 2 * P.MARGIN, 32 + 2 * P.MARGIN) and bank.masks.max() > 0.5


def test_handwriting_font_found():
    path = P.find_handwriting_font()
    assert path is not None and path.name == "ShadowsIntoLight.ttf"


def test_user_errors(tmp_path, ds):
    with pytest.raises(DataError, match="already exists"):
        P.generate(ds.root, n_rows=N_ROWS, progress=False)
    with pytest.raises(DataError, match="n_rows"):
        P.generate(tmp_path / "x", n_rows=5, progress=False)
    with pytest.raises(DataError, match="font_path"):
        P.generate(tmp_path / "y", n_rows=10, font_path=tmp_path / "missing.ttf", progress=False)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_overwrite(tmp_path):
    P.generate(tmp_path / "o", n_rows=10, seed=0, ood=False, progress=False)
    d = P.generate(tmp_path / "o", n_rows=20, seed=0, ood=False, overwrite=True, progress=False)
    assert len(open_dataset(d.root).split("train")) == 16


def test_preview(tmp_path, ds):
    out = P.preview(ds, tmp_path / "p.png", n_rows=4)
    im = Image.open(out)
    assert im.size == (320, 4 * 48) and im.mode == "RGB"
    row0 = np.asarray(ds.split("train").x[0]).transpose(2, 0, 3, 1).reshape(48, 320, 3)
    assert np.array_equal(np.asarray(im)[:48], row0)
    out2 = P.preview(ds.split("ood_test"), tmp_path / "q.png", n_rows=2, scale=2)
    assert Image.open(out2).size == (640, 192)
