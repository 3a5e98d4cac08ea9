"""What a training run reports while it runs: train_log.jsonl, TensorBoard, progress on the console.

TensorBoard (RUN/tb), written by process 0 only:

* scalars at every log step, grouped: ``loss/<term>`` (every loss term, ``loss/total`` included),
  ``stat/<name>`` (the ``stat_<name>`` statistics, e.g. V3's variabilities), ``opt/lr``, and for
  methods with a codebook ``atoms/used`` and ``atoms/perplexity`` of the atom indices of the batch
  just trained on;
* images at every checkpoint: ``images/reconstruction`` (4 fragments, input above decode(encode(x)))
  and ``images/recombination`` (rows: atoms, or for methods without a codebook the contents of one
  sample's fragments; columns: the mean styles of 4 samples);
* ``config``: the resolved config as text, once per (re)start.

The atom statistics and images come from extra forward passes in eval mode without gradients; the
random number generators are saved and restored around them and the train mode restored after, so a
run logs the same numbers with and without TensorBoard (tests/test_monitoring.py). train_log.jsonl keeps
its keys: the loss terms by name and ``lr``.

Console: a rich progress bar in a terminal, else (``plain``) one flushed line on stdout per log step.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from varinv.runs import TB_DIR, TRAIN_LOG_FILE

N_IMAGE_SAMPLES = 4
MAX_GRID_ROWS = 32


def tb_tag(key: str) -> str:
    """The grouped TensorBoard tag of a train_log.jsonl key."""
    if key == "lr":
        return "opt/lr"
    if key.startswith("stat_"):
        return "stat/" + key[len("stat_"):]
    return "loss/" + key


def atom_usage(index: torch.Tensor) -> tuple[int, float]:
    """(atoms used, perplexity exp(H)) of the atom indices ``index`` (any shape)."""
    counts = torch.bincount(index.reshape(-1).long().cpu())
    counts = counts[counts > 0].double()
    p = counts / counts.sum()
    return int(len(counts)), float(torch.exp(-(p * p.log()).sum()))


@contextlib.contextmanager
def side_pass(model: torch.nn.Module):
    """Run extra forward passes that leave training exactly as it was: no gradients, eval mode (no
    batch-norm statistics, codebook EMA or k-means updates), the RNG states restored afterwards."""
    device = next(model.parameters()).device
    was_training = model.training
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    model.eval()
    try:
        with torch.no_grad():
            yield device
    finally:
        model.train(was_training)
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state(cuda_rng, device)


def _to_rgb(frags: np.ndarray, kind: str, lo: float, hi: float) -> np.ndarray:
    """(..., C, H, W) fragments in model units → (..., H, W, 3) uint8."""
    if kind == "spectrogram":
        import matplotlib

        v = (frags[..., 0, ::-1, :] - lo) / max(hi - lo, 1e-8)  # low frequencies at the bottom
        rgb = matplotlib.colormaps["magma"](np.clip(v, 0, 1))[..., :3]
    elif frags.shape[-3] == 3:
        rgb = np.clip(np.moveaxis(frags, -3, -1), 0, 1)
    else:
        rgb = np.repeat(np.clip(frags[..., 0, :, :], 0, 1)[..., None], 3, axis=-1)
    return (rgb * 255).round().astype(np.uint8)


def tile(cells: np.ndarray, gap: int = 1) -> np.ndarray:
    """(R, C, H, W, 3) uint8 cells → one (H', W', 3) image with white gaps, enlarged when small."""
    r, c, h, w, _ = cells.shape
    up = max(1, 48 // max(h, w))
    cells = cells.repeat(up, axis=2).repeat(up, axis=3)
    h, w = h * up, w * up
    out = np.full((r * (h + gap) + gap, c * (w + gap) + gap, 3), 255, np.uint8)
    for i in range(r):
        for j in range(c):
            y, x = gap + i * (h + gap), gap + j * (w + gap)
            out[y:y + h, x:x + w] = cells[i, j]
    return out


def summary_images(model, x: torch.Tensor, kind: str) -> dict[str, np.ndarray]:
    """``reconstruction`` (2 × 4: fragment i of sample i, input above its reconstruction) and
    ``recombination`` (atoms × the mean styles of the samples) of the samples ``x`` (B, L, C, H, W)."""
    with side_pass(model) as device:
        x = x[:N_IMAGE_SAMPLES].to(device)
        enc = model.encode(x)
        recon = model.reconstruct(x).float()
        n = min(x.shape[0], x.shape[1])
        pick = torch.arange(n)
        pair = torch.stack([x[pick, pick].float(), recon[pick, pick]])  # (2, n, C, H, W)
        book = model.codebook()
        atoms = book if book is not None else model.decoder_content(enc)[0]
        atoms = atoms[:MAX_GRID_ROWS].float()
        styles = enc.style.float().mean(1)  # (B, d_s)
        k, s = atoms.shape[0], styles.shape[0]
        c = atoms[:, None].expand(k, s, -1).reshape(k * s, -1)
        z = styles[None].expand(k, s, -1).reshape(k * s, -1)
        grid = model.decode(c, z).float().reshape(k, s, *x.shape[2:])
    pair, grid = pair.cpu().numpy(), grid.cpu().numpy()
    inputs = x.float().cpu().numpy()
    lo, hi = float(inputs.min()), float(inputs.max())
    return {"reconstruction": tile(_to_rgb(pair, kind, lo, hi)), "recombination": tile(_to_rgb(grid, kind, lo, hi))}


class NoLogger:
    """What processes other than 0 log to: nothing."""

    def log(self, step: int, scalars: dict[str, float], model=None, batch=None) -> None:
        pass

    def images(self, step: int, model) -> None:
        pass

    def close(self) -> None:
        pass


class Logger:
    """train_log.jsonl always; TensorBoard when ``tensorboard`` and the package is installed."""

    def __init__(self, run: Path, tensorboard: bool, *, cfg=None, samples: torch.Tensor | None = None,
                 kind: str = "image", start: int = 0):
        self.jsonl = open(run / TRAIN_LOG_FILE, "a")
        self.tb = None
        self.samples, self.kind = samples, kind
        self._image_step = None
        self._failed: set[str] = set()
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                # a resumed run's events after its checkpoint are dropped, as train_log.jsonl's rows are
                self.tb = SummaryWriter(str(run / TB_DIR), purge_step=start + 1 if start else None)
            except ImportError:  # tensorboard is a dependency, but logging must never stop training
                self.tb = None
        if self.tb is not None and cfg is not None:
            text = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
            self.tb.add_text("config", "\n".join("    " + line for line in text.splitlines()), start)

    def _guard(self, what: str, fn) -> None:
        """Run one TensorBoard extra; a failure warns once and never stops training."""
        if what in self._failed:
            return
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - a summary must never end a run
            self._failed.add(what)
            print(f"warning: TensorBoard {what} disabled: {type(e).__name__}: {e}", file=sys.stderr)

    def log(self, step: int, scalars: dict[str, float], model=None, batch=None) -> None:
        self.jsonl.write(json.dumps({"step": step, **scalars}) + "\n")
        self.jsonl.flush()
        if self.tb is None:
            return
        for k, v in scalars.items():
            self.tb.add_scalar(tb_tag(k), v, step)
        if model is not None and batch is not None and model.codebook() is not None:
            def atoms():
                with side_pass(model):
                    index = model.encode(batch["x"]).content_index
                if index is not None:
                    used, perplexity = atom_usage(index)
                    self.tb.add_scalar("atoms/used", used, step)
                    self.tb.add_scalar("atoms/perplexity", perplexity, step)

            self._guard("atom usage", atoms)

    def images(self, step: int, model) -> None:
        """Reconstructions and a recombination grid (once per step, at checkpoints)."""
        if self.tb is None or self.samples is None or self._image_step == step:
            return
        self._image_step = step

        def write():
            for name, img in summary_images(model, self.samples, self.kind).items():
                self.tb.add_image(f"images/{name}", img, step, dataformats="HWC")
            self.tb.flush()

        self._guard("images", write)

    def close(self) -> None:
        self.jsonl.close()
        if self.tb is not None:
            self.tb.close()


def format_duration(seconds: float) -> str:
    """8m40s, 1h02m, 45s."""
    s = int(round(max(0.0, seconds)))
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def loss_text(losses: dict, terms, sep: str = "  ") -> str:
    """``terms`` (a method's ``progress_terms()``) that ``losses`` holds, as ``name=value``."""
    return sep.join(f"{k}={float(losses[k]):.3g}" for k in terms if k in losses)


class PlainProgress:
    """One flushed line per call on ``stream`` (stdout): for logs of runs outside a terminal."""

    def __init__(self, total: int, start: int, terms=("total", "recon"), stream=None):
        self.total, self.terms, self.stream = total, tuple(terms), stream
        self._t, self._step = time.time(), start

    def update(self, step: int, losses: dict) -> None:
        now = time.time()
        rate = (step - self._step) / max(now - self._t, 1e-9)
        self._t, self._step = now, step
        eta = format_duration((self.total - step) / rate) if rate > 0 else "?"
        line = f"step {step}/{self.total}  {loss_text(losses, self.terms)}  {rate:.3g} steps/s  ETA {eta}"
        print(line, file=self.stream or sys.stdout, flush=True)

    def close(self) -> None:
        pass


class ProgressBar:
    """A rich progress bar with ETA and the main loss terms (refreshed a few times a second)."""

    def __init__(self, total: int, start: int, terms=("total", "recon")):
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
        self.terms = tuple(terms)

    def update(self, step: int, losses: dict) -> None:
        now = time.time()
        if now - self._t < 0.5 and step < self.p.tasks[0].total:
            self.p.update(self.task, completed=step)
            return
        self._t = now
        text = loss_text(losses, self.terms, sep=" ")
        self.p.update(self.task, completed=step, losses=text)

    def close(self) -> None:
        self.p.stop()


def progress_mode(progress) -> str | None:
    """``train(progress=...)``: True → "bar", False/None → None, or "bar" / "plain" / "auto" (a bar when
    stdout and stderr are terminals, else plain lines)."""
    if progress is True:
        return "bar"
    if progress is False or progress is None:
        return None
    if progress == "auto":
        return "bar" if sys.stdout.isatty() and sys.stderr.isatty() else "plain"
    if progress in ("bar", "plain"):
        return progress
    raise ValueError(f"progress must be a bool, 'bar', 'plain' or 'auto', got {progress!r}")
