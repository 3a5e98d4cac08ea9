"""The Method interface: everything downstream (trainer, evaluator, recombination, report) uses only this."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Encoded:
    content: torch.Tensor  # (B, L, Dc) continuous content embedding (pre-quantisation)
    style: torch.Tensor  # (B, L, Ds)
    content_q: torch.Tensor | None = None  # (B, L, Dc) quantised content, what the decoder sees
    content_index: torch.Tensor | None = None  # (B, L) atom index
    # (B, L, Ds) each fragment's own style where ``style`` is pooled per sample (the health check's spread
    # within samples); None where the two are the same
    style_fragments: torch.Tensor | None = None

    @property
    def own_style(self) -> torch.Tensor:
        """(B, L, Ds) each fragment's own style, pooled or not."""
        return self.style if self.style_fragments is None else self.style_fragments


class Method(nn.Module):
    """Base class. Subclasses set ``name`` and implement encode / decode / loss.

    Batches are dicts with ``x`` (B, L, C, H, W) float and, for supervised methods only,
    ``content`` (B, L) and ``style`` (B, L) labels.
    """

    name = "base"
    uses_labels = False
    total_steps = 0  # the run's train.steps, set by the trainer (terms that start part-way read it); 0 by hand

    def encode(self, x: torch.Tensor) -> Encoded:
        raise NotImplementedError

    def decode(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """Any pairing of content (…, Dc) and style (…, Ds) → fragments (…, C, H, W)."""
        raise NotImplementedError

    def loss(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        """All loss terms by name, plus ``total`` (the only one back-propagated)."""
        raise NotImplementedError

    def codebook(self) -> torch.Tensor | None:
        """(K, Dc) content atoms, or None for methods without a codebook."""
        return None

    def decoder_content(self, enc: Encoded) -> torch.Tensor:
        """The content tensor the decoder is fed for reconstruction."""
        return enc.content_q if enc.content_q is not None else enc.content

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Samples x (B, L, C, H, W) through the model and back, as training reconstructs them (eval mode)."""
        enc = self.encode(x)
        return self.decode(self.decoder_content(enc), self.decoder_style(enc.style))

    # -- optional hooks: declared here so callers call them plainly instead of probing with hasattr ----
    def decoder_style(self, style: torch.Tensor) -> torch.Tensor:
        """The style (B, L, Ds) the decoder reads for encoded styles ``style``; called wherever a caller
        decodes encoded styles (monitor images, recombination). Identity unless the method pools styles."""
        return style

    def after_step(self, step: int) -> None:
        """Called by the trainer after each optimiser step ``step`` (e.g. to switch training stages)."""

    def freeze_codebook(self) -> bool:
        """Called before few-shot fine-tuning (paper protocol: atoms stay fixed); False if nothing to freeze."""
        return False

    def content_logits(self, x: torch.Tensor) -> torch.Tensor | None:
        """(B, L, n_classes) content scores of a method with a content classifier (few-shot fine-tuning
        of the supervised counterpart); None for methods without one."""
        return None

    def rendering_agreement(self, x: torch.Tensor) -> torch.Tensor | None:
        """(B·L,) bool for samples x: is each fragment's atom also the one whose rendering reconstructs it
        best (the health check's content verdict)? None for methods without a codebook and a decoder."""
        return None

    def progress_terms(self) -> tuple[str, ...]:
        """The loss terms the progress bar / plain progress lines show, in order, when present."""
        return ("total", "recon")
