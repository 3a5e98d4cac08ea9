"""The training loop: one screen of plain PyTorch, no framework.

It writes the run folder (layout, lock and loading: see varinv/runs.py): config.yaml, model.json and
provenance.json at the start, checkpoints/last.* periodically and checkpoints/final.* at the end,
tb/ and train_log.jsonl while it runs (see monitor.py), health.json when it finishes.

Under ``torchrun --nproc_per_node=N`` the same loop runs data-parallel (see distributed.py):
process 0 writes the run folder, and the numbers match a 1-process run of the same config.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from varinv.config import RunConfig, for_data
from varinv.data.batching import Prefetcher, make_batch
from varinv.data.store import Dataset, open_dataset
from varinv.errors import ConfigError, DataError, TrainingError
from varinv.methods import build_method
from varinv.runs import (CHECKPOINTS_DIR, CONFIG_FILE, HEALTH_FILE, MODEL_FILE, PROVENANCE_FILE, TRAIN_LOG_FILE,
                         RunLock, check_run_folder, write_run_files)
from varinv.runs import load_run as load_run  # noqa: F401 - kept importable from here (benchmarks/)
from varinv.train import checkpoint as ckpt
from varinv.train import distributed as ddp
from varinv.train import monitor, speed


def lr_factor(step: int, t) -> float:
    """The paper's exponential schedule max(floor, decay^(epoch/every)), with optional linear warm-up and
    a cosine from 1 to ``lr_final`` over the part of the run after ``lr_anneal_from``."""
    epoch = step / t.steps_per_epoch
    f = max(t.lr_floor, t.lr_decay ** (epoch / t.lr_decay_every))
    if t.warmup_steps > 0 and step < t.warmup_steps:
        f *= (step + 1) / t.warmup_steps
    start = t.lr_anneal_from * t.steps
    if t.lr_final < 1.0 and step > start:
        x = min(1.0, (step - start) / max(1.0, t.steps - 1 - start))
        f *= t.lr_final + (1.0 - t.lr_final) * 0.5 * (1.0 + math.cos(math.pi * x))
    return f


# Settings a --resume may change: they alter neither the model, the optimisation nor the batches drawn.
#   train.steps      train further (never below the steps already done, checked separately; with
#                    train.lr_final < 1 the annealing is stretched over the new length)
#   train.threads    CPU threads: speed only
#   train.log_every  how often scalars are logged: output only
#   train.device     where the same computation runs (e.g. continue a CPU run on a GPU)
#   train.compile    the same computation in compiled kernels (speed.py); checkpoints are alike
#   train.tf32       GPU rounding only, like a change of device
#   train.channels_last  memory layout: rounding only (speed.py; under "auto" it follows train.threads)
RESUME_MAY_CHANGE = ("train.steps", "train.threads", "train.log_every", "train.device", "train.compile", "train.tf32",
                     "train.channels_last")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_run_config(run: Path, cfg: RunConfig, resume: bool) -> None:
    """Before anything in ``run`` is written: a resumed run continues exactly the run it names (same
    settings but RESUME_MAY_CHANGE, at least as many steps as done, a complete checkpoint); a fresh
    run never replaces a config.yaml that varinv did not write."""
    from varinv import config as config_mod

    cpath, ck_dir = run / CONFIG_FILE, run / CHECKPOINTS_DIR
    ours = (run / MODEL_FILE).exists() or (run / PROVENANCE_FILE).exists() or ck_dir.exists()
    if not resume:
        if cpath.exists() and not ours:
            raise TrainingError(f"run folder {run} holds a config.yaml that varinv did not write (no checkpoints, no "
                                f"{MODEL_FILE}); move it out of the run folder or choose another --run folder")
        return
    if not (ck_dir / "last.json").exists():
        if cpath.exists() or ck_dir.exists():
            raise TrainingError(f"run folder {run} has no complete checkpoint to resume (it was stopped before or "
                                "during its first checkpoint); start fresh with a new --run folder, or delete "
                                f"{run} and train again")
        return  # nothing there yet: --resume starts a new run
    state = ckpt.read_state(ck_dir, "last")
    done = int(state.get("step", 0))
    if cfg.train.steps < done:
        raise ConfigError(f"train.steps = {cfg.train.steps} is fewer than the {done} steps run {run} has already "
                          f"done; resume with --steps {done} or more")
    if not cpath.exists():
        return
    try:
        saved = _flat(config_mod.load_saved(cpath).to_dict())
    except ConfigError:
        return  # written by another varinv version; the checkpoint load still checks the model
    now = _flat(cfg.to_dict())
    if Path(str(saved.get("data.path"))).resolve() != Path(str(now.get("data.path"))).resolve():
        raise ConfigError(f"data.path = {now.get('data.path')} differs from the dataset run {run} was trained on "
                          f"({saved.get('data.path')}); resume with --data {saved.get('data.path')} or start a "
                          "new --run folder")
    differ = sorted(k for k in set(saved) | set(now)
                    if k not in RESUME_MAY_CHANGE and k != "data.path" and saved.get(k) != now.get(k))
    if differ:
        shown = ", ".join(f"{k} ({saved.get(k)!r} -> {now.get(k)!r})" for k in differ[:4])
        more = f" and {len(differ) - 4} more" if len(differ) > 4 else ""
        raise ConfigError(f"--resume with changed settings: {shown}{more}; a resumed run keeps its settings (in "
                          f"{cpath}) except {', '.join(RESUME_MAY_CHANGE)}: set them back or start a new --run folder")


def truncate_log(path: Path, step: int) -> None:
    """Keep the train_log.jsonl rows of steps <= ``step`` (and drop a torn last line)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and int(row.get("step", 0)) <= step:
            keep.append(line + "\n")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(keep))
    os.replace(tmp, path)


def build_for_dataset(cfg: RunConfig, ds: Dataset, seed: int):
    return build_for_shape(for_data(cfg, ds.kind), ds.fragment_shape, seed, where=f"dataset {ds.root}")


def build_for_shape(cfg: RunConfig, shape, seed: int, where: str = "the run"):
    """The method of ``cfg`` for fragments of ``shape`` (C, H, W)."""
    shape = tuple(int(v) for v in shape)
    if len(shape) != 3:
        raise DataError(f"{where} fragments have shape {shape}; expected (C, H, W)")
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
        if (ck_dir / "last.json").exists():
            kept = f"the last good checkpoint is kept in {ck_dir}"
        else:
            kept = "no checkpoint had been written yet, so there is nothing to resume: start again with a new --run"
        raise TrainingError(
            f"loss term '{bad[0]}' became {scalars[bad[0]].item()} at step {step}; training stopped and "
            f"{kept} (lower train.lr or enable train.grad_clip; check the data for huge values)"
        )
    opt.zero_grad(set_to_none=True)
    losses["total"].backward()
    ddp.average_gradients(model.parameters(), ctx)
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    model.after_step(step)
    return scalars


def train(
    cfg: RunConfig,
    run: str | Path,
    *,
    resume: bool = False,
    progress: bool | str = True,
    tensorboard: bool = True,
    stop_after: int | None = None,
) -> dict:
    """Train ``cfg`` into folder ``run``; returns the final state dict. ``stop_after`` ends the
    process early (tests of resume) exactly as a kill between steps would. ``progress``: True or
    "bar" (rich progress bar), "plain" (a line on stdout per log step), "auto" (a bar in a terminal,
    else plain lines), False (nothing). ``tensorboard``: the summaries of monitor.py in RUN/tb.

    Launched by torchrun (WORLD_SIZE > 1), or inside an initialised process group, it trains
    data-parallel and every process returns the same dict."""
    ctx = ddp.setup(cfg.train.device)
    finished = False
    try:
        out = _train(cfg, run, ctx, resume=resume, progress=progress, tensorboard=tensorboard, stop_after=stop_after)
        finished = True
        return out
    finally:
        ddp.teardown(ctx, together=finished)


def _train(
    cfg: RunConfig,
    run: str | Path,
    ctx: ddp.Context,
    *,
    resume: bool,
    progress: bool | str,
    tensorboard: bool,
    stop_after: int | None,
) -> dict:
    run = Path(run)
    mode = monitor.progress_mode(progress)
    t = cfg.train
    set_threads(t.threads)
    keep_freed_memory()
    ds = open_dataset(cfg.data.path)
    cfg = for_data(cfg, ds.kind)
    ddp.run_on_main(ds.verify_cached, ctx)  # a flipped byte fails here, not as an odd loss later
    train_split = ds.split("train")
    if len(train_split) < 2:
        raise DataError(f"dataset {ds.root} has {len(train_split)} training samples; V3 needs at least 2")
    ddp.check_batch(min(t.batch_size, len(train_split)), ctx.world)
    ck_dir = run / CHECKPOINTS_DIR
    lock = ddp.run_on_main(lambda: RunLock.acquire(run, "train"), ctx)
    try:
        return _train_locked(cfg, run, ctx, ds, train_split, ck_dir, mode, resume=resume, tensorboard=tensorboard,
                             stop_after=stop_after)
    finally:
        if lock is not None:
            lock.release()


def _train_locked(cfg: RunConfig, run: Path, ctx: ddp.Context, ds: Dataset, train_split, ck_dir: Path, mode, *,
                  resume: bool, tensorboard: bool, stop_after: int | None) -> dict:
    t = cfg.train
    if not resume and (ck_dir / "last.json").exists():
        raise TrainingError(
            f"run folder {run} already holds a checkpoint; pass --resume to continue it or choose a new --run folder"
        )
    ddp.run_on_main(lambda: check_run_config(run, cfg, resume), ctx)
    _seed_all(t.seed)
    device = ddp.device_for(t.device, ctx)
    if device.type == "cuda":  # process-wide switches; a CPU run never reads them
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = t.tf32
    method = build_for_dataset(cfg, ds, t.seed)
    method.total_steps = t.steps
    model = ddp.prepare_model(method.to(device), ctx, device)
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
    ddp.run_on_main(lambda: write_run_files(run, cfg, ds, ctx.world), ctx)
    if ctx.main:
        truncate_log(run / TRAIN_LOG_FILE, start)  # a resumed (or restarted) run logs each step once
        samples = None
        if tensorboard:  # the samples of the checkpoint images: the first validation (else training) ones
            shown = ds.split("val") if "val" in ds.splits else train_split
            samples = make_batch(shown, np.arange(min(monitor.N_IMAGE_SAMPLES, len(shown))))["x"]
        logger = monitor.Logger(run, tensorboard, cfg=cfg, samples=samples, kind=ds.kind, start=start)
    else:
        logger = monitor.NoLogger()
    model.train()
    stop = t.steps if stop_after is None else min(t.steps, stop_after)
    batches = Prefetcher(train_split, t.batch_size, t.seed, start, stop, rank=ctx.rank, world=ctx.world)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=t.precision == "bf16")
    bar = None
    if mode is not None and ctx.main:
        bar = (monitor.ProgressBar if mode == "bar" else monitor.PlainProgress)(t.steps, start, model.progress_terms())
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
        logger.images(step, model)

    try:
        for step in range(start, stop):
            batch = {k: v.to(device, non_blocking=True) for k, v in next(batches).items()}
            for g in opt.param_groups:
                g["lr"] = t.lr * lr_factor(step, t)
            losses = train_step(model, opt, batch, step, autocast, t.grad_clip, ck_dir, ctx)
            if (step + 1) % t.log_every == 0 or step == stop - 1:
                last = {k: float(v.detach()) for k, v in losses.items()}
                logger.log(step + 1, {**last, "lr": opt.param_groups[0]["lr"]}, model=model, batch=batch)
                if mode == "plain" and bar is not None:
                    bar.update(step + 1, last)
            if mode == "bar" and bar is not None:
                bar.update(step + 1, losses)
            if (step + 1) % t.ckpt_every == 0 and step + 1 < stop:
                save("last", step + 1)
        if stop == t.steps:
            save("last", stop)
            save("final", stop)
            if ctx.main:
                report_health(model, run, ds, mode is not None)
        else:
            save("last", stop)
        ddp.barrier(ctx)  # no process returns before the checkpoint is on disk
    finally:
        batches.close()
        logger.close()
        if bar is not None:
            bar.close()
    return {"step": stop, "train_seconds": elapsed0 + time.time() - t0, "losses": last}


def report_health(model, run: Path, ds: Dataset, echo: bool = True, n_samples: int = 64, n_index: int = 512) -> dict:
    """The label-free health check (eval/health.py) on the first ``n_samples`` validation (else training) samples,
    the atoms' co-occurrence on the first ``n_index`` (it needs many samples and only the encoder): written to
    health.json, and one warning line on stderr when something did not form."""
    from varinv.data.batching import iterate
    from varinv.eval import health

    split = ds.split("val" if "val" in ds.splits else "train")
    was_training = model.training
    model.eval()
    idx, zs, zc, agree, xs = [], [], [], [], []
    seen = 0
    with torch.no_grad():
        for batch in iterate(split, 32):
            x = batch["x"].to(next(model.parameters()).device)
            enc = model.encode(x)
            if enc.content_index is not None:
                idx.append(enc.content_index.cpu())
            if seen < n_samples:
                xs.append(x.float().cpu())
                a = model.rendering_agreement(x)
                if a is not None:
                    agree.append(a.cpu())
                zs.append(enc.own_style.float().cpu())
                zc.append(enc.content.float().cpu())
            seen += len(x)
            if seen >= (n_index if idx else n_samples):
                break
    model.train(was_training)
    book = model.codebook()
    h = health.assess(health.read_log(run), torch.cat(idx).numpy() if idx else None, torch.cat(zs).numpy(),
                      int(book.shape[0]) if book is not None else 1, torch.cat(zc).numpy(),
                      book.detach().float().cpu().numpy() if book is not None else None,
                      float(torch.cat(agree).float().mean()) if agree else None,
                      float(torch.cat(xs).flatten(0, 1).var(0, unbiased=False).mean()))
    (run / HEALTH_FILE).write_text(json.dumps(h, indent=1) + "\n")
    line = health.warning(h)
    if line is not None:
        print(line, file=sys.stderr)
    elif echo:
        print("health: content vocabulary and style space formed (health.json)", file=sys.stderr)
    return h
