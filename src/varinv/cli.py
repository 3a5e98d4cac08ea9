"""The `varinv` command line: data, train, evaluate, recombine.

Errors a user can cause print one line (`error: ...`) and exit non-zero; `--debug` shows the traceback.
"""

from __future__ import annotations

import json
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from varinv.errors import ConfigError, VarinvError
from varinv.runs import CONFIG_FILE, METRICS_FILE, PLOTS_DIR, RunLock

app = typer.Typer(
    help="Unsupervised content-style disentanglement of sequential data (V3 and peers).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_state = {"debug": False}


def _print_version(value: bool) -> None:
    if value:
        from varinv import __version__

        typer.echo(f"varinv {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
):
    _state["debug"] = debug


class DatasetName(str, Enum):
    phonenums = "phonenums"
    insnotes = "insnotes"
    waveforms = "waveforms"
    images = "images"
    audio = "audio"


_BENCHMARKS = (DatasetName.phonenums, DatasetName.insnotes, DatasetName.waveforms)

_DATA_HELP = "\n\n".join([
    "Generate a benchmark dataset (deterministic from --seed) or import a folder, in the varinv store format.",
    "varinv data images DIR --out DS: DIR holds either (a) one image per sample (png, jpg, jpeg, bmp, gif, "
    "webp), cut into --tiles L equal tiles along its width, or (b) one sub-folder per sample with one image "
    "per fragment, in natural name order (frag2 before frag10); a DIR with both is an error. --size HxW "
    "resizes every fragment; --channels rgb|grey. Stored as uint8 (N, L, C, H, W).",
    "varinv data audio DIR --out DS: every wav/flac/ogg under DIR, mixed to mono and resampled to 16 kHz, "
    "cut into --window-second fragments (or one per detected onset with --onsets), log-STFT keeping --bins "
    "bins; a sample is --length consecutive fragments of one file. Stored as float16 (N, L, 1, bins, frames).",
    "--labels CSV (optional), columns sample,fragment,content,style: sample = a file's stem or a sub-folder's "
    "name; fragment = 0-based index or fragment file name, empty = the whole sample; content and style are "
    "class names (empty = unknown). Splits by sample: --val, --test, --seed. --skip-bad skips bad files. "
    "Details: src/varinv/data/folders.py.",
])


@app.command(help=_DATA_HELP)
def data(
    name: Annotated[
        DatasetName,
        typer.Argument(help="A benchmark to generate (phonenums, insnotes, waveforms) or a folder to import "
                            "(images, audio)."),
    ],
    source: Annotated[
        Optional[Path], typer.Argument(metavar="DIR", help="images/audio: the folder to import.", show_default=False)
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder to write the dataset to.")] = ...,
    size: Annotated[
        Optional[str],
        typer.Option(help="phonenums: rows; insnotes: files per instrument; waveforms: samples. Default: paper size. "
                          "images: HxW to resize every fragment to (e.g. 32x32)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Generator seed: same seed, same bytes. images/audio: split seed.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing dataset folder.")] = False,
    soundfont: Annotated[Optional[Path], typer.Option(help="insnotes: a .sf2 soundfont (default TimGM6mb).")] = None,
    n_bins: Annotated[
        Optional[int],
        typer.Option("--n-bins", "--bins",
                     help="insnotes/waveforms/audio: frequency bins kept (512 = full STFT; audio default 128)."),
    ] = None,
    fragments: Annotated[
        Optional[int], typer.Option(help="waveforms: tones per sample, distinct frequencies (default: all 21).")
    ] = None,
    frames: Annotated[
        Optional[int], typer.Option(help="waveforms: frames per tone, averaged from the 32 STFT frames (default 8; 32 = full).")
    ] = None,
    tiles: Annotated[
        Optional[int], typer.Option(help="images, one image per sample: cut each into this many tiles along its width.")
    ] = None,
    length: Annotated[
        Optional[int],
        typer.Option(help="images: cut samples into windows of L fragments; audio: fragments per sample (default 8)."),
    ] = None,
    channels: Annotated[
        Optional[str], typer.Option(help="images: rgb or grey (default: rgb if any image has colour).")
    ] = None,
    labels: Annotated[
        Optional[Path], typer.Option(help="images/audio: CSV with columns sample,fragment,content,style.")
    ] = None,
    val: Annotated[Optional[float], typer.Option(help="images/audio: share of samples for val (default 0.1).")] = None,
    test: Annotated[Optional[float], typer.Option(help="images/audio: share of samples for test (default 0.1).")] = None,
    window: Annotated[
        Optional[float], typer.Option(help="audio: fragment length in seconds (default 1.0 = 32 frames).")
    ] = None,
    onsets: Annotated[bool, typer.Option("--onsets", help="audio: one fragment per detected onset.")] = False,
    min_gap: Annotated[
        Optional[float], typer.Option(help="audio --onsets: least seconds between onsets (default 0.1).")
    ] = None,
    onset_threshold: Annotated[
        Optional[float], typer.Option(help="audio --onsets: peak threshold of the 0..1 onset strength (default 0.2).")
    ] = None,
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="images/audio: skip bad files (and say how many) instead of failing.")
    ] = False,
):
    """Generate a benchmark dataset or import a folder of images or audio (help: _DATA_HELP)."""
    if not str(out).strip() or str(out) == ".":
        raise ConfigError("--out must name a dataset folder (got an empty path), e.g. --out data/mine")
    if overwrite and name in _BENCHMARKS:  # before generating; imports check their input first, from_arrays this
        from varinv.data.store import check_replaceable

        check_replaceable(out)
    given = {
        "DIR": source is not None, "--tiles": tiles is not None, "--length": length is not None,
        "--channels": channels is not None, "--labels": labels is not None, "--val": val is not None,
        "--test": test is not None, "--window": window is not None, "--onsets": onsets,
        "--min-gap": min_gap is not None, "--onset-threshold": onset_threshold is not None, "--skip-bad": skip_bad,
    }
    if name in _BENCHMARKS:
        extra = [k for k, v in given.items() if v]
        if extra:
            raise ConfigError(f"{', '.join(extra)} apply to `varinv data images|audio DIR` only; "
                              f"{name.value} is generated, not imported")
    else:
        _import_folder(name, source, out, size=size, seed=seed, overwrite=overwrite, soundfont=soundfont,
                       n_bins=n_bins, fragments=fragments, frames=frames, tiles=tiles, length=length,
                       channels=channels, labels=labels, val=val, test=test, window=window, onsets=onsets,
                       min_gap=min_gap, onset_threshold=onset_threshold, skip_bad=skip_bad)
        return
    if (fragments or frames) and name != DatasetName.waveforms:
        raise ConfigError(f"--fragments and --frames apply to waveforms only; {name.value} fixes its fragment shape")
    size_n = None if size is None else _parse_count(size, name.value)
    if seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {seed}")
    for opt, value in (("--n-bins", n_bins), ("--fragments", fragments), ("--frames", frames)):
        if value is not None and value < 1:
            raise ConfigError(f"{opt} must be a positive integer, got {value}")
    if size_n is not None:
        _check_generate_size(name.value, size_n, n_bins=n_bins, fragments=fragments, frames=frames)
    kwargs: dict = {"seed": seed, "overwrite": overwrite}
    if name == DatasetName.phonenums:
        from varinv.data import phonenums as gen

        if size_n is not None:
            kwargs["n_rows"] = size_n
    elif name == DatasetName.insnotes:
        from varinv.data import insnotes as gen

        if size_n is not None:
            kwargs["files_per_instrument"] = size_n
        if soundfont:
            kwargs["soundfont"] = str(soundfont)
        if n_bins:
            kwargs["n_bins"] = n_bins
    else:
        from varinv.data import waveforms as gen

        if size_n is not None:
            kwargs["n_samples"] = size_n
        if n_bins:
            kwargs["n_bins"] = n_bins
        if fragments:
            kwargs["n_fragments"] = fragments
        if frames:
            kwargs["n_frames"] = frames
    ds = gen.generate(out, **kwargs)
    typer.echo(f"wrote {name.value} to {ds.root}: " + ", ".join(f"{s} {ds.manifest['splits'][s]['n']}" for s in ds.splits))


# --size minimum and bytes per unit of a generated benchmark (the stored arrays; generating holds them in
# memory once more at most): phonenums rows of 10 (3, 48, 32) uint8 patches; insnotes files per instrument
# (12 instruments, 10 samples of 12 (1, bins, 32) float16 notes, plus the OOD share); waveforms samples of
# fragments x (1, bins, frames) float16.
_SIZE_MIN = {"phonenums": 10, "insnotes": 1, "waveforms": 3}


def _parse_count(size: str, what: str) -> int:
    """--size of a benchmark: a whole number (1000, 1e4 or 10_000), at least the generator's minimum."""
    text = size.strip().replace("_", "")
    try:
        value = float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        raise ConfigError(f"--size {size!r} is not an integer; {what} takes a count, e.g. --size 1000") from None
    if isinstance(value, float) and (not value.is_integer() or value > 2**62):
        raise ConfigError(f"--size {size!r} is not a whole count; {what} takes a count, e.g. --size 1000")
    value = int(value)
    if value < _SIZE_MIN[what]:
        unit = {"phonenums": "rows", "insnotes": "files per instrument", "waveforms": "samples"}[what]
        raise ConfigError(f"--size {value} is too small: {what} needs at least {_SIZE_MIN[what]} {unit} "
                          "(leave --size out for the paper size)")
    return value


def _available_memory() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def _check_generate_size(what: str, n: int, *, n_bins=None, fragments=None, frames=None) -> None:
    """Refuse a --size whose arrays cannot fit in memory, before anything is allocated."""
    if what == "phonenums":
        per = 10 * 3 * 48 * 32 * 1.2  # plus the OOD rows
    elif what == "insnotes":
        per = 12 * 10 * 12 * (n_bins or 128) * 32 * 2 * 1.2
    else:
        per = (fragments or 21) * (n_bins or 256) * (frames or 8) * 2
    need = 2 * per * n  # the arrays, and a copy while writing
    have = _available_memory()
    if need > have:
        most = max(_SIZE_MIN[what], int(have / (2 * per)))
        raise ConfigError(f"--size {n} would need about {need / 1e9:,.1f} GB of memory for {what} but "
                          f"{have / 1e9:,.1f} GB are available; use --size {most} or less")


def _import_folder(name: DatasetName, source: Optional[Path], out: Path, **o) -> None:
    """`varinv data images|audio DIR`: check which options apply, import, print a summary."""
    from varinv.data import folders

    if source is None:
        raise ConfigError(f"varinv data {name.value} needs the folder to import: varinv data {name.value} DIR --out DS")
    if name == DatasetName.images:
        foreign = {"--soundfont": o["soundfont"], "--bins": o["n_bins"], "--fragments": o["fragments"],
                   "--frames": o["frames"], "--window": o["window"], "--onsets": o["onsets"],
                   "--min-gap": o["min_gap"], "--onset-threshold": o["onset_threshold"]}
    else:
        foreign = {"--soundfont": o["soundfont"], "--size": o["size"], "--fragments": o["fragments"],
                   "--frames": o["frames"], "--tiles": o["tiles"], "--channels": o["channels"]}
        if not o["onsets"]:
            foreign.update({"--min-gap": o["min_gap"], "--onset-threshold": o["onset_threshold"]})
    bad = [k for k, v in foreign.items() if v is not None and v is not False]
    if bad:
        raise ConfigError(f"{', '.join(bad)} do(es) not apply to `varinv data {name.value}`; drop it")
    common = {"labels": o["labels"], "seed": o["seed"], "skip_bad": o["skip_bad"], "overwrite": o["overwrite"],
              "val": folders.DEFAULT_VAL if o["val"] is None else o["val"],
              "test": folders.DEFAULT_TEST if o["test"] is None else o["test"]}
    if name == DatasetName.images:
        ds, imported = folders.import_images(source, out, tiles=o["tiles"], size=o["size"], channels=o["channels"],
                                             length=o["length"], **common)
    else:
        def pick(key, default):
            return default if o[key] is None else o[key]

        settings = folders.AudioSettings(
            window=pick("window", folders.DEFAULT_WINDOW), onsets=o["onsets"],
            min_gap=pick("min_gap", folders.DEFAULT_MIN_GAP), threshold=pick("onset_threshold", folders.DEFAULT_ONSET_THRESHOLD),
            bins=pick("n_bins", folders.DEFAULT_BINS), length=pick("length", folders.DEFAULT_AUDIO_LENGTH))
        ds, imported = folders.import_audio(source, out, settings, **common)
    note = folders.skipped_summary(imported.skipped)
    if note:
        typer.echo(note, err=True)
    shape = "x".join(str(d) for d in ds.fragment_shape)
    typer.echo(f"wrote {name.value} from {source} to {ds.root}: "
               + ", ".join(f"{s} {ds.manifest['splits'][s]['n']}" for s in ds.splits)
               + f" samples of {ds.n_fragments} fragments ({shape})")


_TRAIN_HELP = "\n\n".join([
    "Train a method on a dataset. Writes checkpoints (safetensors), TensorBoard summaries (RUN/tb) and the "
    "resolved config.",
    "CONFIG is a YAML file or the name of a shipped config (`varinv configs` lists them, e.g. "
    "`varinv train phonenums_v3_small --run R`); a path that exists always wins over a name.",
    "Without a config, `varinv train --data DS --run R [--method v3] [--k K] [--steps N] [--batch-size B]` "
    "starts from the method's shipped generic config (v3, tsdsae, supervised; other methods: their "
    "defaults) with data.path = DS, the backbone derived from the fragment shape and K (model.n_atoms, or "
    "data.n_clusters for methods without a codebook) = the dataset's number of content names; the "
    "supervised method takes its class counts from the manifest. With a config, --data, --k, --steps and "
    "--batch-size replace the config's values. --set applies last.",
    "Progress: a progress bar in a terminal; otherwise (nohup, a batch scheduler, a pipe) a plain line on "
    "stdout every train.log_every steps (step, loss terms, steps/s, ETA). --no-progress silences both.",
])


@app.command(help=_TRAIN_HELP)
def train(
    config: Annotated[
        Optional[str],
        typer.Argument(metavar="CONFIG", show_default=False,
                       help="YAML config file or shipped config name (`varinv configs`); optional with --data."),
    ] = None,
    run: Annotated[str, typer.Option(help="Run folder for checkpoints, logs and results.")] = ...,
    data: Annotated[
        Optional[Path], typer.Option(help="Dataset folder: replaces data.path, or, without a config, trains the "
                                          "method's generic config on it.", show_default=False)
    ] = None,
    method: Annotated[
        Optional[str], typer.Option(help="Without a config: the method (default v3).", show_default=False)
    ] = None,
    k: Annotated[
        Optional[int], typer.Option("--k", help="Codebook size model.n_atoms (data.n_clusters for methods without "
                                                "a codebook); default without a config: the dataset's number of "
                                                "content names.", show_default=False)
    ] = None,
    steps: Annotated[Optional[int], typer.Option(help="train.steps.", show_default=False)] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="train.batch_size.", show_default=False)] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the run folder's last checkpoint.")] = False,
    set_: Annotated[
        Optional[list[str]], typer.Option("--set", help="Override a config value: section.key=value (repeatable).")
    ] = None,
    progress: Annotated[
        bool, typer.Option(help="Show progress (a bar in a terminal, plain lines otherwise).")
    ] = True,
):
    """Train a method on a dataset (help: _TRAIN_HELP)."""
    from varinv import config as config_mod
    from varinv.train.trainer import train as run_train

    if not run.strip():
        raise ConfigError("--run is empty; give the run folder to write, e.g. --run runs/v3")
    run = Path(run)
    cfg = config_mod.compose(config, data, method=method, k=k, steps=steps, batch_size=batch_size,
                             overrides=set_)
    state = run_train(cfg, run, resume=resume, progress="auto" if progress else False)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one line rather than one per process
        typer.echo(f"trained {cfg.method} to step {state['step']} in {state['train_seconds']:.0f} s; run folder {run}")


@app.command("configs")
def list_configs():
    """List the shipped configs: name, method, dataset path and description.

    The configs live in the package (src/varinv/configs, also ./configs in a checkout); the description
    is the config's first comment line. Train one with `varinv train NAME --run RUN`."""
    import shutil

    from varinv import config as config_mod

    rows = [config_mod.describe(p) for p in config_mod.shipped().values()]
    head = {"name": "NAME", "method": "METHOD", "data": "DATA", "description": "DESCRIPTION"}
    widths = {key: max(len(r[key]) for r in [head, *rows]) for key in ("name", "method", "data")}
    width = shutil.get_terminal_size((10_000, 24)).columns if sys.stdout.isatty() else 10_000
    for r in [head, *rows]:
        line = "  ".join(r[key].ljust(widths[key]) for key in ("name", "method", "data")) + "  " + r["description"]
        if len(line) > width:
            line = line[:max(0, width - 1)] + "…"
        typer.echo(line.rstrip())
    typer.echo(f"{len(rows)} configs in {config_mod.SHIPPED_DIR}")


_COPY_TO_HELP = ("RUN = pretrained:NAME only: the writable run folder the packaged model is copied into and the "
                 "results written to (default runs/pretrained/NAME; an earlier copy of the same model is reused).")


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="A run folder made by `varinv train`, or pretrained:NAME (copied, "
                                             "see --copy-to).")],
    what: Annotated[
        Optional[str],
        typer.Option(help="Comma-separated parts: core, ood, probes, mi, swap, judged, eer (default: core)."),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Run every part.")] = False,
    n_eval: Annotated[
        Optional[int], typer.Option(help="Fragments for retrieval and for the evaluation subset (default data.n_eval).")
    ] = None,
    split: Annotated[Optional[str], typer.Option(help="Split to evaluate on (default: test).")] = None,
    max_fragments: Annotated[
        Optional[int], typer.Option(help="Cap the fragments the core part embeds (default: the whole split).")
    ] = None,
    draws: Annotated[int, typer.Option(help="Few-shot draws per shot count (mean ± std over them).")] = 5,
    shots: Annotated[str, typer.Option(help="Few-shot sizes, comma-separated.")] = "1,5,10",
    classifier_steps: Annotated[
        int, typer.Option(help="Training steps of the judge / supervised classifier (cached in RUN/eval_cache).")
    ] = 300,
    threads: Annotated[int, typer.Option(help="Torch threads (0 = torch default).")] = 0,
    tsne: Annotated[bool, typer.Option(help="Also make the 3-D t-SNE views (core part).")] = True,
    data: Annotated[
        Optional[Path], typer.Option(help="The run's dataset, when it is no longer at the config's data.path.")
    ] = None,
    copy_to: Annotated[Optional[Path], typer.Option("--copy-to", help=_COPY_TO_HELP, show_default=False)] = None,
):
    """Evaluate a run into RUN/metrics.json and RUN/plots/.

    core: PR-AUC of the four (embedding, label) pairs, codebook purity, one-to-one accuracy, atom usage,
    reconstruction MSE, confusion matrix and t-SNE plots. ood: zero-shot and 1/5/10-shot OOD accuracy with a
    supervised counterpart. probes: linear/MLP probes. mi: MI matrix, MIG, DCI, SAP. swap: TS-DSAE swap F1s.
    judged: DSAE-style judged generation. eer: equal error rates.

    RUN may be pretrained:NAME (a model shipped in the package, `varinv pretrained`): it is copied to a
    writable run folder first (--copy-to, default runs/pretrained/NAME) and the results go there."""
    from varinv.errors import ConfigError
    from varinv.eval.evaluate import EvalOptions, parse_parts
    from varinv.eval.evaluate import evaluate as run_eval
    from varinv.eval.parts import headline_rows, metric_value

    parts = parse_parts(what, all_)
    try:
        shot_list = tuple(int(s) for s in shots.split(",") if s.strip())
    except ValueError:
        raise ConfigError(f"--shots must be comma-separated integers, got {shots!r}") from None
    if draws < 1 or classifier_steps < 0:
        raise ConfigError("--draws must be >= 1 and --classifier-steps >= 0")
    if n_eval is not None and n_eval < 1:
        raise ConfigError(f"--n-eval must be >= 1 fragments, got {n_eval}; leave it out for the run's data.n_eval")
    if max_fragments is not None and max_fragments < 1:
        raise ConfigError(f"--max-fragments must be >= 1, got {max_fragments}; leave it out for the whole split")
    if threads < 0:
        raise ConfigError(f"--threads must be >= 0 (0 = torch default), got {threads}")
    if not shot_list or min(shot_list) < 1:
        raise ConfigError(f"--shots must be positive integers, e.g. 1,5,10, got {shots!r}")
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
    run = _writable_run(run, copy_to, data, "evaluate")
    opts = EvalOptions(max_fragments=max_fragments, draws=draws, shots=shot_list, classifier_steps=classifier_steps,
                       data=data)
    with RunLock.acquire(run, "evaluate", create=False):
        _check_eval_data(run, data, split)
        m = run_eval(run, n_eval=n_eval, split=split, tsne=tsne, what=parts, options=opts,
                     progress=lambda p: typer.echo(f"evaluate: {p}", err=True))
    summary = {}
    missing = object()  # a present null (a NaN metric) is still shown
    for row in headline_rows(parts):  # the headline metrics of the parts that ran, in registry order
        value = metric_value(m, row.key, missing)
        if value is not missing:
            summary[row.key] = value
    for p in parts:
        if p != "core" and p in m:
            summary[p] = _brief(p, m[p])
    summary["eval_seconds_by_part"] = m.get("eval_seconds_by_part")
    typer.echo(json.dumps(summary, indent=1))
    typer.echo(f"wrote {run / METRICS_FILE} and {run / PLOTS_DIR}")
    if m.get("errors"):
        typer.echo("error: evaluation part(s) failed: " + "; ".join(f"{k}: {v}" for k, v in m["errors"].items()),
                   err=True)
        sys.exit(1)


def _writable_run(run: Path, copy_to: Optional[Path], data: Optional[Path], command: str) -> Path:
    """RUN itself, or for pretrained:NAME a writable copy of it (the installed package is never written)."""
    from varinv import pretrained

    if not pretrained.is_ref(run):
        if copy_to is not None:
            raise ConfigError(f"--copy-to applies when RUN is pretrained:NAME; {run} is a run folder, written in "
                              "place: leave out --copy-to")
        return run
    earlier = Path(copy_to) if copy_to is not None else pretrained.DEFAULT_COPY_DIR / pretrained.name_of(run)
    # An earlier copy may be in use: refuse before copy_run rewrites its config.yaml. (The lock cannot be
    # held across copy_run, which may replace the whole folder; the caller locks the result.)
    RunLock.acquire(earlier, command, create=False).release()
    dest = pretrained.copy_run(run, copy_to, data=data)
    typer.echo(f"{run}: working on a copy in {dest} (the installed package is never written)", err=True)
    return dest


def _check_eval_data(run: Path, data: Optional[Path], split: Optional[str]) -> None:
    """Before `evaluate` writes anything: the split exists and the dataset matches its checksums."""
    from varinv import config as config_mod
    from varinv.data.store import open_dataset

    if not (run / CONFIG_FILE).is_file():
        return  # evaluate itself says what is wrong with the run folder
    where = Path(data) if data is not None else Path(config_mod.load(run / CONFIG_FILE).data.path)
    if not (where / "manifest.json").is_file():
        return  # evaluate itself says where the dataset should be
    ds = open_dataset(where)
    if split is not None and split not in ds.splits:
        ds.split(split)  # raises, naming the splits there are
    ds.verify_cached()


def _brief(part: str, res: dict) -> dict:
    """A few headline numbers of one evaluation part for the terminal (metrics.json has everything)."""
    if part == "ood":
        out = {"zero_shot": (res.get("zero_shot") or {}).get("accuracy")}
        for k, v in (res.get("few_shot") or {}).items():
            if isinstance(v, dict) and "unsupervised" in v:
                out[f"{k}shot"] = {t: (f"{v[t]['mean']:.3f} ± {v[t]['std']:.3f}" if v[t]["mean"] is not None else None)
                                   for t in ("unsupervised", "supervised")}
        if "note" in res:
            out["note"] = res["note"]
        return out
    if part == "probes":
        return {lat: {f: d for f, d in v.items()} for lat, v in res.items() if lat in ("z_c", "z_s", "both")}
    if part == "mi":
        return {"mig": res["mig"]["score"], "dci": res["dci"], "sap": res["sap"]["score"]}
    if part == "swap":
        return {k: res[k] for k in ("pre_swap", "style_swap", "content_swap")}
    if part == "judged":
        return {k: res[k] for k in ("fixed_content", "fixed_style")}
    return res


@app.command()
def recombine(
    run: Annotated[Path, typer.Argument(help="A run folder made by `varinv train`, or pretrained:NAME (copied, "
                                             "see --copy-to).")],
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default RUN/recombine).")] = None,
    data: Annotated[
        Optional[Path], typer.Option(help="The run's dataset, when it is no longer at the config's data.path.")
    ] = None,
    copy_to: Annotated[Optional[Path], typer.Option("--copy-to", help=_COPY_TO_HELP, show_default=False)] = None,
):
    """Recombine content and style: "fix an atom, traverse all styles" and "fix a style, traverse all atoms"
    grids (PNG) from the codebook atoms and the mean style vector of each style class; for audio datasets
    also WAVs (Griffin-Lim) of every strip and cell. RUN may be pretrained:NAME: it is copied to a writable
    run folder first (--copy-to, default runs/pretrained/NAME), whose recombine/ is the default output."""
    from varinv.eval.recombine import recombine as run_recombine

    run = _writable_run(run, copy_to, data, "recombine")
    with RunLock.acquire(run, "recombine", create=False):
        res = run_recombine(run, out, data=data)
    typer.echo(f"wrote {res['files']['grid']} and {len(res['files']['atoms']) + len(res['files']['styles'])} strips")
    if "audio" in res["files"]:
        audio = res["files"]["audio"]
        typer.echo(f"wrote {len(audio['atoms']) + len(audio['styles'])} WAV strips and "
                   f"{sum(map(len, audio['cells']))} cell WAVs (index {audio['index']})")


def _output_path(out: Path, allowed: tuple[str, ...], overwrite: bool) -> Path:
    """Checked before the model loads, so a wrong --out costs nothing and replaces nothing."""
    suffix = out.suffix.lower()
    if suffix not in allowed:
        raise ConfigError(f"output {out} must end in {' or '.join(allowed)} (got {suffix or 'no extension'!r})")
    if out.is_dir():
        raise ConfigError(f"output {out} is a folder; give a file name ending in {' or '.join(allowed)}")
    if out.exists() and not overwrite:
        raise ConfigError(f"output {out} already exists; pass --overwrite to replace it or choose another --out")
    return out


_OVERWRITE_HELP = "Replace OUT if it exists (without it, an existing OUT is an error)."


@app.command()
def encode(
    run: Annotated[Path, typer.Argument(help="A run folder made by `varinv train`, or pretrained:NAME (a model "
                                             "shipped in the package, `varinv pretrained`).")],
    input: Annotated[Path, typer.Argument(
        help="A dataset folder (varinv store format, with manifest.json), or raw files imported on the fly with "
             "the run's own settings: an image or audio file, or a folder of them (images: one image per sample, "
             "cut into the run's L tiles, or one sub-folder of fragment images per sample; audio: every "
             "wav/flac/ogg, cut as the run's dataset was).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file: .csv (one row per fragment) or .npz.")],
    split: Annotated[Optional[str], typer.Option(help="Encode this split only (default: all splits).")] = None,
    batch_size: Annotated[int, typer.Option(help="Samples per forward pass.")] = 64,
    threads: Annotated[int, typer.Option(help="Torch threads (0 = torch default).")] = 0,
    data: Annotated[
        Optional[Path], typer.Option(help="Old run folders without model.json only: the run's training dataset.")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help=_OVERWRITE_HELP)] = False,
):
    """Encode every fragment of a dataset or of raw files: atom index, z_c and z_s (and the labels, where known).

    Columns (CSV; the .npz holds arrays of the same names, zc and zs as (N, d) matrices): sample
    (SPLIT:ROW), split, row, position, atom (-1 for methods without a codebook), zc_0.., zs_0.., and,
    when the dataset has labels, content, content_name, style, style_name (-1 / empty where unknown).
    Raw INPUT (no manifest.json) is read with the run's settings (fragment size and channels, L, audio
    features and cutting; nothing is written but OUT) and gives the columns sample (the file's stem or
    sub-folder's name), row (sample index), fragment (index in its file or folder), position, atom,
    zc_.., zs_.. (no split, no labels). The model runs on the CPU and needs no other dataset than INPUT."""
    import numpy as np

    from varinv.api import Model, encode_dataset, encode_raw, is_dataset, write_codes_csv
    from varinv.data.store import open_dataset

    out = _output_path(out, (".csv", ".npz"), overwrite)
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    if threads < 0:
        raise ConfigError(f"--threads must be >= 0 (0 = torch default), got {threads}")
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
    model = Model.load(run, data=data, command="encode")
    if is_dataset(input):
        ds = open_dataset(input)
        splits = [split] if split else ds.splits
        if split:
            ds.split(split)  # names the splits there are when it is not one of them
        arrays = encode_dataset(model, ds, splits, batch_size=batch_size)
        what, n_samples = ", ".join(splits), len(set(arrays["sample"].tolist()))
    else:
        if split:
            raise ConfigError(f"--split applies to dataset folders; {input} is raw files (no manifest.json): "
                              "leave out --split")
        arrays, imported = encode_raw(model, input, batch_size=batch_size)
        what, n_samples = f"raw {imported.kind}s from {input}", len(imported.rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".npz":
        np.savez(out, **arrays)
    else:
        write_codes_csv(out, arrays)
    n = len(arrays["atom"])
    typer.echo(f"wrote {out}: {n} fragments of {n_samples} samples "
               f"({what}), z_c {arrays['zc'].shape[1]}-d, z_s {arrays['zs'].shape[1]}-d")


@app.command()
def transfer(
    run: Annotated[Path, typer.Argument(help="A run folder made by `varinv train`, or pretrained:NAME (a model "
                                             "shipped in the package, `varinv pretrained`).")],
    content: Annotated[str, typer.Option(help="The sample whose content (atoms) to keep: SPLIT:INDEX of the "
                                              "dataset, or a raw file or folder (as described above).")],
    style: Annotated[str, typer.Option(help="The sample whose mean style to use: SPLIT:INDEX, or a raw file "
                                            "or folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output: .png (fragments side by side) or .wav (audio).")],
    data: Annotated[
        Optional[Path], typer.Option(help="Dataset holding the SPLIT:INDEX samples (default: the run's training "
                                          "dataset).")
    ] = None,
    upscale: Annotated[int, typer.Option(help="PNG: enlarge by this integer factor.")] = 1,
    griffin_lim_iters: Annotated[int, typer.Option(help="WAV: Griffin-Lim iterations.")] = 48,
    threads: Annotated[int, typer.Option(help="Torch threads (0 = torch default).")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help=_OVERWRITE_HELP)] = False,
):
    """Decode the content of one sample in the mean style of another.

    The content sample's atoms, fragment by fragment, are decoded with the mean style vector of the
    style sample. --content and --style each name a dataset sample (SPLIT:INDEX, from --data or the
    run's training dataset) or raw input read with the run's settings, one sample each: an image file
    (cut into the run's L tiles along its width), a folder of images (one image per fragment, in
    natural name order), an audio file (all its fragments) or a folder of audio files (their
    fragments, in order). PNG: the decoded fragments side by side (images as decoded; spectrograms
    coloured by log-magnitude). WAV (spectrogram runs only): each fragment by Griffin-Lim with the
    run's feature parameters, joined with short gaps."""
    from varinv.api import Model, parse_sample_ref, read_raw, write_fragments_png, write_fragments_wav
    from varinv.data.store import open_dataset
    from varinv.errors import DataError

    out = _output_path(out, (".png", ".wav"), overwrite)
    if upscale < 1 or griffin_lim_iters < 1:
        raise ConfigError("--upscale and --griffin-lim-iters must be >= 1")
    if threads < 0:
        raise ConfigError(f"--threads must be >= 0 (0 = torch default), got {threads}")
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
    model = Model.load(run, data=data, command="transfer")
    wav = out.suffix.lower() == ".wav"
    if wav and model.kind != "spectrogram":
        raise ConfigError(f"run {run} was trained on {model.kind} data, which has no audio; write a .png instead")
    refs = {"--content": content, "--style": style}
    raw = {opt: Path(ref).exists() for opt, ref in refs.items()}
    ds = None
    if not all(raw.values()):
        for opt, ref in refs.items():
            if not raw[opt] and ":" not in ref:
                raise ConfigError(f"{opt} {ref!r} is neither an existing file or folder nor a dataset sample "
                                  "SPLIT:INDEX (e.g. test:0); check the path")
        where = data if data is not None else Path(model.cfg.data.path)
        if not (Path(where) / "manifest.json").is_file():
            if data is not None:
                raise DataError(f"no dataset at {data} (manifest.json missing); check the path given with --data")
            raise DataError(f"the SPLIT:INDEX samples come from a dataset, and the run's training dataset is no "
                            f"longer at {where} (manifest.json missing); pass one with --data DS")
        ds = open_dataset(where)
        if tuple(ds.fragment_shape) != model.fragment_shape:
            raise DataError(f"dataset {ds.root} has fragments of shape {tuple(ds.fragment_shape)} but run {run} "
                            f"takes {model.fragment_shape}")
    samples, names = [], []
    for opt, ref in refs.items():
        if raw[opt]:
            samples.append(read_raw(model, ref, one_sample=True).x[0])
            names.append(ref)
        else:
            sp, i = parse_sample_ref(ref, ds, opt)
            samples.append(ds.split(sp).x[i])
            names.append(f"{sp}:{i}")
    y = model.transfer(*samples)
    out.parent.mkdir(parents=True, exist_ok=True)
    if wav:
        write_fragments_wav(out, y, model.params, n_iter=griffin_lim_iters, seed=int(model.cfg.train.seed))
    else:
        write_fragments_png(out, y, model.kind, upscale)
    typer.echo(f"wrote {out}: the content of {names[0]} in the style of {names[1]} ({y.shape[0]} fragments)")


# Commands living beside their subsystem: each module defines register(app).
_EXTENSIONS: list[str] = ["varinv.report.cli", "varinv.bench", "varinv.demo"]


def _register_extensions() -> None:
    import importlib

    for name in _EXTENSIONS:
        importlib.import_module(name).register(app)


_register_extensions()


def _usage_error_type() -> type:
    """click's UsageError (unknown option or command, missing argument, bad value): newer typer vendors
    click, older typer uses it directly; typer's public BadParameter derives from it either way."""
    return next(c for c in type.mro(typer.BadParameter) if c.__name__ == "UsageError")


def _usage_line(e: Exception, commands) -> str:
    """A click usage error as the one `error:` line every other mistake gets, pointing at the help of the
    command it concerns (click's own message spans a usage line and a boxed panel). Some errors (an option
    missing its value) come without a context: the command is then the first argument naming one."""
    ctx = getattr(e, "ctx", None)
    if ctx is not None:
        where = ctx.command_path
    else:
        named = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
        where = f"varinv {named}" if named in commands else "varinv"
    msg = " ".join(e.format_message().split()).rstrip(".")
    return f"error: {msg[:1].lower()}{msg[1:]}; see `{where} --help`"


def main() -> None:
    usage_error = _usage_error_type()
    group = typer.main.get_command(app)
    try:
        # standalone_mode=False: click raises its usage errors instead of printing them (caught below) and
        # returns the exit code of --help, --version and typer.Exit instead of exiting.
        code = group.main(prog_name="varinv", standalone_mode=False)
    except usage_error as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `varinv`: the help, as before
            text = e.ctx.get_help()  # typer's rich help prints itself and returns ""
            if text:
                typer.echo(text)
            sys.exit(e.exit_code)
        typer.echo(_usage_line(e, getattr(group, "commands", {})), err=True)
        sys.exit(2)
    except typer.Abort:  # what standalone mode printed for it
        typer.echo("Aborted!", err=True)
        sys.exit(1)
    except VarinvError as e:
        if _state["debug"]:
            raise
        typer.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted; the last checkpoint is kept (resume with --resume)", err=True)
        sys.exit(130)
    if isinstance(code, int) and code != 0:
        sys.exit(code)


if __name__ == "__main__":
    main()
