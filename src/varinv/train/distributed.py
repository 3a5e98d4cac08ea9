"""Data-parallel training on torch.distributed (``torchrun --nproc_per_node=N -m varinv train ...``).

The design goal is that N processes compute what one process computes, only faster:

- every process draws the same global batch (``batch_indices`` is a pure function of seed and
  step) and keeps its contiguous slice of B/N samples (``batching.shard``), so the gathered batch
  is in the 1-process order;
- statistics over samples (V3's MPDs, BatchNorm, the codebook's k-means and EMA) are global
  (``varinv.nn.distributed``, ``varinv.nn.quantizer``);
- gradients are averaged explicitly after backward (one all-reduce of all gradients). The methods
  expose ``loss`` rather than ``forward``, which DistributedDataParallel's hooks would not see, and
  an explicit average is exact and easy to reason about;
- process 0 alone writes the run folder; every process reads a checkpoint on ``--resume``.

Without WORLD_SIZE > 1 in the environment nothing here touches torch.distributed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from varinv.errors import ConfigError, VarinvError
from varinv.nn.distributed import convert_sync_batchnorm


@dataclass
class Context:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owned: bool = False  # this module initialised the process group, so it destroys it

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name} = {raw!r} is not an integer; launch with torchrun") from None


def backend_for(device: torch.device | str) -> str:
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def setup(device: torch.device | str = "cpu") -> Context:
    """Join the process group described by torchrun's environment (or one already initialised)."""
    if dist.is_available() and dist.is_initialized():
        return Context(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0), owned=False)
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return Context()
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this torch build has no torch.distributed; run one process")
    local_rank = _env_int("LOCAL_RANK", 0)
    if torch.device(device).type == "cuda":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend_for(device))
    return Context(dist.get_rank(), dist.get_world_size(), local_rank, owned=True)


def teardown(ctx: Context, together: bool = False) -> None:
    """Leave the process group. ``together`` (every process finished): wait for the others first, so no
    process closes its gloo connections while a peer still works (once, under load, a peer of test_ddp's
    torchrun aborted at exit: "terminate called without an active exception"). After a failure no barrier,
    which would wait for a peer that may never come."""
    if ctx.owned and dist.is_initialized():
        if together:
            dist.barrier()
        dist.destroy_process_group()


def check_batch(batch_size: int, world: int) -> None:
    """Each process must get the same number of samples (global means are means of shard means)."""
    if batch_size % world:
        lower, upper = (batch_size // world) * world, -(-batch_size // world) * world
        hint = f"{lower} or {upper}" if lower > 0 else f"{upper}"
        raise ConfigError(
            f"train.batch_size = {batch_size} is not divisible by the {world} processes; set train.batch_size to a "
            f"multiple of {world} (e.g. {hint}) or change --nproc_per_node"
        )


def prepare_model(model: torch.nn.Module, ctx: Context, device: torch.device | str = "cpu") -> torch.nn.Module:
    """Synchronise BatchNorm and make every process start from process 0's weights and buffers."""
    if not ctx.parallel:
        return model
    model = convert_sync_batchnorm(model, device)
    with torch.no_grad():
        for t in model.state_dict().values():
            dist.broadcast(t, 0)
    return model


def average_gradients(params, ctx: Context) -> None:
    """Replace every gradient by its mean over processes (one flat all-reduce)."""
    if not ctx.parallel:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= ctx.world
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def mean_scalars(losses: dict[str, torch.Tensor], ctx: Context) -> dict[str, torch.Tensor]:
    """Detached loss terms averaged over processes: the global batch's values (terms computed from
    gathered tensors are already equal on every process and stay so)."""
    out = {k: v.detach() for k, v in losses.items()}
    if not ctx.parallel:
        return out
    keys = list(out)
    vec = torch.stack([out[k].float().reshape(()) for k in keys])
    dist.all_reduce(vec)
    vec /= ctx.world
    return dict(zip(keys, vec.unbind()))


def run_on_main(fn, ctx: Context):
    """Run ``fn`` on process 0 only; a VarinvError it raises is raised on every process, so that none
    is left waiting in a collective for a process that has stopped."""
    err, result = None, None
    if ctx.main:
        try:
            result = fn()
        except VarinvError as e:
            err = e
    if ctx.parallel:
        box = [None if err is None else (type(err), str(err))]
        dist.broadcast_object_list(box, 0)
        if box[0] is not None and err is None:
            err = box[0][0](box[0][1])
    if err is not None:
        raise err
    return result


def device_for(name: str, ctx: Context) -> torch.device:
    """The torch device of ``train.device``; under torchrun "cuda" is this process's own GPU."""
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device = {name} but torch sees no CUDA GPU on this machine; set train.device=cpu")
        if device.index is None:
            device = torch.device("cuda", ctx.local_rank if ctx.parallel else torch.cuda.current_device())
    return device


def rng_states(ctx: Context, device: torch.device) -> dict:
    """Checkpoint fields holding every process's torch RNG states (CPU, and the GPU's when training on
    one); a collective: gathered on all processes, only process 0 writes them."""
    mine = {"torch_rng": torch.get_rng_state().tolist()}
    if device.type == "cuda":
        mine["cuda_rng"] = torch.cuda.get_rng_state(device).tolist()
    if not ctx.parallel:
        return mine
    out: list = [None] * ctx.world
    dist.all_gather_object(out, mine)
    return {**out[0], **{f"{k}_ranks": [o[k] for o in out] for k in mine}}


def restore_rng(state: dict, ctx: Context, device: torch.device) -> bool:
    """Restore this process's RNG states from a checkpoint; False when it holds none for this process
    (saved with another process count), and the caller draws a fresh stream."""
    suffix = "_ranks" if ctx.parallel else ""
    cpu = state.get("torch_rng" + suffix)
    if cpu is None or (ctx.parallel and len(cpu) != ctx.world):
        return False
    as_bytes = lambda v: torch.tensor(v[ctx.rank] if ctx.parallel else v, dtype=torch.uint8)  # noqa: E731
    torch.set_rng_state(as_bytes(cpu))
    gpu = state.get("cuda_rng" + suffix)
    if device.type == "cuda" and gpu is not None and (not ctx.parallel or len(gpu) == ctx.world):
        torch.cuda.set_rng_state(as_bytes(gpu), device)
    return True


def seed_process(seed: int, step: int, ctx: Context) -> None:
    """A distinct torch RNG stream per process (noise, permutations), reproducible from
    (seed, rank, step), so processes do not draw identical noise for different samples."""
    if ctx.parallel:
        torch.manual_seed(int(np.random.default_rng([seed, ctx.rank, step]).integers(2**63 - 1)))


def barrier(ctx: Context) -> None:
    if ctx.parallel:
        dist.barrier()
