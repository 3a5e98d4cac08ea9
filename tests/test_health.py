"""The label-free health check flags a run whose content or style did not form, and passes a good one."""

import json

import numpy as np
import pytest

from tests.conftest import TOY_CFG
from varinv import config as config_mod
from varinv.eval import health
from varinv.train.trainer import train


def test_eta_squared_by_hand():
    v = np.array([[0.0], [2.0], [10.0], [12.0]])
    # group means 1 and 11 around 6: between = 4·25 = 100, total = 36 + 16 + 16 + 36 = 104
    assert health.eta_squared(v, np.array([0, 0, 1, 1])) == pytest.approx(100 / 104)
    assert health.eta_squared(v, np.array([0, 1, 0, 1])) == pytest.approx(4 / 104)


def test_atom_margin_by_hand():
    atoms = np.array([[0.0, 0.0], [4.0, 0.0]])
    # distances (1, 3) and (2, 2): ratios 1/3 and 1
    assert health.atom_margin(np.array([[1.0, 0.0], [2.0, 0.0]]), atoms) == pytest.approx((1 / 3 + 1) / 2)


def test_assess_flags_each_failure():
    rng = np.random.default_rng(0)
    good_log = [{h: 0.0 for h in health.HINGES}] * 20
    index = np.tile(np.arange(4), (30, 1))
    styles = rng.normal(size=(30, 1, 3)) * 5 + rng.normal(size=(30, 4, 3)) * 0.1
    h = health.assess(good_log, index, styles, 4)
    assert h["ok"] and health.warning(h) is None
    bad_log = [{**good_log[0], "content": 0.8}] * 20
    h = health.assess(bad_log, index, styles, 4)
    assert not h["content_formed"] and "content hinge unmet" in health.warning(h)
    h = health.assess([{**good_log[0], "style": 0.9}] * 20, index, styles, 4)
    assert h["content_formed"] and not h["style_formed"] and "style hinge unmet" in health.warning(h)
    # the sample hinge measures style against the content's scale, not whether the style formed
    assert health.assess([{**good_log[0], "sample": 0.7}] * 20, index, styles, 4)["ok"]
    # where the rendering agreement is known it decides: unmet hinges and a poor margin are only reported
    h = health.assess(bad_log, index, styles, 4, agreement=0.97)
    assert h["content_formed"] and h["rendering_agreement"] == 0.97
    h = health.assess(good_log, index, styles, 4, agreement=0.6)
    assert not h["content_formed"] and "60% of fragments are rendered best by their own atom" in health.warning(h)
    h = health.assess(good_log, np.zeros((30, 4), int), styles, 4)  # one atom for everything
    assert not h["content_formed"] and "perplexity" in health.warning(h)
    atoms = np.eye(4) * 10
    tight = atoms[index] + rng.normal(size=(30, 4, 4)) * 0.5
    assert health.assess(good_log, index, styles, 4, tight, atoms)["ok"]
    between = (atoms[index] + atoms[(index + 1) % 4]) / 2 + rng.normal(size=(30, 4, 4)) * 0.5  # a continuum cut up
    h = health.assess(good_log, index, styles, 4, between, atoms)
    assert not h["content_formed"] and "between atoms" in health.warning(h)
    leaky = styles + np.eye(3)[index % 3] * 2  # z_s moves with the atom inside each sample
    assert health.assess(good_log, index, leaky, 4)["content_in_style"] > 0.9
    assert health.assess(good_log, index, styles, 4)["content_in_style"] < 0.3
    # contents drawn with repeats: pairs of atoms share samples as often as independence predicts, until one
    # content is drawn by two atoms, one per half of the samples (a split by style)
    drawn = rng.integers(0, 4, (120, 4))
    styles = rng.normal(size=(120, 1, 3)) * 5 + rng.normal(size=(120, 4, 3)) * 0.1
    assert health.assess(good_log, drawn, styles, 5)["exclusive_atoms"] == []
    split = np.where((drawn == 3) & (np.arange(120)[:, None] % 2 == 1), 4, drawn)
    h = health.assess(good_log, split, styles, 5)
    assert [p[:2] for p in h["exclusive_atoms"]] == [[3, 4]] and not h["content_formed"]
    assert "atoms 3 and 4 share samples 0% as often" in health.warning(h)


def test_rendering_agreement_compares_the_nearest_atom_with_the_best_rendering():
    import torch

    from varinv.methods.v3 import V3, V3Config

    m = V3(V3Config(d_content=4, d_style=4, n_channels=8, n_layers=2, d_hidden=32, n_atoms=5, style_pool=True,
                    pose="none"),
           (1, 16, 8))
    x = torch.rand(3, 4, 1, 16, 8)
    m.train()
    m.loss({"x": x}, step=0)  # initialises the codebook
    got = m.rendering_agreement(x)
    assert m.training and got.shape == (12,) and got.dtype == torch.bool
    m.eval()
    with torch.no_grad():
        enc = m.encode(x)
        want = m.best_atoms(x.flatten(0, 1), enc.style.flatten(0, 1)) == enc.content_index.flatten()
    assert torch.equal(got, want)


def _run(toy_dataset, tmp_path, name, **model):
    raw = json.loads(json.dumps(TOY_CFG))
    raw["data"]["path"] = str(toy_dataset.root)
    raw["model"].update(model)
    raw["train"].update(steps=600, ckpt_every=600)
    run = tmp_path / name
    train(config_mod.from_dict(raw), run, progress=False, tensorboard=False)
    return json.loads((run / "health.json").read_text())


def test_training_writes_health_and_flags_collapse(toy_dataset, tmp_path, capsys):
    good = _run(toy_dataset, tmp_path, "good")
    assert good["ok"], good
    # the spread within samples is of the fragments' own styles: the pooled ones the decoder reads have none
    assert 1.0 < good["style_ratio"] < 1e4, good
    # without the reconstruction term the decoder never learns to render the atoms: nothing formed
    bad = _run(toy_dataset, tmp_path, "bad", w_recon=0.0)
    assert not bad["ok"] and not bad["content_formed"]
    assert capsys.readouterr().err.count("warning: ") == 1
