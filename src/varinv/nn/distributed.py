"""Collectives that keep gradients, and a BatchNorm whose statistics cover the global batch.

V3's loss compares samples with each other (MPD over sample means), so under data parallelism a
process must see every sample's summary, not only its own shard's, and gradients must flow back to
the process that owns each sample. Everything here is a no-op in a single process, so that path
stays bit-identical to training without torch.distributed.

Gradient convention (what makes the numbers independent of the process count): the trainer
averages gradients over processes, so every process's loss must be one whose average over
processes is the global loss. A term computed from gathered tensors is identical on every process;
the backward of ``gather_samples`` sums the gradients of all processes for the local rows, i.e.
multiplies by the world size, which the averaging then divides out. A mean over local samples
averaged over equal shards is the global mean already.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from varinv.nn import draws


def active() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _GatherRows(torch.autograd.Function):
    """(n, k) per process → (world·n, k) on every process, rows in rank order.

    Backward: every process holds a gradient for all rows; the gradient of the local rows is their
    sum over processes (an all-reduce, then this rank's slice: gloo has no reduce-scatter).
    """

    @staticmethod
    def forward(ctx, x):
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.n = x.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        start = dist.get_rank() * ctx.n
        return grad[start:start + ctx.n]


def gather_samples(*xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Concatenate each per-sample tensor (n, ...) over processes along dim 0, with gradients.

    All tensors travel in one collective. Returns the inputs unchanged in a single process.
    """
    if not active():
        return xs
    dtype = xs[0].dtype
    flat = torch.cat([x.reshape(x.shape[0], -1).to(dtype) for x in xs], 1)
    full = _GatherRows.apply(flat)
    sizes = [x[0].numel() for x in xs]
    return tuple(p.reshape(-1, *x.shape[1:]).to(x.dtype) for p, x in zip(full.split(sizes, 1), xs))


def sum_over_processes(x: torch.Tensor) -> torch.Tensor:
    """``x`` summed over processes, with gradients (``gather_samples``'s convention): rows that each process fills
    for its own samples (zeros elsewhere) become the global batch's rows on every process. ``x`` in one process."""
    if not active():
        return x
    (full,) = gather_samples(x)
    return full.view(dist.get_world_size(), *x.shape).sum(0)


def rank() -> int:
    return dist.get_rank() if active() else 0


def shared(draw: torch.Tensor) -> torch.Tensor:
    """Rank 0's random ``draw`` on every process (a broadcast); the draw itself in a single process."""
    if active():
        dist.broadcast(draw, 0)
    return draw


def shared_randperm(n: int, device=None) -> torch.Tensor:
    """A random permutation of the global batch's rows, ``n`` per process: the same on every process
    (rank 0's draw), and in a single process the draw ``torch.randperm(n)`` would make.
    Drawn from the CPU generator (``varinv.nn.draws``)."""
    world = dist.get_world_size() if active() else 1
    return shared(draws.randperm(n * world, device))


def shuffled_rows(z: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """(B, L, ...) per process → the global batch's (world·B, L, ...) with its B·L rows (fragments) dealt
    by ``perm`` (``shared_randperm(B·L)``), detached: random groups of L fragments, identical everywhere."""
    (full,) = gather_samples(z.detach())
    return full.flatten(0, 1)[perm].view_as(full)


@torch.no_grad()
def global_mean(x: torch.Tensor) -> torch.Tensor:
    """Average of a detached statistic over processes (equal shards: the global batch's mean)."""
    if not active():
        return x
    x = x.detach().clone()
    dist.all_reduce(x)
    return x / dist.get_world_size()


class _SyncBatchNorm:
    """BatchNorm whose training statistics are those of the global batch (works on CPU/gloo, which
    torch.nn.SyncBatchNorm does not). Same parameters, buffers and state-dict keys as the plain
    layer, so checkpoints move freely between 1 and N processes.

    Each process gathers (count, mean, biased variance) per channel (with gradients) and combines them
    with the parallel-variance formula, which is as accurate as one pass over the whole batch.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and active()):
            return super().forward(x)
        dims = [0] + list(range(2, x.dim()))
        xf = x.float()
        if xf.numel():
            var, mean = torch.var_mean(xf, dim=dims, correction=0)
        else:  # no rows here (a term's share of the global batch can miss a process): it weighs nothing below
            var = mean = xf.new_zeros(xf.shape[1])
        count = xf.new_full((1,), xf.numel() / xf.shape[1])
        c = mean.shape[0]
        stats = _GatherRows.apply(torch.cat([count, mean, var])[None])  # (world, 1 + 2C)
        counts, means, variances = stats[:, :1], stats[:, 1:1 + c], stats[:, 1 + c:]
        n = counts.sum()
        g_mean = (counts * means).sum(0) / n
        g_var = (counts * (variances + (means - g_mean) ** 2)).sum(0) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(g_mean, alpha=m)
                self.running_var.mul_(1 - m).add_(g_var * (n / (n - 1)), alpha=m)
        shape = [1, c] + [1] * (x.dim() - 2)
        y = (xf - g_mean.view(shape)) * torch.rsqrt(g_var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


class SyncBatchNorm1d(_SyncBatchNorm, nn.BatchNorm1d):
    pass


class SyncBatchNorm2d(_SyncBatchNorm, nn.BatchNorm2d):
    pass


_SYNC = {nn.BatchNorm1d: SyncBatchNorm1d, nn.BatchNorm2d: SyncBatchNorm2d}


def convert_sync_batchnorm(model: nn.Module, device: torch.device | str = "cpu") -> nn.Module:
    """Make every BatchNorm layer of ``model`` synchronise its statistics over processes.

    On CUDA torch's own SyncBatchNorm is used. On CPU the layers' class is swapped in place, so the
    very same parameter and buffer objects stay (the optimizer and checkpoints see no difference).
    """
    if torch.device(device).type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for m in model.modules():
        if type(m) in _SYNC:
            m.__class__ = _SYNC[type(m)]
    return model
