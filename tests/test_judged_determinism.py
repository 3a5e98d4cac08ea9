"""The judge (and the few-shot counterpart) train to the same weights for the same seed.

torch's global RNG starts from a random seed in each process; the judge used to draw its initial
weights from it, so two fresh evaluations of one run trained different judges and reported different
``judged`` numbers. Each call here starts from a different global RNG state, as a new process would.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from conftest import toy_arrays
from varinv.data.store import from_arrays
from varinv.eval.classifier import ClassifierSettings, build_counterpart, cached_classifier
from varinv.eval.judged import judged_generation

SETTINGS = ClassifierSettings(steps=12, batch_size=4, seed=3)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


class _Swapper:
    """A stand-in generative model: the 'decoder' returns the fragments its content latent points at."""

    def __init__(self, x: torch.Tensor):
        self.x = x

    def eval(self):
        return self

    def decode(self, c, s):
        return self.x[c[:, 0]]


def _train_judge(tmp_path, ds, name: str, global_seed: int):
    torch.manual_seed(global_seed)  # an unrelated global RNG state must not matter
    np.random.seed(global_seed)
    run = tmp_path / name
    run.mkdir()
    model, info = cached_classifier(run, ds, SETTINGS)
    assert info["cached"] is False  # each run folder trains its own judge
    return model, info


def test_judge_trains_identically_for_one_seed(tmp_path):
    ds = from_arrays(tmp_path / "toy", {"train": toy_arrays(24), "test": toy_arrays(8, seed=1)},
                     content_names=list("abcd"), style_names=["red", "green", "blue"])
    m1, i1 = _train_judge(tmp_path, ds, "run1", 123)
    m2, i2 = _train_judge(tmp_path, ds, "run2", 456)
    assert _same_weights(m1, m2)
    assert i1["final_loss"] == i2["final_loss"]

    # ... and so the judged numbers agree
    test = ds.split("test")
    x = torch.from_numpy(np.array(test.x)).float() / ds.scale
    r = len(test)
    lat = {"dec": torch.arange(r)[:, None], "zs": torch.arange(r)[:, None]}
    outs = [judged_generation(_Swapper(x), m, lat, x, test.content, test.style, 4, 3, seed=0) for m in (m1, m2)]
    assert outs[0] == outs[1]

    # another seed is another judge (the seed reaches the initial weights)
    torch.manual_seed(123)
    run3 = tmp_path / "run3"
    run3.mkdir()
    m3, _ = cached_classifier(run3, ds, dataclasses.replace(SETTINGS, seed=4))
    assert not _same_weights(m1, m3)


def test_counterpart_trains_identically_for_one_seed(tmp_path):
    from varinv import methods

    ds = from_arrays(tmp_path / "toy", {"train": toy_arrays(24)}, content_names=list("abcd"),
                     style_names=["red", "green", "blue"])
    cfg = methods.config_class("supervised")()
    for field, value in (("n_channels", 8), ("n_layers", 2), ("d_hidden", 32)):
        if hasattr(cfg, field):
            setattr(cfg, field, value)
    got = []
    for name, global_seed in (("a", 1), ("b", 2)):
        torch.manual_seed(global_seed)
        (tmp_path / name).mkdir()
        model, info = build_counterpart(tmp_path / name, ds, cfg, dataclasses.replace(SETTINGS, steps=4))
        assert info["cached"] is False
        got.append(model)
    assert _same_weights(*got)
