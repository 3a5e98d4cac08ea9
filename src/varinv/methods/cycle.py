"""Cycle-loss baseline: the VQ autoencoder plus swap-and-re-encode consistency terms.

papers.md §1.7 (the V3 authors' "cycle loss-based method"; its exact form was not published, this
is the standard reading). Samples are paired with a donor by a random derangement π of the batch
(no sample is its own donor). With z_c, z_q, z_s the (B, L, d) latents of the batch:

  style swap    x̃ = decode(z_q, z_s[π])        re-encode (z̃_c, z̃_s) = encode(x̃)
                style_cycle   = ||z̃_s − z_s[π]||²     (the donor's style must survive)
                content_cycle = ||z̃_c − z_c||²        (the own content must survive)
  content swap  x̂ = decode(z_q[π], z_s)         (only when ``swap_content``), and vice versa:
                content_cycle += ||ẑ_c − z_c[π]||²,  style_cycle += ||ẑ_s − z_s||²

||·||² is the mean squared error over fragments and dimensions. The targets (the latents of the
real batch) are detached: the swapped decode must land where the encoder already puts real data,
rather than the encoder moving its real codes toward the swaps. With ``normalise`` (default) each
error is divided by the target's variance (per dimension over the batch's fragments, averaged,
detached), so the encoder cannot lower the penalty by shrinking its latents' scale, which the
decoder's first linear layer would undo for free.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from varinv.config import Interval
from varinv.methods.vqae import VQAutoencoder, VQConfig
from varinv.nn import draws


@dataclass
class CycleConfig(VQConfig):
    w_style_cycle: float = 1.0
    w_content_cycle: float = 1.0
    swap_content: bool = True  # also decode (donor content, own style) and re-encode
    normalise: bool = True  # divide each squared error by the target's variance

    RULES = {
        "w_style_cycle": Interval(float, 0, None),
        "w_content_cycle": Interval(float, 0, None),
        "swap_content": bool,
        "normalise": bool,
    }


def derangement(n: int, device=None) -> torch.Tensor:
    """A random permutation without fixed points (for n >= 2): each element of a random order gets
    the next one's index as its donor."""
    order = draws.randperm(n, device)
    perm = torch.empty_like(order)
    perm[order] = order.roll(-1)
    return perm


class Cycle(VQAutoencoder):
    name = "cycle"

    def swap_terms(self, zc, zq, zs, perm) -> dict[str, torch.Tensor]:
        """zc, zq (B, L, Dc), zs (B, L, Ds); perm (B,) donors. The two cycle penalties."""
        b, length = zc.shape[:2]
        tc, ts = zc.detach().float(), zs.detach().float()

        def err(pred, target):
            e = F.mse_loss(pred, target)
            if self.cfg.normalise:
                e = e / (target.flatten(0, 1).var(0).mean() + 1e-6)
            return e

        def reencode(content, style):
            x_sw = self.decoder(content.reshape(b * length, -1), style.reshape(b * length, -1))
            rc, rs = self.encoder(x_sw)
            return rc.view(b, length, -1).float(), rs.view(b, length, -1).float()

        rc, rs = reencode(zq, zs[perm])
        style_cycle = err(rs, ts[perm])
        content_cycle = err(rc, tc)
        if self.cfg.swap_content:
            rc2, rs2 = reencode(zq[perm], zs)
            content_cycle = content_cycle + err(rc2, tc[perm])
            style_cycle = style_cycle + err(rs2, ts)
        return {"style_cycle": style_cycle, "content_cycle": content_cycle}

    def loss(self, batch, step):
        ae = self.autoencode(batch["x"], step)
        b, length = ae["b"], ae["length"]
        perm = derangement(b, device=ae["zc"].device)
        terms = self.swap_terms(ae["zc"].view(b, length, -1), ae["zq"].view(b, length, -1),
                                ae["zs"].view(b, length, -1), perm)
        total = (self.base_total(ae) + self.cfg.w_style_cycle * terms["style_cycle"]
                 + self.cfg.w_content_cycle * terms["content_cycle"])
        return {"recon": ae["recon"], "commit": ae["commit"], **terms, "total": total}
