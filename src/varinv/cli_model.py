"""`varinv encode` and `varinv transfer`: a trained model applied to a dataset or to raw files (registered
into the main CLI by :mod:`varinv.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from varinv.errors import ConfigError


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

    from varinv.api import Model, encode_dataset, encode_raw, is_dataset
    from varinv.data.store import open_dataset
    from varinv.writers import write_codes_csv

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
    from varinv.api import Model, parse_sample_ref, read_raw
    from varinv.data.store import open_dataset
    from varinv.errors import DataError
    from varinv.writers import write_fragments_png, write_fragments_wav

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


def register(app: typer.Typer) -> None:
    app.command()(encode)
    app.command()(transfer)
