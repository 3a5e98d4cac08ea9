"""Issue 18 part B, "method hooks": the optional hooks are declared on Method with defaults, so callers call
them plainly (no hasattr probing), and the methods that need them override them."""

import copy
import pathlib
import re

import pytest
import torch

from varinv.config import config_class
from varinv.methods import available, build_method
from varinv.methods.base import Encoded, Method
from varinv.train import monitor

SHAPE = (3, 16, 16)
SMALL = {"d_content": 4, "d_style": 4, "n_channels": 16, "n_layers": 2, "d_hidden": 32}
EXTRA = {"v3": {"n_atoms": 4, "pose": "similarity"}, "mine": {"n_atoms": 4}, "cycle": {"n_atoms": 4}, "dsae": {"d_feature": 16, "d_rnn": 16},
         "tsdsae": {"d_feature": 16, "d_rnn": 16, "switch_step": 2}, "mvtcvae": {}, "betavae": {},
         "supervised": {"n_content_classes": 4, "n_style_classes": 3}}
HOOKS = ("after_step", "freeze_codebook", "content_logits", "decoder_style", "progress_terms", "rendering_agreement")
# What the console showed for every method before progress_terms (monitor.CONSOLE_TERMS).
OLD_CONSOLE_TERMS = ("total", "recon", "content", "style", "sample", "fragment", "diversity")


def make(name):
    cfg = config_class(name)(**SMALL, **EXTRA[name])
    cfg.validate()
    return build_method(name, cfg, SHAPE, seed=0)


class Bare(Method):
    def encode(self, x):
        return Encoded(content=x[..., 0, 0, :2], style=x[..., 0, 0, 2:])


def test_registry_covers_every_method():
    assert sorted(EXTRA) == available()


def test_base_defaults():
    m, x = Bare(), torch.randn(2, 3, 1, 1, 5)
    assert m.after_step(7) is None
    assert m.freeze_codebook() is False
    assert m.content_logits(x) is None
    s = torch.randn(2, 3, 4)
    assert m.decoder_style(s) is s
    assert m.progress_terms() == ("total", "recon")
    assert m.rendering_agreement(x) is None
    for hook in HOOKS:
        assert (getattr(Method, hook).__doc__ or "").strip(), hook


@pytest.mark.parametrize("name", sorted(EXTRA))
def test_hooks_per_method(name):
    m = make(name)
    keys = set(m.state_dict())
    has_book = m.codebook() is not None
    frozen = copy.deepcopy(m)
    assert frozen.freeze_codebook() is has_book
    if has_book:
        assert frozen.quantizer.frozen and not m.quantizer.frozen
    assert set(frozen.state_dict()) == keys  # freezing adds no state
    x = torch.rand(2, 3, *SHAPE)
    logits = m.content_logits(x)
    assert (logits is not None) == (name == "supervised")
    if logits is not None:
        assert logits.shape == (2, 3, EXTRA[name]["n_content_classes"])
    # the console shows, for every method, exactly the terms it showed before the hook existed
    batch = {"x": x, "content": torch.zeros(2, 3, dtype=torch.long), "style": torch.zeros(2, 3, dtype=torch.long)}
    out = {k: v.detach() for k, v in m.loss(batch, 0).items()}
    before = [k for k in OLD_CONSOLE_TERMS if k in out]
    assert [k for k in m.progress_terms() if k in out] == before
    assert monitor.loss_text(out, m.progress_terms()) == "  ".join(f"{k}={float(out[k]):.3g}" for k in before)


def test_decoder_style_pools_when_configured():
    cfg = config_class("v3")(**SMALL, n_atoms=4, style_pool=True, pose="none")
    m = build_method("v3", cfg, SHAPE)
    s = torch.randn(2, 3, 4)
    assert torch.allclose(m.decoder_style(s), s.mean(1, keepdim=True).expand_as(s))


def test_tsdsae_after_step_switches():
    m = make("tsdsae")
    m.after_step(0)
    assert int(m.stage) == 1
    m.after_step(1)  # switch_step 2: stage 2 from the step after step 1
    assert int(m.stage) == 2


def test_callers_do_not_probe_methods():
    src = pathlib.Path(__file__).resolve().parents[1] / "src" / "varinv"
    for rel in ("train/trainer.py", "train/monitor.py", "eval/ood.py", "eval/classifier.py"):
        text = (src / rel).read_text()
        assert not re.search(r"(hasattr|getattr)\((model|m)\b", text), rel
    assert "CONSOLE_TERMS" not in (src / "train/monitor.py").read_text()
