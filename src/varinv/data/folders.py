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
"""

from __future__ import annotations

import csv
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from varinv.data.store import Dataset, from_arrays
from varinv.errors import ConfigError, DataError, DependencyError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
AUDIO_EXTS = (".wav", ".flac", ".ogg")
LABEL_COLUMNS = ("sample", "fragment", "content", "style")
CHANNELS = ("rgb", "grey")

DEFAULT_VAL = 0.1
DEFAULT_TEST = 0.1
DEFAULT_WINDOW = 1.0
DEFAULT_AUDIO_LENGTH = 8
DEFAULT_BINS = 128
DEFAULT_ONSET_THRESHOLD = 0.2
DEFAULT_MIN_GAP = 0.1
ONSET_RANGE_DB = 80.0
ENDING_GATE_DB = 6.0
_FEATURE_BATCH = 256
_SKIP_HINT = "or pass --skip-bad to skip bad files"


# -- small helpers -------------------------------------------------------------------------------
def natural_key(name: str) -> tuple:
    """Sort key for natural name order: digit runs compare as numbers (``frag2`` < ``frag10``)."""
    parts = re.split(r"(\d+)", name)
    return tuple(int(p) if i % 2 else p.lower() for i, p in enumerate(parts)), name


def _file_key(p: Path) -> tuple:
    """Natural order of file names, stem first (``notes.wav`` < ``notes2.wav`` < ``notes10.wav``)."""
    return natural_key(p.stem), natural_key(p.suffix)


def parse_size(text: str) -> tuple[int, int]:
    """``"HxW"`` → ``(H, W)``, both positive integers (``32x64``: 32 rows, 64 columns)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", str(text))
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise ConfigError(f"--size {text!r} is not HxW: give height x width in pixels, e.g. --size 32x32")
    return int(m.group(1)), int(m.group(2))


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


class BadFile(Exception):
    """One input file cannot be used; ``fix`` says what to do about it."""

    def __init__(self, path: Path | str, reason: str, fix: str = "fix or remove the file"):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason, self.fix = str(path), _one_line(reason), fix


@dataclass
class _Skips:
    skip_bad: bool
    items: list[tuple[str, str]] = field(default_factory=list)
    hint: str | None = _SKIP_HINT

    def bad(self, e: BadFile) -> None:
        if not self.skip_bad:
            raise DataError(f"{e.path}: {e.reason}; {e.fix}" + (f", {self.hint}" if self.hint else ""))
        self.items.append((e.path, e.reason))


def _skips(skip_bad: bool, for_run: str | None) -> _Skips:
    return _Skips(skip_bad, hint=_SKIP_HINT if for_run is None else None)


def _say(for_run: str | None, data_text: str, run_text: str) -> str:
    """The wording for `varinv data` (options) or for a run's raw input (the run's settings)."""
    return data_text if for_run is None else run_text.format(run=for_run)


def skipped_summary(skipped: list[tuple[str, str]]) -> str | None:
    """``skipped 3 bad files (first: path: reason)``, or None when nothing was skipped."""
    if not skipped:
        return None
    n = len(skipped)
    path, reason = skipped[0]
    return f"skipped {n} bad file{'' if n == 1 else 's'} (first: {path}: {reason})"


@dataclass
class Unit:
    """One source of fragments (an image file, a folder of images, an audio file)."""

    name: str
    source: Path
    frags: list | np.ndarray = field(default_factory=list, repr=False)
    frag_files: list[Path] | None = None  # layout (b): the fragment files, in order

    @property
    def n(self) -> int:
        return len(self.frags)


@dataclass
class Imported:
    """What a reader returns: fragments grouped into samples, before labels and splits."""

    x: np.ndarray  # (N, L, C, H, W)
    rows: list[tuple[str, int]]  # per sample: (unit name, index of its first fragment in the unit)
    units: dict[str, Unit]  # the usable units by name (frags dropped)
    found: set[str]  # every unit name found in DIR, skipped ones included
    skipped: list[tuple[str, str]]  # (path, reason) of each skipped file
    kind: str
    params: dict

    @property
    def length(self) -> int:
        return int(self.x.shape[1])


def _check_length(value: int | None, option: str) -> int | None:
    if value is not None and (not isinstance(value, (int, np.integer)) or value < 2):
        raise ConfigError(f"{option} {value!r} is invalid: samples need at least 2 fragments, e.g. {option} 8")
    return None if value is None else int(value)


def _check_source(src: str | Path, what: str, file_ok: bool = False) -> Path:
    src = Path(src)
    if not src.exists():
        raise DataError(f"source {'' if file_ok else 'folder '}{src} does not exist; pass the "
                        f"{'file or ' if file_ok else ''}folder that holds your {what}")
    if not src.is_dir() and not (file_ok and src.is_file()):
        raise DataError(f"source {src} is not a folder; pass the folder that holds your {what}")
    return src


def _excluded(exclude) -> set[Path]:
    out = set()
    for p in exclude or ():
        p = Path(p).resolve()
        out |= {p, p.with_name(p.name + ".tmp-writing")}
    return out


def _visible(paths, exclude: set[Path]) -> list[Path]:
    return [p for p in paths if not p.name.startswith(".") and p.resolve() not in exclude]


def _unique_names(paths: list[Path], primary, fallback) -> list[str]:
    first = [primary(p) for p in paths]
    counts = Counter(first)
    return [fallback(p) if counts[n] > 1 else n for p, n in zip(paths, first)]


def _windows(units: list[Unit], length: int) -> list[tuple[Unit, int]]:
    return [(u, s) for u in units for s in range(0, u.n - length + 1, length)]


# -- images --------------------------------------------------------------------------------------
def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTS


def load_image(path: Path):
    """An image file as an RGB Pillow image (alpha composited on white, 16-bit/float scaled to 8 bits)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
                a = np.asarray(im, dtype=np.float64)
                top = 65535.0 if a.max(initial=0) > 255 else 255.0
                im = Image.fromarray(np.clip(np.rint(a * 255.0 / top), 0, 255).astype(np.uint8), "L")
            if im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
            return im.convert("RGB")
    except Exception as e:  # Pillow raises many types (OSError, SyntaxError, ValueError, DecompressionBomb…)
        raise BadFile(path, f"cannot be read as an image ({type(e).__name__}: {e})") from None


def _fragment_arrays(images, size: tuple[int, int] | None) -> list[np.ndarray]:
    from PIL import Image

    if size is not None:
        images = [im.resize((size[1], size[0]), Image.Resampling.BILINEAR) for im in images]
    return [np.asarray(im, dtype=np.uint8) for im in images]


def _load_tiled(unit: Unit, tiles: int, size, for_run: str | None = None) -> None:
    im = load_image(unit.source)
    w, h = im.size
    tw = w // tiles
    if tw < 1:
        raise BadFile(unit.source, _say(for_run, f"is {w} px wide, too narrow for --tiles {tiles}",
                                        f"is {w} px wide, too narrow for the {tiles} tiles (fragments) of run {{run}}"),
                      _say(for_run, "use fewer tiles or remove the file", "use a wider image or remove the file"))
    unit.frags = _fragment_arrays([im.crop((i * tw, 0, (i + 1) * tw, h)) for i in range(tiles)], size)


def _load_folder(unit: Unit, size) -> None:
    files = unit.frag_files or []
    if not files:
        raise BadFile(unit.source, "holds no image files (too few fragments)",
                      f"add fragment images ({', '.join(IMAGE_EXTS)}) or remove the folder")
    unit.frags = _fragment_arrays([load_image(f) for f in files], size)


def _fragment_files(d: Path, excl: set[Path] = frozenset()) -> list[Path]:
    """The fragment images of a sample folder (layout b), in natural name order."""
    return sorted((f for f in _visible(d.iterdir(), excl) if _is_image(f)), key=_file_key)


def _chw(frag: np.ndarray, channels: str) -> np.ndarray:
    """(H, W, 3) uint8 → (3, H, W), or (1, H, W) ITU-R 601 luma (Pillow's "L" formula) for grey."""
    if channels == "rgb":
        return np.ascontiguousarray(frag.transpose(2, 0, 1))
    f = frag.astype(np.uint32)
    return ((f[..., 0] * 299 + f[..., 1] * 587 + f[..., 2] * 114 + 500) // 1000).astype(np.uint8)[None]


def _has_colour(frags: list[np.ndarray]) -> bool:
    return any(not ((f[..., 0] == f[..., 1]).all() and (f[..., 1] == f[..., 2]).all()) for f in frags)


def image_layout(src: str | Path, *, one_sample: bool = False, exclude=(), for_run: str | None = None) -> str:
    """``"image-per-sample"`` (layout a; also a single image file, with ``for_run``) or
    ``"folder-per-sample"`` (layout b; also any folder with ``one_sample``); raises :class:`DataError`
    for a folder that mixes both or holds neither."""
    src = _check_source(src, "images", file_ok=for_run is not None)
    if src.is_file():
        if not _is_image(src):
            raise DataError(f"{src} is not an image file ({', '.join(e[1:] for e in IMAGE_EXTS)}); "
                            "pass an image, or a folder of them")
        return "image-per-sample"
    if one_sample:
        return "folder-per-sample"
    files, img_dirs, _ = _image_entries(src, _excluded(exclude))
    if files and img_dirs:
        raise DataError(
            f"{src} mixes image files ({files[0].name}) and sample sub-folders of images ({img_dirs[0].name}); "
            + _say(for_run, "use either one image per sample (with --tiles) or one sub-folder of fragment images "
                            "per sample",
                   "use either one image per sample or one sub-folder of fragment images per sample")
        )
    if not files and not img_dirs:
        raise DataError(
            f"{src} holds no images ({', '.join(e[1:] for e in IMAGE_EXTS)}) and no sub-folders of images; "
            + _say(for_run, "point DIR at a folder with one image per sample or one sub-folder per sample",
                   "pass a folder with one image per sample or one sub-folder of fragment images per sample")
        )
    return "image-per-sample" if files else "folder-per-sample"


def _image_entries(src: Path, excl: set[Path]) -> tuple[list[Path], list[Path], list[Path]]:
    """(image files, sub-folders holding images, all sub-folders) directly in ``src``."""
    entries = sorted(_visible(src.iterdir(), excl), key=_file_key)
    files = [p for p in entries if _is_image(p)]
    dirs = [p for p in entries if p.is_dir()]
    img_dirs = [d for d in dirs if any(_is_image(f) for f in d.iterdir() if not f.name.startswith("."))]
    return files, img_dirs, dirs


def read_images(
    src: str | Path,
    *,
    tiles: int | None = None,
    size: tuple[int, int] | str | None = None,
    channels: str | None = None,
    length: int | None = None,
    skip_bad: bool = False,
    exclude=(),
    one_sample: bool = False,
    for_run: str | None = None,
) -> Imported:
    """Read an image folder (layouts: module doc) into uint8 samples (N, L, C, H, W).

    ``size``: ``(H, W)`` or ``"HxW"``; ``channels``: ``"rgb"``, ``"grey"`` or None (auto); ``exclude``:
    paths inside ``src`` to ignore (the output folder). ``one_sample``: ``src`` is one sample's folder
    (its images are the fragments). ``for_run``: a run's raw input (module doc); ``src`` may be one image.
    """
    if isinstance(size, str):
        size = parse_size(size)
    elif size is not None:
        size = parse_size(f"{size[0]}x{size[1]}")
    if channels is not None:
        channels = {"gray": "grey", "greyscale": "grey", "grayscale": "grey"}.get(channels.lower(), channels.lower())
        if channels not in CHANNELS:
            raise ConfigError(f"--channels {channels!r} is invalid: use rgb or grey")
    tiles = _check_length(tiles, "--tiles")
    length = _check_length(length, "--length")
    src = _check_source(src, "images", file_ok=for_run is not None)
    excl = _excluded(exclude)
    layout = image_layout(src, one_sample=one_sample, exclude=exclude, for_run=for_run)
    skips = _skips(skip_bad, for_run)
    if layout == "image-per-sample":
        files = [src] if src.is_file() else _image_entries(src, excl)[0]
        if tiles is None:
            raise ConfigError(
                f"{src} holds one image per sample: pass --tiles L to cut each image into L fragments along its width"
            )
        if length is not None and length > tiles:
            raise ConfigError(f"--length {length} is longer than the {tiles} tiles of each image; "
                              "use --length <= --tiles")
        names = _unique_names(files, lambda p: p.stem, lambda p: p.name)
        units = [Unit(n, p) for n, p in zip(names, files)]
    else:
        if tiles is not None:
            raise ConfigError(
                f"--tiles applies to a folder of one image per sample; {src} holds one sub-folder per sample"
            )
        dirs = [src] if one_sample else _image_entries(src, excl)[2]
        units = [Unit(d.name, d, frag_files=_fragment_files(d, excl)) for d in dirs]
    found = {u.name for u in units}

    good: list[Unit] = []
    for u in units:
        try:
            _load_tiled(u, tiles, size, for_run) if layout == "image-per-sample" else _load_folder(u, size)
            good.append(u)
        except BadFile as e:
            skips.bad(e)

    if size is None and good:  # one common fragment size
        shapes = Counter(f.shape[:2] for u in good for f in u.frags)
        ref = max(shapes, key=lambda s: (shapes[s], s))  # the most common (ties: the larger)
        kept = []
        for u in good:
            k = next((i for i, f in enumerate(u.frags) if f.shape[:2] != ref), None)
            if k is None:
                kept.append(u)
                continue
            h, w = u.frags[k].shape[:2]
            path, what = (u.frag_files[k], "is") if u.frag_files else (u.source, "gives tiles of")
            skips.bad(BadFile(path, f"{what} {h}x{w} (HxW) but most fragments are {ref[0]}x{ref[1]}",
                              f"pass --size {ref[0]}x{ref[1]} to resize every fragment, or fix the file"))
        good = kept

    if layout == "image-per-sample":
        big = tiles if length is None else length
    else:
        big = length
        if big is None and good:
            counts = Counter(u.n for u in good)
            big = max(counts, key=lambda c: (counts[c], c))
        kept = []
        for u in good:
            if u.n < (big or 0):
                skips.bad(BadFile(u.source, f"has too few fragments ({u.n}) for samples of L = {big}"
                                  + _say(for_run, "", " (run {run})"),
                                  _say(for_run, "add fragment images or use a smaller --length",
                                       "add fragment images or remove the folder")))
            elif length is None and u.n > big:
                skips.bad(BadFile(u.source, f"has {u.n} fragments but most samples have {big}",
                                  f"pass --length {big} to cut every sample into windows of {big} fragments"))
            else:
                kept.append(u)
        good = kept
    if not good:
        raise DataError(_nothing_left(src, skips.items))

    if channels is None:
        channels = "rgb" if any(_has_colour(u.frags) for u in good) else "grey"
    wins = _windows(good, big)
    x = np.stack([np.stack([_chw(f, channels) for f in u.frags[s : s + big]]) for u, s in wins])
    rows = [(u.name, s) for u, s in wins]
    for u in good:
        u.frags = [None] * u.n  # keep the count for label checks, drop the arrays
    params = {
        "source": str(src.resolve()), "layout": layout, "tiles": tiles, "length": int(big),
        "size": list(size) if size is not None else None, "channels": channels,
        "resize": "Pillow bilinear (antialiased)" if size is not None else None,
        "n_skipped": len(skips.items),
    }
    return Imported(x=x, rows=rows, units={u.name: u for u in good}, found=found, skipped=skips.items,
                    kind="image", params=params)


def _nothing_left(src: Path, skipped: list[tuple[str, str]]) -> str:
    if skipped:
        return (f"no usable samples in {src}: all {len(skipped)} were bad (first: {skipped[0][0]}: "
                f"{skipped[0][1]}); fix the files")
    return f"no usable samples in {src}; add data"


# -- audio ---------------------------------------------------------------------------------------
@dataclass
class AudioSettings:
    """How audio becomes fragments (recorded in the manifest's ``params``)."""

    window: float = DEFAULT_WINDOW
    onsets: bool = False
    min_gap: float = DEFAULT_MIN_GAP
    threshold: float = DEFAULT_ONSET_THRESHOLD
    bins: int = DEFAULT_BINS
    length: int = DEFAULT_AUDIO_LENGTH

    def __post_init__(self):
        from varinv.audio.features import check_n_bins

        if not (isinstance(self.window, (int, float)) and math.isfinite(self.window) and self.window > 0):
            raise ConfigError(f"--window {self.window!r} is invalid: give the fragment length in seconds, e.g. 1.0")
        if self.window_samples < 1:
            raise ConfigError(f"--window {self.window!r} is shorter than one sample at 16 kHz; use e.g. 1.0")
        if not (math.isfinite(self.min_gap) and self.min_gap >= 0):
            raise ConfigError(f"--min-gap {self.min_gap!r} is invalid: give seconds >= 0, e.g. 0.1")
        if not (math.isfinite(self.threshold) and 0 <= self.threshold < 1):
            raise ConfigError(f"--onset-threshold {self.threshold!r} is invalid: give a number in [0, 1), e.g. 0.2")
        try:
            self.bins = check_n_bins(self.bins)
        except ConfigError:
            raise ConfigError(f"--bins {self.bins!r} is out of range: use an integer in 1..512 (e.g. 128)") from None
        _check_length(self.length, "--length")

    @property
    def window_samples(self) -> int:
        from varinv.audio.features import SR

        return int(round(self.window * SR))

    @property
    def frames(self) -> int:
        from varinv.audio.features import HOP

        return 1 + self.window_samples // HOP

    def to_params(self) -> dict:
        from varinv.audio.features import BIN_HZ, HOP, N_FFT, SR

        return {
            "sr": SR, "n_fft": N_FFT, "hop": HOP, "n_bins": self.bins, "bins": self.bins, "bin_hz": BIN_HZ,
            "feature": "log(|STFT| + 1e-5) of each fragment alone, hann, center=True (zero pad), "
                       "Nyquist bin dropped, low n_bins kept",
            "window": self.window, "window_samples": self.window_samples, "frames": self.frames,
            "fragment_frames": self.frames, "length": self.length,
            "segmentation": "onsets" if self.onsets else "windows",
            "onsets": {"detector": "spectral flux of the log-STFT (floored range_db below the file's peak), "
                                   "0 where the energy falls by > ending_gate_db, median-subtracted, "
                                   "max-normalised; local maxima >= threshold, min_gap apart",
                       "threshold": self.threshold, "min_gap": self.min_gap, "range_db": ONSET_RANGE_DB,
                       "ending_gate_db": ENDING_GATE_DB}
            if self.onsets else None,
            "mono": "mean of channels", "resample": "scipy.signal.resample_poly to 16 kHz", "normalise": None,
        }

    @classmethod
    def from_params(cls, params: dict) -> "AudioSettings":
        """The settings of an imported audio dataset (``Dataset.manifest["params"]``)."""
        on = params.get("onsets") or {}
        return cls(window=float(params["window"]), onsets=params.get("segmentation") == "onsets",
                   min_gap=float(on.get("min_gap", DEFAULT_MIN_GAP)),
                   threshold=float(on.get("threshold", DEFAULT_ONSET_THRESHOLD)),
                   bins=int(params["n_bins"]), length=int(params["length"]))


def _soundfile():
    try:
        import soundfile
    except ImportError:
        raise DependencyError("soundfile is not installed: run pip install 'varinv[audio]' "
                              "(or pip install soundfile)") from None
    return soundfile


def resample(wave: np.ndarray, sr: int, target: int | None = None) -> np.ndarray:
    """``wave`` from ``sr`` to ``target`` Hz (default 16 kHz) with a rational polyphase filter."""
    from scipy.signal import resample_poly

    from varinv.audio.features import SR

    target = SR if target is None else int(target)
    sr = int(sr)
    if sr == target:
        return np.asarray(wave, np.float32)
    g = math.gcd(sr, target)
    return resample_poly(np.asarray(wave, np.float64), target // g, sr // g).astype(np.float32)


def load_audio(path: Path) -> np.ndarray:
    """A file as 16-kHz mono float32 (channels averaged); raises :class:`BadFile`."""
    sf = _soundfile()
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError, RuntimeError, TypeError, …
        raise BadFile(path, f"cannot be read as audio ({type(e).__name__}: {e})") from None
    if data.shape[0] == 0:
        raise BadFile(path, "holds no audio samples (too short for one fragment)")
    if not np.isfinite(data).all():
        raise BadFile(path, "contains NaN or Inf samples")
    return resample(data.mean(axis=1), sr)


def onset_envelope(wave: np.ndarray) -> np.ndarray:
    """Spectral-flux onset strength per STFT frame (16-kHz audio; frame ``t`` is centred on ``t * 512``).

    The log-magnitude STFT (:func:`varinv.audio.features.log_stft`) is floored 80 dB below its peak.
    The flux of frame ``t`` is the half-wave-rectified increase over frame ``t - 1``, summed over bins
    (frame 0 is compared with the file's median spectrum, and frame 1, the first without zero padding,
    with the larger of the two). Where the frame energy one frame later is more than 6 dB below the energy
    one frame earlier (a sound ending; an abrupt end splatters over all bins like an onset), and in the
    frames whose window reaches past the end of the file, the flux is set to 0 (so an onset during the
    fading end of a louder sound can be missed). The median flux is subtracted, the result clipped at 0
    and divided by its maximum, so it lies in [0, 1] (all zeros when nothing rises).
    """
    from varinv.audio.features import HOP, log_stft

    lm = log_stft(np.asarray(wave, np.float32)).numpy().astype(np.float64)  # (512, T)
    lm = np.maximum(lm, lm.max() - ONSET_RANGE_DB / 20.0 * math.log(10.0))
    med = np.median(lm, axis=1, keepdims=True)
    prev = np.concatenate([med, lm[:, :-1]], axis=1)
    if lm.shape[1] > 1:
        prev[:, 1] = np.maximum(lm[:, 0], med[:, 0])
    flux = np.maximum(lm - prev, 0.0).sum(axis=0)
    energy = np.exp(2.0 * (lm - lm.max())).sum(axis=0)  # relative to the peak, to stay finite
    before = np.concatenate([[np.exp(2.0 * (med - lm.max())).sum()], energy[:-1]])
    after = np.concatenate([energy[1:], energy[-1:]])
    flux[after < before * 10.0 ** (-ENDING_GATE_DB / 10.0)] = 0.0
    flux[(np.arange(flux.size) + 1) * HOP > np.asarray(wave).size] = 0.0  # windows reaching past the end
    env = np.maximum(flux - np.median(flux), 0.0)
    top = env.max(initial=0.0)
    return env / top if top > 0 else env


def detect_onsets(wave: np.ndarray, sr: int | None = None, *, threshold: float = DEFAULT_ONSET_THRESHOLD,
                  min_gap: float = DEFAULT_MIN_GAP) -> np.ndarray:
    """Onset sample positions (int64, ascending) of a mono waveform at 16 kHz (resampled if ``sr`` differs).

    Peak picking on :func:`onset_envelope`: a frame is a candidate where the envelope is >= ``threshold``
    and a local maximum (> the previous frame, >= the next); candidates are accepted strongest first,
    each at least ``min_gap`` seconds from every accepted one. An onset is reported at its frame's centre
    (``t * 512``), which lies within one hop (32 ms) of the true onset.
    """
    from varinv.audio.features import HOP, SR

    wave = np.asarray(wave, np.float32).reshape(-1)
    if sr is not None and int(sr) != SR:
        wave = resample(wave, sr)
    if wave.size == 0:
        return np.zeros(0, np.int64)
    env = onset_envelope(wave)
    left = np.concatenate([[-1.0], env[:-1]])
    right = np.concatenate([env[1:], [-1.0]])
    cand = np.nonzero((env >= threshold) & (env > left) & (env >= right) & (env > 0))[0]
    gap = min_gap * SR / HOP  # in frames
    chosen: list[int] = []
    for t in sorted(cand, key=lambda t: (-env[t], t)):
        if all(abs(int(t) - c) >= gap for c in chosen):
            chosen.append(int(t))
    return np.array(sorted(chosen), np.int64) * HOP


def cut_windows(wave: np.ndarray, window_samples: int) -> np.ndarray:
    """Consecutive non-overlapping windows (n, window_samples); a shorter tail is dropped."""
    n = wave.size // window_samples
    return np.ascontiguousarray(wave[: n * window_samples].reshape(n, window_samples), np.float32)


def cut_at(wave: np.ndarray, starts: np.ndarray, window_samples: int) -> np.ndarray:
    """The audio from each start on, cut or zero-padded to ``window_samples``: (n, window_samples)."""
    out = np.zeros((len(starts), window_samples), np.float32)
    for i, s in enumerate(starts):
        seg = wave[int(s) : int(s) + window_samples]
        out[i, : seg.size] = seg
    return out


def fragment_features(frags: np.ndarray, bins: int) -> np.ndarray:
    """log-STFT features of each fragment on its own: (n, samples) → float16 (n, bins, 1 + samples // 512)."""
    import torch

    from varinv.audio.features import HOP, log_stft, reduce_bins

    n, length = frags.shape
    out = np.empty((n, bins, 1 + length // HOP), np.float16)
    with torch.no_grad():
        for i in range(0, n, _FEATURE_BATCH):
            lm = log_stft(frags[i : i + _FEATURE_BATCH]).numpy()
            out[i : i + _FEATURE_BATCH] = reduce_bins(lm, bins).astype(np.float16)
    return out


def audio_fragments(wave: np.ndarray, settings: AudioSettings, path: Path | str = "audio",
                    for_run: str | None = None) -> np.ndarray:
    """(n, bins, frames) float16 fragments of 16-kHz mono audio (windows or onsets); raises :class:`BadFile`."""
    from varinv.audio.features import SR

    win = settings.window_samples
    if settings.onsets:
        starts = detect_onsets(wave, threshold=settings.threshold, min_gap=settings.min_gap)
        if starts.size == 0:
            raise BadFile(path, "has no detected onsets (too short for one fragment)",
                          _say(for_run, "lower --onset-threshold, or cut it by --window without --onsets",
                               "run {run} cuts audio at onsets: pass audio with clear note onsets or remove the file"))
        frags = cut_at(wave, starts, win)
    else:
        if wave.size < win:
            raise BadFile(path, f"is {wave.size / SR:.3f} s long, too short for one fragment of "
                                + _say(for_run, f"--window {settings.window} s",
                                       f"{settings.window:g} s (run {{run}})"),
                          _say(for_run, "use a shorter --window or remove the file",
                               "pass a longer file or remove it"))
        frags = cut_windows(wave, win)
    return fragment_features(frags, settings.bins)


def _audio_files(src: Path, excl: set[Path]) -> list[tuple[str, Path]]:
    """(sample name, path) of every audio file under ``src`` (recursive; or ``src`` itself, a file)."""
    if src.is_file():
        if src.suffix.lower() not in AUDIO_EXTS:
            raise DataError(f"{src} is not an audio file ({', '.join(e[1:] for e in AUDIO_EXTS)}); "
                            "pass an audio file, or a folder of them")
        return [(src.stem, src)]
    files = []
    for p in src.rglob("*"):
        rel = p.relative_to(src)
        if p.suffix.lower() in AUDIO_EXTS and p.is_file() and not any(part.startswith(".") for part in rel.parts) \
                and not any(q == p.resolve() or q in p.resolve().parents for q in excl):
            files.append(p)
    files.sort(key=lambda p: tuple(_file_key(Path(part)) for part in p.relative_to(src).parts))
    if not files:
        raise DataError(f"{src} holds no audio files ({', '.join(e[1:] for e in AUDIO_EXTS)}); "
                        "point DIR at the folder that holds them (sub-folders are searched)")
    names = _unique_names(files, lambda p: p.stem, lambda p: p.relative_to(src).with_suffix("").as_posix())
    return list(zip(names, files))


def read_audio(src: str | Path, settings: AudioSettings | None = None, *, skip_bad: bool = False,
               exclude=(), one_sample: bool = False, for_run: str | None = None) -> Imported:
    """Read every wav/flac/ogg under ``src`` (recursively) into float16 samples (N, L, 1, bins, frames).

    ``one_sample``: one sample of all fragments of all files, in order (no windows of L). ``for_run``:
    a run's raw input (module doc); ``src`` may be one audio file.
    """
    settings = settings or AudioSettings()
    src = _check_source(src, "audio files", file_ok=for_run is not None)
    _soundfile()
    named = _audio_files(src, _excluded(exclude))
    names = [n for n, _ in named]
    skips = _skips(skip_bad, for_run)
    good: list[Unit] = []
    L = 1 if one_sample else settings.length
    for name, path in named:
        try:
            frags = audio_fragments(load_audio(path), settings, path, for_run)
            if len(frags) < L:
                raise BadFile(path, f"gives {len(frags)} fragment(s), too few for one sample of "
                                    + _say(for_run, f"--length {L}", f"L = {L} (run {{run}})"),
                              _say(for_run, "use a smaller --length (or a shorter --window), or remove the file",
                                   f"pass a file of at least {L} fragments or remove it"))
            good.append(Unit(name, path, frags))
        except BadFile as e:
            skips.bad(e)
    if not good:
        raise DataError(_nothing_left(src, skips.items))
    if one_sample:
        x = np.concatenate([u.frags for u in good])[None, :, None]  # (1, fragments, 1, bins, frames)
        rows = [(src.stem if src.is_file() else src.name, 0)]
    else:
        wins = _windows(good, L)
        x = np.stack([u.frags[s : s + L] for u, s in wins])[:, :, None]  # (N, L, 1, bins, frames)
        rows = [(u.name, s) for u, s in wins]
    n_frags = {u.name: u.n for u in good}
    for u in good:
        u.frags = [None] * u.n  # keep the count for label checks, drop the arrays
    params = {**settings.to_params(), "source": str(src.resolve()), "n_skipped": len(skips.items),
              "fragments_per_file": n_frags}
    return Imported(x=x, rows=rows, units={u.name: u for u in good}, found=set(names), skipped=skips.items,
                    kind="spectrogram", params=params)


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

