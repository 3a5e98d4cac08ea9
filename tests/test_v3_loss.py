import dataclasses
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from varinv.errors import ConfigError
from varinv.methods import regularisers
from varinv.methods.regularisers import REGULARISERS, farthest_subset, diversity_loss, matched_atoms, sample_nce, tilt, tilt_basis, tilt_term
from varinv.methods.v3 import V3, V3Config, hinge, mpd, v3_terms
from varinv.nn.quantizer import EMAQuantizer


def paper_config(**kw) -> V3Config:
    """The tests here isolate one term each, so they start from the paper's settings (``V3Config.FORMER``),
    not from the recipe's defaults."""
    return V3Config(**{**V3Config.FORMER, **kw})


def slow_mpd(x):
    """Direct formula on one (n, d) set: mean over ordered pairs i != j of ||x_i - x_j||."""
    n = x.shape[0]
    tot = sum(torch.linalg.norm(x[i] - x[j]) for i, j in itertools.permutations(range(n), 2))
    return tot / (n * (n - 1))


def test_mpd_hand_value():
    # three points on a line at 0, 3, 4: pair distances 3, 4, 1 → mean over 6 ordered pairs = 16/6
    x = torch.tensor([[0.0, 0.0], [3.0, 0.0], [4.0, 0.0]])
    assert math.isclose(float(mpd(x)), 16 / 6, rel_tol=1e-6)


def test_v3_terms_match_direct_formula():
    g = torch.Generator().manual_seed(0)
    b, length, d, r = 5, 4, 3, 15.0
    zc, zq, zs = (torch.randn(b, length, d, generator=g) for _ in range(3))
    zs = zs * 0.1 + torch.randn(b, 1, d, generator=g)  # style roughly constant within a sample
    terms = v3_terms(zc, zq, zs, r)
    vc_frag = sum(0.5 * slow_mpd(zc[i]) + 0.5 * slow_mpd(zq[i]) for i in range(b)) / b
    vc_samp = 0.5 * slow_mpd(zc.mean(1)) + 0.5 * slow_mpd(zq.mean(1))
    vs_frag = sum(slow_mpd(zs[i]) for i in range(b)) / b
    vs_samp = slow_mpd(zs.mean(1))
    eps = 1e-5
    expect = {
        "content": max(0.0, r - vc_frag / (vc_samp + eps)) / r,
        "style": max(0.0, r - vs_samp / (vs_frag + eps)) / r,
        "sample": max(0.0, r - vs_samp / (vc_samp + eps)) / r,
        "fragment": max(0.0, r - vc_frag / (vs_frag + eps)) / r,
    }
    for k, v in expect.items():
        assert math.isclose(float(terms[k]), float(v), rel_tol=1e-5, abs_tol=1e-7), k
    assert math.isclose(float(terms["stat_vs_samp"]), float(vs_samp), rel_tol=1e-5)


def test_hinge_bounds():
    assert float(hinge(torch.tensor(0.0), 15.0)) == 1.0
    assert float(hinge(torch.tensor(15.0), 15.0)) == 0.0
    assert math.isclose(float(hinge(torch.tensor(7.5), 15.0)), 0.5)


def test_v3_loss_has_gradients_and_no_nan():
    m = V3(paper_config(n_atoms=4, d_content=4, d_style=4, n_channels=16, n_layers=2, d_hidden=32), (3, 16, 16))
    out = m.loss({"x": torch.rand(4, 3, 3, 16, 16)}, 0)
    out["total"].backward()
    for k in ("recon", "commit", "content", "style", "sample", "fragment", "total"):
        assert torch.isfinite(out[k]), k
    assert m.encoder.to_content.weight.grad.abs().sum() > 0


def test_scale_free_terms_do_not_reward_shrinking():
    # With an absolute epsilon in their denominators both terms fell as the latents shrank (isotropy
    # to -1 at 1e-3 of unit scale), which collapsed the style space of most suite runs.
    from varinv.methods.regularisers import diversity_loss, isotropy_loss

    torch.manual_seed(0)
    z, sq = torch.randn(64, 8), torch.rand(4, 10, 10)
    for scale in (1e-2, 1e-4, 1e-6):
        assert torch.allclose(isotropy_loss(z * scale), isotropy_loss(z), rtol=1e-3)
        assert torch.allclose(diversity_loss(sq * scale**2, 0.05), diversity_loss(sq, 0.05), rtol=1e-3)
    assert isotropy_loss(z) >= 0


def test_isotropy_floor_reopens_a_closed_direction():
    # Two styles merged along a direction holding 1e-6 of the variance: the moment form pulls it in
    # proportion to its variance (nothing), the floor in proportion to 1/variance.
    from varinv.methods.regularisers import isotropy_loss

    torch.manual_seed(0)
    base = torch.randn(64, 4)
    base[:, 3] *= 1e-3
    grown = {}
    for floor in (0.0, 0.1):
        z = base.clone().requires_grad_()
        loss = isotropy_loss(z, floor)
        loss.backward()
        step = (z - 0.01 * z.grad / z.grad.norm()).detach()
        grown[floor] = float(step[:, 3].var() / base[:, 3].var())
        assert torch.isfinite(loss)
    assert grown[0.1] - 1 > 5 * (grown[0.0] - 1) and grown[0.1] > 1.3
    iso = torch.randn(4096, 4)
    assert torch.allclose(isotropy_loss(iso, 0.1), isotropy_loss(iso))  # no direction below the floor
    for scale in (1e-2, 1e-4):
        assert torch.allclose(isotropy_loss(base * scale, 0.1), isotropy_loss(base, 0.1), rtol=1e-3)


def test_diversity_loss_prefers_distinct_atoms():
    # 2 fragments, 2 atoms: both near atom 0 → usage (1, 0), entropy 0 → loss 1; one each → loss 0
    same = torch.tensor([[[0.0, 100.0], [0.0, 100.0]]])
    diff = torch.tensor([[[0.0, 100.0], [100.0, 0.0]]])
    assert float(diversity_loss(same, 0.1)) > 0.99
    assert float(diversity_loss(diff, 0.1)) < 0.01


def test_sample_nce_rewards_styles_shared_within_samples():
    g = torch.Generator().manual_seed(0)
    per_sample = torch.randn(6, 1, 4, generator=g).expand(6, 5, 4)
    shared = per_sample + 0.01 * torch.randn(6, 5, 4, generator=g)
    mixed = torch.randn(6, 5, 4, generator=g)  # no sample structure
    assert float(sample_nce(shared, 0.1)) < 0.5 < float(sample_nce(mixed, 0.1))
    # hand value: 2 samples x 2 fragments, each pair identical and the two samples orthogonal:
    # a fragment's logits are 10 (its partner) and 0, 0 (the other sample) → loss log(1 + 2 e^-10)
    z = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 1.0]]])
    assert math.isclose(float(sample_nce(z, 0.1)), math.log(1 + 2 * math.exp(-10)), abs_tol=2e-6)


def test_quantizer_kmeans_init_finds_clusters_and_ema_tracks_them():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = centres.repeat(50, 1) + 0.1 * torch.randn(150, 2, generator=g)
    q = EMAQuantizer(2, 3, decay=0.5, dead_threshold=0.0)
    q.train()
    out, idx, commit = q(x)
    assert torch.allclose(torch.sort(q.codebook.norm(dim=1)).values,
                          torch.sort(centres.norm(dim=1)).values, atol=0.2)
    assert len(set(idx.tolist())) == 3 and float(commit) < 0.05
    # the straight-through output equals the atoms in value and passes gradient to x
    q.eval()  # no EMA step, so the output can be compared with the codebook it was looked up in
    x2 = x.clone().requires_grad_(True)
    out, idx, _ = q(x2)
    assert torch.allclose(out, q.codebook[idx], atol=1e-5)
    out.sum().backward()
    assert torch.allclose(x2.grad, torch.ones_like(x2))


def test_dead_atoms_are_reseeded():
    q = EMAQuantizer(2, 4, decay=0.5, dead_threshold=1.0, kmeans_init=False)
    q.codebook.copy_(torch.tensor([[0.0, 0.0], [100.0, 100.0], [200.0, 200.0], [300.0, 300.0]]))
    q.embed_sum.copy_(q.codebook)
    q.cluster_size.fill_(1.0)
    q.train()
    x = torch.randn(64, 2) * 0.1
    for _ in range(5):
        q(x)
    # atoms far from every point got no usage; they are re-seeded inside the data
    assert (q.codebook.norm(dim=1) < 5).all()


def test_vq_warmup_decodes_z_c_then_seeds_the_codebook_from_it():
    torch.manual_seed(0)
    cfg = paper_config(d_content=4, d_style=4, n_channels=8, n_layers=2, d_hidden=32, n_atoms=3, vq_warmup=2,
                   w_diversity=1.0, w_code_independence=1.0, w_isotropy=0.3)
    m = V3(cfg, (3, 16, 16))
    m.train()
    x = torch.rand(4, 3, 3, 16, 16)
    before = m.quantizer.codebook.clone()
    out = m.loss({"x": x}, step=1)
    # terms that read the codebook wait for it; the style's isotropy does not
    assert float(out["commit"]) == 0.0 and "diversity" not in out and "code_independence" not in out
    assert "isotropy" in out
    assert not bool(m.quantizer.initted) and torch.equal(m.quantizer.codebook, before)
    ae = m.autoencode(x, step=1)
    assert torch.equal(ae["zq"], ae["zc"])  # the decoder reads z_c itself
    out = m.loss({"x": x}, step=2)
    assert bool(m.quantizer.initted) and "diversity" in out and "code_independence" in out and float(out["commit"].detach()) > 0
    assert not torch.equal(m.quantizer.codebook, before)
    m.eval()
    ae = m.autoencode(x, step=0)  # evaluation always quantises
    assert torch.allclose(ae["zq"], m.quantizer.codebook[ae["index"]])


def test_reassignment_targets_the_atom_that_reconstructs_best_and_leaves_batch_norm_alone():
    torch.manual_seed(0)
    cfg = paper_config(d_content=4, d_style=4, n_channels=8, n_layers=2, d_hidden=32, n_atoms=5, w_reassign=1.0,
                   reassign_fragments=6)
    m = V3(cfg, (3, 16, 16))
    m.train()
    m.quantizer.codebook.copy_(torch.randn(5, 4) * 3)
    m.quantizer.initted.fill_(True)
    zs = torch.randn(6, 4)
    want = torch.tensor([4, 0, 2, 2, 1, 3])
    m.decoder.eval()
    with torch.no_grad():
        x = m.decoder(m.quantizer.codebook[want], zs)  # each fragment is exactly atom want[i]'s decoding
    m.decoder.train()
    stats = {k: v.clone() for k, v in m.decoder.state_dict().items() if "running" in k}
    assert torch.equal(m.best_atoms(x, zs), want)
    assert all(torch.equal(v, m.decoder.state_dict()[k]) for k, v in stats.items())
    out = m.loss({"x": torch.rand(2, 3, 3, 16, 16)}, step=0)
    assert torch.isfinite(out["reassign"]) and out["reassign"] > 0
    m.cfg.reassign_start = 5
    assert "reassign" not in m.loss({"x": torch.rand(2, 3, 3, 16, 16)}, step=4)


@pytest.mark.parametrize("style", ["mean", "other"])
def test_reassignment_decodes_with_a_samples_mean_style(style):
    torch.manual_seed(1)
    cfg = paper_config(d_content=4, d_style=4, n_channels=8, n_layers=2, d_hidden=32, n_atoms=5, w_reassign=1.0,
                   reassign_fragments=5, reassign_style=style)
    m = V3(cfg, (3, 16, 16))
    m.train()
    seen = {}
    real = m.atom_errors

    def spy(x, zs, pose=None):
        seen["zs"] = zs
        return real(x, zs, pose)

    m.atom_errors = spy
    x = torch.rand(2, 3, 3, 16, 16)
    m.loss({"x": x}, step=0)
    zs = m.autoencode(x, step=0)["zs"].detach().view(2, 3, -1)
    means = zs.mean(1) if style == "mean" else zs.mean(1).roll(1, 0)  # "other": the other sample's
    want = means.repeat_interleave(3, 0)[:5]  # fragments 0-2 get one mean, 3-4 the other
    assert torch.allclose(seen["zs"], want, atol=1e-5)
    assert not torch.allclose(seen["zs"], zs.reshape(6, -1)[:5], atol=1e-3)
    with pytest.raises(ConfigError, match="reassign_style"):
        paper_config(reassign_style="sample").validate()


def test_posed_nce_asks_a_fragment_in_a_random_pose_for_its_own_code(monkeypatch):
    cfg = paper_config(d_content=16, d_style=4, n_channels=8, n_layers=2, d_hidden=32, n_atoms=5, pose="time",
                       w_posed_nce=1.0)
    m = V3(cfg, (1, 16, 8))
    m.train()
    torch.manual_seed(0)
    x = torch.rand(4, 4, 1, 16, 8)
    out = m.loss({"x": x}, step=0)
    assert torch.isfinite(out["posed_nce"])
    out["total"].backward()
    assert m.encoder.to_content.weight.grad.abs().sum() > 0
    ae = m.autoencode(x, step=0)
    monkeypatch.setattr(regularisers.draws, "randperm", lambda n, device=None: torch.arange(n))  # anchors: the first 4
    seen = []
    codes = torch.eye(16)  # every fragment its own code

    def invariant(posed):  # a content code that ignores the pose: the clean fragment's own
        seen.append(posed)
        return codes[:len(posed)]
    monkeypatch.setattr(m, "content_of", invariant)
    low = float(regularisers.posed_nce_term(m, {"x": x}, dict(ae, zc=codes), 0))
    monkeypatch.setattr(m, "content_of", lambda posed: codes[1:len(posed) + 1])  # the pose changes the code
    high = float(regularisers.posed_nce_term(m, {"x": x}, dict(ae, zc=codes), 0))
    assert low < 0.01 < 2.0 < high
    posed, clean = seen[0][:, 0], x.flatten(0, 1)[:4]
    assert len(seen[0]) == 4  # a quarter of the 16 fragments
    assert (posed - clean).abs().flatten(1).amax(1).min() > 0  # each moved ...
    assert torch.allclose(posed.mean((1, 2, 3)), clean.mean((1, 2, 3)), atol=0.1)  # ... along time, not replaced
    still = V3(dataclasses.replace(cfg, pose="none"), (1, 16, 8))
    assert "posed_nce" not in still.loss({"x": x}, step=0)  # no pose, no nuisance to be invariant to


def test_tilt_term_pulls_tilted_fragments_to_the_clean_atoms():
    torch.manual_seed(2)
    cfg = paper_config(d_content=4, d_style=4, n_channels=8, n_layers=2, d_hidden=32, n_atoms=5, w_tilt=1.0)
    m = V3(cfg, (1, 16, 8))
    m.train()
    x = torch.rand(2, 3, 1, 16, 8)
    out = m.loss({"x": x}, step=0)
    assert torch.isfinite(out["tilt"]) and out["tilt"] > 0
    out["total"].backward()
    assert m.encoder.to_content.weight.grad.abs().sum() > 0
    m.cfg.tilt_range = 1e-6  # no tilt: the term is the commitment distance of the clean fragments
    ae = m.autoencode(x, step=0)
    assert torch.allclose(tilt_term(m, {"x": x}, ae, 0), F.mse_loss(ae["zc"], ae["zq"].detach()), rtol=1e-3, atol=1e-5)
    assert "tilt" not in V3(paper_config(d_content=4, d_style=4, n_channels=8, n_layers=2, d_hidden=32, n_atoms=5),
                            (1, 16, 8)).loss({"x": x}, step=0)


def test_log_tilt_mode_reweights_a_low_tones_first_harmonics():

    lin, log = tilt_basis(256, "linear"), tilt_basis(256, "log")
    for basis in (lin, log):
        assert torch.allclose(basis.mean(1), torch.zeros(2), atol=1e-6)
    # 110 Hz at 15.6 Hz per bin: fundamental near bin 7, 3rd harmonic near bin 21
    assert (log[0, 21] - log[0, 7]) > 3 * (lin[0, 21] - lin[0, 7]) > 0
    assert torch.allclose(lin[0, -1] - lin[0, 0], log[0, -1] - log[0, 0])  # same span over the band
    with pytest.raises(ConfigError, match="tilt_mode"):
        paper_config(tilt_mode="mel").validate()


def test_lowpass_tilt_only_lowers_magnitudes_and_keeps_the_floor():
    from varinv.audio.features import LOG_EPS

    torch.manual_seed(0)
    mag = torch.zeros(64, 1, 128, 2)
    mag[:, :, 7::7] = 10.0 / torch.arange(1, 19).view(1, 1, -1, 1)  # a harmonic series with gaps of silence
    x = torch.log(mag + LOG_EPS)
    y = tilt(x, "lowpass", 8.0)
    assert torch.all(y <= x + 1e-5)
    assert torch.allclose(y[:, :, :7], x[:, :, :7])  # silence stays silence
    assert (y < x - 1.0).any(dim=(1, 2, 3)).float().mean() > 0.5  # most draws strip some harmonics
    lin = tilt(x, "linear", 2.0)
    assert torch.allclose((lin - x).mean(2), torch.zeros(64, 1, 2), atol=1e-4)


def test_lowpass_knee_range_keeps_the_band_below_it():

    torch.manual_seed(0)
    x = torch.zeros(256, 1, 128, 2)
    y = tilt(x, "lowpass", 8.0, (0.5, 0.7))
    f = torch.log1p(torch.arange(128.0))
    below = f < f[1] + 0.5 * (f[-1] - f[1])
    above = f > f[1] + 0.7 * (f[-1] - f[1]) + 0.05
    assert torch.allclose(y[:, :, below], x[:, :, below])
    assert (y[:, :, above] < x[:, :, above]).float().mean() > 0.95  # every knee lies below these bins
    with pytest.raises(ConfigError, match="tilt_knee"):
        paper_config(tilt_knee_min=0.6, tilt_knee_max=0.4).validate()


def test_matching_gives_each_fragment_of_a_sample_its_own_atom():

    # fragments 0 and 1 are both nearest atom 0; the matching sends 1 (the closer to atom 2) there
    sq = torch.tensor([[[0.0, 5.0, 9.0], [1.0, 6.0, 2.0], [8.0, 0.5, 7.0]]])
    assert matched_atoms(sq).tolist() == [[0, 2, 1]]
    assert matched_atoms(sq.repeat(1, 2, 1)[:, :4]).tolist()[0].count(-100) == 1  # L > K: one left over
    # a repeat costs c x the mean squared distance (38.5 / 9): fragment 1 is 1 closer to atom 0 than to atom 2
    assert matched_atoms(sq, repeat_cost=0.1).tolist() == [[0, 0, 1]]  # 0.43 < 1: it shares atom 0
    assert matched_atoms(sq, repeat_cost=1.0).tolist() == [[0, 2, 1]]  # 4.3 > 1: it moves
    assert -100 not in matched_atoms(sq.repeat(1, 2, 1)[:, :4], repeat_cost=1.0).tolist()[0]
    cfg = paper_config(d_content=4, d_style=4, n_channels=8, n_layers=2, d_hidden=32, n_atoms=5, w_match=1.0)
    m = V3(cfg, (1, 16, 8))
    out = m.loss({"x": torch.rand(2, 3, 1, 16, 8)}, step=0)
    assert torch.isfinite(out["match"]) and out["match"] > 0
    out["total"].backward()
    assert m.encoder.to_content.weight.grad.abs().sum() > 0
    assert "match" not in V3(paper_config(d_content=4, d_style=4, n_channels=8, n_layers=2, d_hidden=32, n_atoms=5),
                             (1, 16, 8)).loss({"x": torch.rand(2, 3, 1, 16, 8)}, step=0)


def test_subset_matching_leaves_out_a_repeated_contents_copies():
    # fragments 0 and 1 are copies of one content (nearly equal z_c), 2 and 3 are two other contents
    z = torch.tensor([[[0.0, 0.0], [0.0, 0.1], [5.0, 0.0], [0.0, 5.0]]])
    chosen = farthest_subset(z, 3)[0].tolist()
    assert sorted(chosen)[1:] == [2, 3] and len({0, 1} & set(chosen)) == 1
    cfg = paper_config(d_content=4, d_style=4, n_channels=8, n_layers=2, d_hidden=32, n_atoms=5, w_match=1.0,
                   match_subset=0.5)
    m = V3(cfg, (1, 16, 8))
    seen = {}
    real = regularisers.matched_atoms

    def spy(sq, repeat_cost=0.0):
        seen["shape"] = tuple(sq.shape)
        return real(sq, repeat_cost)

    regularisers.matched_atoms = spy
    try:
        out = m.loss({"x": torch.rand(2, 4, 1, 16, 8)}, step=0)
    finally:
        regularisers.matched_atoms = real
    assert seen["shape"] == (2, 2, 5)  # half of each sample's 4 fragments are matched
    assert torch.isfinite(out["match"]) and out["match"] > 0
    with pytest.raises(ConfigError, match="match_subset"):
        paper_config(match_subset=0.0).validate()


def test_every_regulariser_has_a_weight_field_a_reason_and_a_results_file():
    from pathlib import Path

    results = Path(__file__).parents[1] / "benchmarks" / "results"
    fields = V3Config.__dataclass_fields__
    for name, reg in REGULARISERS.items():
        # off unless a config names it, or part of the recipe (then the paper's 0 is its former value)
        assert reg.weight in fields and V3Config.FORMER.get(reg.weight, fields[reg.weight].default) == 0.0, name
        assert len(reg.why) > 40 and (results / reg.results).exists(), name


def test_sample_standardisation_removes_what_a_samples_fragments_share():
    from varinv.methods.autoencoder import standardise_samples

    g = torch.Generator().manual_seed(0)
    x = 10 * torch.rand(3, 5, 2, 4, 4, generator=g)  # spreads far above the division's epsilon
    # a per-sample, per-channel offset and gain (a colour pair, a timbre's mean level) changes nothing
    shifted = x * torch.tensor([2.0, 0.5]).view(1, 1, 2, 1, 1) + torch.rand(3, 1, 2, 1, 1, generator=g)
    assert torch.allclose(standardise_samples(x), standardise_samples(shifted), atol=5e-3)
    z = standardise_samples(x)
    assert torch.allclose(z.mean(1), torch.zeros_like(z.mean(1)), atol=1e-5)
    assert torch.allclose(z.pow(2).mean((1, 3, 4)), torch.ones(3, 2), atol=1e-3)


def test_instance_content_branch_ignores_a_fragments_colour_gain_and_offset():
    torch.manual_seed(0)
    m = V3(paper_config(n_atoms=4, d_content=4, d_style=4, content_input="instance"), (3, 16, 16)).eval()
    x = torch.rand(2, 3, 3, 16, 16)
    recoloured = x * torch.tensor([1.5, 0.7, 2.0]).view(1, 1, 3, 1, 1) + torch.tensor([0.2, -0.1, 0.3]).view(1, 1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(m.content_of(x), m.content_of(recoloured), atol=1e-3)
        assert not torch.allclose(m.encode(x).style, m.encode(recoloured).style, atol=1e-3)  # style still sees it


def test_style_pool_decodes_with_the_sample_mean_style_and_reports_it():
    torch.manual_seed(0)
    m = V3(paper_config(n_atoms=4, d_content=4, d_style=4, style_pool=True, style_stats=True), (1, 16, 8))
    x = torch.rand(3, 4, 1, 16, 8)
    ae = m.autoencode(x, step=0)
    zs = ae["zs"].view(3, 4, -1)
    assert torch.allclose(ae["zs_dec"].view(3, 4, -1), zs.mean(1, keepdim=True).expand_as(zs))
    m.eval()
    style = m.encode(x).style
    assert torch.allclose(style, style[:, :1].expand_as(style))  # one style per sample, as DSAE's static f


@pytest.mark.parametrize("repeats", [True, False])
def test_shuffled_content_reference_is_met_by_a_faithful_code_with_or_without_repeats(repeats):
    g = torch.Generator().manual_seed(0)
    b, length, k = 64, 10, 10
    atoms = torch.eye(k)
    content = (torch.randint(0, k, (b, length), generator=g) if repeats
               else torch.stack([torch.randperm(k, generator=g) for _ in range(b)]))
    zc = atoms[content]
    zs = torch.randn(b, 1, 4, generator=g).expand(b, length, 4) * 100
    perm = torch.randperm(b * length, generator=g)
    paper, shuffled = v3_terms(zc, zc, zs, 15.0), v3_terms(zc, zc, zs, 15.0, perm)
    assert float(shuffled["content"]) < 0.1
    assert (float(paper["content"]) > 0.7) == repeats  # the paper's r = 15 cannot be met with repeats
    # a code that also carries the sample's style spreads the sample means more than random groups do
    leaky = torch.cat([zc, zs[..., :2] / 50], -1)
    assert float(v3_terms(leaky, leaky, zs, 15.0, perm)["content"]) > 0.3


def test_shuffled_reference_keeps_the_sample_term_off_the_content_means():
    g = torch.Generator().manual_seed(0)
    b, length, k = 32, 10, 10
    zc = torch.eye(k)[torch.randint(0, k, (b, length), generator=g)].requires_grad_(True)
    zs = (torch.randn(b, 1, 4, generator=g).expand(b, length, 4) * 0.01).requires_grad_(True)  # style too weak
    perm = torch.randperm(b * length, generator=g)
    paper, shuffled = v3_terms(zc, zc, zs, 15.0), v3_terms(zc, zc, zs, 15.0, perm)
    assert float(paper["sample"].detach()) > 0.5 and float(shuffled["sample"].detach()) > 0.5
    gc, gs = torch.autograd.grad(shuffled["sample"], [zc, zs], allow_unused=True)
    assert gc is None and gs.abs().sum() > 0  # only the styles are asked to spread
    assert torch.autograd.grad(paper["sample"], zc)[0].abs().sum() > 0  # the paper's also squeezes the contents


def test_detail_code_is_bounded_and_left_out_of_style_and_decoding():
    torch.manual_seed(0)
    cfg = paper_config(d_content=4, d_style=3, n_channels=8, n_layers=2, d_hidden=32, n_atoms=3, d_detail=2,
                   detail_capacity=0.0)
    m = V3(cfg, (3, 16, 16))
    m.train()
    x = torch.rand(4, 5, 3, 16, 16)
    out = m.loss({"x": x}, step=0)
    ae = m.autoencode(x, step=0)
    assert float(out["detail_kl"]) > 0 and ae["zs"].shape[-1] == 3
    # with no free capacity the KL is a term of the total: its gradient reaches the detail head
    base = m.base_total(ae)
    assert torch.isclose(base, cfg.w_recon * ae["recon"] + cfg.w_commit * ae["commit"] + ae["detail_kl"])
    m.zero_grad()
    ae["detail_kl"].backward()
    assert m.encoder.to_style.weight.grad[-4:].abs().sum() > 0 and m.encoder.to_style.weight.grad[:3].abs().sum() == 0
    # within the capacity it costs nothing
    m2 = V3(paper_config(d_content=4, d_style=3, n_channels=8, n_layers=2, d_hidden=32, n_atoms=3, d_detail=2,
                     detail_capacity=1e6), (3, 16, 16))
    ae2 = m2.autoencode(x, step=0)
    assert torch.isclose(m2.base_total(ae2), ae2["recon"] + 0.1 * ae2["commit"])
    m.eval()
    enc = m.encode(x)
    assert enc.style.shape == (4, 5, 3)
    assert m.decode(enc.content_q, enc.style).shape == x.shape
    with pytest.raises(ConfigError, match="d_detail"):
        paper_config(d_detail=-1).validate()


def test_separable_decoder_cannot_make_style_pick_the_content():
    from varinv.nn.backbones import BackboneSpec, SeparableDecoder

    torch.manual_seed(0)
    c, s = torch.randn(2, 4), torch.randn(2, 3)

    def interaction(dec):  # x(c1,s1) - x(c2,s1) - x(c1,s2) + x(c2,s2)
        x = dec(c.repeat(2, 1), s.repeat_interleave(2, 0)).view(2, 2, -1)  # [style][content]
        return x[0, 0] - x[0, 1] - x[1, 0] + x[1, 1]

    spec = BackboneSpec(n_channels=8, n_layers=2, d_hidden=32, decoder="separable", rank=0, film=True)
    additive = SeparableDecoder((3, 16, 16), spec, 4, 3).eval()
    assert interaction(additive).abs().max() < 1e-5  # rank 0: style only adds
    rank1 = SeparableDecoder((3, 16, 16), dataclasses.replace(spec, rank=1), 4, 3).eval()
    a = rank1.content_maps(c, c.new_zeros(2, 1)).chunk(2, dim=1)[1].flatten(1)
    b = rank1.style_maps(s.new_zeros(2, 1), s).chunk(2, dim=1)[1].flatten(1)
    assert torch.allclose(interaction(rank1), (a[0] - a[1]) * (b[0] - b[1]), atol=1e-5)
    gain = SeparableDecoder((3, 16, 16), dataclasses.replace(spec, decoder="gain", rank=1), 4, 3).eval()
    a = gain.content_maps(c, c.new_zeros(2, 1)).chunk(2, dim=1)[1]  # (2, 3, 16, 16)
    ratio = interaction(gain).view(3, 16, 16) / (a[0] - a[1])  # the style factor: one gain per channel
    assert torch.allclose(ratio, ratio.mean((1, 2), keepdim=True).expand_as(ratio), atol=1e-3)
    m = V3(paper_config(d_content=4, d_style=3, n_channels=8, n_layers=2, d_hidden=32, n_atoms=3, decoder="separable"),
           (3, 16, 16))
    out = m.loss({"x": torch.rand(4, 5, 3, 16, 16)}, step=0)
    assert torch.isfinite(out["total"])
    with pytest.raises(ConfigError, match="model.decoder"):
        paper_config(decoder="other").validate()


def test_positive_gain_maps_cannot_swap_one_content_for_another():
    """A signed gain map lets a style switch an atom between two patterns (A0 = P, A1 = Q - P, gain 0 or 1:
    InsNotes' atoms held G4 in some instruments and C4 in others); with non-negative maps every value of a
    fragment moves the same way as a channel's gain grows, so no gain turns one pattern into another."""
    from varinv.nn.backbones import BackboneSpec, SeparableDecoder

    torch.manual_seed(0)
    spec = BackboneSpec(n_channels=8, n_layers=2, d_hidden=32, decoder="gain", rank=1)
    c, s = torch.randn(5, 4), torch.randn(2, 3)
    for positive, one_way in ((False, False), (True, True)):
        dec = SeparableDecoder((2, 16, 16), dataclasses.replace(spec, positive=positive), 4, 3).eval()
        with torch.no_grad():
            torch.nn.init.normal_(dec.gains.weight, std=3.0)
            x = dec(c.repeat(2, 1), s.repeat_interleave(5, 0)).view(2, 5, 2, -1)
            back = dec.style_maps(s.new_zeros(2, 1), s).view(2, 1, 2, -1)  # B0(s), the same for every content
        moved = (x[1] - back[1]) - (x[0] - back[0])  # (contents, channels, positions): A1(c) * (g(s2) - g(s1))
        same_sign = ((moved >= -1e-6).all(-1) | (moved <= 1e-6).all(-1)).all()
        assert bool(same_sign) == one_way


def test_nested_gain_maps_weight_parts_of_one_map_and_never_draw_outside_it():
    """Two free gain products let a style show pattern P (gains 1, 0) in one style and Q (0, 1) in another, as a
    filled and an outlined shape need; nested, the second map is a part of the first with a non-negative gain,
    so what an atom adds in any style is A_1 times a factor bounded by the gains: nothing outside A_1's support."""
    from varinv.nn.backbones import BackboneSpec, SeparableDecoder

    torch.manual_seed(0)
    spec = BackboneSpec(n_channels=8, n_layers=2, d_hidden=32, decoder="gain", rank=2, positive=True)
    c, s = torch.randn(1, 4).repeat(6, 1), torch.randn(6, 3)
    for nested in (False, True):
        dec = SeparableDecoder((2, 16, 16), dataclasses.replace(spec, nested=nested), 4, 3).eval()
        with torch.no_grad():
            torch.nn.init.normal_(dec.gains.weight, std=3.0)
            full, coarse = dec(c, s, coarse=True)
            a1 = torch.nn.functional.softplus(dec.content_maps(c, c.new_zeros(6, 1)).chunk(3, dim=1)[1])
            g = (1 + dec.gains(s)).view(6, 2, 2, 1, 1)
            bound = a1 * (g[:, 0].abs() + torch.nn.functional.softplus(g[:, 1]))
        assert bool(((full - coarse).abs() <= bound + 1e-5).all()) == nested
    with pytest.raises(ConfigError, match="model.nested_gain_maps"):
        V3Config(nested_gain_maps=True).validate()  # rank 1


def test_coarse_rendering_is_the_additive_part_and_judges_the_reassignment():
    """``w_coarse``: the additive part A0(c) + B0(s) is trained as a rendering of its own and the
    reassignment's targets come from it, since no style gain can bend it towards another content."""
    from varinv.nn.backbones import BackboneSpec, SeparableDecoder

    torch.manual_seed(0)
    spec = BackboneSpec(n_channels=8, n_layers=2, d_hidden=32, decoder="gain", rank=1, positive=True)
    dec = SeparableDecoder((2, 16, 16), spec, 4, 3).eval()
    c, s = torch.randn(5, 4), torch.randn(5, 3)
    full, coarse = dec(c, s, coarse=True)
    a0 = dec.content_maps(c, c.new_zeros(5, 1)).chunk(2, dim=1)[0]
    assert torch.allclose(full, dec(c, s)) and torch.allclose(coarse, a0 + dec.style_maps(s.new_zeros(5, 1), s))
    assert (full - coarse).abs().max() > 1e-3  # the gain part is left out

    m = V3(paper_config(d_content=4, d_style=3, n_channels=8, n_layers=2, d_hidden=32, n_atoms=3, decoder="gain",
                        w_coarse=1.0, w_reassign=1.0, reassign_fragments=6), (2, 16, 16))
    x = torch.rand(3, 4, 2, 16, 16)
    out = m.loss({"x": x}, step=0)
    assert torch.isfinite(out["total"]) and out["coarse"] > 0
    zs = torch.randn(6, 3)
    m.eval()
    drawn = m.decode(m.quantizer.codebook.repeat(6, 1), zs.repeat_interleave(3, 0), coarse=True).view(6, 3, -1)
    expect = (drawn - x.flatten(0, 1)[:6].flatten(1)[:, None]).pow(2).mean(-1)
    assert torch.allclose(m.atom_errors(x.flatten(0, 1)[:6], zs), expect, atol=1e-5)
    # coarse_judge off: the full rendering judges and the additive part is still trained
    m.cfg.coarse_judge = False
    full = m.atom_errors(x.flatten(0, 1)[:6], zs)
    assert m.coarse_rendering and (full - expect).abs().max() > 1e-4
    # coarse_detach: the additive part's reconstruction reaches the decoder, not the encoder
    m.train()
    for detach in (False, True):
        m.cfg.coarse_detach = detach
        out = m.loss({"x": x}, step=1)
        enc = torch.autograd.grad(out["coarse"], list(m.encoder.parameters()), allow_unused=True, retain_graph=True)
        dec = torch.autograd.grad(out["coarse"], list(m.decoder.parameters()), allow_unused=True)
        assert any(g is not None and g.any() for g in dec)
        assert detach == all(g is None or not g.any() for g in enc)
    with pytest.raises(ConfigError, match="model.w_coarse"):
        paper_config(w_coarse=1.0).validate()


@pytest.mark.parametrize("decoder", ["separable", "gain"])
def test_separable_decoder_draws_each_shared_style_once_with_the_same_output_and_gradients(decoder):
    from varinv.nn.backbones import BackboneSpec, SeparableDecoder, distinct_rows

    torch.manual_seed(0)
    spec = BackboneSpec(n_channels=8, n_layers=2, d_hidden=32, decoder=decoder, rank=1)
    dec = SeparableDecoder((3, 16, 16), spec, 4, 3).train()
    c = torch.randn(12, 4)
    pooled = torch.randn(3, 3, requires_grad=True)  # three samples of four fragments, one style each
    style = pooled.repeat_interleave(4, 0)
    first, which = distinct_rows(style)
    assert first.tolist() == [0, 4, 8] and torch.equal(style[first][which], style)
    twice = torch.cat([style, style[:4]])  # a sample drawn twice is drawn twice (batch-norm statistics)
    assert distinct_rows(twice)[0].tolist() == [0, 4, 8, 12]
    calls = []
    hook = dec.style_maps.register_forward_hook(lambda mod, inp, out: calls.append(out.shape[0]))
    out = dec(c, style)
    hook.remove()
    assert calls == [3]
    # the same function drawn row by row: every style map computed for all twelve rows
    a = dec.content_maps(c, c.new_zeros(12, 1)).chunk(2, dim=1)
    b = dec.style_maps(style.new_zeros(12, 1), style).chunk(1 if decoder == "gain" else 2, dim=1)
    if decoder == "gain":
        b = (b[0], (1 + dec.gains(style)).view(12, -1, 1, 1))
    full = a[0] + b[0] + a[1] * b[1]
    assert torch.allclose(out, full, atol=1e-5)
    g1, = torch.autograd.grad(out.pow(2).sum(), pooled)
    g2, = torch.autograd.grad(full.pow(2).sum(), pooled)
    assert torch.allclose(g1, g2, atol=1e-4)


def test_pose_warp_is_the_identity_at_zero_and_a_bounded_similarity_otherwise():
    from varinv.nn.pose import MAX_LOG_SCALE, MAX_SHIFT, pose_matrix, warp

    x = torch.rand(3, 2, 16, 16)
    assert torch.allclose(warp(x, torch.zeros(3, 4)), x, atol=1e-5)
    # a shift moves a dot by MAX_SHIFT · tanh(p) of the half-side, and nothing else changes
    dot = torch.zeros(1, 1, 16, 16)
    dot[0, 0, 8, 8] = 1.0
    p = torch.tensor([[0.0, 0.0, math.atanh(0.5), 0.0]])  # 0.5 · MAX_SHIFT · 8 px = 1 px to the left
    moved = warp(dot, p)
    assert int(moved.flatten().argmax()) == 8 * 16 + 8 - round(0.5 * MAX_SHIFT * 8)
    # however large the raw parameters, the transform stays a rotation-scale within its bounds
    m = pose_matrix(torch.tensor([[50.0, 50.0, 50.0, -50.0], [-50.0, -50.0, 0.0, 0.0]]))
    lin = m[:, :, :2]
    assert torch.allclose(lin @ lin.transpose(1, 2) / torch.det(lin)[:, None, None], torch.eye(2).expand(2, 2, 2),
                          atol=1e-5)
    assert torch.det(lin).sqrt().max() <= math.exp(MAX_LOG_SCALE) + 1e-5
    assert m[:, :, 2].abs().max() <= MAX_SHIFT + 1e-6


def test_unwarp_brings_a_warped_fragment_back_to_its_pose():
    from varinv.nn.pose import unwarp, warp

    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    blob = torch.exp(-((xx - 0.1) ** 2 / 0.08 + (yy + 0.05) ** 2 / 0.2))[None, None].repeat(3, 2, 1, 1)  # smooth
    assert torch.allclose(unwarp(blob, torch.zeros(3, 4)), blob, atol=1e-5)
    for p in (torch.tensor([[0.8, 0.6, 0.5, -0.4], [-1.0, -0.5, 0.0, 0.7], [0.3, 0.9, -0.6, 0.0]]),
              torch.tensor([[0.4], [-0.3], [0.1]])):
        moved = warp(blob, p)
        assert (moved - blob).abs().mean() > 0.03
        assert (unwarp(moved, p) - blob).abs().mean() < 0.1 * (moved - blob).abs().mean()


def test_time_pose_shifts_a_spectrogram_along_time_only():
    from varinv.nn.pose import MAX_TIME_SHIFT, pose_matrix, warp

    spec = torch.zeros(1, 1, 8, 16)  # (frequency, time)
    spec[0, 0, 3, 4:6] = 1.0  # a short tone at bin 3
    assert torch.allclose(warp(spec, torch.zeros(1, 1)), spec, atol=1e-5)
    p = torch.tensor([[math.atanh(0.25)]])  # 0.25 · MAX_TIME_SHIFT · 8 frames
    moved = warp(spec, p)
    shift = round(0.25 * MAX_TIME_SHIFT * 8)
    assert shift >= 1 and torch.allclose(moved[0, 0, 3, 4 - shift:6 - shift], torch.ones(2), atol=1e-5)
    assert moved[0, 0, [0, 1, 2, 4, 5, 6, 7]].abs().max() < 1e-6  # no energy moves to another bin
    m = pose_matrix(torch.tensor([[50.0], [-50.0]]))
    assert torch.allclose(m[:, :, :2], torch.eye(2).expand(2, 2, 2)) and m[:, 1, 2].abs().max() == 0
    assert m[:, 0, 2].abs().max() <= MAX_TIME_SHIFT + 1e-6
    cfg = paper_config(d_content=4, d_style=4, n_channels=8, n_layers=2, d_hidden=32, n_atoms=3, pose="time")
    out = V3(cfg, (1, 16, 8)).loss({"x": torch.rand(2, 4, 1, 16, 8)}, step=0)
    assert torch.isfinite(out["total"])


def test_tempo_pose_stretches_along_time_only():
    from varinv.nn.pose import MAX_LOG_STRETCH, pose_matrix, warp

    spec = torch.zeros(1, 1, 8, 16)
    spec[0, 0, 3, 6:10] = 1.0  # a tone at bin 3 around the middle of the window
    assert torch.allclose(warp(spec, torch.zeros(1, 2)), spec, atol=1e-5)
    slower = warp(spec, torch.tensor([[0.0, -50.0]]))  # the output samples the input more densely: longer
    assert (slower[0, 0, 3] > 0.5).sum() > 4
    assert slower[0, 0, [0, 1, 2, 4, 5, 6, 7]].abs().max() < 1e-6  # no energy moves to another bin
    m = pose_matrix(torch.tensor([[50.0, 50.0], [-50.0, -50.0]]))
    assert torch.allclose(m[:, 0, 0].log().abs(), torch.full((2,), MAX_LOG_STRETCH))
    assert m[:, 1].abs().sub(torch.tensor([0.0, 1.0, 0.0])).abs().max() < 1e-6  # frequency untouched
    cfg = paper_config(d_content=4, d_style=4, n_channels=8, n_layers=2, d_hidden=32, n_atoms=3, pose="tempo")
    assert torch.isfinite(V3(cfg, (1, 16, 8)).loss({"x": torch.rand(2, 4, 1, 16, 8)}, step=0)["total"])


def test_pose_is_read_per_fragment_applied_to_the_rendering_and_kept_out_of_style():
    from varinv.nn.pose import warp

    torch.manual_seed(0)
    cfg = paper_config(d_content=4, d_style=3, n_channels=8, n_layers=2, d_hidden=32, n_atoms=3, pose="similarity",
                   w_reassign=1.0, reassign_fragments=4)
    m = V3(cfg, (3, 16, 16))
    m.train()
    x = torch.rand(2, 4, 3, 16, 16)
    ae = m.autoencode(x, step=0)
    assert ae["pose"].shape == (8, 4) and ae["zs"].shape == (8, 3)
    # the reconstruction is the canonical rendering warped by each fragment's pose
    with torch.no_grad():
        m.decoder.eval()
        ae_eval = m.autoencode(x, step=0)
        canon = m.decoder(ae_eval["zq"], ae_eval["zs_dec"])
        want = F.mse_loss(warp(canon, ae_eval["pose"]).view_as(x), x)
    assert torch.isclose(ae_eval["recon"], want)
    m.decoder.train()
    m.zero_grad()
    ae["recon"].backward()
    assert m.encoder.to_style.weight.grad[-4:].abs().sum() > 0  # the pose head learns from reconstruction
    # decoding (recombination, evaluation) renders the prototype: no pose; the style has d_style dims
    m.eval()
    enc = m.encode(x)
    assert enc.style.shape == (2, 4, 3) and m.decode(enc.content_q, enc.style).shape == x.shape
    # reconstructing (the evaluator's recon_mse, the monitor's images) keeps each fragment's pose
    with torch.no_grad():
        m.encoder.to_style.bias[-4:] = 2.0  # a pose far from the identity
        back = m.reconstruct(x)
        assert torch.allclose(back, m.autoencode(x)["x_hat"])
        assert not torch.allclose(back, m.decode(m.encode(x).content_q, m.encode(x).style), atol=1e-3)
    # reassignment compares the fragments with every atom's rendering in the fragment's own pose
    out = m.loss({"x": x}, step=0)
    assert torch.isfinite(out["reassign"])
    with pytest.raises(ConfigError, match="pose"):
        paper_config(pose="affine").validate()


def test_reassignment_decodes_each_distinct_style_once_with_the_same_targets():
    torch.manual_seed(2)
    cfg = paper_config(d_content=4, d_style=3, n_channels=8, n_layers=2, d_hidden=32, n_atoms=4)
    m = V3(cfg, (3, 16, 16))
    m.quantizer.codebook.copy_(torch.randn(4, 4) * 3)
    styles = torch.randn(2, 3).repeat_interleave(5, 0)  # 10 fragments, 2 sample styles
    x = torch.rand(10, 3, 16, 16)
    calls = []
    real = m.decode

    def spy(content, style, coarse=False):
        calls.append(content.shape[0])
        return real(content, style, coarse)

    m.decode = spy
    got = m.best_atoms(x, styles)
    assert calls == [2 * 4]
    m.decoder.eval()
    with torch.no_grad():  # the direct way: every fragment with every atom
        x_hat = real(m.quantizer.codebook.repeat(10, 1), styles.repeat_interleave(4, 0))
        want = (x_hat - x.repeat_interleave(4, 0)).pow(2).flatten(1).mean(1).view(10, 4).argmin(1)
    assert torch.equal(got, want)


def test_decoder_assignment_trains_each_atom_on_the_fragments_it_renders_best():
    from varinv.nn.pose import warp

    torch.manual_seed(0)
    k = 3
    cfg = paper_config(d_content=4, d_style=3, n_channels=8, n_layers=2, d_hidden=32, n_atoms=k, pose="similarity",
                   style_pool=True, assign="decoder", w_reassign=1.0)
    m = V3(cfg, (3, 16, 16))
    m.train()
    x = torch.rand(2, k, 3, 16, 16)
    m.autoencode(x, step=0)  # seeds the codebook
    m.decoder.eval()  # batch norm in eval mode, so a direct rendering below gives the same maps
    ae = m.autoencode(x, step=1)
    target = ae["decoder_target"].view(2, k)
    # one pose per atom per fragment, and the style keeps its d_style dims
    zs_all = m.encoder(x.flatten(0, 1))[1]
    pose = zs_all[:, cfg.d_style:].view(2 * k, k, 4)
    assert ae["zs"].shape == (2 * k, 3)
    with torch.no_grad():
        book = m.decoder_input(m.quantizer.codebook)
        err = torch.stack([torch.stack([
            (warp(m.decoder(book[j:j + 1], ae["zs_dec"][n:n + 1]), pose[n, j:j + 1]) - x.flatten(0, 1)[n:n + 1])
            .pow(2).mean() for j in range(k)]) for n in range(2 * k)])
    for i in range(2):  # each sample's fragments are matched one-to-one at the least total error
        assert sorted(target[i].tolist()) == list(range(k))
        e = err[i * k:(i + 1) * k]
        best = min(sum(float(e[f, p[f]]) for f in range(k)) for p in itertools.permutations(range(k)))
        assert math.isclose(sum(float(e[f, target[i, f]]) for f in range(k)), best, rel_tol=1e-4)
    assert torch.isclose(ae["recon"], err.gather(1, target.flatten()[:, None]).mean(), rtol=1e-4)
    # reconstruction trains the decoder and the poses, not z_c; the encoder learns the matches through reassign
    m.zero_grad()
    ae["recon"].backward()
    assert m.encoder.to_style.weight.grad[cfg.d_style:].abs().sum() > 0
    assert m.encoder.to_content.weight.grad is None or m.encoder.to_content.weight.grad.abs().sum() == 0
    m.zero_grad()
    out = m.loss({"x": x}, step=2)
    out["reassign"].backward()
    assert m.encoder.to_content.weight.grad.abs().sum() > 0
    # evaluation renders prototypes; a decoder assignment with a detail code is refused
    m.eval()
    enc = m.encode(x)
    assert m.decode(enc.content_q, enc.style).shape == x.shape
    assert torch.isfinite(m.autoencode(x)["recon"])
    with pytest.raises(ConfigError, match="assign"):
        paper_config(assign="decoder", d_detail=2).validate()
    # the decoder reads the atoms standardised by the codebook's spread, so shrinking z_c changes nothing
    book = m.quantizer.codebook.clone()
    style = enc.style[:1, :1].expand(1, k, -1)
    before = m.decode(book[None], style)
    m.quantizer.codebook.mul_(0.01)
    assert torch.allclose(m.decode(m.quantizer.codebook[None], style), before, atol=1e-5)


def test_shuffled_diversity_reference_lets_a_repeated_content_keep_its_atom():
    torch.manual_seed(0)
    k, length, b = 4, 4, 64
    content = torch.randint(0, k, (b, length))  # drawn with replacement: repeats within samples
    faithful = torch.full((b, length, k), 100.0).scatter(2, content[..., None], 0.0)  # each on its own atom
    shuffle = torch.randperm(b * length)
    # "max" penalises the faithful code for every repeat; "shuffled" asks no more than random groups reach
    assert float(diversity_loss(faithful, 0.1)) > 0.1
    assert float(diversity_loss(faithful, 0.1, shuffle)) < 0.02
    # a code that gives each sample one atom of its own (content carrying the sample, i.e. style) is still
    # penalised against either reference
    per_sample = torch.full((b, length, k), 100.0).scatter(2, (torch.arange(b) % k)[:, None, None].expand(b, length, 1), 0.0)
    assert float(diversity_loss(per_sample, 0.1, shuffle)) > 0.5


def test_pose_auto_is_fixed_from_the_data_kind_when_training_starts(tmp_path):
    import json

    from tests.conftest import TOY_CFG, toy_arrays
    from varinv import config as config_mod
    from varinv.data.store import from_arrays
    from varinv.train.trainer import train

    cfg = config_mod.from_dict({**TOY_CFG, "model": {**TOY_CFG["model"], "pose": "auto"}})
    assert config_mod.for_data(cfg, "image").model.pose == "similarity"
    assert config_mod.for_data(cfg, "spectrogram").model.pose == "time"
    with pytest.raises(ConfigError, match="auto"):  # an unresolved "auto" never builds a model
        V3(cfg.model, (3, 16, 16))
    x, c, s = toy_arrays(16)
    ds = from_arrays(tmp_path / "toy", {"train": (x, c, s)}, content_names=list("abcd"), style_names=list("rgb"))
    raw = json.loads(json.dumps(TOY_CFG))
    raw["model"]["pose"] = "auto"
    raw["data"]["path"] = str(ds.root)
    raw["train"].update(steps=2, ckpt_every=2)
    train(config_mod.from_dict(raw), tmp_path / "run", progress=False, tensorboard=False)
    assert config_mod.load(tmp_path / "run" / "config.yaml").model.pose == "similarity"  # the run names what it trained
    train(config_mod.from_dict({**raw, "train": {**raw["train"], "steps": 4}}), tmp_path / "run", resume=True,
          progress=False, tensorboard=False)  # and resumes from the same "auto" config


def _usages(ids: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample atom usage of hard assignments ids (B, L) and that of random groups of the same fragments."""
    onehot = torch.eye(k)[ids]
    shuffled = onehot.flatten(0, 1)[torch.randperm(ids.numel())].view_as(onehot)
    return onehot.mean(1), shuffled.mean(1)


@pytest.mark.parametrize("repeats", [False, True])
def test_style_usage_dependence_sees_an_atom_used_for_a_content_only_in_some_styles(repeats):
    from varinv.methods.regularisers import style_usage_dependence

    torch.manual_seed(0)
    b, k = 48, 10
    style_id = torch.randint(0, 6, (b,))
    style = torch.randn(6, 8)[style_id] + 0.05 * torch.randn(b, 8)
    ids = torch.randint(0, k, (b, k)) if repeats else torch.stack([torch.randperm(k) for _ in range(b)])
    faithful = style_usage_dependence(style, *_usages(ids, k))
    # content 0 takes atom 1 in styles 0-2 and keeps atom 0 elsewhere, where content 1 moves to atom 0
    split = ids.clone()
    some = (style_id < 3)[:, None]
    split[some & (ids == 0)] = 1
    split[~some & (ids == 1)] = 0
    dependent = style_usage_dependence(style, *_usages(split, k))
    assert abs(float(faithful)) < 0.08 and float(dependent) > 0.15


def _term_on_random_batches(m, term_fn, n: int = 6):
    """Yields (ae, term) of ``term_fn`` on n random batches (seeds 0..n-1) of 8 samples x 4 fragments, each term
    finite and >= 0. A generator: the next batch's codebook update would invalidate the last one's graph."""
    for seed in range(n):
        torch.manual_seed(seed)
        ae = m.autoencode(torch.rand(8, 4, 1, 16, 8), step=0)
        ae["zs3"] = ae["zs"].view(8, 4, -1).float()
        term = term_fn(m, None, ae, 0)
        assert torch.isfinite(term) and term >= 0
        yield ae, term


def test_independence_term_reaches_the_content_codes():
    cfg = paper_config(d_content=4, d_style=4, n_channels=8, n_layers=2, d_hidden=32, n_atoms=5, w_independence=1.0)
    m = V3(cfg, (1, 16, 8))
    grads = [torch.autograd.grad(term, ae["zc"])[0].abs().sum()
             for ae, term in _term_on_random_batches(m, regularisers.independence_term) if term > 0]
    assert grads and all(g > 0 for g in grads)
    assert "independence" in m.loss({"x": torch.rand(6, 4, 1, 16, 8)}, step=0)
    m.cfg.independence_from, m.total_steps = 0.5, 10  # the trainer sets total_steps to train.steps
    assert "independence" not in m.loss({"x": torch.rand(6, 4, 1, 16, 8)}, step=4)
    assert "independence" in m.loss({"x": torch.rand(6, 4, 1, 16, 8)}, step=5)
    with pytest.raises(ConfigError, match="w_independence"):
        paper_config(w_independence=-1.0).validate()


def test_repeat_rate_tells_samples_that_never_repeat_from_independent_draws():
    from varinv.methods.regularisers import repeat_rate

    torch.manual_seed(0)
    once = torch.stack([torch.randperm(10) for _ in range(64)])
    drawn = torch.randint(0, 10, (64, 10))
    merged = once.masked_fill(once == 9, 8)  # one pair of contents shares an atom
    assert float(repeat_rate(once, 10)) == 0.0
    assert float(repeat_rate(drawn, 10)) > 0.8
    assert 0.1 < float(repeat_rate(merged, 10)) < 0.25


@pytest.mark.parametrize("repeats,matched", [(False, 4), (True, 2)])
def test_adaptive_subset_matches_every_fragment_only_where_samples_do_not_repeat(repeats, matched):
    cfg = paper_config(d_content=4, d_style=4, n_channels=8, n_layers=2, d_hidden=32, n_atoms=4, w_match=1.0,
                   match_subset=0.5, match_adapt=True)
    m = V3(cfg, (1, 16, 8))
    seen = {}
    real_rate, real_match = regularisers.repeat_rate, regularisers.matched_atoms
    regularisers.repeat_rate = lambda index, k: torch.tensor(1.0 if repeats else 0.0)
    regularisers.matched_atoms = lambda sq, c=0.0: seen.setdefault("shape", tuple(sq.shape)) and real_match(sq, c)
    try:
        m.loss({"x": torch.rand(3, 4, 1, 16, 8)}, step=0)
    finally:
        regularisers.repeat_rate, regularisers.matched_atoms = real_rate, real_match
    assert seen["shape"] == (3, matched, 4)


def test_the_recipe_is_the_default_and_saved_runs_keep_their_former_values():
    from varinv import config as config_mod

    cfg = V3Config()
    cfg.validate()
    fields = {f.name for f in dataclasses.fields(V3Config)}
    assert set(V3Config.FORMER) <= fields
    assert all(getattr(cfg, key) != old for key, old in V3Config.FORMER.items())
    # a run saved before a field existed was trained with the field's former value, not today's default
    old = config_mod.from_saved({"model": {"method": "v3", "n_atoms": 4, "w_match": 0.5}}).model
    assert all(getattr(old, k) == v for k, v in V3Config.FORMER.items() if k != "w_match") and old.w_match == 0.5
    assert config_mod.from_dict({"model": {"method": "v3"}}).model.pose == "auto"
    # an option since removed: a run that had it off loads, one that had it on is refused with a reason
    assert config_mod.from_saved({"model": {"method": "v3", "w_balance": 0.0}}).model.n_atoms == 10
    assert config_mod.from_saved({"model": {"method": "v3", "independence_start": 0}}).model.independence_from == 0
    with pytest.raises(ConfigError, match="w_balance = 1.0, an option this varinv no longer has"):
        config_mod.from_saved({"model": {"method": "v3", "w_balance": 1.0}})
    with pytest.raises(ConfigError, match="w_balance"):  # a new config naming it is a typo like any other
        config_mod.from_dict({"model": {"method": "v3", "w_balance": 0.0}})


def test_log_hinge_is_zero_when_met_one_at_ratio_one_and_pulls_harder_when_far():
    r = 15.0
    ratio = torch.tensor([0.5, 1.0, 15.0, 30.0], requires_grad=True)
    lin, log = hinge(ratio, r), hinge(ratio, r, log=True)
    assert torch.allclose(log[1:], torch.tensor([1.0, 0.0, 0.0]), atol=1e-6)
    g_lin, = torch.autograd.grad(lin[0], ratio)
    g_log, = torch.autograd.grad(log[0], ratio)
    assert g_log[0] < 10 * g_lin[0] < 0  # ratio 0.5: 1/(0.5 ln 15) against 1/15 per unit of ratio
    cfg = paper_config(hinge="log", d_content=4, d_style=3, n_channels=8, n_layers=2, d_hidden=32, n_atoms=3)
    out = V3(cfg, (3, 16, 16)).loss({"x": torch.rand(4, 5, 3, 16, 16)}, step=0)
    assert torch.isfinite(out["total"])
    with pytest.raises(ConfigError, match="model.hinge"):
        paper_config(hinge="square").validate()


CLUSTERS = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])


def renewing_quantizer(seed: int, codebook: torch.Tensor):
    """Three tight clusters of 40 points (contents A, B, C) and a 3-atom quantiser with renewal, in training
    mode, its atoms at ``codebook`` with 40 fragments each."""
    g = torch.Generator().manual_seed(seed)
    x = torch.cat([c + 0.1 * torch.randn(40, 2, generator=g) for c in CLUSTERS])
    q = EMAQuantizer(2, 3, kmeans_init=False, dead_threshold=0.0)
    q.codebook.copy_(codebook)
    q.embed_sum.copy_(q.codebook * 40)
    q.cluster_size.fill_(40)
    q.enable_renewal(0.3)
    q.train()
    return x, q


def test_renewal_moves_a_duplicated_atom_to_split_a_merged_one():
    # atoms 0 and 1 both sit on A, atom 2 halfway between B and C
    x, q = renewing_quantizer(0, torch.tensor([[0.0, 0.0], [0.01, 0.0], [5.0, 5.0]]))
    centres = CLUSTERS
    for _ in range(20):  # errors = squared distance to each atom: the twins' utility is near 0
        q.track(q.distances(x).argmin(1), q.distances(x))
    assert q.utility[:2].max() < 0.3 * q.utility.mean()
    before = q.codebook.clone()
    q(x)  # not pending: nothing moves beyond the EMA step
    assert int(q.renewals) == 0 and torch.cdist(q.codebook, before).diagonal().max() < 1
    q.renew_pending = True
    q(x)
    assert int(q.renewals) == 1 and not q.renew_pending
    near = torch.cdist(centres, q.codebook).min(1).values
    assert near.max() < 1.0, near  # every content has an atom of its own
    index = q.distances(x).argmin(1).view(3, 40)
    assert all(len(set(row.tolist())) == 1 for row in index) and len(set(index[:, 0].tolist())) == 3


def test_renewal_leaves_a_useful_codebook_alone_and_needs_the_reassignment():
    centres = CLUSTERS
    x, q = renewing_quantizer(1, centres)
    q.track(q.distances(x).argmin(1), q.distances(x))
    q.renew_pending = True
    q(x)
    assert int(q.renewals) == 0 and torch.cdist(q.codebook, centres).diagonal().max() < 0.1
    with pytest.raises(ConfigError, match="renew_every"):
        paper_config(renew_every=100, w_reassign=0.0).validate()
    cfg = paper_config(d_content=4, d_style=4, n_channels=8, n_layers=2, d_hidden=32, n_atoms=5, w_reassign=1.0,
                       reassign_fragments=5, renew_every=2)
    m = V3(cfg, (3, 16, 16))
    m.total_steps = 10
    m.train()
    out = m.loss({"x": torch.rand(2, 3, 3, 16, 16)}, step=4)
    assert "stat_renewals" in out and float(m.quantizer.utility.abs().sum()) > 0
    assert "quantizer.utility" in m.state_dict()  # saved, so a resumed run keeps its statistics


def test_neighbour_pairs_share_content_and_far_pairs_cross_styles():
    from varinv.methods.regularisers import neighbour_pairs

    g = torch.Generator().manual_seed(0)
    contents, styles = torch.randn(6, 1, 8, 8, generator=g), 3 * torch.randn(2, 1, 8, 8, generator=g)
    order = torch.stack([torch.randperm(6, generator=g) for _ in range(8)])  # each sample holds every content once
    style = torch.arange(8) % 2
    x = contents[order] + styles[style][:, None] + 0.05 * torch.randn(8, 6, 1, 8, 8, generator=g)
    c, s, sample = order.reshape(-1), style.repeat_interleave(6), torch.arange(8).repeat_interleave(6)
    (near, kept), = neighbour_pairs(x, lambda f: f)
    assert kept.float().mean() > 0.2  # 7 equally good matches each: mutual for a third or so
    assert bool((sample[near] != sample).all()) and bool((c[near] == c)[kept].all())
    assert bool((near[near[kept]] == torch.nonzero(kept).squeeze(1)).all())  # mutual
    (_, _), (far, far_kept) = neighbour_pairs(x, lambda f: f, far=0.5, ratio=0.5)
    assert far_kept.float().mean() > 0.2
    assert bool((s[far] != s).all()) and bool((c[far] == c)[far_kept].all())
    # where the other style's samples draw content 0 twice (and 1 not at all), a far match for 0 has an equal
    # runner-up in its sample: the ratio test drops those pairs, which a ratio of 1 keeps
    order[1::2] = order[1::2].masked_fill(order[1::2] == 1, 0)
    x = contents[order] + styles[style][:, None] + 0.05 * torch.randn(8, 6, 1, 8, 8, generator=g)
    c = order.reshape(-1)
    loose = neighbour_pairs(x, lambda f: f, far=0.5, ratio=1.0)[1][1]
    strict = neighbour_pairs(x, lambda f: f, far=0.5, ratio=0.5)[1][1]
    assert bool(loose[c == 0].any()) and not bool(strict[c == 0].any()) and bool(strict.any())


def test_own_content_trunk_keeps_terms_on_z_c_out_of_the_style_trunk():
    cfg = paper_config(d_content=4, d_style=4, n_channels=8, n_layers=2, d_hidden=32, n_atoms=5, w_neighbour=1.0,
                       neighbour_far=0.5, neighbour_dims=6, content_input="own")
    m = V3(cfg, (1, 16, 8))
    torch.manual_seed(0)
    x = torch.rand(8, 4, 1, 16, 8)
    m.loss({"x": x}, step=0)
    ae = m.autoencode(x, step=0)
    term = regularisers.neighbour_term(m, {"x": x}, ae, 0)
    shared, own = list(m.encoder.conv.parameters()), list(m.content_encoder.conv.parameters())
    grads = torch.autograd.grad(term, shared + own, allow_unused=True)
    assert all(g is None or not g.any() for g in grads[:len(shared)])
    assert any(g is not None and g.abs().sum() > 0 for g in grads[len(shared):])
    assert torch.equal(ae["zc"], m.content_encoder(x.flatten(0, 1))[0])  # the raw fragments, not standardised


def test_neighbour_pairs_skew_matches_a_content_across_polarity():
    from varinv.methods.regularisers import neighbour_pairs

    g = torch.Generator().manual_seed(1)
    strokes = (torch.rand(6, 1, 8, 8, generator=g) < 0.15).float()  # sparse contents, drawn once per sample
    order = torch.stack([torch.randperm(6, generator=g) for _ in range(8)])
    sign = (torch.arange(8) % 2 * 2 - 1).float()[:, None, None, None, None]  # half the samples light on dark
    x = sign * strokes[order] + 0.05 * torch.randn(8, 6, 1, 8, 8, generator=g)
    c, s = order.reshape(-1), (torch.arange(8) % 2).repeat_interleave(6)
    for skew, crossing in ((None, False), (0.5, True)):
        (near, kept), = neighbour_pairs(x, lambda f: f, skew=skew)
        assert bool(kept.any()) and bool((c[near] == c)[kept].all())
        assert bool((s[near] != s)[kept].any()) == crossing  # unflipped, a content never matches its negative


def test_neighbour_term_fits_its_basis_once_and_pulls_the_codes():
    cfg = paper_config(d_content=4, d_style=4, n_channels=8, n_layers=2, d_hidden=32, n_atoms=5, w_neighbour=1.0,
                       neighbour_far=0.5, neighbour_dims=6)
    m = V3(cfg, (1, 16, 8))
    torch.manual_seed(0)
    x = torch.rand(8, 4, 1, 16, 8)
    out = m.loss({"x": x}, step=0)
    basis = m.neighbour_proj.clone()
    assert "neighbour" in out and torch.isfinite(out["neighbour"]) and bool(m.neighbour_ready)
    assert basis.shape == (128, 6) and torch.allclose(basis.t() @ basis, torch.eye(6), atol=1e-4)
    ae = m.autoencode(x, step=0)
    term = regularisers.neighbour_term(m, {"x": x}, ae, 0)
    assert torch.autograd.grad(term, ae["zc"])[0].abs().sum() > 0
    m.loss({"x": torch.rand(8, 4, 1, 16, 8)}, step=1)
    assert torch.equal(m.neighbour_proj, basis)  # fixed after the first batch
    assert "neighbour_proj" in m.state_dict()
    assert "neighbour_proj" not in V3(paper_config(n_atoms=5), (1, 16, 8)).state_dict()
    with pytest.raises(ConfigError, match="neighbour_far"):
        paper_config(neighbour_far=1.5).validate()


def test_neighbour_term_keeps_only_the_far_pairs_after_near_until():
    cfg = paper_config(d_content=4, d_style=4, n_channels=8, n_layers=2, d_hidden=32, n_atoms=5, w_neighbour=1.0,
                       neighbour_dims=6, neighbour_from=0.2, neighbour_near_until=0.5)
    torch.manual_seed(0)
    x = torch.rand(8, 4, 1, 16, 8)
    terms = {}
    for far in (0.0, 0.5):
        m = V3(dataclasses.replace(cfg, neighbour_far=far), (1, 16, 8))
        m.total_steps = 10
        m.loss({"x": x}, step=2)  # fits the basis
        ae = m.autoencode(x, step=2)
        terms[far] = [regularisers.neighbour_term(m, {"x": x}, ae, step) for step in range(10)]
    assert [t is not None for t in terms[0.0]] == [False, False, True, True, True] + [False] * 5
    assert all(t is not None for t in terms[0.5][2:])
    assert terms[0.5][4] > terms[0.5][5]  # the near pairs' share is gone
    with pytest.raises(ConfigError, match="neighbour_near_until"):
        paper_config(neighbour_near_until=0.0).validate()


def test_neighbour_fade_scales_the_term_down_to_zero_at_the_end():
    cfg = paper_config(d_content=4, d_style=4, n_channels=8, n_layers=2, d_hidden=32, n_atoms=5, w_neighbour=1.0,
                       neighbour_dims=6, neighbour_far=0.5)
    torch.manual_seed(0)
    x = torch.rand(8, 4, 1, 16, 8)
    terms = {}
    for fade in (1.0, 0.5):
        torch.manual_seed(1)
        m = V3(dataclasses.replace(cfg, neighbour_fade=fade), (1, 16, 8))
        m.total_steps = 10
        m.loss({"x": x}, step=0)  # fits the basis
        ae = m.autoencode(x, step=0)
        terms[fade] = [float(regularisers.neighbour_term(m, {"x": x}, ae, step).detach()) for step in (2, 5, 6, 8)]
    plain, faded = terms[1.0], terms[0.5]
    assert plain[0] > 0 and faded[:2] == pytest.approx(plain[:2])  # full weight until half the run
    assert [f / p for f, p in zip(faded[2:], plain[2:])] == pytest.approx([0.8, 0.4])
    with pytest.raises(ConfigError, match="neighbour_fade"):
        paper_config(neighbour_fade=1.5).validate()


def test_neighbour_judge_drops_late_plain_pairs_the_decoder_disagrees_with(monkeypatch):
    cfg = paper_config(d_content=4, d_style=4, n_channels=8, n_layers=2, d_hidden=32, n_atoms=5, w_neighbour=1.0,
                       neighbour_dims=6, neighbour_far=0.0, neighbour_judge=0.5)
    torch.manual_seed(0)
    x = torch.rand(8, 4, 1, 16, 8)
    m = V3(cfg, (1, 16, 8))
    m.total_steps = 10
    m.loss({"x": x}, step=0)  # fits the basis
    ae = m.autoencode(x, step=0)
    real = m.atom_error(x.flatten(0, 1)[:3], ae["zs_dec"][:3], None, torch.tensor([0, 1, 2]))
    assert real.shape == (3,) and bool((real > 0).all())
    early = float(regularisers.neighbour_term(m, {"x": x}, ae, 2).detach())
    prefer = {}
    monkeypatch.setattr(m, "atom_error", lambda f, s, p, atoms: prefer["err"](atoms))
    prefer["err"] = lambda atoms: torch.zeros(len(atoms))  # every target renders as well as the own atom
    assert float(regularisers.neighbour_term(m, {"x": x}, ae, 6).detach()) == pytest.approx(early)
    calls = []

    def own_is_better(atoms):
        calls.append(len(atoms))
        half = len(atoms) // 2  # the targets' renderings, then the own atoms'
        return torch.cat([torch.full((half,), 1.0), torch.full((len(atoms) - half,), 0.5)])

    prefer["err"] = own_is_better
    late = regularisers.neighbour_term(m, {"x": x}, ae, 6)
    assert calls and (late is None or float(late.detach()) < early)  # the disagreeing pairs are gone
    assert float(regularisers.neighbour_term(m, {"x": x}, ae, 4).detach()) == pytest.approx(early)  # not yet judged
    with pytest.raises(ConfigError, match="neighbour_judge"):
        paper_config(neighbour_judge=2.0).validate()


def test_neighbour_ties_keep_only_pairs_whose_target_is_near_both():
    from varinv.methods.regularisers import within_nearest

    sq = torch.tensor([[0.0, 1.0, 2.0, 9.0], [5.0, 1.0, 0.5, 0.1]])
    assert within_nearest(sq, torch.tensor([1, 1]), 2).tolist() == [True, False]
    assert within_nearest(sq, torch.tensor([3, 3]), 1).tolist() == [False, True]
    cfg = paper_config(d_content=4, d_style=4, n_channels=8, n_layers=2, d_hidden=32, n_atoms=5, w_neighbour=1.0,
                       neighbour_far=0.5, neighbour_dims=6, neighbour_ties=1)
    m = V3(cfg, (1, 16, 8))
    torch.manual_seed(0)
    for step in range(3):  # a set whose pairs all fall out is skipped, never a NaN
        out = m.loss({"x": torch.rand(8, 4, 1, 16, 8)}, step=step)
        assert "neighbour" not in out or torch.isfinite(out["neighbour"])


def test_neighbour_canonical_pairs_the_fragments_with_their_pose_undone(monkeypatch):
    from varinv.nn.pose import unwarp

    seen = []
    real = regularisers.neighbour_pairs
    monkeypatch.setattr(regularisers, "neighbour_pairs", lambda x, *a, **k: seen.append(x) or real(x, *a, **k))
    torch.manual_seed(0)
    x = torch.rand(8, 4, 1, 16, 16)
    for canonical in (False, True):
        cfg = paper_config(d_content=4, d_style=4, n_channels=8, n_layers=2, d_hidden=32, n_atoms=5, w_neighbour=1.0,
                           neighbour_far=0.5, neighbour_dims=6, pose="similarity", neighbour_canonical=canonical)
        torch.manual_seed(1)
        m = V3(cfg, (1, 16, 16))
        ae = m.autoencode(x, step=0)
        ae["pose"] = torch.randn_like(ae["pose"])  # an untrained pose head is near the identity
        seen.clear()
        term = regularisers.neighbour_term(m, {"x": x}, ae, 0)
        want = unwarp(x.flatten(0, 1), ae["pose"]).view_as(x) if canonical else x
        assert torch.allclose(seen[0], want) and term is not None and torch.isfinite(term)
        assert canonical == (not torch.allclose(seen[0], x))


def test_pair_nce_pulls_partners_together_and_other_codes_apart(monkeypatch):
    cfg = paper_config(d_content=8, d_style=4, n_channels=8, n_layers=2, d_hidden=32, n_atoms=5, w_neighbour=0.0,
                       w_pair_nce=1.0, neighbour_dims=6)
    m = V3(cfg, (1, 16, 8))
    torch.manual_seed(0)
    x = torch.rand(4, 2, 1, 16, 8)
    ae = m.autoencode(x, step=0)
    partner = torch.tensor([2, 3, 0, 1, 6, 7, 4, 5])  # fragment i of sample 0 with fragment i of sample 1, ...
    kept = torch.ones(8, dtype=torch.bool)
    monkeypatch.setattr(regularisers, "neighbour_pairs", lambda *a, **k: [(partner, kept)])
    content = torch.tensor([0, 1, 0, 1, 2, 3, 2, 3])
    apart = torch.eye(8)[content]  # partners equal, the rest orthogonal
    together = torch.ones(8, 8) + 0.01 * torch.randn(8, 8)  # every code alike
    values = {}
    for name, zc in (("apart", apart), ("together", together)):
        ae = dict(ae, zc=zc.requires_grad_())
        ae.pop("pairs", None)
        values[name] = regularisers.pair_nce_term(m, {"x": x}, ae, 0)
    assert values["apart"] < 0.01 < 1.5 < values["together"]  # ln 7 ≈ 1.95 when nothing tells the partner apart
    assert torch.autograd.grad(values["together"], ae["zc"])[0].abs().sum() > 0
    monkeypatch.setattr(regularisers, "neighbour_pairs", lambda *a, **k: [(partner, torch.zeros(8, dtype=torch.bool))])
    ae.pop("pairs", None)
    assert regularisers.pair_nce_term(m, {"x": x}, ae, 0) is None  # no pair kept: no term, never a NaN
    monkeypatch.setattr(regularisers, "neighbour_pairs", lambda *a, **k: [(partner, kept)])
    late = V3(dataclasses.replace(cfg, pair_nce_from=0.5), (1, 16, 8))
    late.total_steps = 100
    ae.pop("pairs", None)
    assert regularisers.pair_nce_term(late, {"x": x}, ae, 49) is None  # before its share of the run
    assert regularisers.pair_nce_term(late, {"x": x}, ae, 50) is not None


def test_pair_nce_negatives_from_the_two_samples_spare_the_contents_other_samples_hold(monkeypatch):
    cfg = paper_config(d_content=4, d_style=4, n_channels=8, n_layers=2, d_hidden=32, n_atoms=5, w_neighbour=0.0,
                       w_pair_nce=1.0, neighbour_dims=6)
    torch.manual_seed(0)
    x = torch.rand(4, 2, 1, 16, 8)
    partner = torch.tensor([2, 3, 0, 1, 6, 7, 4, 5])  # sample 0 with sample 1, sample 2 with sample 3
    monkeypatch.setattr(regularisers, "neighbour_pairs", lambda *a, **k: [(partner, torch.ones(8, dtype=torch.bool))])
    zc = torch.eye(4)[torch.tensor([0, 1] * 4)]  # every sample holds contents 0 and 1, each content one point
    values = {}
    for negatives in ("batch", "samples"):
        m = V3(dataclasses.replace(cfg, pair_nce_negatives=negatives), (1, 16, 8))
        ae = dict(m.autoencode(x, step=0), zc=zc)
        values[negatives] = float(regularisers.pair_nce_term(m, {"x": x}, ae, 0))
    assert values["batch"] > 1.0  # the other two samples' copies of the anchor's content are negatives: ln 3
    assert values["samples"] < 0.01


def test_debiased_pair_nce_spares_negatives_of_the_anchors_content():
    from varinv.methods.regularisers import PAIR_NCE_TEMPERATURE, pair_nce

    content = torch.arange(20) % 4  # 4 contents, each 5 times: a fifth of every row's negatives share its content
    rows = torch.arange(20)
    partner = (rows + 4) % 20
    for z, plain_least, debiased_most, debiased_least in (
            (torch.eye(4)[content], 1.3, 0.01, 0.0),  # contents apart, each content one point
            (torch.ones(20, 4), 2.5, None, 2.5)):  # nothing apart: both stay high (ln 19 ≈ 2.94)
        logits = F.normalize(z, dim=1) @ F.normalize(z, dim=1).t() / PAIR_NCE_TEMPERATURE
        plain = float(pair_nce(logits, partner, rows, None))
        debiased = float(pair_nce(logits, partner, rows, 0.25))
        assert plain > plain_least  # the plain InfoNCE pushes the anchor's own content away (ln 4 ≈ 1.39)
        assert debiased >= debiased_least
        if debiased_most is not None:
            assert debiased < debiased_most


def test_code_style_dependence_sees_a_style_offset_in_the_content_codes():
    from varinv.methods.regularisers import code_style_dependence

    torch.manual_seed(0)
    b, length = 32, 10
    style = torch.randn(6, 8)[torch.randint(0, 6, (b,))] + 0.05 * torch.randn(b, 8)  # one per sample
    atoms = 3 * torch.randn(length, 16)
    content = atoms[torch.randint(0, length, (b * length,))] + 0.1 * torch.randn(b * length, 16)
    leak = content + 2 * torch.cat([style, style], 1).repeat_interleave(length, 0)  # shifted by their sample's style
    assert abs(float(code_style_dependence(content, style))) < 0.02
    assert float(code_style_dependence(leak, style)) > 0.1


def test_code_independence_term_reaches_the_content_codes_only():
    cfg = paper_config(d_content=4, d_style=4, n_channels=8, n_layers=2, d_hidden=32, n_atoms=5, w_code_independence=1.0)
    m = V3(cfg, (1, 16, 8))
    pushed = 0
    for ae, term in _term_on_random_batches(m, regularisers.code_independence_term):
        if term > 0:
            gc, gs = torch.autograd.grad(term, [ae["zc"], ae["zs"]], allow_unused=True)
            assert gc.abs().sum() > 0
            assert gs is None or gs.abs().sum() == 0  # the style is the reference, not pushed
            pushed += 1
    assert pushed


def test_one_way_far_pairs_keep_every_clear_far_match():
    from varinv.methods.regularisers import neighbour_pairs

    g = torch.Generator().manual_seed(3)
    x = torch.rand(12, 5, 1, 6, 6, generator=g) + torch.rand(12, 1, 1, 1, 1, generator=g)  # samples of unlike means
    (near_m, kept_m), (far_m, far_kept_m) = neighbour_pairs(x, lambda f: f, far=0.5, ratio=0.9)
    (near_o, kept_o), (far_o, far_kept_o) = neighbour_pairs(x, lambda f: f, far=0.5, ratio=0.9, far_mutual=False)
    assert torch.equal(near_m, near_o) and torch.equal(kept_m, kept_o) and torch.equal(far_m, far_o)
    assert bool((far_kept_m <= far_kept_o).all()) and int(far_kept_o.sum()) > int(far_kept_m.sum())
    one_way = far_kept_o & ~far_kept_m
    assert bool((far_o[far_o[one_way]] != one_way.nonzero().flatten()).any())  # some partners match elsewhere
