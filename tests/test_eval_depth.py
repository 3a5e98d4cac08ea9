"""Evaluation in depth: OOD, swap, judged generation (hand-computed values) and `evaluate --all` end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from conftest import TOY_CFG, toy_arrays
from varinv.data.store import from_arrays
from varinv.eval import judged as J
from varinv.eval import ood as O
from varinv.eval import swap as S
from varinv.eval.metrics import MetricInputError
from varinv.methods.base import Encoded, Method


# ----------------------------------------------------------------------------------------- zero-shot
def test_atom_class_map_and_zero_shot_accuracy():
    counts = np.array([[8, 1, 0], [0, 0, 0], [2, 5, 1], [0, 1, 6]])  # atom 1 unused
    amap = O.atom_class_map(counts)
    assert amap.tolist() == [0, -1, 1, 2]
    index = np.array([0, 0, 2, 3, 1, 2, 3, 0])
    content = np.array([0, 1, 1, 2, 1, 0, 2, 0])
    # predictions [0,0,1,2,-1,1,2,0] → correct at 0,2,3,6,7 → 5/8
    assert O.map_accuracy(index, content, amap) == pytest.approx(5 / 8)
    z = O.zero_shot(index, content, amap, n_classes=3)
    assert z["accuracy"] == pytest.approx(0.625)
    assert z["one_to_one_fraction"] == pytest.approx(3 / 4)  # atoms 0, 2, 3 own their class; atom 1 unused
    assert z["classes_covered"] == 1.0
    assert "only meaningful where K equals" in z["note"]  # K = 4 != 3 classes
    assert "note" not in O.zero_shot(index % 3, content, amap[:3], n_classes=3)
    assert O.one_to_one_fraction([0, 1, 1, -1]) == 0.25
    with pytest.raises(MetricInputError):
        O.map_predict([0, 4], amap)


def test_shot_draws_mean_std_and_batches():
    style = np.repeat(np.arange(3), 10)  # pool: 10 rows per style
    draws = O.shot_draws(style, 2, n_draws=4, seed=0)
    assert len(draws) == 3
    for d in draws:
        assert np.bincount(style[d], minlength=3).tolist() == [2, 2, 2]
    assert len({tuple(d) for d in draws}) == 3  # different subsets
    assert [d.tolist() for d in draws] == [d.tolist() for d in O.shot_draws(style, 2, 4, seed=0)]
    full = O.shot_draws(style, 10, 3, seed=0)
    assert all(d.tolist() == list(range(30)) for d in full)  # pool exhausted: same rows every draw
    ms = O.mean_std([0.5, 0.7, 0.9])
    assert ms["mean"] == pytest.approx(0.7) and ms["std"] == pytest.approx(0.2)
    assert O.mean_std([0.4])["std"] == 0.0
    b = O.shot_batches(9, 4, seed=1)  # 4 + 4 + 1 → the single row is merged: 4 + 5
    assert [len(x) for x in b] == [4, 5] and sorted(np.concatenate(b).tolist()) == list(range(9))


# ----------------------------------------------------------------------------------------- swap
def test_swap_f1_bookkeeping():
    own = np.array([0, 0, 1, 1])
    donor = np.array([1, 1, 0, 0])
    out = S.swap_f1(own, donor, pred_pre=[0, 0, 1, 1], pred_style_swap=[1, 1, 0, 0],
                    pred_content_swap=[0, 1, 1, 1])
    assert out["pre_swap"] == 1.0
    assert out["style_swap"] == 1.0  # scored against the DONOR's style
    # content swap vs own: class 0 P=1 R=1/2 F1=2/3; class 1 P=2/3 R=1 F1=4/5 → mean 11/15
    assert out["content_swap"] == pytest.approx((2 / 3 + 4 / 5) / 2)
    # a style swap that kept the own style scores 0 against the donor
    assert S.swap_f1(own, donor, own, own, own)["style_swap"] == 0.0


def test_donors():
    y = np.array([0, 0, 0, 1, 2, 2, 1, 0])
    for seed in range(5):
        d = S.donors_different(y, seed)
        assert np.all(y[d] != y)
        a = S.donors_any(len(y), seed)
        assert np.all(a != np.arange(len(y))) and a.min() >= 0 and a.max() < len(y)
    assert S.donors_different(np.zeros(3, int)).tolist() == [-1, -1, -1]


class _LatentPassthrough(Method):
    """A fake method whose 'fragments' are its latents: decode concatenates (content, style) into a
    (1, 1, Dc+Ds) image, encode reads them back. ``leak`` makes the decoder ignore the style vector and
    write a style derived from the content instead (a model that does not disentangle)."""

    def __init__(self, dc=2, ds=3, leak=False):
        super().__init__()
        self.dc, self.ds, self.leak = dc, ds, leak
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def encode(self, x):
        v = x[..., 0, 0, :]
        return Encoded(content=v[..., :self.dc], style=v[..., self.dc:])

    def decode(self, content, style):
        if self.leak:
            style = torch.zeros_like(style) + content[..., :1] * 10
        return torch.cat([content, style], -1)[..., None, None, :]


def _latents(n_samples, length, n_styles, seed=0):
    g = np.random.default_rng(seed)
    style = np.arange(n_samples) % n_styles
    centres = np.eye(3)[:n_styles] * 5
    zs = centres[style][:, None, :] + 0.1 * g.standard_normal((n_samples, length, 3))
    zc = g.standard_normal((n_samples, length, 2))
    return torch.tensor(zc, dtype=torch.float32), torch.tensor(zs, dtype=torch.float32), style


def test_swap_metrics_on_an_ideal_and_a_leaky_decoder():
    zc, zs, style = _latents(30, 4, 3)
    lda = S.fit_lda(zs.mean(1).numpy(), style)
    lat = {"dec": zc, "zc": zc, "zs": zs, "index": None}
    good = S.swap_metrics(_LatentPassthrough(), lda, lat, style, seed=0)
    assert good["pre_swap"] == good["style_swap"] == good["content_swap"] == 1.0
    bad = S.swap_metrics(_LatentPassthrough(leak=True), lda, lat, style, seed=0)
    assert bad["style_swap"] < 0.6 and bad["pre_swap"] < 0.6


# ----------------------------------------------------------------------------------------- judged
def test_judged_kl_and_disagreement():
    assert J.kl_divergence([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(2 / 3))
    assert J.kl_divergence([1.0, 0.0], [1.0, 0.0]) == 0.0  # 0 log 0 = 0
    assert J.label_distribution([0, 2, 2, -1], 3).tolist() == [1 / 3, 0, 2 / 3]
    out = J.judged_scores(judged_kept=[0, 1, 1, 2], source_kept=[0, 1, 2, 2], judged_other=[0, 0, 0, 1],
                          data_other=[0, 1, 1, 1], n_other=2, donor_other=[0, 0, 1, 1])
    assert out["disagreement"] == 0.25
    # p = (3/4, 1/4), q = (1/4, 3/4): KL = 3/4 ln 3 + 1/4 ln(1/3) = 1/2 ln 3
    assert out["kl"] == pytest.approx(0.5 * math.log(3))
    assert out["donor_agreement"] == 0.75


class _OracleJudge(torch.nn.Module):
    """Judges the passthrough 'fragments': content = sign of the first content dim, style = argmax."""

    def forward(self, x):
        v = x.reshape(x.shape[0], -1)
        c = torch.stack([-v[:, 0], v[:, 0]], -1)
        return c, v[:, 2:5]


def test_judged_generation_with_an_oracle_judge():
    zc, zs, style = _latents(40, 3, 3, seed=2)
    content = (zc[..., 0] > 0).long().numpy()
    lat = {"dec": zc, "zc": zc, "zs": zs, "index": None}
    out = J.judged_generation(_LatentPassthrough(), _OracleJudge(), lat, None, content, style, 2, 3, seed=0)
    assert out["fixed_content"]["disagreement"] == 0.0  # content kept exactly
    assert out["fixed_style"]["disagreement"] == 0.0
    assert out["fixed_content"]["donor_agreement"] == 1.0
    assert out["judge"]["content_accuracy_recon"] == 1.0
    assert out["fixed_content"]["kl"] < 0.05  # donors drawn from the data → its style mix


# ----------------------------------------------------------------------------------------- end to end
def _toy(n, seed, styles, length=4):
    return toy_arrays(n, seed, length, styles=styles)


@pytest.fixture
def toy_ood_run(tmp_path):
    from varinv import config as config_mod
    from varinv.train.trainer import train

    splits = {"train": _toy(96, 0, [0, 1, 2]), "test": _toy(24, 1, [0, 1, 2])}
    pool = _toy(20, 2, [3, 4])  # 10 rows per OOD colour, cycling colours: the first 2k rows hold k per colour
    for k in (1, 5, 10):
        x, c, s = pool
        splits[f"ood_{k}shot"] = (x[:2 * k], c[:2 * k], s[:2 * k] - 3)
    x, c, s = _toy(16, 3, [3, 4])
    splits["ood_test"] = (x, c, s - 3)
    ood_names = {k: ["yellow", "cyan"] for k in splits if k.startswith("ood_")}
    ds = from_arrays(tmp_path / "toy_ood", splits, content_names=list("abcd"), style_names=["red", "green", "blue"],
                     split_style_names=ood_names)
    raw = json.loads(json.dumps(TOY_CFG))
    raw["data"]["path"] = str(ds.root)
    raw["train"]["steps"] = 40
    run = tmp_path / "run"
    train(config_mod.from_dict(raw), run, progress=False, tensorboard=False)
    return run


def test_evaluate_all_end_to_end(toy_ood_run):
    from typer.testing import CliRunner

    from varinv.cli import app

    run = toy_ood_run
    args = ["evaluate", str(run), "--all", "--no-tsne", "--draws", "2", "--classifier-steps", "15", "--threads", "1"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    m = json.loads((run / "metrics.json").read_text())
    assert "errors" not in m
    for key in ("ood", "probes", "mi", "swap", "judged", "eer", "codebook_purity"):
        assert key in m, key
    z = m["ood"]["zero_shot"]
    assert 0 <= z["accuracy"] <= 1 and 0 <= z["one_to_one_fraction"] <= 1
    for n in ("1", "5", "10"):
        f = m["ood"]["few_shot"][n]
        assert f["unsupervised"]["n"] == 2 and f["supervised"]["n"] == 2
        assert all(0 <= v <= 1 for v in f["unsupervised"]["values"] + f["supervised"]["values"])
    assert m["ood"]["few_shot"]["1"]["distinct_subsets"] == 2  # draw 1 picks other pool rows
    assert m["ood"]["few_shot"]["10"]["distinct_subsets"] == 1  # the pool has only 10 per colour
    assert set(m["probes"]["both"]) == {"content", "style"}
    assert len(m["mi"]["z_c"]) == 2 and len(m["mi"]["z_c"][0]) == TOY_CFG["model"]["d_content"]
    assert (run / "plots" / "mi_matrix.png").exists()
    for k in ("pre_swap", "style_swap", "content_swap"):
        assert 0 <= m["swap"][k] <= 1
    assert m["judged"]["fixed_content"]["kl"] >= 0
    assert 0 <= m["eer"]["style_zs"] <= 1
    assert list((run / "eval_cache").glob("*.safetensors"))
    # a second evaluation reuses the cached classifier and keeps earlier keys
    res = CliRunner().invoke(app, ["evaluate", str(run), "--what", "judged", "--classifier-steps", "15",
                                   "--threads", "1"])
    assert res.exit_code == 0, res.output
    m2 = json.loads((run / "metrics.json").read_text())
    assert m2["judged"]["judge"]["cached"] is True and "swap" in m2
    bad = CliRunner().invoke(app, ["evaluate", str(run), "--what", "nonsense"])
    assert bad.exit_code != 0
