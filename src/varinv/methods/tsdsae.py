"""TS-DSAE: two-stage DSAE (Luo, Ewert & Dixon, IJCAI-22; papers.md §2.2).

Stage 1 (step < ``switch_step``): the *local* modules — the dynamic feature net and z posterior
(``self.dynamic``) and the z prior (``self.prior``) — stay at their random initialisation, so the
static latent f has to carry the sequence-level information. Loss = the DSAE loss.

Stage 2 (from ``switch_step``): the local modules are unfrozen; a frozen copy of the static encoder
as it was at the switch becomes an informed prior p(f | x) := q_stage1(f | x), so

    KL_f = KL(q(f | x) || q_snapshot(f | x))      (replacing KL(q(f | x) || N(0, I)))

and four swap terms are added. With π a random derangement of the batch's samples and (z, f) the
posterior samples: gswap decodes (own z, donor f) and lswap decodes (donor z, own f), then both are
re-encoded:

    gswap_f = KL(q(f | x_gswap) || q(f | x_π))    gswap_z = Σ_t KL(q(z_t | x_gswap) || q(z_t | x))
    lswap_f = KL(q(f | x_lswap) || q(f | x))      lswap_z = Σ_t KL(q(z_t | x_lswap) || q(z_t | x_π))

All KLs are nats per sample, scaled by 1/(L·C·H·W) in ``total`` like the DSAE terms, and weighted
by ``w_gswap_f`` … ``w_lswap_z`` (1 in the reference code). Gradients flow into both sides of the
swap KLs (they are consistency terms between two posteriors), never into the snapshot.

Freezing with one AdamW over all parameters: frozen parameters have ``requires_grad = False``, so
their ``.grad`` stays None and AdamW skips them entirely (no update, no weight decay). The stage is
a buffer saved in checkpoints; loading one re-applies the matching freeze. BatchNorm running
statistics of the frozen nets still follow the data (they are not learned weights). The snapshot
module exists from construction (so checkpoints of either stage have the same keys), always frozen
and in eval mode.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from varinv.config import Interval
from varinv.methods.cycle import derangement
from varinv.methods.dsae import DSAE, DSAEConfig, StaticEncoder, kl_f_prior
from varinv.nn.gaussian import kl_normal


@dataclass
class TSDSAEConfig(DSAEConfig):
    switch_step: int = 1000  # first step of stage 2
    w_gswap_f: float = 1.0
    w_gswap_z: float = 1.0
    w_lswap_f: float = 1.0
    w_lswap_z: float = 1.0

    RULES = {
        "switch_step": Interval(int, 0, None),
        "w_gswap_f": Interval(float, 0, None),
        "w_gswap_z": Interval(float, 0, None),
        "w_lswap_f": Interval(float, 0, None),
        "w_lswap_z": Interval(float, 0, None),
    }


def _kl_f(q: tuple, p: tuple) -> torch.Tensor:
    return kl_normal(q[0], q[1], p[0], p[1]).sum(-1).mean()


def _kl_z(q: tuple, p: tuple) -> torch.Tensor:
    return kl_normal(q[0], q[1], p[0], p[1]).sum((-1, -2)).mean()


class TSDSAE(DSAE):
    name = "tsdsae"

    def __init__(self, cfg: TSDSAEConfig, fragment_shape, seed: int = 0):
        super().__init__(cfg, fragment_shape, seed=seed)
        self.static_prior = StaticEncoder(self.fragment_shape, cfg)  # the stage-1 snapshot
        self.static_prior.load_state_dict(self.static.state_dict())
        self.static_prior.requires_grad_(False)
        self.static_prior.eval()
        self.register_buffer("stage", torch.tensor(2 if cfg.switch_step == 0 else 1))
        self._apply_freeze()
        self.register_load_state_dict_post_hook(lambda module, keys: module._apply_freeze())

    def local_modules(self):
        return [self.dynamic, self.prior]

    def _apply_freeze(self) -> None:
        trainable = int(self.stage) == 2
        for m in self.local_modules():
            m.requires_grad_(trainable)
        self.static_prior.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        self.static_prior.eval()
        return self

    @torch.no_grad()
    def switch(self) -> None:
        """Enter stage 2: snapshot the static encoder as the informed prior, unfreeze local modules."""
        if int(self.stage) == 2:
            return
        self.static_prior.load_state_dict(self.static.state_dict())
        self.stage.fill_(2)
        self._apply_freeze()

    def after_step(self, step: int) -> None:
        if step + 1 >= self.cfg.switch_step:
            self.switch()

    def swap_terms(self, post: dict, perm: torch.Tensor) -> dict[str, torch.Tensor]:
        q_f, q_z = (post["mu_f"], post["lv_f"]), (post["mu_z"], post["lv_z"])
        donor_f, donor_z = (q_f[0][perm], q_f[1][perm]), (q_z[0][perm], q_z[1][perm])
        g = self.posteriors(self.decode_seq(post["z"], post["f"][perm]))
        l_ = self.posteriors(self.decode_seq(post["z"][perm], post["f"]))
        return {
            "gswap_f": _kl_f((g["mu_f"], g["lv_f"]), donor_f),
            "gswap_z": _kl_z((g["mu_z"], g["lv_z"]), q_z),
            "lswap_f": _kl_f((l_["mu_f"], l_["lv_f"]), q_f),
            "lswap_z": _kl_z((l_["mu_z"], l_["lv_z"]), donor_z),
        }

    def loss(self, batch, step):
        cfg, x = self.cfg, batch["x"]
        if self.training and step >= cfg.switch_step:
            self.switch()  # normally done by after_step; kept here so the stage never lags the step
        self._apply_freeze()
        post = self.posteriors(x)
        out = self.elbo_terms(x, post)
        stage2 = int(self.stage) == 2
        if stage2:
            with torch.no_grad():
                mu_s, lv_s = self.static_prior(x)
            out["kl_f"] = _kl_f((post["mu_f"], post["lv_f"]), (mu_s, lv_s))
            out["kl_f_normal"] = kl_f_prior(post).detach()
        kl = cfg.beta_f * out["kl_f"] + cfg.beta_z * out["kl_z"]
        if stage2:
            swaps = self.swap_terms(post, derangement(x.shape[0], device=x.device))
            out.update(swaps)
            kl = kl + (cfg.w_gswap_f * swaps["gswap_f"] + cfg.w_gswap_z * swaps["gswap_z"]
                       + cfg.w_lswap_f * swaps["lswap_f"] + cfg.w_lswap_z * swaps["lswap_z"])
        out["stage"] = self.stage.float()
        out["total"] = out["recon"] + self.kl_scale(x) * kl
        return out
