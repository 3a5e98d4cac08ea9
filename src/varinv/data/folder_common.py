"""Reading helpers shared by the image and audio folder importers (:mod:`varinv.data.folders`).

Bad-file handling (:class:`BadFile`, skipping with ``--skip-bad``), the run/`varinv data` wording of
messages, source and name checks, natural name order, and the :class:`Unit` / :class:`Imported` records
the readers (:mod:`varinv.data.folder_images`, :mod:`varinv.data.folder_audio`) fill.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from varinv.errors import ConfigError, DataError

_SKIP_HINT = "or pass --skip-bad to skip bad files"


# -- helpers -------------------------------------------------------------------------------------
def natural_key(name: str) -> tuple:
    """Sort key for natural name order: digit runs compare as numbers (``frag2`` < ``frag10``)."""
    parts = re.split(r"(\d+)", name)
    return tuple(int(p) if i % 2 else p.lower() for i, p in enumerate(parts)), name


def file_key(p: Path) -> tuple:
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


def skip_policy(skip_bad: bool, for_run: str | None) -> _Skips:
    return _Skips(skip_bad, hint=_SKIP_HINT if for_run is None else None)


def wording(for_run: str | None, data_text: str, run_text: str) -> str:
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


def check_length(value: int | None, option: str) -> int | None:
    if value is not None and (not isinstance(value, (int, np.integer)) or value < 2):
        raise ConfigError(f"{option} {value!r} is invalid: samples need at least 2 fragments, e.g. {option} 8")
    return None if value is None else int(value)


def check_source(src: str | Path, what: str, file_ok: bool = False) -> Path:
    src = Path(src)
    if not src.exists():
        raise DataError(f"source {'' if file_ok else 'folder '}{src} does not exist; pass the "
                        f"{'file or ' if file_ok else ''}folder that holds your {what}")
    if not src.is_dir() and not (file_ok and src.is_file()):
        raise DataError(f"source {src} is not a folder; pass the folder that holds your {what}")
    return src


def excluded_paths(exclude) -> set[Path]:
    out = set()
    for p in exclude or ():
        p = Path(p).resolve()
        out |= {p, p.with_name(p.name + ".tmp-writing")}
    return out


def visible(paths, exclude: set[Path]) -> list[Path]:
    return [p for p in paths if not p.name.startswith(".") and p.resolve() not in exclude]


def unique_names(paths: list[Path], primary, fallback) -> list[str]:
    first = [primary(p) for p in paths]
    counts = Counter(first)
    return [fallback(p) if counts[n] > 1 else n for p, n in zip(paths, first)]


def sample_windows(units: list[Unit], length: int) -> list[tuple[Unit, int]]:
    return [(u, s) for u in units for s in range(0, u.n - length + 1, length)]


def nothing_left(src: Path, skipped: list[tuple[str, str]]) -> str:
    if skipped:
        return (f"no usable samples in {src}: all {len(skipped)} were bad (first: {skipped[0][0]}: "
                f"{skipped[0][1]}); fix the files")
    return f"no usable samples in {src}; add data"

