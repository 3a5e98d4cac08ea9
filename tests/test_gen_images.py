"""Image-domain generators of the generalisation suite (benchmarks/generalisation/*.py) and its matrix: format, labels,
determinism, repeats, non-blank fragments, disjoint handwriting scans, texture balance."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from varinv.data.store import open_dataset

GEN_DIR = Path(__file__).parents[1] / "benchmarks" / "generalisation"
# domain -> (n content classes, n style classes, contents drawn with replacement)
DOMAINS = {
    "handwriting": (10, 6, False),
    "letters": (10, 8, False),
    "shapes": (10, 8, True),
    "textures": (10, 6, False),
    "greek": (10, 8, True),
}
N = 12  # samples: 8 train / 2 val / 2 test


def load(domain: str):
    spec = importlib.util.spec_from_file_location(f"gen_{domain}", GEN_DIR / f"{domain}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


def arrays(ds, split: str):
    s = ds.split(split, mmap=False)
    return s.x, s.content, s.style


@pytest.fixture(scope="module", params=list(DOMAINS))
def gen(request, tmp_path_factory):
    """(domain, module, dataset at seed 0) for every domain, generated once per module."""
    domain = request.param
    mod = load(domain)
    ds = mod.generate(tmp_path_factory.mktemp(domain) / "ds", n_samples=N, seed=0)
    return domain, mod, ds


def test_format_and_labels(gen):
    domain, mod, ds = gen
    n_content, n_style, _ = DOMAINS[domain]
    assert mod.generate.__doc__.strip().splitlines()[0].endswith(".")
    assert ds.kind == "image" and ds.scale == 255.0
    assert ds.manifest["generator"] == f"generalisation.{domain}" and ds.manifest["seed"] == 0
    assert len(ds.content_names) == n_content and len(set(ds.content_names)) == n_content
    assert len(ds.style_names) == n_style and len(set(ds.style_names)) == n_style
    assert {s: ds.manifest["splits"][s]["n"] for s in ("train", "val", "test")} == {"train": 8, "val": 2, "test": 2}
    for split in ("train", "val", "test"):
        x, c, s = arrays(ds, split)
        n = len(x)
        assert x.dtype == np.uint8 and x.shape == (n, 10, 3, 32, 32)
        assert c.dtype == np.int64 and c.shape == (n, 10) and c.min() >= 0 and c.max() < n_content
        assert s.dtype == np.int64 and s.shape == (n,) and s.min() >= 0 and s.max() < n_style
    # styles are balanced, so 8 train samples show min(8, n_style) different styles
    assert len(np.unique(arrays(ds, "train")[2])) == min(8, n_style)


def test_contents_once_or_repeating(gen):
    domain, _, ds = gen
    repeating = DOMAINS[domain][2]
    c = np.concatenate([arrays(ds, s)[1] for s in ("train", "val", "test")])
    n_distinct = np.array([len(set(row)) for row in c])
    if repeating:
        # 12 samples of 10 draws from 10 classes: P(no repeat anywhere) = (10!/10^10)^12 ~ 1e-31
        assert (n_distinct < 10).any()
    else:
        assert (n_distinct == 10).all()


def test_fragments_not_blank_and_not_identical(gen):
    _, _, ds = gen
    x = arrays(ds, "train")[0].astype(np.float32)
    std = x.std(axis=(-3, -2, -1))  # per fragment
    assert std.min() > 10.0, f"a fragment is (nearly) blank: std {std.min():.1f}"
    # ink covers a plausible part of the fragment: distance from the fragment's median colour
    dist = np.abs(x - np.median(x, axis=(-2, -1), keepdims=True)).mean(-3)
    coverage = (dist > 40).mean(axis=(-2, -1))
    assert coverage.min() > 0.01 and coverage.max() < 0.7
    flat = x.reshape(-1, 3 * 32 * 32)
    assert len(np.unique(flat, axis=0)) == len(flat)


def test_deterministic_given_seed(gen, tmp_path):
    domain, mod, ds = gen
    same = mod.generate(tmp_path / "same", n_samples=N, seed=0)
    other = mod.generate(tmp_path / "other", n_samples=N, seed=1)
    for split in ("train", "val", "test"):
        for a, b in zip(arrays(ds, split), arrays(same, split)):
            np.testing.assert_array_equal(a, b)
        assert not np.array_equal(arrays(ds, split)[0], arrays(other, split)[0])
    assert ds.manifest["params"] == same.manifest["params"]
    with pytest.raises(Exception, match="already exists"):
        mod.generate(tmp_path / "same", n_samples=N, seed=0)


def test_cli_writes_a_dataset(tmp_path):
    mod = load("shapes")
    assert mod.main(["--out", str(tmp_path / "cli"), "--size", "6", "--seed", "3"]) == 0
    ds = open_dataset(tmp_path / "cli")
    ds.verify()
    assert ds.manifest["seed"] == 3 and ds.manifest["splits"]["test"]["n"] == 2


def test_handwriting_scans_are_split_disjointly(tmp_path):
    from sklearn.datasets import load_digits

    mod = load("handwriting")
    ds = mod.generate(tmp_path / "hw", n_samples=60, seed=0)
    params = ds.manifest["params"]
    pools = {s: set(p) for s, p in params["scan_pools"].items()}
    used = {s: set(u) for s, u in params["scans_used"].items()}
    target = load_digits().target
    assert not pools["train"] & pools["test"] and not pools["train"] & pools["val"] and not pools["val"] & pools["test"]
    assert set().union(*pools.values()) == set(range(len(target)))
    assert 0.75 < len(pools["train"]) / len(target) < 0.85
    for s in pools:
        assert used[s] <= pools[s] and used[s]
        assert set(target[sorted(pools[s])]) == set(range(10))  # every digit available in every split
    assert not used["train"] & used["test"]
    # the scans shown carry the label of the fragment: every used scan's digit occurs as content
    c = arrays(ds, "test")[1]
    assert set(target[sorted(used["test"])]) == set(np.unique(c))


def test_texture_styles_share_tones_and_coverage():
    mod = load("textures")
    kind = np.repeat(np.arange(len(mod.TEXTURES)), 300)
    maps = mod.textures(kind, np.random.default_rng(0))
    assert maps.min() >= 0 and maps.max() <= 1
    coverage = np.array([maps[kind == t].mean() for t in range(len(mod.TEXTURES))])
    # every texture puts about half its area in each tone, so mean brightness does not reveal the style
    assert np.abs(coverage - 0.5).max() < 0.04, coverage
    # and the textures really differ spatially: mean absolute horizontal / vertical gradients
    gx = np.array([np.abs(np.diff(maps[kind == t], axis=2)).mean() for t in range(len(mod.TEXTURES))])
    gy = np.array([np.abs(np.diff(maps[kind == t], axis=1)).mean() for t in range(len(mod.TEXTURES))])
    h, v = mod.TEXTURES.index("horizontal stripes"), mod.TEXTURES.index("vertical stripes")
    assert gy[h] > 5 * gx[h] and gx[v] > 5 * gy[v]


def test_letter_fonts_render_distinct_glyphs():
    mod = load("letters")
    bank = mod.glyph_bank(np.random.default_rng(0))  # (letter, font, variant, H, W)
    assert (bank.max(axis=(-2, -1)) > 0.9).all()  # every glyph of every font has solid ink
    # per font, the 10 letters differ; per letter, the 8 fonts differ (first variant, binarised)
    ink = bank[:, :, 0] > 0.5
    for f in range(ink.shape[1]):
        assert len({ink[k, f].tobytes() for k in range(ink.shape[0])}) == ink.shape[0]
    for k in range(ink.shape[0]):
        assert len({ink[k, f].tobytes() for f in range(ink.shape[1])}) == ink.shape[1]


def test_suite_matrix_takes_medians_and_counts_passing_domains(tmp_path, monkeypatch, capsys):
    """The ablation matrix: per tag the median over seeds, bold only where every bar holds, and the count."""
    import json

    suite = load("suite")
    monkeypatch.setattr(suite, "ROOT", tmp_path)
    good = {"codebook_purity": 0.95, "prauc_zc_content": 0.9, "prauc_zs_style": 0.85, "prauc_zs_content": 0.1,
            "prauc_zc_style": 0.2}
    cells = tmp_path / "benchmarks/results/cells/suite-t"
    cells.mkdir(parents=True)
    for seed, purity in enumerate((0.95, 0.5, 0.97)):  # median 0.95: passes although one seed fails
        (cells / f"greek-v3-K10-seed{seed}.json").write_text(json.dumps({**good, "codebook_purity": purity}))
    (cells / "letters-v3-K10-seed0.json").write_text(json.dumps({**good, "prauc_zs_style": 0.25}))
    (cells / "phonenums-v3-K10-seed0.json").write_text(json.dumps({**good, "prauc_zc_style": 0.31}))
    (cells / "greek-supervised-K10-seed0.json").write_text(json.dumps({**good, "prauc_zc_content": 0.7}))
    (tmp_path / "benchmarks/results/2026-01-01-generalisation-floor.json").write_text(
        json.dumps({"greek": {"prauc_zc_content": 0.288}}))
    suite.main(["matrix", "--tags", "t,t/supervised"])
    out = capsys.readouterr().out
    assert "| greek | **0.950 / 0.900 / 0.850** (3) | 0.950 / 0.700 / 0.850 | 0.288 |" in out  # a peer's cells: TAG/METHOD
    assert "| letters | 0.950 / 0.900 / 0.250 | – | – |" in out
    assert "| phonenums | 0.950 / 0.900 / 0.850 | – | – |" in out  # a cross pair above 0.30 fails the domain
    assert "| passing | 1/2 suite, 0/1 benchmarks | 0/1 suite, 0/0 benchmarks | |" in out
