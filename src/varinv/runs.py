"""The run folder: its layout, its lock, and loading a trained model from it.

A run folder is written by `varinv train` and later by `varinv evaluate` / `varinv recombine`::

    config.yaml            the resolved config (every default written out)
    model.json             what inference needs without the dataset (see model_meta)
    provenance.json        seed, package/torch versions, dataset manifest hash, command
    checkpoints/           last.* (periodic) and final.* (see train/checkpoint.py)
    tb/                    TensorBoard summaries (train/monitor.py)
    train_log.jsonl        the training scalars as JSON lines
    health.json            the label-free health check at the end of training
    metrics.json, plots/   `varinv evaluate`; eval_cache/ its cached judge classifiers
    recombine/             `varinv recombine` (default output)
    .lock                  held by whichever varinv process writes the folder (RunLock)

The names live here so that the writers and the readers (report, bench, pretrained) cannot drift apart.
Nothing in a run folder records the folder's own path, so a moved or copied run folder loads as is.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from varinv.errors import DataError, TrainingError

CONFIG_FILE = "config.yaml"
MODEL_FILE = "model.json"
MODEL_FORMAT = "varinv-model/1"
PROVENANCE_FILE = "provenance.json"
CHECKPOINTS_DIR = "checkpoints"
TB_DIR = "tb"
TRAIN_LOG_FILE = "train_log.jsonl"
HEALTH_FILE = "health.json"
METRICS_FILE = "metrics.json"
PLOTS_DIR = "plots"
EVAL_CACHE_DIR = "eval_cache"
RECOMBINE_DIR = "recombine"
LOCK_FILE = ".lock"


def missing_message(run: Path) -> str:
    return f"run folder {run} does not exist; train one with `varinv train` or check the path"


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


# What the refused writer should do instead, by command: train can pick another folder, the others
# work on this folder and can only come back later.
def _retry_hint(command: str) -> str:
    return "or choose another --run folder" if command == "train" else f"then run varinv {command} again"


def _unwritable_hint(command: str) -> str:
    if command in ("train", "demo"):
        return f"choose another {'--out' if command == 'demo' else '--run'} folder"
    return f"copy the run folder somewhere writable and run varinv {command} on the copy"


class RunLock:
    """An exclusive lock on RUN/.lock (fcntl.flock, non-blocking) held by every command that writes into a
    run folder (train, evaluate, recombine; demo on its output folder and its run copy), so that two writers never interleave; readers (encode,
    transfer, load_model) take none. While held, the file holds "PID COMMAND" of the holder for the
    refusal message; on release its earlier bytes are put back, so that a command that fails (or changes
    nothing) leaves the run folder byte for byte as it found it. The lock itself goes with the process,
    however it ends."""

    def __init__(self, fd: int | None, previous: bytes = b""):
        self.fd, self.previous = fd, previous

    @classmethod
    def acquire(cls, run: Path, command: str = "train", *, create: bool = True) -> "RunLock":
        """Lock ``run`` for ``command`` or raise TrainingError naming the holder. ``create`` False (the
        commands that work on an existing run): a folder that is not a run folder is neither made nor
        locked (no .lock left in a mistyped path); the loader then says what is wrong with it."""
        run = Path(run)
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            return cls(None)
        if not create and not ((run / CONFIG_FILE).is_file() or (run / MODEL_FILE).is_file()):
            return cls(None)
        try:
            run.mkdir(parents=True, exist_ok=True)
            fd = os.open(run / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise TrainingError(f"run folder {run} is not writable ({e.strerror}); "
                                f"{_unwritable_hint(command)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                words = os.read(fd, 64).decode(errors="replace").split()
            finally:
                os.close(fd)
            pid = words[0] if words else "?"
            holder = words[1] if len(words) > 1 else "process"  # written by an older varinv: pid only
            raise TrainingError(f"run folder {run} is in use by another varinv {holder} (pid {pid}); wait for it "
                                f"to finish or stop it, {_retry_hint(command)}") from None
        previous = os.pread(fd, 4096, 0)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {command}\n".encode(), 0)
        return cls(fd, previous)

    def release(self) -> None:
        if self.fd is not None:
            try:
                os.ftruncate(self.fd, 0)
                os.pwrite(self.fd, self.previous, 0)
            except OSError:  # the content is only informative; the flock is what counts
                pass
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = None

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def model_meta(cfg, ds) -> dict:
    """RUN/model.json: everything inference needs besides the weights, so that a run folder loads
    (and encodes, decodes, transfers) without its dataset. The dataset path and hash are informational."""
    from varinv import __version__

    train_entry = ds.manifest.get("splits", {}).get("train", {})
    return {
        "format": MODEL_FORMAT,
        "varinv": __version__,
        "method": cfg.method,
        "config": cfg.to_dict(),
        "fragment_shape": [int(v) for v in ds.fragment_shape],
        "n_fragments": ds.n_fragments,
        "scale": ds.scale,
        "kind": ds.kind,
        "params": ds.manifest.get("params") or {},
        "content_names": [str(n) for n in ds.content_names],
        "style_names": [str(n) for n in train_entry.get("style_names", ds.style_names)],
        "dataset_path": str(cfg.data.path),
        "dataset_hash": ds.hash(),
        "dataset_generator": ds.manifest.get("generator"),
    }


def read_model_meta(run: Path) -> dict | None:
    """RUN/model.json, or None for run folders made before it existed."""
    path = Path(run) / MODEL_FILE
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise TrainingError(f"{path} cannot be read ({e}); delete it to load the run from its dataset") from None
    missing = [k for k in ("format", "method", "config", "fragment_shape", "scale", "kind") if k not in meta]
    if missing or meta.get("format") != MODEL_FORMAT:
        what = f"lacks {', '.join(missing)}" if missing else f"has format {meta.get('format')!r}, expected {MODEL_FORMAT!r}"
        raise TrainingError(f"{path} {what}; delete it to load the run from its dataset")
    return meta


def write_run_files(run: Path, cfg, ds, processes: int = 1) -> None:
    """config.yaml, model.json and provenance.json at the start of a training (model.json atomically:
    a reader may load the run while it trains)."""
    import torch
    import yaml

    from varinv import __version__

    t = cfg.train
    (run / CONFIG_FILE).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    tmp = run / (MODEL_FILE + ".tmp")
    tmp.write_text(json.dumps(model_meta(cfg, ds), indent=1) + "\n")
    tmp.replace(run / MODEL_FILE)
    (run / PROVENANCE_FILE).write_text(
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
                "processes": processes,
            },
            indent=1,
        )
    )


def load_run(run: str | Path, checkpoint: str = "final", *, data: str | Path | None = None,
             need_data: bool = True, command: str = "evaluate", verify: bool = False):
    """(cfg, dataset, model in eval mode, state) of a finished or interrupted run.

    The model is built from RUN/model.json when present, so it needs no dataset; run folders made
    before model.json fall back to the dataset. ``data`` overrides the dataset location (the config's
    ``data.path``, which is set to it). A missing dataset raises a DataError that suggests
    ``varinv COMMAND RUN --data PATH``. With ``need_data=False`` and a model.json the dataset is not
    opened at all (None). ``verify``: check the opened dataset against its manifest checksums, as
    training does (cached, so cheap when nothing changed).
    """
    cfg, ds, model, state, _ = load_run_with_meta(run, checkpoint, data=data, need_data=need_data, command=command,
                                                  verify=verify)
    return cfg, ds, model, state


def load_run_with_meta(run: str | Path, checkpoint: str = "final", *, data: str | Path | None = None,
                       need_data: bool = True, command: str | None = "evaluate", verify: bool = False):
    """:func:`load_run` plus the run's model.json (for old runs: the same fields, from the dataset).
    ``command`` None: the error for a missing dataset names ``varinv.load_model(RUN, data=PATH)``."""
    from varinv import config as config_mod
    from varinv import pretrained
    from varinv.data.store import open_dataset
    from varinv.train import checkpoint as ckpt
    from varinv.train.trainer import build_for_dataset, build_for_shape

    shown = run if pretrained.is_ref(run) else Path(run)
    run = pretrained.resolve(run)  # pretrained:NAME → the packaged folder (read here, never written)
    fix = f"`varinv {command} {shown} --data PATH`" if command else f"varinv.load_model('{shown}', data=PATH)"
    if not run.is_dir():
        raise TrainingError(missing_message(run))
    meta = read_model_meta(run)
    cpath = run / CONFIG_FILE
    if cpath.exists():
        cfg = config_mod.load_saved(cpath)
    elif meta is not None:
        cfg = config_mod.from_saved(meta["config"])
    else:
        raise TrainingError(f"{run} is not a run folder ({CONFIG_FILE} missing); train one with `varinv train`")
    if data is not None:
        cfg.data.path = str(data)
    ds = None
    if need_data or meta is None:  # with model.json, inference alone never opens the dataset
        if (Path(cfg.data.path) / "manifest.json").is_file():
            ds = open_dataset(cfg.data.path)
        elif data is not None:
            given = "--data" if command else "data="
            raise DataError(f"no dataset at {data} (manifest.json missing); check the path given with {given}")
        elif meta is None:
            raise DataError(
                f"no dataset at {cfg.data.path} (manifest.json missing), and run {run} has no {MODEL_FILE} (trained "
                f"before varinv wrote one), so it needs its dataset; pass its location: {fix}"
            )
        else:
            raise DataError(
                f"the dataset of run {run} is no longer at {cfg.data.path} (manifest.json missing; moved or "
                f"deleted?); pass its location: {fix}"
            )
        if verify:
            ds.verify_cached()  # a flipped byte fails here, not as odd metrics later
    if meta is not None:
        shape = tuple(int(v) for v in meta["fragment_shape"])
        if ds is not None and tuple(ds.fragment_shape) != shape:
            raise DataError(
                f"dataset {ds.root} has fragments of shape {tuple(ds.fragment_shape)} but run {run} was trained on "
                f"{shape}; pass the run's dataset with --data PATH"
            )
        model = build_for_shape(cfg, shape, cfg.train.seed, where=f"run {run}")
    else:
        model = build_for_dataset(cfg, ds, cfg.train.seed)
        meta = model_meta(cfg, ds)
    name = checkpoint
    if name == "final" and not (run / CHECKPOINTS_DIR / "final.json").exists():
        name = "last"
    state = ckpt.load_model(run / CHECKPOINTS_DIR, name, model)
    model.eval()
    return cfg, ds, model, state, meta
