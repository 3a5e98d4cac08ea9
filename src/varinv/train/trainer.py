"""The training loop: one screen of plain PyTorch, no framework.

run folder::

    config.yaml            the resolved config (every default written out)
    provenance.json        seed, package/torch versions, dataset manifest hash, command
    checkpoints/last.*     periodic checkpoint (see checkpoint.py); checkpoints/final.* at the end
    tb/                    TensorBoard scalars (every loss term by name, lr)
    train_log.jsonl        the same scalars as JSON lines

Under ``torchrun --nproc_per_node=N`` the same loop runs data-parallel (see distributed.py):
process 0 writes the run folder, and the numbers match a 1-process run of the same config.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import torch
import yaml

from varinv import __version__
from varinv.config import RunConfig
from varinv.data.batching import Prefetcher
from varinv.data.store import Dataset, open_dataset
from varinv.errors import DataError, TrainingError
from varinv.methods import build_method
from varinv.train import checkpoint as ckpt
from varinv.train import distributed as ddp
from varinv.train import speed


def lr_factor(step: int, t) -> float:
    """The paper's exponential schedule max(floor, decay^(epoch/every)), with optional linear warm-up."""
    epoch = step / t.steps_per_epoch
    f = max(t.lr_floor, t.lr_decay ** (epoch / t.lr_decay_every))
    if t.warmup_steps > 0 and step < t.warmup_steps:
        f *= (step + 1) / t.warmup_steps
    return f


def check_run_folder(run: Path, need_bytes: int) -> None:
    """Fail before training, not after an hour, if the run folder cannot take the checkpoints."""
    try:
        run.mkdir(parents=True, exist_ok=True)
        probe = run / ".write-probe"
        probe.write_bytes(b"x")
        probe.unlink()
    except OSError as e:
        raise TrainingError(f"run folder {run} is not writable ({e.strerror}); choose another --run folder") from None
    free = shutil.disk_usage(run).free
    if free < need_bytes:
        raise TrainingError(
            f"run folder {run} has {free / 1e6:.0f} MB free but checkpoints need about {need_bytes / 1e6:.0f} MB; "
            "free some space or choose another --run folder"
        )


def build_for_dataset(cfg: RunConfig, ds: Dataset, seed: int):
    shape = ds.fragment_shape
    if len(shape) != 3:
        raise DataError(f"dataset {ds.root} fragments have shape {shape}; expected (C, H, W)")
    try:
        return build_method(cfg.method, cfg.model, shape, seed=seed)
    except RuntimeError as e:
        raise DataError(f"fragment shape {shape} does not fit the backbone ({e}); change model.n_layers") from None


def _seed_all(seed: int) -> None:
    torch.manual_seed(seed)


def keep_freed_memory() -> None:
    """Stop glibc from returning freed memory to the OS after every step.

    Each training step frees and re-allocates the same large activation buffers; with glibc's
    default trim/mmap thresholds they go back to the kernel and are faulted in again each time,
    which measured 15-50 % of the CPU time of a step here (more for spectrograms).
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, 2**31 - 1)  # M_TRIM_THRESHOLD
        libc.mallopt(-3, 32 * 1024 * 1024)  # M_MMAP_THRESHOLD (its maximum on 64-bit)
        # Blocks above that maximum (InsNotes activations reach 50 MB) would still be mmapped and
        # faulted in afresh every step: half of an InsNotes step was kernel time. No mmap at all.
        libc.mallopt(-4, 0)  # M_MMAP_MAX
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


def set_threads(n: int) -> None:
    if n > 0:
        torch.set_num_threads(n)


def train_step(
    model, opt, batch: dict, step: int, autocast, grad_clip: float, ck_dir: Path, ctx: ddp.Context | None = None
) -> dict:
    """One optimisation step exactly as ``train`` runs it (benchmarks/bench_speed.py times this).

    Returns the detached loss terms; under data parallelism (``ctx``) they are averaged over
    processes, i.e. the global batch's values, so every process takes the same NaN decision.
    """
    ctx = ctx or ddp.Context()
    with autocast:
        losses = model.loss(batch, step)
    scalars = ddp.mean_scalars(losses, ctx)
    bad = [k for k, v in scalars.items() if not torch.isfinite(v).all()]
    if bad:
        raise TrainingError(
            f"loss term '{bad[0]}' became {scalars[bad[0]].item()} at step {step}; training stopped and "
            f"the last good checkpoint is kept in {ck_dir} (lower train.lr or enable train.grad_clip)"
        )
    opt.zero_grad(set_to_none=True)
    losses["total"].backward()
    ddp.average_gradients(model.parameters(), ctx)
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    if hasattr(model, "after_step"):
        model.after_step(step)
    return scalars


class _NoLogger:
    """What processes other than 0 log to: nothing."""

    def log(self, step: int, scalars: dict[str, float]) -> None:
        pass

    def close(self) -> None:
        pass


class _Logger:
    def __init__(self, run: Path, enabled: bool):
        self.jsonl = open(run / "train_log.jsonl", "a")
        self.tb = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run / "tb"))
            except ImportError:  # tensorboard is a dependency, but logging must never stop training
                self.tb = None

    def log(self, step: int, scalars: dict[str, float]) -> None:
        self.jsonl.write(json.dumps({"step": step, **scalars}) + "\n")
        self.jsonl.flush()
        if self.tb is not None:
            for k, v in scalars.items():
                self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        self.jsonl.close()
        if self.tb is not None:
            self.tb.close()


def train(
    cfg: RunConfig,
    run: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    tensorboard: bool = True,
    stop_after: int | None = None,
) -> dict:
    """Train ``cfg`` into folder ``run``; returns the final state dict. ``stop_after`` ends the
    process early (tests of resume) exactly as a kill between steps would.

    Launched by torchrun (WORLD_SIZE > 1), or inside an initialised process group, it trains
    data-parallel and every process returns the same dict."""
    ctx = ddp.setup(cfg.train.device)
    try:
        return _train(cfg, run, ctx, resume=resume, progress=progress, tensorboard=tensorboard, stop_after=stop_after)
    finally:
        ddp.teardown(ctx)


def _train(
    cfg: RunConfig,
    run: str | Path,
    ctx: ddp.Context,
    *,
    resume: bool,
    progress: bool,
    tensorboard: bool,
    stop_after: int | None,
) -> dict:
    run = Path(run)
    t = cfg.train
    set_threads(t.threads)
    keep_freed_memory()
    ds = open_dataset(cfg.data.path)
    train_split = ds.split("train")
    if len(train_split) < 2:
        raise DataError(f"dataset {ds.root} has {len(train_split)} training samples; V3 needs at least 2")
    ddp.check_batch(min(t.batch_size, len(train_split)), ctx.world)
    ck_dir = run / "checkpoints"
    if not resume and (ck_dir / "last.json").exists():
        raise TrainingError(
            f"run folder {run} already holds a checkpoint; pass --resume to continue it or choose a new --run folder"
        )
    _seed_all(t.seed)
    device = ddp.device_for(t.device, ctx)
    model = ddp.prepare_model(build_for_dataset(cfg, ds, t.seed).to(device), ctx, device)
    speed.setup(model, t)  # channels-last etc. (speed.py); before the optimizer and any checkpoint load
    n_bytes = sum(p.numel() * p.element_size() for p in model.state_dict().values())
    ddp.run_on_main(lambda: check_run_folder(run, need_bytes=8 * n_bytes + 50_000_000), ctx)
    opt = torch.optim.AdamW(model.parameters(), lr=t.lr, betas=t.betas, weight_decay=t.weight_decay)
    start = 0
    if resume and (ck_dir / "last.json").exists():
        state = ckpt.load_model(ck_dir, "last", model)
        ckpt.load_optimizer(ck_dir, "last", opt, state)
        start = int(state["step"])
        if not ddp.restore_rng(state, ctx, device):  # a fresh per-process stream (the process count changed)
            ddp.seed_process(t.seed, start, ctx)
    else:
        ddp.seed_process(t.seed, 0, ctx)
    ddp.run_on_main(lambda: _write_run_files(run, cfg, ds, ctx), ctx)
    logger = _Logger(run, tensorboard) if ctx.main else _NoLogger()
    model.train()
    stop = t.steps if stop_after is None else min(t.steps, stop_after)
    batches = Prefetcher(train_split, ds.scale, t.batch_size, t.seed, start, stop, rank=ctx.rank, world=ctx.world)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=t.precision == "bf16")
    bar = _ProgressBar(t.steps, start) if progress and ctx.main else None
    t0, last = time.time(), {}
    elapsed0 = 0.0
    if resume and start > 0:
        elapsed0 = float(state.get("train_seconds", 0.0))

    def save(name: str, step: int) -> None:
        rngs = ddp.rng_states(ctx, device)  # a collective: every process calls save
        if not ctx.main:
            return
        state = {"step": step, "train_seconds": elapsed0 + time.time() - t0, "losses": last, "method": cfg.method}
        ckpt.save(ck_dir, name, model, opt, {**state, **rngs})

    try:
        for step in range(start, stop):
            batch = {k: v.to(device, non_blocking=True) for k, v in next(batches).items()}
            for g in opt.param_groups:
                g["lr"] = t.lr * lr_factor(step, t)
            losses = train_step(model, opt, batch, step, autocast, t.grad_clip, ck_dir, ctx)
            if (step + 1) % t.log_every == 0 or step == stop - 1:
                last = {k: float(v.detach()) for k, v in losses.items()}
                logger.log(step + 1, {**last, "lr": opt.param_groups[0]["lr"]})
            if bar is not None:
                bar.update(step + 1, losses)
            if (step + 1) % t.ckpt_every == 0 and step + 1 < stop:
                save("last", step + 1)
        if stop == t.steps:
            save("last", stop)
            save("final", stop)
            if ctx.main:
                report_health(model, run, ds, progress)
        else:
            save("last", stop)
        ddp.barrier(ctx)  # no process returns before the checkpoint is on disk
    finally:
        logger.close()
        if bar is not None:
            bar.close()
    return {"step": stop, "train_seconds": elapsed0 + time.time() - t0, "losses": last}


def report_health(model, run: Path, ds: Dataset, echo: bool = True, n_samples: int = 64) -> dict:
    """The label-free health check (eval/health.py) on the first validation (else training) samples:
    written to health.json, and one warning line on stderr when something did not form."""
    from varinv.data.batching import iterate
    from varinv.eval import health

    split = ds.split("val" if "val" in ds.splits else "train")
    was_training = model.training
    model.eval()
    idx, zs = [], []
    with torch.no_grad():
        for batch in iterate(split, ds.scale, 32):
            enc = model.encode(batch["x"].to(next(model.parameters()).device))
            zs.append(enc.style.float().cpu())
            if enc.content_index is not None:
                idx.append(enc.content_index.cpu())
            if sum(len(z) for z in zs) >= n_samples:
                break
    model.train(was_training)
    book = model.codebook()
    h = health.assess(health.read_log(run), torch.cat(idx).numpy() if idx else None, torch.cat(zs).numpy(),
                      int(book.shape[0]) if book is not None else 1)
    (run / "health.json").write_text(json.dumps(h, indent=1) + "\n")
    line = health.warning(h)
    if line is not None:
        print(line, file=sys.stderr)
    elif echo:
        print("health: content vocabulary and style space formed (health.json)", file=sys.stderr)
    return h


def _write_run_files(run: Path, cfg: RunConfig, ds: Dataset, ctx: ddp.Context) -> None:
    t = cfg.train
    (run / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    (run / "provenance.json").write_text(
        json.dumps(
            {
                "varinv": __version__,
                "torch": torch.__version__,
                "seed": t.seed,
                "dataset": str(ds.root),
                "dataset_hash": ds.hash(),
                "dataset_generator": ds.manifest.get("generator"),
                "dataset_seed": ds.manifest.get("seed"),
                "argv": sys.argv,
                "threads": torch.get_num_threads(),
                "processes": ctx.world,
            },
            indent=1,
        )
    )


class _ProgressBar:
    """A rich progress bar with ETA and the main loss terms (refreshed a few times a second)."""

    def __init__(self, total: int, start: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.p = Progress(
            TextColumn("train"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[losses]}"),
            transient=False,
            refresh_per_second=2,
        )
        self.task = self.p.add_task("train", total=total, completed=start, losses="")
        self.p.start()
        self._t = 0.0

    def update(self, step: int, losses: dict) -> None:
        now = time.time()
        if now - self._t < 0.5 and step < self.p.tasks[0].total:
            self.p.update(self.task, completed=step)
            return
        self._t = now
        keys = [k for k in ("total", "recon", "content", "style", "sample", "fragment", "diversity") if k in losses]
        text = " ".join(f"{k}={float(losses[k]):.3g}" for k in keys)
        self.p.update(self.task, completed=step, losses=text)

    def close(self) -> None:
        self.p.stop()


def load_run(run: str | Path, checkpoint: str = "final"):
    """(cfg, dataset, model in eval mode, state) of a finished or interrupted run."""
    from varinv import config as config_mod

    run = Path(run)
    cpath = run / "config.yaml"
    if not cpath.exists():
        raise TrainingError(f"{run} is not a run folder (config.yaml missing); train one with `varinv train`")
    cfg = config_mod.load(cpath)
    ds = open_dataset(cfg.data.path)
    model = build_for_dataset(cfg, ds, cfg.train.seed)
    name = checkpoint
    if name == "final" and not (run / "checkpoints" / "final.json").exists():
        name = "last"
    state = ckpt.load_model(run / "checkpoints", name, model)
    model.eval()
    return cfg, ds, model, state

