"""V3: variance versus invariance (Wu, Wang, Raj, Xia, ICLR 2025).

A VQ autoencoder over fragments. Content varies within a sample and shares one vocabulary across
samples; style is nearly constant within a sample and varies across samples. Four hinge terms on
mean pairwise distances (MPD) turn that into a loss (papers.md §1.3):

    content_loss   V_c^frag / V_c^samp >= r      style_loss     V_s^samp / V_s^frag >= r
    sample_loss    V_s^samp / V_c^samp >= r      fragment_loss  V_c^frag / V_s^frag >= r

each as ReLU(r - ratio) / r. MPDs are computed from (B, L, L) distance matrices, never from
(B, L, L, d) difference tensors.

Extension beyond the paper (off when ``w_diversity = 0``): the hinge terms saturate within a few
hundred steps, after which nothing stops two co-occurring contents from sharing an atom (the
calibration's failure mode). ``w_diversity`` applies the same "content varies within a sample"
prior to the codebook itself: the soft atom usage averaged over one sample's fragments should have
high entropy, i.e. the fragments of one sample should pick different atoms.

Data parallelism: every term here is a statistic of the whole batch, so under torch.distributed
each process gathers the per-sample summaries of all processes (with gradients) and computes the
global loss; see ``varinv.nn.distributed`` for why the gradients then come out right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from varinv.audio.features import log_magnitude, magnitude
from varinv.config import _check
from varinv.methods.vqae import VQAutoencoder, VQConfig
from varinv.nn.distributed import gather_samples, global_mean

EPS = 1e-5
TILT_MODES = ("linear", "log", "lowpass")


@dataclass
class V3Config(VQConfig):
    relativity: float = 15.0
    w_content: float = 1.0
    w_style: float = 1.0
    w_sample: float = 1.0
    w_fragment: float = 1.0
    w_diversity: float = 0.0
    diversity_temperature: float = 0.1
    # Spread the across-sample style variance over many directions (0 when isotropic). The hinge
    # terms, once met, leave z_s stretched along whichever direction grew first (on PhoneNums the
    # red channel), so every other colour difference ends up tiny in Euclidean distance.
    w_isotropy: float = 0.0
    # Decoder-guided reassignment (0 = off): ``reassign_fragments`` fragments of each batch are
    # decoded with every atom (their own style, no gradient, decoder in eval mode), and a
    # cross-entropy term pulls each one's soft assignment towards the atom that reconstructs it best.
    # Look-alike contents that a poor early codebook put into two atoms in crossed proportions
    # (PhoneNums 0/8, 3/5) stay there under commitment and EMA alone, although z_c still tells them
    # apart; the decoder can tell which atom fits.
    w_reassign: float = 0.0
    reassign_fragments: int = 64
    reassign_start: int = 0  # first step of the term (an untrained decoder gives noisy targets)
    # Style the targets are decoded with: "own" (each fragment's z_s), "mean" (its sample's mean z_s)
    # or "other" (the mean z_s of the batch's previous sample). With "own", frequency that leaked into
    # z_s lets one atom render two contents, so the targets cannot separate them (Waveforms); on
    # PhoneNums "mean" cost z_s its colour. "other" targets the atom whose rendering in another style
    # fits best: when each waveform permutes the atoms its own way, the own-style targets agree with
    # the permutation, while another waveform's rendering of the same pitch still shares its peaks.
    reassign_style: str = "own"
    # One-to-one matching within a sample (0 = off; only for data whose samples never repeat a content,
    # e.g. InsNotes and Waveforms): each sample's fragments are matched to distinct atoms at minimum
    # total squared distance, and a cross-entropy term pulls each soft assignment towards its match.
    # The diversity term is the soft form of this prior; it tolerated two tones sharing an atom while
    # another atom held one tone for only some waveforms, which the matching forbids.
    w_match: float = 0.0
    # Spectral-tilt invariance (0 = off; spectrogram data): each fragment's log-magnitude gets a random
    # smooth curve along frequency (linear + quadratic, up to ±tilt_range at the band edges), which
    # reweights harmonics but moves none, and its z_c is pulled to the clean fragment's atom. On
    # Waveforms the low atoms were permuted per waveform; this asks z_c to ignore the spectral envelope.
    w_tilt: float = 0.0
    tilt_range: float = 2.0
    # Shape of the curve: "linear" (linear + quadratic along frequency bins), "log" (the same along
    # log-frequency: a change of harmonic roll-off, amplitude ~ n^-a as square vs triangle, is a line
    # there, while along bins the curve barely differs between a low tone's first harmonics), or
    # "lowpass" (a knee at a random log-frequency above which the magnitude falls by up to tilt_range
    # per unit of ln f, applied to |X| so the noise floor stays: above a tone's fundamental it strips
    # the harmonics that tell waveforms apart, e.g. a sawtooth's even ones, and keeps the pitch).
    tilt_mode: str = "linear"
    # Where the lowpass knee falls, as fractions of the log-frequency span (bin 1 to the top bin). A knee
    # below every fundamental mutes the whole tone and one far above the harmonics does nothing; on
    # Waveforms [0.28, 0.7] keeps the knees between 106 and 920 Hz, around the fundamentals and 2nd harmonics.
    tilt_knee_min: float = 0.0
    tilt_knee_max: float = 1.0

    def validate(self) -> None:
        super().validate()
        _check(self.w_reassign >= 0, "model.w_reassign", self.w_reassign, "a number >= 0")
        _check(self.reassign_fragments >= 1, "model.reassign_fragments", self.reassign_fragments, "an integer >= 1")
        _check(self.reassign_start >= 0, "model.reassign_start", self.reassign_start, "an integer >= 0")
        _check(self.w_match >= 0, "model.w_match", self.w_match, "a number >= 0")
        _check(self.w_tilt >= 0, "model.w_tilt", self.w_tilt, "a number >= 0")
        _check(self.tilt_range > 0, "model.tilt_range", self.tilt_range, "a number > 0")
        _check(self.tilt_mode in TILT_MODES, "model.tilt_mode", self.tilt_mode, "'linear', 'log' or 'lowpass'")
        _check(0 <= self.tilt_knee_min < self.tilt_knee_max <= 1, "model.tilt_knee_min/max",
               (self.tilt_knee_min, self.tilt_knee_max), "two fractions with 0 <= min < max <= 1")
        _check(self.reassign_style in ("own", "mean", "other"), "model.reassign_style", self.reassign_style,
               "'own', 'mean' or 'other'")
        _check(self.relativity > 1, "model.relativity", self.relativity, "a number r > 1")
        _check(self.diversity_temperature > 0, "model.diversity_temperature", self.diversity_temperature, "> 0")


def mpd(x: torch.Tensor) -> torch.Tensor:
    """Mean pairwise Euclidean distance over axis -2 of (..., n, d), ordered pairs i != j → (...)."""
    n = x.shape[-2]
    d = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")
    return d.sum((-1, -2)) / (n * (n - 1))


def hinge(ratio: torch.Tensor, r: float) -> torch.Tensor:
    return F.relu(r - ratio) / r


def v3_terms(zc: torch.Tensor, zq: torch.Tensor, zs: torch.Tensor, r: float) -> dict[str, torch.Tensor]:
    """The four V3 hinge terms and their statistics from (B, L, d) tensors.

    Only per-sample summaries (within-sample MPDs, sample means) cross processes under DDP.
    """
    fc, fq, fs, mc, mq, ms = gather_samples(mpd(zc), mpd(zq), mpd(zs), zc.mean(1), zq.mean(1), zs.mean(1))
    vc_frag = 0.5 * fc.mean() + 0.5 * fq.mean()
    vc_samp = 0.5 * mpd(mc) + 0.5 * mpd(mq)
    vs_frag = fs.mean()
    vs_samp = mpd(ms)
    return {
        "content": hinge(vc_frag / (vc_samp + EPS), r),
        "style": hinge(vs_samp / (vs_frag + EPS), r),
        "sample": hinge(vs_samp / (vc_samp + EPS), r),
        "fragment": hinge(vc_frag / (vs_frag + EPS), r),
        "stat_vc_frag": vc_frag.detach(),
        "stat_vc_samp": vc_samp.detach(),
        "stat_vs_frag": vs_frag.detach(),
        "stat_vs_samp": vs_samp.detach(),
    }


def assignment_logits(sqdist: torch.Tensor, temperature: float) -> torch.Tensor:
    """Soft-assignment logits from squared distances to the atoms, scale-free: the temperature is
    relative to the (global) batch's mean squared distance."""
    return -sqdist / (temperature * global_mean(sqdist.mean().detach()) + EPS)


def assignment_ce(sqdist: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    """Cross-entropy pulling each soft assignment (sqdist (N, K)) towards its target atom (N,); -100 is ignored."""
    return F.cross_entropy(assignment_logits(sqdist, temperature), target, ignore_index=-100)


def diversity_loss(sqdist: torch.Tensor, temperature: float) -> torch.Tensor:
    """1 - H(mean soft usage over a sample's fragments) / log(min(L, K)), averaged over samples.

    sqdist: (B, L, K) squared distances to the atoms; the temperature is relative to their mean over
    the (global) batch so the term is scale-free.
    """
    b, length, k = sqdist.shape
    usage = assignment_logits(sqdist, temperature).softmax(-1).mean(1)  # (B, K)
    ent = -(usage * (usage + 1e-12).log()).sum(-1)
    if min(length, k) <= 1:
        return ent.new_zeros(())
    (per_sample,) = gather_samples((1 - ent / math.log(min(length, k))).clamp(min=0))
    return per_sample.mean()


def matched_atoms(sqdist: torch.Tensor) -> torch.Tensor:
    """(B, L) atom of each fragment under a one-to-one matching of each sample's fragments to the atoms
    that minimises the total squared distance (sqdist (B, L, K)); with L > K the fragments left
    unmatched get -100 (cross-entropy's ignore index)."""
    from scipy.optimize import linear_sum_assignment

    cost = sqdist.detach().double().cpu().numpy()
    out = torch.full(sqdist.shape[:2], -100, dtype=torch.long)
    for i, c in enumerate(cost):
        rows, cols = linear_sum_assignment(c)
        out[i, torch.from_numpy(rows)] = torch.from_numpy(cols)
    return out.to(sqdist.device)


def isotropy_loss(z: torch.Tensor) -> torch.Tensor:
    """d·Σλ²/(Σλ)² − 1 for the eigenvalues λ of the covariance of z (B, d): 0 when isotropic,
    d − 1 when all variance lies along one direction. A batch statistic: z is gathered under DDP."""
    (z,) = gather_samples(z)
    zc = z - z.mean(0, keepdim=True)
    cov = zc.t() @ zc / max(z.shape[0] - 1, 1)
    tr, tr2 = torch.diagonal(cov).sum(), (cov * cov).sum()  # Σλ and Σλ² without an eigendecomposition
    return z.shape[1] * tr2 / (tr * tr + EPS) - 1


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
    u = torch.rand(2, n, 1, 1, 1, device=x.device, dtype=x.dtype)
    if mode == "lowpass":
        f = torch.log1p(torch.arange(h, device=x.device, dtype=x.dtype))[:, None]  # (H, 1)
        lo, hi = knee
        at = f[1] + (lo + u[0] * (hi - lo)) * (f[-1] - f[1])  # (N, 1, 1, 1)
        gain = -(u[1] * scale) * F.relu(f - at)  # (N, 1, H, 1), <= 0
        return log_magnitude(magnitude(x) * gain.exp())
    t, q = tilt_basis(h, mode).to(x.device, x.dtype)
    a, b = (u * 2 - 1) * scale
    return x + a * t[:, None] + b * q[:, None]  # zero mean over the band


class V3(VQAutoencoder):
    name = "v3"

    def loss(self, batch, step):
        cfg = self.cfg
        ae = self.autoencode(batch["x"], step)
        b, length = ae["b"], ae["length"]
        zc3, zq3, zs3 = (ae[k].view(b, length, -1).float() for k in ("zc", "zq", "zs"))
        terms = v3_terms(zc3, zq3, zs3, cfg.relativity)
        out = {"recon": ae["recon"], "commit": ae["commit"], **terms}
        total = (
            self.base_total(ae)
            + cfg.w_content * terms["content"]
            + cfg.w_style * terms["style"]
            + cfg.w_sample * terms["sample"]
            + cfg.w_fragment * terms["fragment"]
        )
        if cfg.w_isotropy > 0:
            out["isotropy"] = isotropy_loss(zs3.mean(1))
            total = total + cfg.w_isotropy * out["isotropy"]
        if (cfg.w_diversity > 0 or cfg.w_match > 0) and self.quantizing(step):
            sq = self.quantizer.distances(ae["zc"].float()).view(b, length, -1)
            if cfg.w_diversity > 0:
                out["diversity"] = diversity_loss(sq, cfg.diversity_temperature)
                total = total + cfg.w_diversity * out["diversity"]
            if cfg.w_match > 0:
                out["match"] = assignment_ce(sq.flatten(0, 1), matched_atoms(sq).flatten(), cfg.diversity_temperature)
                total = total + cfg.w_match * out["match"]
        if cfg.w_reassign > 0 and self.quantizing(step) and step >= cfg.reassign_start:
            out["reassign"] = self.reassign_loss(batch["x"], ae)
            total = total + cfg.w_reassign * out["reassign"]
        if cfg.w_tilt > 0 and self.quantizing(step):
            out["tilt"] = self.tilt_loss(batch["x"], ae["zq"].detach())
            total = total + cfg.w_tilt * out["tilt"]
        out["total"] = total
        return out

    def tilt_loss(self, x: torch.Tensor, zq: torch.Tensor) -> torch.Tensor:
        """MSE between z_c of spectrally tilted fragments and the clean fragments' atoms (N, d_c)."""
        flat = x.reshape(-1, *x.shape[2:])
        cfg = self.cfg
        tilted = tilt(flat, cfg.tilt_mode, cfg.tilt_range, (cfg.tilt_knee_min, cfg.tilt_knee_max))
        zc_aug = self.content_of(tilted.view_as(x))
        return F.mse_loss(zc_aug.float(), zq.float())

    def best_atoms(self, x: torch.Tensor, zs: torch.Tensor) -> torch.Tensor:
        """(N,) index of the atom whose decoding with style ``zs`` reconstructs each fragment best;
        x (N, C, H, W), zs (N, d_s). Eval-mode decoder, so batch-norm statistics are left alone."""
        n, k = x.shape[0], self.cfg.n_atoms
        was_training = self.decoder.training
        self.decoder.eval()
        try:
            with torch.no_grad():
                book = self.quantizer.codebook.to(zs.dtype)
                x_hat = self.decoder(book.repeat(n, 1), zs.repeat_interleave(k, 0))  # (N·K, C, H, W)
                err = (x_hat.float() - x.float().repeat_interleave(k, 0)).pow(2).flatten(1).mean(1)
        finally:
            self.decoder.train(was_training)
        return err.view(n, k).argmin(1)

    def reassign_loss(self, x: torch.Tensor, ae: dict) -> torch.Tensor:
        n = min(self.cfg.reassign_fragments, ae["zc"].shape[0])
        x_flat = x.reshape(-1, *x.shape[2:])[:n]
        zs = ae["zs_dec"].detach()
        if self.cfg.reassign_style in ("mean", "other"):
            length = ae["length"]
            means = zs.view(-1, length, zs.shape[-1]).mean(1)
            if self.cfg.reassign_style == "other":
                means = means.roll(1, 0)
            zs = means.repeat_interleave(length, 0)
        target = self.best_atoms(x_flat, zs[:n])
        sq = self.quantizer.distances(ae["zc"][:n].float())
        return assignment_ce(sq, target, self.cfg.diversity_temperature)
