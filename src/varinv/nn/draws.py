"""The methods' random draws, all from the CPU generator whatever the device, so that a GPU run draws
what the CPU run of its seed draws (and the trainer's checkpointed CPU state covers every draw)."""

from __future__ import annotations

import torch


def randperm(n: int, device=None) -> torch.Tensor:
    return torch.randperm(n).to(device)


def rand(*shape: int, like: torch.Tensor) -> torch.Tensor:
    return torch.rand(*shape, dtype=like.dtype).to(like.device)


def randn_like(t: torch.Tensor) -> torch.Tensor:
    return torch.randn(t.shape, dtype=t.dtype).to(t.device)
