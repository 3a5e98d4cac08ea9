"""Folder importers: your own images or audio into the varinv store format (:mod:`varinv.data.store`).

``varinv data images DIR --out DS`` and ``varinv data audio DIR --out DS`` (or :func:`import_images` /
:func:`import_audio`). Reading and cutting (:func:`read_images`, :func:`read_audio`, the labels and the
split) are pure functions that return arrays; only :func:`write` touches ``--out``, through
:func:`varinv.data.store.from_arrays` (written to a temporary sibling and renamed, so a failed import
leaves nothing behind, and an existing dataset is replaced only with ``overwrite``).

Images (png, jpg, jpeg, bmp, gif, webp; read with Pillow). The layout of DIR is detected:

(a) one image file per sample, cut into ``--tiles L`` equal tiles along its width (tile width
    ``W // L``; the last ``W % L`` columns are dropped). The sample is the file's stem.
(b) one sub-folder per sample holding one image per fragment, taken in natural name order
    (``frag2`` before ``frag10``). The sample is the sub-folder's name.

A DIR holding both image files and sub-folders of images is an error; hidden entries (``.name``) and
files with other extensions are ignored. ``--size HxW`` resizes every fragment (bilinear, antialiased
when shrinking); without it all fragments must have one size. ``--channels rgb|grey`` (default: rgb if
any image has colour, else grey; grey is ITU-R 601 luma). Transparent pixels are composited on white;
a GIF/WebP animation contributes its first frame. Stored as uint8 (N, L, C, H, W).
In layout (b) every sample needs the same fragment count: without ``--length`` that is the most common
count, and samples with more or fewer fragments are errors; ``--length L`` cuts every sample into
consecutive windows of L fragments (leftover fragments dropped; fewer than L is an error).

Audio (wav, flac, ogg, searched recursively; read with soundfile, channels averaged to mono, resampled to
16 kHz with ``scipy.signal.resample_poly``; no loudness normalisation). Each file is cut into fragments:
fixed windows of ``--window`` seconds (default 1.0), or with ``--onsets`` one fragment per detected onset
(:func:`detect_onsets`), the audio from the onset on, cut or padded with silence to ``--window``.
Features are InsNotes': :func:`varinv.audio.features.log_stft` of each fragment on its own (zero padding
at its edges) and the low ``--bins`` bins (default 128), so a window of W seconds gives
``1 + round(W * 16000) // 512`` frames (32 for 1 s). A sample is ``--length L`` (default 8) consecutive
fragments of one file: a file gives ``floor(fragments / L)`` samples. Stored as float16
(N, L, 1, bins, frames), kind "spectrogram"; the feature settings go to the manifest's ``params``
(:meth:`AudioSettings.from_params` reads them back to import new audio the same way).
The sample name is the file's stem.

Sample names must be unique: where two image files (layout a) share a stem their names are the file
names; where two audio files share a stem their names are their paths under DIR without the suffix.

Labels (``--labels labels.csv``, optional): a CSV with the columns ``sample,fragment,content,style``
(further columns are ignored; any value but ``sample`` may be empty = unknown, stored as -1).
``fragment`` is the 0-based fragment index within the sample (the image, folder or audio file) or, in
layout (b), a fragment file's name; an empty ``fragment`` gives the row's content and/or style to all of
the sample's fragments (a fragment row overrides it). Content and style are free-text class names,
numbered in sorted order; the names go to the manifest's ``content_names`` / ``style_names`` verbatim.
A row naming a sample that is not in DIR is an error (one skipped with ``--skip-bad`` is ignored).

Splits are by sample, seeded: ``round(val * N)`` samples to ``val`` and ``round(test * N)`` to ``test``
(a split that would get none is left out), the rest to ``train``, which needs at least 2.

Raw input of a trained run (``varinv encode RUN INPUT``, ``varinv transfer RUN --content A``;
:func:`varinv.api.read_raw`) goes through the same readers with the run's settings: ``for_run`` names
the run (messages then speak of the run's settings instead of ``varinv data`` options, and a single file
is accepted as INPUT: layout (a) with one image, or one audio file), ``one_sample`` reads a folder as
one sample whose images (or audio files, in order) are its fragments. Nothing is written.

Bad input raises :class:`~varinv.errors.DataError` / :class:`~varinv.errors.ConfigError` naming the
file or value and the fix (the CLI prints one ``error:`` line, exit code 2). With ``skip_bad`` every bad
file (unreadable, too short, of another size, too few fragments) is left out instead and reported in
:attr:`Imported.skipped` (in layout (b) a bad fragment file drops its whole sample).

Code: this module holds labels, splits and writing and re-exports the readers, which live in
:mod:`varinv.data.folder_images` and :mod:`varinv.data.folder_audio` (their shared helpers in
:mod:`varinv.data.folder_common`).
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from varinv.data.folder_audio import (
    AUDIO_EXTS, DEFAULT_AUDIO_LENGTH, DEFAULT_BINS, DEFAULT_MIN_GAP, DEFAULT_ONSET_THRESHOLD, DEFAULT_WINDOW,
    ENDING_GATE_DB, ONSET_RANGE_DB, AudioSettings, audio_fragments, cut_at, cut_windows, detect_onsets,
    fragment_features, load_audio, onset_envelope, read_audio, resample)
from varinv.data.folder_common import BadFile, Imported, Unit, natural_key, parse_size, skipped_summary
from varinv.data.folder_images import CHANNELS, IMAGE_EXTS, image_layout, load_image, read_images
from varinv.data.store import Dataset, from_arrays
from varinv.errors import ConfigError, DataError

__all__ = [  # the importers' names, the readers' included
    "AUDIO_EXTS", "CHANNELS", "DEFAULT_AUDIO_LENGTH", "DEFAULT_BINS", "DEFAULT_MIN_GAP", "DEFAULT_ONSET_THRESHOLD",
    "DEFAULT_TEST", "DEFAULT_VAL", "DEFAULT_WINDOW", "ENDING_GATE_DB", "IMAGE_EXTS", "LABEL_COLUMNS",
    "ONSET_RANGE_DB", "AudioSettings", "BadFile", "Imported", "LabelRow", "Unit", "audio_fragments", "check_out",
    "check_split_options", "cut_at", "cut_windows", "detect_onsets", "fragment_features", "image_layout",
    "import_audio", "import_images", "label_arrays", "load_audio", "load_image", "natural_key", "onset_envelope",
    "parse_size", "read_audio", "read_images", "read_labels", "resample", "skipped_summary", "split_indices", "write",
]

LABEL_COLUMNS = ("sample", "fragment", "content", "style")
DEFAULT_VAL = 0.1
DEFAULT_TEST = 0.1


# -- labels --------------------------------------------------------------------------------------
@dataclass
class LabelRow:
    line: int
    sample: str
    fragment: str
    content: str
    style: str


def read_labels(path: str | Path) -> list[LabelRow]:
    """Rows of a labels CSV (header ``sample,fragment,content,style``; values stripped of spaces)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"labels file {path} does not exist; pass a CSV with the columns {','.join(LABEL_COLUMNS)}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in LABEL_COLUMNS if c not in header]
            if missing:
                raise ConfigError(
                    f"labels file {path} lacks the column(s) {', '.join(missing)}; its first line must be "
                    f"the header {','.join(LABEL_COLUMNS)} (values may be empty)"
                )
            reader.fieldnames = header
            rows = []
            for rec in reader:
                vals = {c: (rec.get(c) or "").strip() for c in LABEL_COLUMNS}
                rows.append(LabelRow(line=reader.line_num, **vals))
    except UnicodeDecodeError as e:
        raise ConfigError(f"labels file {path} is not UTF-8 text ({e}); save it as UTF-8 CSV") from None
    except csv.Error as e:
        raise ConfigError(f"labels file {path} is not valid CSV ({e}); fix the file") from None
    return rows


def label_arrays(rows: list[LabelRow], data: Imported, path: str | Path = "labels.csv"):
    """``(content (N, L), style (N,) or (N, L), content_names, style_names)`` of ``data`` from label rows.

    Names are numbered in sorted order; unknown labels are -1; style is per sample (N,) when every
    sample's fragments share one style value, else (N, L).
    """
    content_names = sorted({r.content for r in rows if r.content})
    style_names = sorted({r.style for r in rows if r.style})
    cid = {n: i for i, n in enumerate(content_names)}
    sid = {n: i for i, n in enumerate(style_names)}
    per_sample: dict[str, dict[str, tuple[int, int]]] = {}  # name -> key -> (id, line)
    per_frag: dict[tuple[str, int], dict[str, tuple[int, int]]] = {}
    for r in rows:
        where = f"labels file {path} line {r.line}"
        if not r.sample:
            raise DataError(f"{where}: the sample column is empty; name a sample (an image or audio file's stem "
                            "or a sample sub-folder)")
        if r.sample not in data.found:
            raise DataError(f"{where}: sample {r.sample!r} does not exist in the source folder; fix the name "
                            "(a file's stem or a sub-folder's name) or delete the row")
        unit = data.units.get(r.sample)
        if unit is None:  # skipped as bad
            continue
        if not r.fragment:
            slot = per_sample.setdefault(r.sample, {})
        else:
            names = [f.name for f in unit.frag_files] if unit.frag_files else []
            if r.fragment in names:
                k = names.index(r.fragment)
            elif re.fullmatch(r"\d+", r.fragment):
                k = int(r.fragment)
                if k >= unit.n:
                    raise DataError(f"{where}: fragment {k} is out of range: sample {r.sample!r} has {unit.n} "
                                    f"fragments (0..{unit.n - 1}); fix the index")
            else:
                raise DataError(f"{where}: fragment {r.fragment!r} is neither a 0-based index nor a fragment file "
                                f"of sample {r.sample!r}; fix the fragment column")
            slot = per_frag.setdefault((r.sample, k), {})
        for key, value, ids in (("content", r.content, cid), ("style", r.style, sid)):
            if not value:
                continue
            old = slot.get(key)
            if old is not None and old[0] != ids[value]:
                raise DataError(f"{where}: {key} {value!r} contradicts line {old[1]} for the same sample and "
                                "fragment; keep one of the rows")
            slot[key] = (ids[value], r.line)

    n, length = data.x.shape[:2]
    content = np.full((n, length), -1, np.int64)
    style = np.full((n, length), -1, np.int64)
    for i, (name, start) in enumerate(data.rows):
        base = per_sample.get(name, {})
        for j in range(length):
            frag = per_frag.get((name, start + j), {})
            for key, arr in (("content", content), ("style", style)):
                hit = frag.get(key) or base.get(key)
                if hit is not None:
                    arr[i, j] = hit[0]
    if n and (style == style[:, :1]).all():
        style = style[:, 0].copy()
    return content, style, content_names, style_names


# -- splits and writing --------------------------------------------------------------------------
def check_split_options(val: float, test: float) -> None:
    for opt, v in (("--val", val), ("--test", test)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and 0 <= v < 1):
            raise ConfigError(f"{opt} {v!r} is invalid: give the share of samples in [0, 1), e.g. {opt} 0.1")
    if val + test >= 1:
        raise ConfigError(f"--val {val} + --test {test} leave no training samples; make their sum < 1")


def split_indices(n: int, val: float = DEFAULT_VAL, test: float = DEFAULT_TEST, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded split of ``n`` samples: ``{"train": idx, "val": idx, "test": idx}`` (empty splits left out)."""
    check_split_options(val, test)
    n_val = int(math.floor(val * n + 0.5))
    n_test = int(math.floor(test * n + 0.5))
    n_train = n - n_val - n_test
    if n_train < 2:
        raise DataError(f"only {n} sample(s): the train split would get {n_train} but needs at least 2; "
                        "add data or lower --val / --test")
    perm = np.random.default_rng(int(seed)).permutation(n)
    parts = {"train": perm[n_test + n_val :], "val": perm[n_test : n_test + n_val], "test": perm[:n_test]}
    return {k: np.sort(v) for k, v in parts.items() if v.size}


def check_out(out: str | Path, overwrite: bool, src: str | Path | None = None) -> Path:
    """``--out`` may be written: it does not exist (or ``overwrite``) and it does not hold the source folder."""
    out = Path(out)
    if src is not None:
        o, s = out.resolve(), Path(src).resolve()
        if o == s or o in s.parents:
            raise ConfigError(f"--out {out} is (or holds) the source folder {src}; choose another --out")
    if out.exists() and not overwrite:
        raise DataError(f"{out} already exists; pass --overwrite to replace it or choose another --out")
    return out


def write(out: str | Path, data: Imported, *, labels: str | Path | None = None, val: float = DEFAULT_VAL,
          test: float = DEFAULT_TEST, seed: int = 0, overwrite: bool = False, generator: str = "folder") -> Dataset:
    """Label, split and write ``data`` with :func:`~varinv.data.store.from_arrays`."""
    parts = split_indices(len(data.x), val, test, seed)
    content = style = None
    content_names: list[str] = []
    style_names: list[str] = []
    if labels is not None:
        content, style, content_names, style_names = label_arrays(read_labels(labels), data, labels)
    splits = {k: (data.x[idx], None if content is None else content[idx], None if style is None else style[idx])
              for k, idx in parts.items()}
    params = {**data.params, "labels": None if labels is None else str(Path(labels).resolve()),
              "val": val, "test": test,
              "skipped": [f"{p}: {r}" for p, r in data.skipped],
              "samples": {k: [data.rows[i][0] for i in idx] for k, idx in parts.items()}}
    if any(start for _, start in data.rows):  # windows: where each sample starts within its source
        params["first_fragment"] = {k: [data.rows[i][1] for i in idx] for k, idx in parts.items()}
    return from_arrays(out, splits, kind=data.kind, content_names=content_names or None,
                       style_names=style_names or None, generator=generator, seed=int(seed), params=params,
                       overwrite=overwrite)


def import_images(src: str | Path, out: str | Path, *, tiles: int | None = None, size=None,
                  channels: str | None = None, length: int | None = None, labels: str | Path | None = None,
                  val: float = DEFAULT_VAL, test: float = DEFAULT_TEST, seed: int = 0, skip_bad: bool = False,
                  overwrite: bool = False) -> tuple[Dataset, Imported]:
    """``varinv data images``: read ``src`` (module doc), write the dataset to ``out``."""
    out = check_out(out, overwrite, src)
    check_split_options(val, test)  # option errors before any reading
    if labels is not None:
        read_labels(labels)
    data = read_images(src, tiles=tiles, size=size, channels=channels, length=length, skip_bad=skip_bad,
                       exclude=[out])
    return write(out, data, labels=labels, val=val, test=test, seed=seed, overwrite=overwrite,
                 generator="images"), data


def import_audio(src: str | Path, out: str | Path, settings: AudioSettings | None = None, *,
                 labels: str | Path | None = None, val: float = DEFAULT_VAL, test: float = DEFAULT_TEST,
                 seed: int = 0, skip_bad: bool = False, overwrite: bool = False) -> tuple[Dataset, Imported]:
    """``varinv data audio``: read ``src`` (module doc), write the dataset to ``out``."""
    out = check_out(out, overwrite, src)
    check_split_options(val, test)
    if labels is not None:
        read_labels(labels)
    data = read_audio(src, settings, skip_bad=skip_bad, exclude=[out])
    return write(out, data, labels=labels, val=val, test=test, seed=seed, overwrite=overwrite,
                 generator="audio"), data
