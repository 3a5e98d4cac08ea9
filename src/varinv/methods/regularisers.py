"""V3's extra loss terms beyond the paper: a registry of named regularisers.

Each is one function ``term(model, batch, ae, step) -> Tensor | None`` (None: inactive at this step),
registered with the ``V3Config`` field holding its weight, two lines on why it exists, the results file that
measured it and whether it reads the codebook (then ``V3.loss`` skips it before quantisation starts).
``V3.loss`` sums ``weight * term`` over the registry in one loop, skipping zero weights; a config names
weights and never adds a branch to the loss.

``ae`` is ``VQAutoencoder.autoencode``'s output: flat (B·L, d) latents ``zc``, ``zq``, ``zs``, the
decoder's style ``zs_dec``, and ``b``, ``length``; ``V3.loss`` adds ``zs3``, the (B, L, d_s) float styles. Terms that read the distances to the atoms share one
computation through :func:`atom_sqdist`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from varinv.audio.features import log_magnitude, magnitude
from varinv.nn import draws
from varinv.nn.distributed import (gather_samples, global_mean, rank, shared, shared_randperm, shuffled_rows,
                                   sum_over_processes)
from varinv.nn.pose import POSES, unwarp, warp

EPS = 1e-5
# Floor of a denominator that must stay scale-free: an absolute EPS there makes a term reward shrinking
# the latents once they are small (the isotropy term fell to -1, the soft assignments went uniform).
TINY = 1e-30
TILT_MODES = ("linear", "log", "lowpass")


@dataclass(frozen=True)
class Regulariser:
    fn: Callable
    weight: str  # the V3Config field with its weight
    why: str
    results: str  # benchmarks/results/ file that measured it
    quantized: bool  # reads the codebook: inactive (skipped by ``V3.loss``) before quantisation starts


REGULARISERS: dict[str, Regulariser] = {}


def regulariser(name: str, weight: str, why: str, results: str, quantized: bool = True):
    def register(fn):
        REGULARISERS[name] = Regulariser(fn, weight, why, results, quantized)
        return fn

    return register


def assignment_logits(sqdist: torch.Tensor, temperature: float) -> torch.Tensor:
    """Soft-assignment logits from squared distances to the atoms, scale-free: the temperature is
    relative to the (global) batch's mean squared distance."""
    return -sqdist / (temperature * global_mean(sqdist.mean().detach())).clamp_min(TINY)


def assignment_ce(sqdist: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    """Cross-entropy pulling each soft assignment (sqdist (N, K)) towards its target atom (N,); -100 is ignored."""
    return F.cross_entropy(assignment_logits(sqdist, temperature), target, ignore_index=-100)


def usage_entropy(sqdist: torch.Tensor, temperature: float) -> torch.Tensor:
    """(B,) entropy of the soft atom usage averaged over each group's fragments; sqdist (B, L, K)."""
    usage = assignment_logits(sqdist, temperature).softmax(-1).mean(1)  # (B, K)
    return -(usage * (usage + 1e-12).log()).sum(-1)


def diversity_loss(sqdist: torch.Tensor, temperature: float, shuffle: torch.Tensor | None = None) -> torch.Tensor:
    """1 - H(mean soft usage over a sample's fragments) / log(min(L, K)), averaged over samples.

    sqdist: (B, L, K) squared distances to the atoms; the temperature is relative to their mean over
    the (global) batch so the term is scale-free. ``shuffle`` (``shared_randperm(B·L)``): the
    samples' mean entropy need only reach that of random groups of L fragments of the batch (no gradient), which a
    faithful code meets when contents repeat within a sample, instead of log(min(L, K)), which asks
    every sample to use L distinct atoms and so splits a repeated content's copies.
    """
    b, length, k = sqdist.shape
    if min(length, k) <= 1:
        return sqdist.new_zeros(())
    (ent,) = gather_samples(usage_entropy(sqdist, temperature))
    if shuffle is None:
        return (1 - ent / math.log(min(length, k))).clamp(min=0).mean()
    ref = usage_entropy(shuffled_rows(sqdist, shuffle), temperature)
    # batch means: a faithful code's samples vary around the random groups' entropy, each way
    return ((ref.mean() - ent.mean()) / math.log(min(length, k))).clamp(min=0)


def matched_atoms(sqdist: torch.Tensor, repeat_cost: float = 0.0) -> torch.Tensor:
    """(B, L) atom of each fragment under a matching of each sample's fragments to the atoms that minimises
    the total squared distance (sqdist (B, L, K)). ``repeat_cost`` 0: one-to-one (with L > K the fragments
    left unmatched get -100, cross-entropy's ignore index); c > 0: an atom may take several fragments of
    one sample, its n-th extra one at c·n times the batch's mean squared distance."""
    from scipy.optimize import linear_sum_assignment

    cost = sqdist.detach().double().cpu().numpy()
    b, length, k = cost.shape
    if repeat_cost > 0:  # slots: every atom once per fragment, each further use dearer
        extra = repeat_cost * float(global_mean(sqdist.detach().mean().double()).cpu())
        cost = np.concatenate([cost + n * extra for n in range(length)], axis=2)
    out = torch.full((b, length), -100, dtype=torch.long)
    for i, c in enumerate(cost):
        if not np.isfinite(c).all():  # no target: the loss is not finite either, and the trainer reports that
            continue
        rows, cols = linear_sum_assignment(c)
        out[i, torch.from_numpy(rows)] = torch.from_numpy(cols % k)
    return out.to(sqdist.device)


def farthest_subset(z: torch.Tensor, m: int) -> torch.Tensor:
    """(B, m) indices of m fragments of each sample of z (B, L, d), chosen farthest-first: the one farthest
    from the sample's mean, then repeatedly the one farthest from those chosen. Copies of one content sit
    close together, so the subset holds distinct contents far more often than a random one does."""
    z = z.detach().float()
    d = torch.cdist(z, z)  # (B, L, L)
    rows = torch.arange(z.shape[0], device=z.device)
    pick = (z - z.mean(1, keepdim=True)).norm(dim=-1).argmax(1)
    chosen, gap = [pick], d[rows, pick]
    for _ in range(m - 1):
        gap = gap.masked_fill(torch.zeros_like(gap, dtype=torch.bool).scatter(1, pick[:, None], True), -1.0)
        pick = gap.argmax(1)
        chosen.append(pick)
        gap = torch.minimum(gap, d[rows, pick])
    return torch.stack(chosen, 1)


def repeat_rate(index: torch.Tensor, k: int) -> torch.Tensor:
    """How often two fragments of one sample share an atom relative to two fragments of different samples,
    from hard assignments index (B, L): about 1 when each sample's contents are drawn independently, about 0
    when no sample repeats a content (only atoms that merge contents share then). Clipped to [0, 1]."""
    (counts,) = gather_samples(F.one_hot(index, k).sum(1).float())  # (B, K)
    b, length = counts.shape[0], index.shape[1]
    if b < 2 or length < 2:
        return counts.new_ones(())
    within = (counts * (counts - 1)).sum() / (b * length * (length - 1))
    total = counts.sum(0)
    across = (total.pow(2).sum() - counts.pow(2).sum()) / ((b * length) ** 2 - b * length ** 2)
    return (within / across.clamp_min(TINY)).clamp(0, 1)


def sample_nce(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised-contrastive loss with the sample as the label: z (B, L, d) fragment embeddings; each
    fragment's positives are the other fragments of its sample, its negatives every fragment of the
    other samples (cosine similarity / temperature). Mean over fragments of -log(mass on positives)."""
    (z,) = gather_samples(z)
    b, length = z.shape[:2]
    if b < 2 or length < 2:
        return z.new_zeros(())
    f = F.normalize(z.flatten(0, 1).float(), dim=-1)
    logits = f @ f.t() / temperature
    eye = torch.eye(b * length, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(eye, float("-inf"))
    sample = torch.arange(b, device=z.device).repeat_interleave(length)
    pos = (sample[:, None] == sample[None, :]) & ~eye
    log_all = logits.logsumexp(1)
    log_pos = logits.masked_fill(~pos, float("-inf")).logsumexp(1)
    return (log_all - log_pos).mean()


def unbiased_hsic(k: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Unbiased HSIC estimate of two (n, n) Gram matrices (Song et al., 2012), n >= 4: near 0 for independent
    variables at any n, where the biased form grows as n shrinks."""
    n = k.shape[0]
    k = k - torch.diag_embed(torch.diagonal(k))
    m = m - torch.diag_embed(torch.diagonal(m))
    km = k @ m
    return (torch.trace(km) + k.sum() * m.sum() / ((n - 1) * (n - 2)) - 2 * km.sum() / (n - 2)) / (n * (n - 3))


def gaussian_gram(z: torch.Tensor) -> torch.Tensor:
    """exp(-|a - b|² / median pairwise squared distance) of the rows of z (n, d); the bandwidth has no gradient.
    Distances are taken directly, not through |a|² + |b|² − 2a·b, whose rounding the unbiased HSIC's
    cancellations magnify (two processes against one differed by 5e-4 on the code independence)."""
    d = torch.cdist(z, z, compute_mode="donot_use_mm_for_euclid_dist").pow(2)
    pos = d.detach()[d.detach() > 0]
    return torch.exp(-d / (pos.median() if pos.numel() else d.new_ones(())).clamp_min(TINY))


def style_usage_dependence(style: torch.Tensor, usage: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Normalised kernel dependence between each sample's style (B, d_s) and its soft atom usage (B, K),
    B >= 4: unbiased HSIC with a Gaussian kernel on the styles (bandwidth: the median pairwise squared
    distance) and a linear one on the usages, over the geometric mean of the styles' self-dependence and the
    usages' (at least that of ``reference`` (B, K), the usages of random groups of fragments: a code whose
    samples all use the same atoms has no usage spread to normalise by). Near 0 or below when independent."""
    ks = gaussian_gram(style)
    ku, kr = usage @ usage.t(), reference @ reference.t()
    spread = torch.maximum(unbiased_hsic(ku, ku).detach(), unbiased_hsic(kr, kr))
    return unbiased_hsic(ks, ku) / (unbiased_hsic(ks, ks).clamp_min(TINY) * spread.clamp_min(TINY)).sqrt()


def isotropy_loss(z: torch.Tensor, floor: float = 0.0) -> torch.Tensor:
    """d·Σλ²/(Σλ)² − 1 for the eigenvalues λ of the covariance of z (B, d): 0 when isotropic,
    d − 1 when all variance lies along one direction. A batch statistic: z is gathered under DDP.

    ``floor`` > 0 adds mean_i ReLU(ln floor − ln(λ_i/λ̄ + floor/100)) / ln 100: a direction holding
    less than ``floor`` of the mean variance is pushed in proportion to 1/λ_i, where the first part's
    pull is proportional to λ_i and so cannot reopen a direction that has closed (two styles merged)."""
    (z,) = gather_samples(z)
    zc = z - z.mean(0, keepdim=True)
    cov = zc.t() @ zc / max(z.shape[0] - 1, 1)
    tr, tr2 = torch.diagonal(cov).sum(), (cov * cov).sum()  # Σλ and Σλ² without an eigendecomposition
    loss = z.shape[1] * tr2 / (tr * tr).clamp_min(TINY) - 1
    if floor > 0:
        # a NaN batch must reach the trainer's NaN check as a NaN loss (the first part), not fail eigvalsh
        share = (torch.linalg.eigvalsh(torch.nan_to_num(cov.double(), 0.0, 0.0, 0.0)).clamp_min(0)
                 / (tr.double() / z.shape[1]).clamp_min(TINY))
        low = F.relu(math.log(floor) - torch.log(share + floor / 100)).mean() / math.log(100)
        loss = loss + low.to(loss.dtype)
    return loss


def tilt_basis(h: int, axis: str) -> torch.Tensor:
    """(2, h): a linear and a quadratic curve over ``h`` frequency bins along ``axis`` ("linear" or
    "log"), the position scaled to [-1, 1] and each curve shifted to zero mean over the band."""
    t = torch.arange(h, dtype=torch.float64)
    if axis == "log":
        t = torch.log1p(t)
    t = 2 * (t - t[0]) / (t[-1] - t[0]) - 1
    basis = torch.stack([t, t * t])
    return (basis - basis.mean(1, keepdim=True)).float()


def tilt(x: torch.Tensor, mode: str, scale: float, knee: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """A random smooth reweighting of each log-magnitude fragment of x (N, C, H, W) along frequency
    (see ``V3Config.tilt_mode``); it moves no spectral peak. ``knee``: the lowpass knee's range as
    fractions of the log-frequency span."""
    n, h = x.shape[0], x.shape[-2]
    u = draws.rand(2, n, 1, 1, 1, like=x)
    if mode == "lowpass":
        f = torch.log1p(torch.arange(h, device=x.device, dtype=x.dtype))[:, None]  # (H, 1)
        lo, hi = knee
        at = f[1] + (lo + u[0] * (hi - lo)) * (f[-1] - f[1])  # (N, 1, 1, 1)
        gain = -(u[1] * scale) * F.relu(f - at)  # (N, 1, H, 1), <= 0
        return log_magnitude(magnitude(x) * gain.exp())
    t, q = tilt_basis(h, mode).to(x.device, x.dtype)
    a, b = (u * 2 - 1) * scale
    return x + a * t[:, None] + b * q[:, None]  # zero mean over the band


def atom_sqdist(model, ae: dict) -> torch.Tensor:
    """(B, L, K) squared distances of every fragment's z_c to the atoms, computed once per step."""
    if "sqdist" not in ae:
        ae["sqdist"] = model.quantizer.distances(ae["zc"].float()).view(ae["b"], ae["length"], -1)
    return ae["sqdist"]


def pull_to_targets(model, ae, targets):
    """Cross-entropy pulling every fragment's soft assignment towards ``targets(sqdist (B, L, K))`` (B·L,)."""
    sq = atom_sqdist(model, ae)
    return assignment_ce(sq.flatten(0, 1), targets(sq), model.cfg.diversity_temperature)


@regulariser("isotropy", "w_isotropy", results="2026-11-22-v3-phonenums-explore.md", quantized=False,
             why="Once met, the hinge terms leave z_s stretched along one direction (PhoneNums: red vs not red), "
                 "so other styles sit close together; spread the across-sample style variance over many directions.")
def isotropy_term(model, batch, ae, step):
    return isotropy_loss(ae["zs3"].mean(1), model.cfg.isotropy_floor)


@regulariser("style_nce", "w_style_nce", results="2026-12-05-generalisation-explore19.md", quantized=False,
             why="Beside the neighbour pairs, which tie a content across styles through the shared trunk, nothing asked the "
                 "trunk for textures' style (0.25); a contrastive form of V3's style prior (z_s picks out its own sample) does.")
def style_nce_term(model, batch, ae, step):
    return sample_nce(ae["zs3"], model.cfg.style_nce_temperature)


@regulariser("independence", "w_independence", results="2026-12-03-generalisation-explore7.md",
             why="An atom that holds a content only in some styles (a font's A, a patch's permuted pitches) makes the atoms "
                 "a sample uses depend on its style; contents can repeat, but what a sample uses cannot predict its style.")
def independence_term(model, batch, ae, step):
    if before(model, model.cfg.independence_from, step):
        return None
    soft = assignment_logits(atom_sqdist(model, ae), model.cfg.diversity_temperature).softmax(-1)  # (B, L, K)
    reference = shuffled_rows(soft, shared_randperm(soft.shape[0] * soft.shape[1], soft.device)).mean(1)
    style, usage = gather_samples(ae["zs3"].mean(1).detach(), soft.mean(1))
    if style.shape[0] < 4:
        return None
    return style_usage_dependence(style, usage, reference).clamp_min(0)


def code_style_dependence(zc: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """Normalised unbiased HSIC between each fragment's z_c (B·L, d_c, sample by sample) and its sample's style
    (B, d_s), Gaussian kernels; the normaliser (the two self-dependences) has no gradient, so z_c cannot lower it
    by sharpening. The style kernel is the samples' (B, B) one spread over their fragments: exactly 1 within a
    sample, and the same median bandwidth as over the fragments' repeated styles."""
    length = zc.shape[0] // style.shape[0]
    kc = gaussian_gram(zc)
    ks = gaussian_gram(style).repeat_interleave(length, 0).repeat_interleave(length, 1)
    norm = (unbiased_hsic(kc, kc) * unbiased_hsic(ks, ks)).detach().clamp_min(TINY).sqrt()
    return unbiased_hsic(kc, ks) / norm


@regulariser("code_independence", "w_code_independence", results="2026-12-06-generalisation-explore23.md",
             why="Contents are drawn independently of styles, yet speech's z_c tells the voice (linear probe 0.96) and "
                 "handwriting's the colours; the atom-usage term cannot see a leak that stays within one atom.")
def code_independence_term(model, batch, ae, step):
    b, length = ae["b"], ae["length"]
    zc, style = gather_samples(ae["zc"].float().view(b, length, -1), ae["zs3"].mean(1).detach())
    if zc.shape[0] < 2:
        return None
    return code_style_dependence(zc.flatten(0, 1), style).clamp_min(0)


@regulariser("diversity", "w_diversity", results="2026-11-22-v3-phonenums-explore.md",
             why="The hinge terms saturate early, after which co-occurring contents can share an atom; the "
                 "fragments of one sample should pick different atoms (V3's own prior, on the codebook).")
def diversity_term(model, batch, ae, step):
    sq = atom_sqdist(model, ae)
    shuffle = None
    if model.cfg.diversity_reference == "shuffled":
        shuffle = shared_randperm(sq.shape[0] * sq.shape[1], sq.device)
    return diversity_loss(sq, model.cfg.diversity_temperature, shuffle)


@regulariser("match", "w_match", results="2026-12-01-v3-waveforms-lowpass.md",
             why="For data whose samples never repeat a content: the soft diversity term let two contents share "
                 "an atom; a one-to-one matching of each sample's fragments to atoms forbids it.")
def match_term(model, batch, ae, step):
    cfg = model.cfg
    if cfg.match_subset >= 1:
        return pull_to_targets(model, ae, lambda sq: matched_atoms(sq, cfg.match_repeat_cost).flatten())

    def subset_targets(sq):
        b, length, k = sq.shape
        share = cfg.match_subset
        if cfg.match_adapt:  # formed codes of never-repeating data measured 0.0-0.6 (merged atoms), drawn data 1.0
            share = 1 - (1 - share) * min(1.0, max(0.0, 2 * float(repeat_rate(sq.argmin(-1), k)) - 1))
        idx = farthest_subset(ae["zc"].view(b, length, -1), max(1, round(share * length)))
        target = torch.full((b, length), -100, dtype=torch.long, device=sq.device)
        sub = sq.gather(1, idx[..., None].expand(-1, -1, sq.shape[-1]))
        return target.scatter(1, idx, matched_atoms(sub, cfg.match_repeat_cost)).flatten()

    return pull_to_targets(model, ae, subset_targets)


@regulariser("reassign", "w_reassign", results="2026-11-22-v3-phonenums-reassign.md",
             why="Look-alike contents put into two atoms in crossed proportions stay there under commitment and EMA; "
                 "the decoder can tell which atom reconstructs a fragment best, so pull the assignment there.")
def reassign_term(model, batch, ae, step):
    cfg = model.cfg
    if step < cfg.reassign_start:
        return None
    if "decoder_target" in ae:  # the decoder already chose every fragment's atom (VQConfig.assign)
        return assignment_ce(atom_sqdist(model, ae).flatten(0, 1), ae["decoder_target"], cfg.diversity_temperature)
    n = min(cfg.reassign_fragments, ae["zc"].shape[0])  # per process; the term keeps the global batch's first n
    x_flat = batch["x"].reshape(-1, *batch["x"].shape[2:])[:n]
    zs = ae["zs_dec"].detach()
    if cfg.reassign_style in ("mean", "other"):
        length = ae["length"]
        means = zs.view(-1, length, zs.shape[-1]).mean(1)
        if cfg.reassign_style == "other":
            means = means.roll(1, 0)
        zs = means.repeat_interleave(length, 0)
    pose = ae.get("pose")
    errors = model.atom_errors(x_flat, zs[:n], None if pose is None else pose[:n].detach())
    # distances of these n rows on their own (the cached (B, L, K) ones differ in the last bits: BLAS blocking)
    sqdist = model.quantizer.distances(ae["zc"][:n].float())
    sqdist, errors, index = gather_samples(sqdist, errors, ae["index"][:n])
    n = min(cfg.reassign_fragments, sqdist.shape[0])
    if model.quantizer.renew_share:  # the global batch's first n rows, so any number of processes agrees
        model.quantizer.track(index[:n], errors[:n])
    return assignment_ce(sqdist[:n], errors[:n].argmin(1), cfg.diversity_temperature)


@regulariser("coarse", "w_coarse", results="2026-12-04-generalisation-explore13.md", quantized=False,
             why="A gain can blend a second content's pattern into an atom in one style (InsNotes: four instruments' "
                 "neighbouring pitches permuted); the additive part alone cannot, so it judges the reassignment.")
def coarse_term(model, batch, ae, step):
    return ae.get("recon_coarse")


def standardise_rows(a: torch.Tensor) -> torch.Tensor:
    c = a - a.mean(1, keepdim=True)  # the deviation from c's squares: torch.std is about 3x slower on one thread
    return c / ((c.pow(2).sum(1, keepdim=True) / max(a.shape[1] - 1, 1)).sqrt() + 1e-6)


def neighbour_pairs(x: torch.Tensor, embed: Callable, far: float = 0.0, ratio: float = 0.5,
                    skew: float | None = None, far_mutual: bool = True) -> list:
    """Mutual nearest neighbours among the fragments of x (B, L, ...) of different samples, by cosine similarity
    of ``embed`` (N, D) -> (N, d) applied to the standardised fragments, each sample's mean fragment removed.
    Returns [(partner, kept)], each (B·L,): the plain pairs, then with ``far`` > 0 pairs searched only among
    that share of the other samples whose mean fragment (a label-free signature of the style) is farthest,
    kept where the match's distance is below ``ratio`` times that of the runner-up in the partner's sample
    (``far_mutual``: and the partner's far match is the fragment, on the same terms; else each fragment's own
    far match, one way).
    ``skew``: a sample's channel (x (B, L, C, H, W); otherwise the whole sample) whose values have skewness below
    -skew is negated, so that the sparse part of every sample (ink, strokes, harmonics) lies on the positive side:
    a light-on-dark sample then matches the dark-on-light samples of its content. The skewness is the input's own,
    not the residual's: a residual's sign also follows which contents the sample holds. Non-finite input gives
    no pairs."""
    b, length = x.shape[:2]
    r = x - x.mean(1, keepdim=True)
    if skew is not None:
        dims = (1, 3, 4) if x.dim() == 5 else tuple(range(1, x.dim()))
        d = x - x.mean(dims, keepdim=True)
        sd = d.pow(2).mean(dims, keepdim=True).sqrt()
        r = torch.where(d.pow(3).mean(dims, keepdim=True) < -skew * sd.pow(3), -r, r)
    f = standardise_rows(r.flatten(2).flatten(0, 1))
    if not bool(torch.isfinite(f.sum())):  # standardised rows are bounded, so only a non-finite entry can make it so
        return []  # input beyond float range: the reconstruction's loss reports it, and no basis is fitted on it
    e = F.normalize(embed(f), dim=1)
    sample = torch.arange(b, device=x.device).repeat_interleave(length)
    idx = torch.arange(b * length, device=x.device)
    sim = e @ e.t()
    excluded = [sample[:, None] == sample[None, :]]
    if far > 0:
        sig = F.normalize(standardise_rows(x.mean(1).flatten(1)), dim=1)
        dist = (1 - sig @ sig.t()).fill_diagonal_(-1.0)
        keep = max(1, int(round(far * (b - 1))))
        chosen = torch.zeros_like(dist, dtype=torch.bool).scatter_(1, dist.topk(keep, dim=1).indices, True)
        excluded.append(~chosen[sample][:, sample])
    pairs = []
    for i, mask in enumerate(excluded):
        s = sim.masked_fill(mask, -2.0)
        best, partner = s.max(1)
        kept = partner[partner] == idx
        if i > 0:  # the far match must stand out from the partner sample's other fragments (on both sides if mutual)
            others = s.masked_fill(sample[None, :] != sample[partner][:, None], -2.0).scatter(1, partner[:, None], -2.0)
            clear = (1 - best) < ratio * (1 - others.max(1)[0])
            kept = kept & clear & (kept & clear)[partner] if far_mutual else clear
        pairs.append((partner, kept))
    return pairs


def within_nearest(sq: torch.Tensor, atom: torch.Tensor, n: int) -> torch.Tensor:
    """(N,) whether ``atom`` (N,) is among each row's ``n`` nearest atoms by squared distances sq (N, K)."""
    return (sq < sq.gather(1, atom[:, None])).sum(1) < n


def decoder_agrees(model, ae, x: torch.Tensor, own: torch.Tensor, target: torch.Tensor, partner: torch.Tensor,
                   kept: torch.Tensor) -> torch.Tensor:
    """(B·L,) bool over the global batch x (B, L, ...): False where a kept pair's fragment is in another atom than
    the pair's ``target`` and the target renders it (in its style and pose) worse than its own atom ``own``, or
    where its partner is so."""
    b, length = ae["b"], ae["length"]
    pose = ae.get("pose")
    if pose is None:
        (zs,) = gather_samples(ae["zs_dec"].view(b, length, -1))
    else:
        zs, pose = gather_samples(ae["zs_dec"].view(b, length, -1), pose.view(b, length, -1))
        pose = pose.flatten(0, 1)
    agree = torch.ones_like(kept)
    rows = (kept & (own != target)).nonzero().flatten()
    if rows.numel():
        both = torch.cat([rows, rows])  # the target's and the own atom's renderings in one decoder pass
        err = model.atom_error(x.flatten(0, 1)[both], zs.flatten(0, 1)[both], None if pose is None else pose[both],
                               torch.cat([target[rows], own[rows]]))
        agree[rows] = err[:rows.numel()] <= err[rows.numel():]
    return agree & agree[partner]


def before(model, share: float, step) -> bool:
    """Whether a training ``step`` (None: not training) comes before ``share`` of the run, where a term starts."""
    return step is not None and step < share * model.total_steps


def term_pairs(model, batch, ae, step) -> tuple[torch.Tensor, list] | None:
    """The global batch's input (B, L, ...) and its neighbour pairs (``neighbour_pairs``), found once a step (kept in
    ``ae``) for every term that reads them; None before ``neighbour_from`` of the run."""
    if before(model, model.cfg.neighbour_from, step):
        return None
    if "pairs" not in ae:
        cfg = model.cfg
        (x,) = gather_samples(batch["x"].float())  # the pairs span the global batch, so processes agree with one
        seen = x
        if cfg.neighbour_canonical and ae.get("pose") is not None:
            (pose,) = gather_samples(ae["pose"].detach().view(ae["b"], ae["length"], -1))
            seen = unwarp(x.flatten(0, 1), pose.flatten(0, 1)).view_as(x)
        ae["pairs"] = x, neighbour_pairs(seen, lambda f: f @ model.neighbour_basis(f), cfg.neighbour_far,
                                         cfg.neighbour_ratio, None if cfg.neighbour_skew < 0 else cfg.neighbour_skew)
    return ae["pairs"]


@regulariser("neighbour", "w_neighbour", results="2026-12-04-generalisation-explore16.md", quantized=False,
             why="Fragments of two samples that are mutual nearest neighbours of the input share their content far more "
                 "often than V3's codes do (speech, greek); far pairs (samples of unlike mean) tie a content across styles.")
def neighbour_term(model, batch, ae, step):
    cfg = model.cfg
    found = term_pairs(model, batch, ae, step)
    if found is None:
        return None
    x, pairs = found
    def late(share):
        return share < 1 and step is not None and step >= share * model.total_steps

    tagged = list(zip(pairs, (True, False)))  # (pairs, plain?): the plain pairs come first
    if late(cfg.neighbour_near_until):
        tagged = tagged[1:]  # late, the far pairs alone: they hold a numbering across styles
    sets = [(partner, kept, plain) for (partner, kept), plain in tagged if bool(kept.any())]
    if not sets or not model.quantizing(step):  # the pairs come first: they fit the basis on the first batch
        return None
    (sq,) = gather_samples(atom_sqdist(model, ae))
    sq = sq.flatten(0, 1)
    fixed = sq.detach()
    total = None
    for partner, kept, plain in sets:
        both = fixed + fixed[partner]  # the atom nearest to both, not each other's atom
        # near-ties (a pair of fragments that seeded two atoms) go to the lower index: processes whose
        # distances differ in the last bits pick the same atom
        t = (both <= both.min(1, keepdim=True)[0] * (1 + 1e-4) + 1e-8).int().argmax(1)
        if plain and late(cfg.neighbour_judge):
            kept = kept & decoder_agrees(model, ae, x, fixed.argmin(1), t, partner, kept)
            if not bool(kept.any()):
                continue
        if cfg.neighbour_ties:
            n = cfg.neighbour_ties
            kept = kept & within_nearest(fixed, t, n) & within_nearest(fixed[partner], t, n)
            if not bool(kept.any()):
                continue
        term = assignment_ce(sq, torch.where(kept, t, torch.full_like(t, -100)), cfg.diversity_temperature)
        total = term if total is None else total + term
    if total is not None and cfg.neighbour_fade < 1 and step is not None:
        total = total * min(1.0, (1 - step / model.total_steps) / (1 - cfg.neighbour_fade))
    return total


PAIR_NCE_TEMPERATURE = 0.1
PAIR_NCE_NEGATIVES = ("batch", "debiased", "samples")


@regulariser("pair_nce", "w_pair_nce", results="2026-12-07-generalisation-explore31.md", quantized=False,
             why="The neighbour term only says which fragments share an atom, never which do not: shapes' circle, square and "
                 "hexagon kept one atom with 96 % right pairs; as InfoNCE positives the pairs also push other contents apart in z_c.")
def pair_nce_term(model, batch, ae, step):
    if before(model, model.cfg.pair_nce_from, step):
        return None
    found = term_pairs(model, batch, ae, step)
    if found is None:
        return None
    _, pairs = found
    length = ae["length"]
    (zc,) = gather_samples(ae["zc"].view(ae["b"], length, -1))
    z = F.normalize(zc.flatten(0, 1).float(), dim=1)
    logits = z @ z.t() / PAIR_NCE_TEMPERATURE
    negatives = model.cfg.pair_nce_negatives
    prior = nce_prior(model.cfg)
    terms = []
    for partner, kept in pairs:
        if not bool(kept.any()):
            continue
        rows = kept.nonzero().flatten()
        s = logits[rows]
        if negatives == "samples":  # columns outside the anchor's and the partner's samples are no candidates
            column, anchor, other = torch.arange(s.shape[1], device=s.device) // length, rows // length, partner[rows] // length
            s = s.masked_fill((column != anchor[:, None]) & (column != other[:, None]), float("-inf"))
        terms.append(pair_nce(s, partner[rows], rows, prior))
    return torch.stack(terms).mean() if terms else None


def nce_prior(cfg) -> float | None:
    """The chance that an InfoNCE negative shares the anchor's content (1/K) under ``pair_nce_negatives: debiased``,
    else None (no correction)."""
    return 1.0 / cfg.n_atoms if cfg.pair_nce_negatives == "debiased" else None


def pair_nce(logits: torch.Tensor, positive: torch.Tensor, own: torch.Tensor | None, prior: float | None) -> torch.Tensor:
    """InfoNCE of rows ``logits`` (R, N) with column ``positive`` (R,) the positive and every finite column but it and
    the row's ``own`` (R,; None: no such column) a negative. ``prior``: the chance that a negative shares the anchor's
    content; the negatives' mean is then corrected for it (Chuang et al., 2020, clipped at its least possible value)."""
    if own is not None:
        logits = logits.scatter(1, own[:, None], float("-inf"))
    if prior is None:
        return F.cross_entropy(logits, positive)
    pos = logits.gather(1, positive[:, None]).squeeze(1)
    neg = logits.scatter(1, positive[:, None], float("-inf"))
    m = logits.shape[1] - (1 if own is None else 2)
    mean_neg = torch.exp(torch.logsumexp(neg, 1) - math.log(m))
    floor = math.exp(-1.0 / PAIR_NCE_TEMPERATURE)
    g = ((mean_neg - prior * pos.exp()) / (1 - prior)).clamp_min(floor)
    return (torch.log(pos.exp() + m * g) - pos).mean()


POSED_SHARE = 0.25  # of the fragments, as the posed term's anchors


@regulariser("posed_nce", "w_posed_nce", results="2026-12-07-generalisation-explore34.md", quantized=False,
             why="Before the pose head has learnt, input neighbours also share their pose (fluidr3: 88 % the same onset), so the "
                 "pair InfoNCE taught z_c the onset and atoms cut it; a copy in a random pose, as positive, asks z_c to ignore it.")
def posed_nce_term(model, batch, ae, step):
    cfg = model.cfg
    n_pose = POSES[cfg.pose]
    if not n_pose:
        return None
    x = batch["x"]
    flat = x.reshape(-1, *x.shape[2:])
    n = flat.shape[0]
    # a share of the global batch's fragments as anchors, against every clean code: the extra encoder pass is most
    # of the cost. Under DDP each process encodes the anchors among its own fragments.
    rows = shared_randperm(n, flat.device)
    rows = rows[:max(1, round(POSED_SHARE * len(rows)))]
    # uniform within posed_range of each pose parameter's bound (pose_matrix squashes raw parameters by tanh)
    u = shared((draws.rand(len(rows), n_pose, like=flat.float()) * 2 - 1) * cfg.posed_range)
    start = rank() * n
    mine = ((rows >= start) & (rows < start + n)).nonzero().flatten()
    posed = warp(flat[rows[mine] - start], torch.atanh(u[mine]))
    zp = F.normalize(model.content_of(posed[:, None]).float(), dim=1)
    z_posed = sum_over_processes(zp.new_zeros(len(rows), zp.shape[1]).index_copy(0, mine, zp))
    (zc,) = gather_samples(ae["zc"])
    z = F.normalize(zc.float(), dim=1)
    return pair_nce(z_posed @ z.t() / PAIR_NCE_TEMPERATURE, rows, None, nce_prior(cfg))


@regulariser("tilt", "w_tilt", results="2026-12-02-v3-waveforms-brickwall.md",
             why="Spectrograms: low-tone atoms were permuted per waveform; a random reweighting along frequency "
                 "changes the harmonics but moves none, so z_c of a tilted fragment is pulled to the clean atom.")
def tilt_term(model, batch, ae, step):
    cfg, x = model.cfg, batch["x"]
    tilted = tilt(x.reshape(-1, *x.shape[2:]), cfg.tilt_mode, cfg.tilt_range, (cfg.tilt_knee_min, cfg.tilt_knee_max))
    return F.mse_loss(model.content_of(tilted.view_as(x)).float(), ae["zq"].detach().float())
