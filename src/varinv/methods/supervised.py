"""Supervised ceiling: the same autoencoder, with content and style classifiers trained on labels.

A linear content classifier on z_c and a linear style classifier on z_s are trained with
cross-entropy on the batch's per-fragment labels, and the decoder keeps its reconstruction loss so
that recombination (decode of any content/style pairing) still works:

    total = w_recon · MSE + w_content_ce · CE(content | z_c) + w_style_ce · CE(style | z_s)

A batch without labels (the unsupervised few-shot fine-tuning of the evaluator passes only ``x``)
gets the reconstruction term alone. It has no codebook (evaluation clusters z_c with k-means like the
other continuous methods); ``predict_content`` gives the classifier's decisions and
``content_logits`` its scores, for the OOD comparisons.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from varinv.config import Interval
from varinv.errors import DataError
from varinv.methods.base import Encoded
from varinv.methods.autoencoder import BackboneConfig, ConvAutoencoder


@dataclass
class SupervisedConfig(BackboneConfig):
    n_content_classes: int = 10  # PhoneNums: digits 0-9
    n_style_classes: int = 8  # PhoneNums: the training colours
    w_recon: float = 1.0
    w_content_ce: float = 1.0
    w_style_ce: float = 1.0

    RULES = {
        "n_content_classes": Interval(int, 2, None),
        "n_style_classes": Interval(int, 2, None),
        "w_recon": Interval(float, 0, None),
        "w_content_ce": Interval(float, 0, None),
        "w_style_ce": Interval(float, 0, None),
    }


class Supervised(ConvAutoencoder):
    name = "supervised"
    uses_labels = True

    def __init__(self, cfg: SupervisedConfig, fragment_shape, seed: int = 0):
        super().__init__(cfg, fragment_shape)
        self.content_head = nn.Linear(cfg.d_content, cfg.n_content_classes)
        self.style_head = nn.Linear(cfg.d_style, cfg.n_style_classes)

    def encode(self, x):
        zc, zs, b, length = self._encode_flat(x)
        return Encoded(content=zc.view(b, length, -1), style=zs.view(b, length, -1))

    def content_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, C, H, W) → (B, L, n_content_classes) content scores (with gradient)."""
        return self.content_head(self.encode(x).content)

    @torch.no_grad()
    def predict_content(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, C, H, W) → (B, L) predicted content class."""
        return self.content_logits(x).argmax(-1)

    @torch.no_grad()
    def predict_style(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, C, H, W) → (B, L) predicted style class."""
        return self.style_head(self.encode(x).style).argmax(-1)

    def _labels(self, batch: dict, key: str, n: int) -> torch.Tensor:
        y = batch[key].reshape(-1)
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= n):
            raise DataError(
                f"{key} label {int(y.max())} is outside 0..{n - 1}; set model.n_{key}_classes to the dataset's "
                f"number of {key} classes"
            )
        return y

    def loss(self, batch, step):
        cfg, x = self.cfg, batch["x"]
        zc, zs, b, length = self._encode_flat(x)
        x_hat = self.decoder(zc, zs).view_as(x)
        out = {"recon": F.mse_loss(x_hat.float(), x.float())}
        total = cfg.w_recon * out["recon"]
        for key, head, z, n, w in (("content", self.content_head, zc, cfg.n_content_classes, cfg.w_content_ce),
                                   ("style", self.style_head, zs, cfg.n_style_classes, cfg.w_style_ce)):
            if key not in batch:  # unlabelled batch: reconstruction only
                continue
            y = self._labels(batch, key, n)
            logits = head(z).float()
            out[f"{key}_ce"] = F.cross_entropy(logits, y)
            out[f"{key}_acc"] = (logits.argmax(-1) == y).float().mean().detach()
            total = total + w * out[f"{key}_ce"]
        out["total"] = total
        return out
