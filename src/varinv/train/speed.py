"""Speed settings of a training run that leave its maths unchanged.

``setup(model, train_cfg)`` is called once by the trainer right after the model is built, before
the optimizer and any checkpoint are loaded:

* ``train.channels_last``: conv weights (and so the activations, which follow the weights'
  layout in PyTorch's oneDNN convolutions, batch norm, GELU and upsampling) in NHWC layout. The
  functions computed are the same; only the order of floating-point accumulation inside the convs
  may differ. Reshapes of conv maps (``flatten``, ``reshape``) keep the logical element order, and
  checkpoints are written contiguous, so runs with and without it load each other's checkpoints.
  On this project's CPU it made the paper-size PhoneNums step ~15 % faster and the CPU-small one
  ~25 %. It is off by default because PyTorch's CPU batch norm gathers its batch statistics less
  precisely in this layout (relative error ~1e-5 instead of ~1e-6 on the latents), so a run does not
  reproduce its NCHW twin number for number.

bf16 autocast (``train.precision``) changes the arithmetic and stays a separate, opt-in setting;
glibc's allocator is tuned by ``trainer.keep_freed_memory``. Measurements:
benchmarks/bench_speed.py.
"""

from __future__ import annotations

import torch


def setup(model: torch.nn.Module, t) -> torch.nn.Module:
    """Apply the speed options of TrainConfig ``t`` to ``model`` in place; returns the model."""
    if t.channels_last:
        model.to(memory_format=torch.channels_last)
    return model
