"""`varinv data`: generate a benchmark dataset or import a folder of images or audio (registered into the
main CLI by :mod:`varinv.cli`); the importing itself is :mod:`varinv.data.folders`."""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from varinv.errors import ConfigError


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


def register(app: typer.Typer) -> None:
    app.command(help=_DATA_HELP)(data)
