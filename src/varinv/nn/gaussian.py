"""Diagonal-Gaussian helpers shared by the VAE-style methods (DSAE, TS-DSAE, MV-TCVAE, β-VAE).

Every distribution is a pair (mu, logvar) of equal-shaped tensors; all functions are elementwise,
so callers choose which axes to sum (latent dimensions) and which to average (fragments, samples).
"""

from __future__ import annotations

import math

import torch

from varinv.nn import draws

LOG_2PI = math.log(2 * math.pi)


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """A sample mu + sigma·eps with eps ~ N(0, I) from the global torch generator (checkpointed by
    the trainer, so a resumed run draws the same noise; ``varinv.nn.draws``)."""
    return mu + draws.randn_like(mu) * (0.5 * logvar).exp()


def kl_normal(mu_q, logvar_q, mu_p=None, logvar_p=None) -> torch.Tensor:
    """Elementwise KL(N(mu_q, e^logvar_q) || N(mu_p, e^logvar_p)); p defaults to N(0, 1).

    KL = 1/2 [ logvar_p - logvar_q + (e^logvar_q + (mu_q - mu_p)^2) / e^logvar_p - 1 ].
    """
    if mu_p is None:
        mu_p = torch.zeros_like(mu_q)
    if logvar_p is None:
        logvar_p = torch.zeros_like(logvar_q)
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p) ** 2) / logvar_p.exp() - 1.0)


def log_normal(z, mu, logvar) -> torch.Tensor:
    """Elementwise log N(z; mu, e^logvar)."""
    return -0.5 * (LOG_2PI + logvar + (z - mu) ** 2 / logvar.exp())


def split_params(h: torch.Tensor, logvar_min: float = -10.0, logvar_max: float = 10.0):
    """(…, 2d) head output → (mu, logvar) with logvar clamped so exp() never overflows."""
    mu, logvar = h.chunk(2, dim=-1)
    return mu, logvar.clamp(logvar_min, logvar_max)
