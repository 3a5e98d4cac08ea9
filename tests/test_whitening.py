import torch

from varinv.methods.v3 import V3, V3Config
from varinv.nn.whitening import StyleWhitening


def test_whitening_gives_the_sample_means_unit_covariance_and_stays_fixed_in_eval():
    torch.manual_seed(0)
    w = StyleWhitening(3, momentum=1.0)
    mix = torch.tensor([[5.0, 0.0, 0.0], [4.0, 1.0, 0.0], [0.0, 0.0, 0.5]])  # correlated, unequal directions
    means = torch.randn(400, 3) @ mix
    zs = (means[:, None] + 0.001 * torch.randn(400, 5, 3)).flatten(0, 1)  # 5 fragments per sample
    w.train()
    out = w(zs, 5).view(400, 5, 3).mean(1)
    assert torch.allclose(torch.cov(out.t()), torch.eye(3), atol=0.05)
    before = w.cov.clone()
    w.eval()
    w(3 * zs, 5)
    assert torch.equal(w.cov, before)  # evaluation does not move the statistics


def test_v3_reads_whitened_styles_and_keeps_the_statistics_in_its_state():
    torch.manual_seed(0)
    cfg = V3Config(d_content=4, d_style=3, n_channels=8, n_layers=2, d_hidden=32, n_atoms=3, pose="none",
                   style_whiten=True, w_reassign=0.0, w_match=0.0)
    m = V3(cfg, (3, 16, 16))
    assert {"whitening.mean", "whitening.cov", "whitening.updates"} <= set(m.state_dict())
    m.train()
    out = m.loss({"x": torch.rand(6, 4, 3, 16, 16)}, step=0)
    out["total"].backward()
    assert int(m.whitening.updates) == 1 and torch.isfinite(out["total"])
    m.eval()
    enc = m.encode(torch.rand(6, 4, 3, 16, 16))
    assert int(m.whitening.updates) == 1 and enc.style.shape == (6, 4, 3)
