"""The baseline methods: each loss term against a direct formula, shapes, a short real training run,
and TS-DSAE's stage switch."""

import copy
import json
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from varinv import config as config_mod
from varinv.methods import available, build_method, config_class
from varinv.methods.cycle import derangement
from varinv.methods.mine import EMALogMeanExp, grad_reverse
from varinv.methods.mvtcvae import combine_views, tc_decomposition
from varinv.train.trainer import train

SHAPE = (3, 16, 16)
SMALL = {"d_content": 4, "d_style": 4, "n_channels": 16, "n_layers": 2, "d_hidden": 32}
EXTRA = {
    "mine": {"n_atoms": 4},
    "cycle": {"n_atoms": 4},
    "dsae": {"d_feature": 16, "d_rnn": 16},
    "tsdsae": {"d_feature": 16, "d_rnn": 16, "switch_step": 2},
    "mvtcvae": {"dataset_size": 96},
    "betavae": {},
    "supervised": {"n_content_classes": 4, "n_style_classes": 3},
}
PEERS = sorted(EXTRA)


def make(name, **kw):
    cfg = config_class(name)(**{**SMALL, **EXTRA[name], **kw})
    cfg.validate()
    return build_method(name, cfg, SHAPE, seed=0)


def toy_batch(b=5, length=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "x": torch.rand(b, length, *SHAPE, generator=g),
        "content": torch.randint(0, 4, (b, length), generator=g),
        "style": torch.randint(0, 3, (b, 1), generator=g).expand(b, length).contiguous(),
    }


def normal(mu, logvar):
    return Normal(mu, (0.5 * logvar).exp())


def close(a, b, tol=1e-5):
    return math.isclose(float(torch.as_tensor(a).detach()), float(torch.as_tensor(b).detach()), rel_tol=tol, abs_tol=tol)


def test_all_peers_registered():
    assert set(PEERS) <= set(available())


# ---- (b) the interface: shapes of encode / decode, any pairing -------------------------------------
@pytest.mark.parametrize("name", PEERS)
def test_encode_decode_shapes(name):
    torch.manual_seed(0)
    m = make(name).eval()
    x = toy_batch()["x"]
    enc = m.encode(x)
    assert enc.content.shape == (5, 4, 4) and enc.style.shape == (5, 4, 4)
    if name in ("mine", "cycle"):
        assert enc.content_index.shape == (5, 4) and m.codebook().shape == (4, 4)
    else:
        assert enc.content_index is None and m.codebook() is None
    swapped = m.decode(m.decoder_content(enc), enc.style.flip(0))  # other samples' styles
    assert swapped.shape == x.shape
    assert m.decode(enc.content[0], enc.style[1]).shape == (4, *SHAPE)  # flat pairs, as in recombination
    out = m.loss(toy_batch(), 0)
    assert torch.isfinite(out["total"]) and out["total"].requires_grad


# ---- MINE ----------------------------------------------------------------------------------------
class ProductT(torch.nn.Module):
    """A fixed statistics network T(z_c, z_s) = Σ_k z_c,k · z_s,k."""

    def forward(self, zc, zs):
        return (zc * zs).sum(-1)


def test_mine_dv_estimate_matches_hand_computation():
    m = make("mine", d_content=1, d_style=1).eval()
    m.statistics = ProductT()
    zc, zs = torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([[1.0], [0.0], [-1.0]])
    perm = torch.tensor([1, 2, 0])
    out = m.mine_terms(zc, zs, perm)
    # joint T = 1, 0, -3; marginal pairs (1, 0), (2, -1), (3, 1) give T = 0, -2, 3
    expect = -2 / 3 - math.log((1 + math.exp(-2) + math.exp(3)) / 3)
    assert close(out["mine_mi"], expect)
    assert close(out["mine_loss"], -expect)  # value of the surrogate = the DV value


def test_bias_corrected_gradient_uses_the_moving_average():
    t = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
    log_ma = torch.tensor(math.log(2.0))
    v = EMALogMeanExp.apply(t, log_ma)
    v.backward()
    assert close(v, math.log(t.detach().exp().mean()))
    assert torch.allclose(t.grad, t.detach().exp() / (3 * 2.0))
    # with ma equal to the batch mean it is the plain gradient of log mean exp (the softmax)
    t.grad = None
    EMALogMeanExp.apply(t, torch.log(t.detach().exp().mean())).backward()
    assert torch.allclose(t.grad, t.detach().softmax(0), atol=1e-6)


def test_mine_moving_average_update():
    m = make("mine", d_content=1, d_style=1, ma_rate=0.25).train()
    m.statistics = ProductT()
    m.log_ma.fill_(math.log(2.0))
    m.ma_initted.fill_(True)
    zc, zs = torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([[1.0], [0.0], [-1.0]])
    m.mine_terms(zc, zs, torch.tensor([1, 2, 0]))
    batch = (1 + math.exp(-2) + math.exp(3)) / 3
    assert close(m.log_ma.exp(), 0.75 * 2.0 + 0.25 * batch)


def test_gradient_reversal_flips_the_sign():
    x = torch.tensor([1.0, -2.0], requires_grad=True)
    (3 * grad_reverse(x, 0.5)).sum().backward()
    assert torch.allclose(x.grad, torch.tensor([-1.5, -1.5]))


def test_mine_min_max_gradients():
    """T ascends Î (its gradient is that of −Î); the encoder side gets +λ·∂Î/∂z."""
    torch.manual_seed(0)
    lam = 0.3
    m = make("mine", mine_weight=lam).eval()
    m.log_ma.fill_(0.1)
    m.ma_initted.fill_(True)
    zc, zs = torch.randn(8, 4, requires_grad=True), torch.randn(8, 4, requires_grad=True)
    perm = torch.randperm(8)
    m.mine_terms(zc, zs, perm)["mine_loss"].backward()
    t_grads = [p.grad.clone() for p in m.statistics.parameters()]
    # the same surrogate without the reversal layer
    m.zero_grad()
    zc2, zs2 = zc.detach().clone().requires_grad_(), zs.detach().clone().requires_grad_()
    sur = m.statistics(zc2, zs2).mean() - EMALogMeanExp.apply(m.statistics(zc2, zs2[perm]), m.log_ma)
    sur.backward()
    assert torch.allclose(zc.grad, lam * zc2.grad, atol=1e-6) and torch.allclose(zs.grad, lam * zs2.grad, atol=1e-6)
    for g, p in zip(t_grads, m.statistics.parameters()):
        assert torch.allclose(g, -p.grad, atol=1e-6)


# ---- cycle ---------------------------------------------------------------------------------------
def test_derangement_has_no_fixed_points():
    torch.manual_seed(0)
    for n in (2, 3, 7):
        p = derangement(n)
        assert sorted(p.tolist()) == list(range(n)) and bool((p != torch.arange(n)).all())


@pytest.mark.parametrize("normalise", [False, True])
def test_cycle_swap_penalties_match_manual_recomputation(normalise):
    torch.manual_seed(0)
    m = make("cycle", normalise=normalise).eval()
    zc, zq, zs = torch.randn(5, 4, 4), torch.randn(5, 4, 4), torch.randn(5, 4, 4)
    perm = torch.tensor([2, 0, 4, 1, 3])
    got = m.swap_terms(zc, zq, zs, perm)

    def reenc(c, s):
        xs = m.decode(c, s)  # (5, 4, C, H, W)
        return m.encoder(xs.reshape(20, *SHAPE))

    def err(a, b):
        e = ((a - b.reshape(20, -1)) ** 2).mean()
        return e / b.reshape(20, -1).var(0).mean() if normalise else e

    rc, rs = reenc(zq, zs[perm])
    rc2, rs2 = reenc(zq[perm], zs)
    assert close(got["style_cycle"], err(rs, zs[perm]) + err(rs2, zs), 1e-4)
    assert close(got["content_cycle"], err(rc, zc) + err(rc2, zc[perm]), 1e-4)


# ---- DSAE ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("pooling,posterior", [("mean", "factorised"), ("lstm", "full")])
def test_dsae_terms_match_torch_distributions(pooling, posterior):
    torch.manual_seed(0)
    m = make("dsae", static_pooling=pooling, posterior=posterior, beta_f=0.7, beta_z=1.3).eval()
    x = toy_batch()["x"]
    torch.manual_seed(1)
    post = m.posteriors(x)
    terms = m.elbo_terms(x, post)
    kl_f = kl_divergence(normal(post["mu_f"], post["lv_f"]), Normal(0.0, 1.0)).sum(-1).mean()
    mu_p, lv_p = m.prior(post["z"])
    kl_z = kl_divergence(normal(post["mu_z"], post["lv_z"]), normal(mu_p, lv_p)).sum((1, 2)).mean()
    x_hat = m.decode(post["z"], post["f"][:, None].expand(-1, 4, -1))
    assert close(terms["kl_f"], kl_f) and close(terms["kl_z"], kl_z, 1e-4)
    assert close(terms["recon"], ((x_hat - x) ** 2).mean())
    torch.manual_seed(1)
    total = m.loss({"x": x}, 0)["total"]
    assert close(total, terms["recon"] + (0.7 * kl_f + 1.3 * kl_z) / (4 * 3 * 16 * 16))
    enc = m.encode(x)  # style is the static mean, the same for every fragment of a sample
    assert torch.equal(enc.style[:, 0], enc.style[:, 3])


def test_dsae_prior_is_causal():
    torch.manual_seed(0)
    m = make("dsae")
    z = torch.randn(2, 5, 4)
    mu, _ = m.prior(z)
    z2 = z.clone()
    z2[:, 2] += 1.0
    mu2, _ = m.prior(z2)
    assert torch.allclose(mu[:, :3], mu2[:, :3]) and not torch.allclose(mu[:, 3:], mu2[:, 3:])
    # p(z_1) does not depend on anything: the same for every sample
    assert torch.allclose(mu[0, 0], mu[1, 0])


# ---- TS-DSAE -------------------------------------------------------------------------------------
def test_tsdsae_switches_stage_at_switch_step():
    torch.manual_seed(0)
    switch = 3
    m = make("tsdsae", switch_step=switch).train()
    local = {k: v.detach().clone() for k, v in m.named_parameters() if k.startswith(("dynamic.", "prior."))}
    static0 = copy.deepcopy(m.static.state_dict())
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=0.1)  # as the trainer does
    for step in range(6):
        out = m.loss(toy_batch(seed=step), step)
        opt.zero_grad(set_to_none=True)
        out["total"].backward()
        if step < switch:
            assert int(out["stage"]) == 1 and "gswap_f" not in out
            assert all(m.get_parameter(k).grad is None for k in local)
            assert m.static.features.out.weight.grad is not None
        else:
            assert int(out["stage"]) == 2 and "lswap_z" in out
        opt.step()
        m.after_step(step)
        if step == switch - 1:  # the switch happens after this step
            assert int(m.stage) == 2
            assert all(p.requires_grad for p in m.dynamic.parameters()) and all(
                p.requires_grad for p in m.prior.parameters())
            for k, v in local.items():  # untouched through stage 1, weight decay included
                assert torch.equal(m.get_parameter(k), v), k
            snap = {k: v.clone() for k, v in m.static_prior.state_dict().items()}
            for k, v in m.static.state_dict().items():
                assert torch.equal(snap[k], v), k
            assert not torch.equal(snap["features.out.weight"], static0["features.out.weight"])
    assert any(not torch.equal(m.get_parameter(k), v) for k, v in local.items())  # trained in stage 2
    for k, v in m.static_prior.state_dict().items():  # the snapshot stays fixed
        assert torch.equal(snap[k], v), k
    assert not any(p.requires_grad for p in m.static_prior.parameters())
    # a checkpoint of stage 2 reloads as stage 2, local modules trainable
    fresh = make("tsdsae", switch_step=switch)
    assert not any(p.requires_grad for p in fresh.dynamic.parameters())
    fresh.load_state_dict(m.state_dict())
    assert int(fresh.stage) == 2 and all(p.requires_grad for p in fresh.dynamic.parameters())


def test_tsdsae_stage2_terms_match_torch_distributions():
    torch.manual_seed(0)
    m = make("tsdsae", switch_step=0).eval()
    assert int(m.stage) == 2
    with torch.no_grad():  # make the snapshot differ from the live static encoder
        for p in m.static.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = toy_batch()["x"]
    torch.manual_seed(3)
    post = m.posteriors(x)
    perm = torch.tensor([1, 2, 3, 4, 0])
    torch.manual_seed(4)
    sw = m.swap_terms(post, perm)
    torch.manual_seed(4)
    g = m.posteriors(m.decode_seq(post["z"], post["f"][perm]))
    lo = m.posteriors(m.decode_seq(post["z"][perm], post["f"]))
    qf, qz = normal(post["mu_f"], post["lv_f"]), normal(post["mu_z"], post["lv_z"])
    qf_d = normal(post["mu_f"][perm], post["lv_f"][perm])
    qz_d = normal(post["mu_z"][perm], post["lv_z"][perm])
    expect = {
        "gswap_f": kl_divergence(normal(g["mu_f"], g["lv_f"]), qf_d).sum(-1).mean(),
        "gswap_z": kl_divergence(normal(g["mu_z"], g["lv_z"]), qz).sum((1, 2)).mean(),
        "lswap_f": kl_divergence(normal(lo["mu_f"], lo["lv_f"]), qf).sum(-1).mean(),
        "lswap_z": kl_divergence(normal(lo["mu_z"], lo["lv_z"]), qz_d).sum((1, 2)).mean(),
    }
    for k, v in expect.items():
        assert close(sw[k], v, 1e-4), k
    # informed prior: KL(q(f|x) || q_snapshot(f|x))
    torch.manual_seed(5)
    out = m.loss({"x": x}, 0)
    torch.manual_seed(5)
    post = m.posteriors(x)
    mu_s, lv_s = m.static_prior(x)
    assert close(out["kl_f"], kl_divergence(normal(post["mu_f"], post["lv_f"]), normal(mu_s, lv_s)).sum(-1).mean())


# ---- MV-TCVAE ------------------------------------------------------------------------------------
def test_tc_decomposition_matches_direct_formula_and_sums_to_kl():
    g = torch.Generator().manual_seed(0)
    m_, d, n = 5, 3, 40
    mu, lv = torch.randn(m_, d, generator=g), 0.5 * torch.randn(m_, d, generator=g)
    z = mu + (0.5 * lv).exp() * torch.randn(m_, d, generator=g)
    t = tc_decomposition(z, mu, lv, n)
    # direct: loops over draws i and data j with torch.distributions densities
    log_qzx, log_qz, log_qprod, log_pz = [], [], [], []
    for i in range(m_):
        log_qzx.append(normal(mu[i], lv[i]).log_prob(z[i]).sum())
        dens = torch.stack([normal(mu[j], lv[j]).log_prob(z[i]) for j in range(m_)])  # (M, d)
        log_qz.append(torch.log(dens.sum(1).exp().sum() / (n * m_)))
        log_qprod.append(torch.log(dens.exp().sum(0) / (n * m_)).sum())
        log_pz.append(Normal(0.0, 1.0).log_prob(z[i]).sum())
    a, b, c, p = (torch.stack(v) for v in (log_qzx, log_qz, log_qprod, log_pz))
    assert close(t["mi"], (a - b).mean(), 1e-4)
    assert close(t["tc"], (b - c).mean(), 1e-4)
    assert close(t["dimkl"], (c - p).mean(), 1e-4)
    assert close(t["mi"] + t["tc"] + t["dimkl"], t["kl"], 1e-4)  # the decomposition is exact
    assert close(t["kl"], (a - p).mean(), 1e-4)


def test_tc_kl_estimate_is_unbiased_for_the_analytic_kl():
    g = torch.Generator().manual_seed(0)
    n = 2000
    mu, lv = torch.tensor([[0.5, -1.0]]).expand(n, 2), torch.tensor([[-0.5, 0.3]]).expand(n, 2)
    z = mu + (0.5 * lv).exp() * torch.randn(n, 2, generator=g)
    kl = tc_decomposition(z, mu, lv, 10)["kl"]
    exact = kl_divergence(normal(mu[0], lv[0]), Normal(0.0, 1.0)).sum()
    assert abs(float(kl) - float(exact)) < 0.05


def test_combine_views():
    mu = torch.tensor([[[1.0], [3.0]]])
    lv = torch.log(torch.tensor([[[1.0], [3.0]]]))
    m, v = combine_views(mu, lv, "poe")  # precisions 1 and 1/3: mean (1 + 1) / (4/3), var 3/4
    assert close(m, 1.5) and close(v.exp(), 0.75)
    m, v = combine_views(mu, lv, "mean")
    assert close(m, 2.0) and close(v, 0.5 * math.log(3.0))


def test_mvtcvae_loss_formula():
    torch.manual_seed(0)
    m = make("mvtcvae", alpha=0.2, beta=0.3, gamma=0.7).eval()
    x = toy_batch()["x"]
    torch.manual_seed(1)
    out = m.loss({"x": x}, 0)
    torch.manual_seed(1)
    post = m.posteriors(x)
    s = tc_decomposition(post["zs"], post["mu_s"], post["lv_s"], 96)
    p = tc_decomposition(post["zp"].flatten(0, 1), post["mu_p"].flatten(0, 1), post["lv_p"].flatten(0, 1), 96 * 4)
    x_hat = m.decode(post["zp"], post["zs"][:, None].expand(-1, 4, -1))

    def w(t):
        return 0.2 * t["mi"] + 0.3 * t["tc"] + 0.7 * t["dimkl"]

    assert close(out["tc_s"], s["tc"], 1e-4) and close(out["dimkl_p"], p["dimkl"], 1e-4)
    assert close(out["total"], ((x_hat - x) ** 2).mean() + (w(s) + 4 * w(p)) / (4 * 3 * 16 * 16), 1e-4)
    enc = m.encode(x)
    assert torch.equal(enc.style[:, 0], enc.style[:, 2])


# ---- β-VAE ---------------------------------------------------------------------------------------
def test_betavae_terms():
    torch.manual_seed(0)
    m = make("betavae", beta=3.0).eval()
    x = toy_batch()["x"]
    mu, lv = m.posterior(x)
    assert mu.shape == (20, 8)
    torch.manual_seed(1)
    out = m.loss({"x": x}, 0)
    torch.manual_seed(1)
    z = mu + (0.5 * lv).exp() * torch.randn_like(mu)
    x_hat = m.decoder(z[:, :4], z[:, 4:]).view_as(x)
    kl = kl_divergence(normal(mu, lv), Normal(0.0, 1.0)).sum(-1).mean()
    assert close(out["kl"], kl) and close(out["recon"], ((x_hat - x) ** 2).mean())
    assert close(out["total"], out["recon"] + 3.0 * kl / (3 * 16 * 16))
    enc = m.encode(x)  # content / style are the two halves of the mean
    assert torch.equal(torch.cat([enc.content, enc.style], -1).flatten(0, 1), mu)


# ---- supervised ----------------------------------------------------------------------------------
def test_supervised_cross_entropy_and_predictions():
    torch.manual_seed(0)
    m = make("supervised").eval()
    assert m.uses_labels and m.codebook() is None
    b = toy_batch()
    out = m.loss(b, 0)
    enc = m.encode(b["x"])
    lc = torch.log_softmax(m.content_head(enc.content), -1)
    ls = torch.log_softmax(m.style_head(enc.style), -1)
    ce_c = -lc.gather(-1, b["content"][..., None]).mean()
    ce_s = -ls.gather(-1, b["style"][..., None]).mean()
    assert close(out["content_ce"], ce_c) and close(out["style_ce"], ce_s)
    assert close(out["total"], out["recon"] + ce_c + ce_s)
    pred = m.predict_content(b["x"])
    assert pred.shape == (5, 4) and torch.equal(pred, lc.argmax(-1))
    assert torch.allclose(torch.log_softmax(m.content_logits(b["x"]), -1), lc, atol=1e-5)
    unlabelled = m.loss({"x": b["x"]}, 0)  # the evaluator's unsupervised fine-tuning: recon only
    assert set(unlabelled) == {"recon", "total"} and close(unlabelled["total"], out["recon"])
    bad = dict(b, content=b["content"] + 4)
    with pytest.raises(Exception, match="n_content_classes"):
        m.loss(bad, 0)


# ---- (c) 30 steps through the real trainer lower the loss; the evaluator takes every method -----
@pytest.mark.parametrize("name", PEERS)
def test_short_training_lowers_loss_and_evaluates(name, toy_dataset, tmp_path):
    from varinv.eval.evaluate import evaluate

    model = {"method": name, **SMALL, "d_content": 8, "d_style": 8, **EXTRA[name]}
    if name == "tsdsae":
        model["switch_step"] = 15
    raw = {"data": {"path": str(toy_dataset.root), "n_eval": 50},
           "model": model,
           "train": {"steps": 30, "batch_size": 16, "log_every": 1, "ckpt_every": 100, "threads": 1}}
    cfg = config_mod.from_dict(raw)
    train(cfg, tmp_path / "run", progress=False, tensorboard=False)
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 30
    key = "recon" if name == "mine" else "total"  # MINE's total holds −Î, which T pushes up
    first = sum(r[key] for r in log[:3]) / 3
    last = sum(r[key] for r in log[-3:]) / 3
    assert last < 0.8 * first, (first, last)
    if name == "tsdsae":
        assert log[14]["stage"] == 1 and log[15]["stage"] == 2
    metrics = evaluate(tmp_path / "run", plots=False)
    for k in ("prauc_zc_content", "codebook_purity", "recon_mse", "atoms_used"):
        assert k in metrics, k


def test_mine_statistics_network_learns_gaussian_mutual_information():
    """T alone (λ = 0) on correlated Gaussians: the estimate approaches the true I = −d/2·log(1 − ρ²)."""
    torch.manual_seed(0)
    m = make("mine", d_content=2, d_style=2, mine_weight=0.0, t_hidden=64).train()
    opt = torch.optim.AdamW(m.statistics.parameters(), lr=1e-3, weight_decay=0.1)
    rho, est = 0.9, []
    for step in range(300):
        a = torch.randn(256, 2)
        b = rho * a + math.sqrt(1 - rho**2) * torch.randn(256, 2)
        out = m.mine_terms(a, b, torch.randperm(256))
        opt.zero_grad()
        out["mine_loss"].backward()
        opt.step()
        est.append(float(out["mine_mi"]))
    true = -math.log(1 - rho**2)
    assert 0.8 * true < sum(est[-50:]) / 50 < 1.1 * true
