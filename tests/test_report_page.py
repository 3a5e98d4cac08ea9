"""The report page without a browser: dataset titles, the confusion-matrix SVG, the seeds column, the
citation, and swaps of real samples for a spectrogram run (pictures and clips)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import yaml

from conftest import TOY_CFG
from varinv.data.store import from_arrays


def _run(root, name, data_path, method="v3", k=4, seed=0, metrics=None, model_json=None):
    run = root / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(
        {"data": {"path": str(data_path)}, "model": {"method": method, "n_atoms": k}, "train": {"seed": seed}}))
    if metrics is not None:
        (run / "metrics.json").write_text(json.dumps({"method": method, "n_atoms": k, **metrics}))
    if model_json is not None:
        (run / "model.json").write_text(json.dumps(model_json))
    return run


def test_dataset_title():
    from varinv.report.build import dataset_title

    assert dataset_title("varinv.data.phonenums", "pn_small")[0] == "PhoneNums"
    assert dataset_title("phonenums", "x")[0] == "PhoneNums"
    assert dataset_title("varinv.data.insnotes", "data")[0] == "InsNotes"
    assert dataset_title("user", "phonenums_small")[0] == "PhoneNums"  # a folder named after a benchmark
    assert dataset_title("mylab.gen.bird_songs", "d1") == ("Bird Songs", "")
    assert dataset_title("folder", "My <data>") == ("My <data>", "")  # user data: the name as given
    assert dataset_title("", "phonenumsX") == ("phonenumsX", "")


def test_generator_title_and_escaped_names(tmp_path):
    from varinv.report.build import build_site

    name = 'pn <b>"&x'
    _run(tmp_path / "bench", "r0", f"data/{name}", metrics={"codebook_purity": 0.5},
         model_json={"dataset_generator": "varinv.data.phonenums", "kind": "image"})
    _run(tmp_path / "bench", "r1", "data/<i>mine&", metrics={"codebook_purity": 0.5},
         model_json={"dataset_generator": "user", "kind": "image"})
    html = build_site([tmp_path / "bench"], tmp_path / "site", log=lambda m: None).read_text()
    h2 = re.findall(r"<h2>(.*?)</h2>", html)
    assert any(h.startswith('PhoneNums <span class="dsname">(pn &lt;b&gt;&quot;&amp;x)</span>') for h in h2), h2
    assert any(h.startswith("&lt;i&gt;mine&amp;") for h in h2), h2
    assert "<b>\"&x" not in html and "<i>mine" not in html
    assert ">PhoneNums</a>" in html  # the navigation names the dataset by its title too


def test_confusion_svg_readable_and_escaped():
    from varinv.report.confusion import FONT_PX, confusion_svg

    assert FONT_PX >= 11
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 3, (64, 10)) + np.eye(64, 10, dtype=int) * 30
    counts[5] = 0  # an unused atom is left out and said so
    names = [str(i) for i in range(9)] + ["<b>&"]
    svg = confusion_svg(counts, names, title="V3")
    w, h = (int(v) for v in re.search(r'<svg [^>]*width="(\d+)" height="(\d+)"', svg).groups())
    assert w >= 300 and h >= 63 * 14
    assert f'font-size="{FONT_PX}"' in svg and "font-size=\"" not in svg.replace(f'font-size="{FONT_PX}"', "")
    assert "&lt;b&gt;&amp;" in svg and "<b>" not in svg
    assert "1 unused atoms hidden" in svg
    assert svg.count("<g><title>atom ") == 63
    small = confusion_svg(np.eye(4) * 10, list("abcd"))
    assert int(re.search(r'width="(\d+)"', small).group(1)) >= 300  # small matrices are drawn large
    for bad in (None, [], [[0, 0]], [[1, -1]], "x", [[np.nan, 1]]):
        assert confusion_svg(bad, ["a", "b"]) is None


def test_seeds_column_counts(tmp_path):
    from varinv.report.build import build_site

    for seed in (0, 3, 7):
        _run(tmp_path / "bench", f"s{seed}", "data/pn", k=10, seed=seed, metrics={"codebook_purity": 0.5})
    html = build_site([tmp_path / "bench"], tmp_path / "site", log=lambda m: None).read_text()
    assert '<td class="seeds" title="seeds 0, 3, 7">3</td>' in html
    assert "0, 3, 7</td>" not in html


def test_citation_and_paper_link(tmp_path):
    from varinv.report import cite
    from varinv.report.build import _esc, build_site

    _run(tmp_path / "bench", "r", "data/pn", metrics={"codebook_purity": 0.5})
    html = build_site([tmp_path / "bench"], tmp_path / "site", log=lambda m: None).read_text()
    header = html[html.index("<header>"):html.index("</header>")]
    assert 'href="https://arxiv.org/abs/2407.03824"' in header
    assert "Unsupervised Disentanglement of Content and Style via Variance-Invariance Constraints" in header
    assert "Wu, Wang, Raj, Xia" in header and "ICLR 2025" in header
    footer = html[html.index("<footer>"):html.index("</footer>")]
    assert 'id="cite"' in footer and "The varinv contributors" in footer
    assert "varinv: unsupervised content-style disentanglement of sequential data" in footer
    assert "@inproceedings{wu2025v3" in footer and "version 0.1.0" in footer
    # every field is escaped; a link that is not http(s) is text
    doc = {"title": "<script>x</script>", "message": "a & b", "authors": [{"name": "<i>"}],
           "references": [{"title": "Variance-Invariance <x>", "url": "javascript:alert(1)",
                           "authors": [{"family-names": "W<", "given-names": "Y"}], "year": 2025}]}
    out = cite.cite_html(doc, _esc) + cite.paper_html(doc, _esc)
    assert "<script>" not in out and "javascript:" not in out and "W<" not in out
    assert "&lt;i&gt;" in out and "&lt;script&gt;" in out and "a &amp; b" in out


def _tones(root):
    rng = np.random.default_rng(0)
    n, length, f, t = 16, 4, 32, 8
    content = np.stack([rng.permutation(3).tolist() + [int(rng.integers(3))] for _ in range(n)])
    style = np.arange(n) % 2
    x = np.full((n, length, 1, f, t), -6.0, np.float32)
    for i in range(n):
        for j in range(length):
            x[i, j, 0, 4 + 6 * content[i, j]] = 1.0 + style[i]
            if style[i]:
                x[i, j, 0, (8 + 12 * content[i, j]) % f] = 0.5
    return from_arrays(root / "data" / "tones", {"train": (x, content, style), "test": (x[:8], content[:8], style[:8])},
                       kind="spectrogram", content_names=["C", "E", "G"], style_names=["flute", "organ"],
                       params={"sr": 16000, "n_fft": 62, "hop": 16, "n_bins": 32})


def test_swaps_of_real_samples_audio(tmp_path):
    """A tiny spectrogram run (trained here, a few steps): the page shows 2 pairs (A, B) with the content
    of A in the style of B, as pictures and re-encoded WAV clips made through varinv.api's transfer."""
    pytest.importorskip("soundfile")
    import soundfile

    from varinv import config as config_mod
    from varinv.report.build import build_site
    from varinv.train.trainer import train

    ds = _tones(tmp_path)
    raw = json.loads(json.dumps(TOY_CFG))
    raw["data"]["path"] = str(ds.root)
    raw["model"]["n_atoms"] = 3
    raw["train"].update(steps=4, ckpt_every=4, log_every=2)
    run = tmp_path / "bench" / "tones_v3"
    train(config_mod.from_dict(raw), run, progress=False, tensorboard=False)
    site = build_site([tmp_path / "bench"], tmp_path / "site", log=lambda m: None)
    html = site.read_text()
    block = re.search(r'<div class="swaps table-scroll" data-k="3">(.*?)</div>', html).group(1)
    assert block.count("<tr>") == 1 + 2  # header + 2 pairs
    imgs = re.findall(r'<img src="([^"]+)"', block)
    wavs = re.findall(r'<audio controls preload="none" src="([^"]+)"', block)
    assert len(imgs) == 6 and len(wavs) == 6
    assert sum("/v3_K3/swaps/swap_" in p for p in imgs) == 2
    for p in imgs + wavs:
        assert (site.parent / p).is_file(), p
    for p in wavs:
        assert soundfile.info(str(site.parent / p)).frames > 0
    assert not list(site.parent.rglob("*.full.wav"))
    size = sum(p.stat().st_size for p in site.parent.rglob("*") if p.is_file())
    assert size < 5e6
