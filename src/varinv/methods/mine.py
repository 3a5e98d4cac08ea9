"""MINE baseline: the VQ autoencoder plus adversarial minimisation of a MINE estimate of I(z_c; z_s).

papers.md §1.7 / §6 (the V3 authors' "MINE-based method"; its exact form was not published, this is
the standard reading). On fragments (N = B·L of them), a statistics network T(z_c, z_s) gives the
Donsker–Varadhan lower bound

    Î(z_c; z_s) = mean_i T(z_c,i, z_s,i) − log mean_i exp T(z_c,i, z_s,π(i))

with π a random permutation of the batch's fragments (pairs drawn from the product of marginals).
The gradient of the log term, E[∇T e^T] / E[e^T], is biased on a mini-batch; as in MINE the
denominator is replaced by an exponential moving average of E[e^T] (kept as a log, updated with
rate ``ma_rate`` before each use; see ``EMALogMeanExp``).

Min–max with one optimiser. The trainer takes a single AdamW step on all parameters of
``loss()["total"]``, so instead of alternating steps the two players are separated by a
gradient-reversal layer between the encoder outputs and T:

    total = w_recon·recon + w_commit·commit − Î(T, GRL_λ(z_c), GRL_λ(z_s))

T's parameters descend −Î, i.e. T *maximises* the bound; the GRL passes −λ × the gradient back
into the encoder, so the encoder descends +λ·Î, i.e. it *minimises* λ·Î (λ = ``mine_weight``). T
therefore learns at the full rate whatever λ is. Note the logged ``total`` contains −Î, so it need
not decrease even while every player improves; ``recon`` and ``mine_mi`` are the ones to watch.

The estimate is computed on the continuous z_c (pre-quantisation): it is what the encoder outputs
and the straight-through quantised z_q differs from it only in value, not in gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from varinv.config import Interval
from varinv.methods.vqae import VQAutoencoder, VQConfig
from varinv.nn import draws


@dataclass
class MINEConfig(VQConfig):
    mine_weight: float = 0.1  # λ: the encoder minimises λ·Î(z_c; z_s)
    ma_rate: float = 0.01  # rate of the moving average of E[e^T] (MINE's bias correction)
    t_hidden: int = 128  # hidden width of the statistics network T

    RULES = {
        "mine_weight": Interval(float, 0, None, symbol="λ"),
        "ma_rate": Interval(float, 0, 1, closed="right"),
        "t_hidden": Interval(int, 1, None),
    }


class GradReverse(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming gradient by −scale."""

    @staticmethod
    def forward(ctx, x, scale: float):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.scale * grad, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    return GradReverse.apply(x, scale)


class EMALogMeanExp(torch.autograd.Function):
    """Value log mean_i e^{t_i}; gradient e^{t_i} / (n · ma) with ma the moving average of E[e^T]
    (given as log_ma, a constant) instead of the batch's own mean: MINE's bias-corrected gradient."""

    @staticmethod
    def forward(ctx, t, log_ma):
        ctx.save_for_backward(t, log_ma)
        return torch.logsumexp(t, 0) - math.log(t.shape[0])

    @staticmethod
    def backward(ctx, grad):
        t, log_ma = ctx.saved_tensors
        return grad * (t - log_ma).exp() / t.shape[0], None


class StatisticsNetwork(nn.Module):
    """T(z_c, z_s): a small MLP on the concatenation → (N,) scalars."""

    def __init__(self, d_content: int, d_style: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d_content + d_style, hidden), nn.ELU(),
            nn.Linear(hidden, hidden), nn.ELU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, zc, zs):
        return self.net(torch.cat([zc, zs], -1)).squeeze(-1)


def dv_bound(t_joint: torch.Tensor, t_marginal: torch.Tensor) -> torch.Tensor:
    """Donsker–Varadhan value mean(T_joint) − log mean exp(T_marginal) (plain, batch-biased gradient)."""
    return t_joint.mean() - (torch.logsumexp(t_marginal, 0) - math.log(t_marginal.shape[0]))


class MINE(VQAutoencoder):
    name = "mine"

    def __init__(self, cfg: MINEConfig, fragment_shape, seed: int = 0):
        super().__init__(cfg, fragment_shape, seed=seed)
        self.statistics = StatisticsNetwork(cfg.d_content, cfg.d_style, cfg.t_hidden)
        self.register_buffer("log_ma", torch.zeros(()))  # log of the moving average of E[e^T]
        self.register_buffer("ma_initted", torch.tensor(False))

    @torch.no_grad()
    def _update_ma(self, t_marginal: torch.Tensor) -> None:
        batch = torch.logsumexp(t_marginal.float(), 0) - math.log(t_marginal.shape[0])
        r = self.cfg.ma_rate
        if not bool(self.ma_initted) or r >= 1:
            self.log_ma.copy_(batch)
            self.ma_initted.fill_(True)
        else:  # ma <- (1 - r)·ma + r·batch, in logs
            self.log_ma.copy_(torch.logaddexp(self.log_ma + math.log1p(-r), batch + math.log(r)))

    def mine_terms(self, zc: torch.Tensor, zs: torch.Tensor, perm: torch.Tensor) -> dict[str, torch.Tensor]:
        """zc (N, Dc), zs (N, Ds) fragments; perm (N,) the marginal pairing. Returns the DV value
        ``mine_mi`` (no gradient) and ``mine_loss`` = −Î with the reversed, bias-corrected gradient."""
        zc_r = grad_reverse(zc.float(), self.cfg.mine_weight)
        zs_r = grad_reverse(zs.float(), self.cfg.mine_weight)
        t_joint = self.statistics(zc_r, zs_r)
        t_marg = self.statistics(zc_r, zs_r[perm])
        if self.training:
            self._update_ma(t_marg.detach())
        log_ma = self.log_ma if bool(self.ma_initted) else (torch.logsumexp(t_marg, 0) - math.log(len(t_marg))).detach()
        surrogate = t_joint.mean() - EMALogMeanExp.apply(t_marg, log_ma)
        return {"mine_mi": dv_bound(t_joint, t_marg).detach(), "mine_loss": -surrogate, "mine_log_ma": log_ma.detach()}

    def loss(self, batch, step):
        ae = self.autoencode(batch["x"], step)
        perm = draws.randperm(ae["zc"].shape[0], ae["zc"].device)
        terms = self.mine_terms(ae["zc"], ae["zs"], perm)
        total = self.base_total(ae) + terms["mine_loss"]
        return {"recon": ae["recon"], "commit": ae["commit"], **terms, "total": total}
