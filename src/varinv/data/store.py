"""The on-disk dataset format shared by benchmark generators and user data.

A dataset is a folder::

    manifest.json              format, generator, seed, version, names, shapes, sha256 of every file
    <split>/x.npy              fragments (N, L, C, H, W): uint8 images (0..255) or float16 spectrograms
    <split>/content.npy        int64 content labels (N, L); -1 where unknown
    <split>/style.npy          int64 style labels (N,) or (N, L); -1 where unknown

Splits are ``train``, ``val``, ``test`` and optionally ``ood_test``, ``ood_1shot``, ``ood_5shot``,
``ood_10shot``. A split may carry its own ``style_names`` (the OOD colours / instruments).
Arrays are loaded memory-mapped, so a dataset larger than memory still trains; a batch is one fancy
index into the map, which keeps loading far below the cost of a training step on 2 cores.

Slightly over our ~450-line guide on purpose: the reader and the writer of the format share its manifest
layout and checksums (what writing records, reading verifies), so they stay in one module.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from varinv import __version__
from varinv.errors import DataError

FORMAT = "varinv-store/1"
ARRAYS = ("x", "content", "style")


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass
class Split:
    """One split in memory (or memory-mapped). ``x`` is (N, L, C, H, W).

    ``scale`` (read-only, from the dataset manifest): divide stored values by it to get model inputs
    (255 for uint8 images, 1 otherwise); a split built by hand from another passes that one's on.
    """

    x: np.ndarray
    content: np.ndarray
    style: np.ndarray
    name: str = "train"
    style_names: list[str] = field(default_factory=list)
    scale: float = 1.0

    def __setattr__(self, key, value) -> None:
        if key == "scale" and "scale" in self.__dict__:
            raise AttributeError("Split.scale is read-only (it comes from the dataset manifest)")
        super().__setattr__(key, value)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def style_per_fragment(self) -> np.ndarray:
        """Style labels broadcast to (N, L)."""
        if self.style.ndim == 1:
            return np.repeat(self.style[:, None], self.x.shape[1], axis=1)
        return self.style


@dataclass
class Dataset:
    root: Path
    manifest: dict

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def fragment_shape(self) -> tuple[int, ...]:
        return tuple(self.manifest["fragment_shape"])

    @property
    def n_fragments(self) -> int:
        return int(self.manifest["n_fragments"])

    @property
    def content_names(self) -> list[str]:
        return list(self.manifest["content_names"])

    @property
    def style_names(self) -> list[str]:
        return list(self.manifest["style_names"])

    @property
    def splits(self) -> list[str]:
        return list(self.manifest["splits"])

    @property
    def scale(self) -> float:
        """Divide stored values by this to get model inputs (255 for uint8 images)."""
        return float(self.manifest.get("scale", 1.0))

    def split(self, name: str, mmap: bool = True, verify: bool = False) -> Split:
        entry = self.manifest["splits"].get(name)
        if entry is None:
            raise DataError(
                f"dataset {self.root} has no split '{name}' (it has: {', '.join(self.splits)}); "
                "regenerate it with `varinv data` or pick another split"
            )
        arrays = {}
        for key in ARRAYS:
            path = self.root / name / f"{key}.npy"
            meta = entry["files"][f"{key}.npy"]
            if not path.exists():
                raise DataError(f"dataset file {path} is missing; regenerate the dataset with `varinv data`")
            if verify and sha256_file(path) != meta["sha256"]:
                raise DataError(
                    f"dataset file {path} does not match its manifest checksum (corrupt or edited); "
                    "regenerate the dataset with `varinv data`"
                )
            try:
                arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
            except (ValueError, OSError, EOFError) as e:
                raise DataError(
                    f"dataset file {path} cannot be read ({e}); it is truncated or corrupt: "
                    "regenerate the dataset with `varinv data`"
                ) from None
            _check_dtype(path, key, arr.dtype)
            if list(arr.shape) != meta["shape"]:
                raise DataError(
                    f"dataset file {path} has shape {list(arr.shape)} but the manifest says {meta['shape']}; "
                    "regenerate the dataset with `varinv data`"
                )
            arrays[key] = arr
        return Split(
            name=name, style_names=entry.get("style_names", self.style_names), scale=self.scale, **arrays
        )

    def verify(self) -> None:
        """Check every file against the manifest checksums (raises DataError)."""
        for name in self.splits:
            self.split(name, verify=True)

    def verify_cached(self) -> None:
        """:meth:`verify`, cheaply: a file whose (size, mtime_ns) match those recorded when it last
        matched its manifest checksum is not hashed again. The record is ``VERIFIED_FILE`` in the
        dataset folder when that is writable, else kept in memory for this process. Raises DataError
        naming the first file that is missing or does not match."""
        cache_path = self.root / VERIFIED_FILE
        cache = _read_verified(cache_path)
        changed = False
        for name in self.splits:
            for fname, meta in self.manifest["splits"][name]["files"].items():
                path = self.root / name / fname
                rel = f"{name}/{fname}"
                try:
                    st = path.stat()
                except OSError:
                    raise DataError(f"dataset file {path} is missing; regenerate the dataset with `varinv data`") from None
                stamp = [st.st_size, st.st_mtime_ns, meta.get("sha256")]
                if cache.get(rel) == stamp or _MEMORY_VERIFIED.get(str(path.resolve())) == stamp:
                    continue
                if sha256_file(path) != meta.get("sha256"):
                    raise DataError(
                        f"dataset file {path} does not match its manifest checksum (corrupt or edited); "
                        "regenerate the dataset with `varinv data`"
                    )
                cache[rel] = stamp
                _MEMORY_VERIFIED[str(path.resolve())] = stamp
                changed = True
        if changed:
            _write_verified(cache_path, cache)

    def hash(self) -> str:
        """A short provenance hash of the manifest (which covers every file checksum)."""
        blob = json.dumps(self.manifest, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


VERIFIED_FILE = ".verified.json"  # (size, mtime_ns, sha256) of files that matched the manifest
_MEMORY_VERIFIED: dict[str, list] = {}  # the same, for read-only dataset folders
_ARRAY_DTYPES = {"x": ("uint8", "float16", "float32"), "content": ("int64",), "style": ("int64",)}


def _check_dtype(path: Path, key: str, dtype: np.dtype) -> None:
    """Stored arrays must be of a supported type in the machine's byte order."""
    ok = _ARRAY_DTYPES.get(key, ())
    if dtype.byteorder not in ("=", "|") and not dtype.isnative:
        raise DataError(
            f"dataset file {path} is stored big-endian ({dtype.str}); varinv reads little-endian "
            f"{'/'.join(ok)} only: rewrite it with np.save(path, arr.astype(arr.dtype.newbyteorder('='))) "
            "and update the manifest, or regenerate the dataset with `varinv data`"
        )
    if not (dtype.name in ok or (key != "x" and dtype.kind in "iu")):
        raise DataError(
            f"dataset file {path} holds {dtype.name}, but {key}.npy must be {' or '.join(ok)}; "
            "regenerate the dataset with `varinv data` or varinv.data.store.from_arrays"
        )


def _read_verified(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_verified(path: Path, cache: dict) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(cache, indent=0))
        os.replace(tmp, path)
    except OSError:  # a read-only dataset folder: the in-memory record serves this process
        try:
            tmp.unlink()
        except OSError:
            pass


def open_dataset(root: str | Path) -> Dataset:
    root = Path(root)
    mpath = root / "manifest.json"
    if not mpath.exists():
        raise DataError(
            f"no dataset at {root} (manifest.json missing); create it with "
            f"`varinv data phonenums --out {root}` or `varinv.data.store.from_arrays`"
        )
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{mpath} is not valid JSON ({e}); regenerate the dataset") from None
    if manifest.get("format") != FORMAT:
        raise DataError(f"{mpath} has format {manifest.get('format')!r}, expected {FORMAT!r}; regenerate it")
    return Dataset(root=root, manifest=manifest)


def _check_split(name: str, x: np.ndarray, content: np.ndarray, style: np.ndarray) -> None:
    if x.ndim != 5:
        raise DataError(
            f"split '{name}': fragments must be (N, L, C, H, W), got shape {x.shape}; "
            "add a channel axis for single-channel data"
        )
    n, length = x.shape[:2]
    if length < 2:
        raise DataError(f"split '{name}': samples need at least 2 fragments (L >= 2), got L = {length}")
    if content.shape != (n, length):
        raise DataError(f"split '{name}': content labels must be (N, L) = {(n, length)}, got {content.shape}")
    if style.shape not in {(n,), (n, length)}:
        raise DataError(f"split '{name}': style labels must be (N,) or (N, L), got {style.shape}")
    if x.dtype not in (np.uint8, np.float16, np.float32):
        raise DataError(f"split '{name}': fragments must be uint8, float16 or float32, got {x.dtype}")
    if x.dtype != np.uint8 and not np.isfinite(np.asarray(x, dtype=np.float32)).all():
        raise DataError(f"split '{name}': fragments contain NaN or Inf; clean the data first")


def check_replaceable(out: str | Path) -> None:
    """``--overwrite`` replaces a varinv dataset folder (one with manifest.json) or an empty folder only."""
    out = Path(out)
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir() or out.is_symlink():
        raise DataError(f"{out} exists and is not a dataset folder; --overwrite replaces dataset folders only: "
                        "choose another --out")
    if not (out / "manifest.json").is_file() and any(out.iterdir()):
        raise DataError(f"{out} is not a varinv dataset (no manifest.json), so --overwrite will not delete it; "
                        "choose another --out or remove the folder yourself")


KINDS = ("image", "spectrogram")
SPLIT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
MAX_LABEL = 10**6  # labels index class names: a larger label is a mistake (and a huge manifest)


def _label_array(split: str, key: str, labels, shape_hint: str) -> np.ndarray:
    """``labels`` as int64, refusing strings, booleans, fractional numbers and values below -1."""
    try:
        arr = np.asarray(labels)
    except (ValueError, TypeError) as e:
        raise DataError(f"split '{split}': {key} labels cannot be read as an array ({e}); pass integers {shape_hint}, "
                        "or None when unknown") from None
    if arr.dtype.kind == "f":
        finite = np.isfinite(arr)
        if not finite.all() or not np.array_equal(arr, np.round(arr)):
            bad = float(arr[~finite | (arr != np.round(np.where(finite, arr, 0)))].flat[0])
            raise DataError(f"split '{split}': {key} labels must be whole numbers, got {bad:g}; they index the "
                            f"{key} names: cast them yourself if truncating is what you want")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "iu":
        what = {"U": "strings", "S": "bytes", "O": "objects", "b": "booleans"}.get(arr.dtype.kind, str(arr.dtype))
        raise DataError(f"split '{split}': {key} labels must be integers {shape_hint} (class indices, -1 = unknown), "
                        f"got {what}; map names to indices and pass the names as {key}_names")
    if arr.size and int(arr.min()) < -1:
        raise DataError(f"split '{split}': {key} labels must be >= -1 (-1 = unknown), got {int(arr.min())}")
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise DataError(f"split '{split}': {key} label {int(arr.max())} is too large for int64")
    return arr.astype(np.int64)


def _check_arrays(splits, kind, content_names, style_names, split_style_names) -> dict:
    """Validate everything from_arrays is given, before anything is written: {split: (x, content, style)}."""
    if kind not in KINDS:
        raise DataError(f"kind {kind!r} is unknown; use one of {', '.join(map(repr, KINDS))} "
                        "(uint8 images or float spectrograms)")
    if not isinstance(splits, dict) or not splits:
        raise DataError("splits must be a dict {'train': (x, content, style), ...}; got "
                        f"{type(splits).__name__}")
    if "train" not in splits:
        raise DataError(f"from_arrays needs at least a 'train' split (got: {', '.join(map(str, splits))})")
    for name in splits:
        if not isinstance(name, str) or not SPLIT_NAME.fullmatch(name):
            raise DataError(f"split name {name!r} is not allowed; use letters, digits, '_' and '-' only "
                            "(a split is a sub-folder of the dataset), e.g. 'train', 'val', 'ood_test'")
    for key, names in (("content_names", content_names), ("style_names", style_names)):
        if names is not None and (isinstance(names, (str, bytes)) or not hasattr(names, "__len__")):
            raise DataError(f"{key} must be a list of names, got {type(names).__name__} {names!r}")
    if split_style_names is not None:
        if not isinstance(split_style_names, dict):
            raise DataError(f"split_style_names must be a dict {{split: [names]}}, got {type(split_style_names).__name__}")
        extra = [k for k in split_style_names if k not in splits]
        if extra:
            raise DataError(f"split_style_names names split(s) {', '.join(map(repr, extra))} that splits lacks "
                            f"(splits: {', '.join(splits)})")
    out: dict = {}
    ref = None
    for name, value in splits.items():
        if not isinstance(value, (tuple, list)) or len(value) != 3:
            got = f"a {len(value)}-tuple" if isinstance(value, (tuple, list)) else type(value).__name__
            raise DataError(f"split '{name}' must be a 3-tuple (x, content, style), got {got}; "
                            "pass None for labels you do not have")
        x, content, style = value
        try:
            x = np.asarray(x)
        except (ValueError, TypeError) as e:
            raise DataError(f"split '{name}': fragments cannot be read as an array ({e})") from None
        if x.dtype.kind not in "uif":
            raise DataError(f"split '{name}': fragments must be uint8, float16 or float32, got {x.dtype}")
        if x.ndim != 5:
            raise DataError(
                f"split '{name}': fragments must be (N, L, C, H, W), got shape {x.shape}; "
                "add a channel axis for single-channel data"
            )
        n, length = x.shape[:2]
        if n == 0:
            raise DataError(f"split '{name}' has no samples (N = 0); leave the split out instead")
        if min(x.shape[2:]) < 1:
            raise DataError(f"split '{name}': fragments of shape (C, H, W) = {tuple(x.shape[2:])} are empty; "
                            "every axis needs at least 1")
        shape_hint = f"of shape (N, L) = {(n, length)}"
        content = np.full((n, length), -1, np.int64) if content is None else _label_array(name, "content", content,
                                                                                           shape_hint)
        style = np.full((n,), -1, np.int64) if style is None else _label_array(name, "style", style,
                                                                              f"of shape (N,) = ({n},) or (N, L)")
        _check_split(name, x, content, style)
        if ref is None:
            ref = ("train", x.shape[1:], x.dtype)
        out[name] = (x, content, style)
    tx = out["train"][0]
    for name, (x, _, _) in out.items():
        if x.shape[1:] != tx.shape[1:]:
            raise DataError(f"split '{name}' has samples of shape (L, C, H, W) = {tuple(x.shape[1:])} but train's "
                            f"are {tuple(tx.shape[1:])}; every split needs train's fragment count and shape")
        if x.dtype != tx.dtype:
            raise DataError(f"split '{name}' holds {x.dtype} but train holds {tx.dtype}; store every split in one "
                            "dtype (uint8 images are scaled by 1/255, float data is not)")
    total = sum(int(np.prod(x.shape[:2])) for x, _, _ in out.values())
    cap = min(MAX_LABEL, max(total, 1024))  # small data may still use a few more classes than fragments
    for key, names in (("content", content_names), ("style", style_names)):
        for name, arrays in out.items():
            arr = arrays[1] if key == "content" else arrays[2]
            top = int(arr.max()) if arr.size else -1
            if top >= cap:
                raise DataError(f"split '{name}': {key} label {top} is too large: labels index the {key} names, so "
                                f"they must be below {cap:,} (the number of fragments, at least 1,024, at most {MAX_LABEL:,}); "
                                "renumber the classes 0, 1, 2, ...")
            own = (split_style_names or {}).get(name) if key == "style" else None
            given = own if own is not None else names
            if given is not None and len(given) and top >= len(given):
                which = f"split_style_names['{name}']" if own is not None else f"{key}_names"
                raise DataError(f"split '{name}': {key} label {top} has no name: {which} lists {len(given)} "
                                f"names (labels 0..{len(given) - 1}); add the missing names")
    return out


def _parent_problem(out: Path) -> str | None:
    for parent in out.parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                return f"{parent} is a file, not a folder"
            if not os.access(parent, os.W_OK):
                return f"folder {parent} is not writable"
            return None
    return None


def from_arrays(
    out: str | Path,
    splits: dict[str, tuple[np.ndarray, np.ndarray | None, np.ndarray | None]],
    *,
    kind: str = "image",
    content_names: list[str] | None = None,
    style_names: list[str] | None = None,
    split_style_names: dict[str, list[str]] | None = None,
    generator: str = "user",
    seed: int | None = None,
    params: dict | None = None,
    overwrite: bool = False,
) -> Dataset:
    """Write a dataset from arrays: ``splits = {"train": (x, content, style), ...}``.

    ``x`` is (N, L, C, H, W) (uint8 images are scaled by 1/255 when loaded); labels may be ``None``
    when unknown (stored as -1: training needs none, evaluation needs them). Labels are integer class
    indices (-1 = unknown) below the number of names given (and below the number of fragments and
    10^6); split names are letters, digits, '_' and '-'; every split has train's (L, C, H, W) and dtype.
    Everything is checked before anything is written (DataError naming the problem); the folder is
    written to a temporary sibling and renamed, so a crash never leaves a half-written dataset behind,
    and a failure removes the temporary folder.
    """
    if not isinstance(out, (str, os.PathLike)) or not str(out).strip():
        raise DataError(f"out must be a folder path, got {out!r}")
    out = Path(out)
    problem = _parent_problem(out)
    if problem:
        raise DataError(f"cannot write dataset {out}: {problem}; choose another path")
    if out.exists() and not overwrite:
        raise DataError(f"{out} already exists; pass overwrite=True (CLI: --overwrite) or choose another path")
    check_replaceable(out)
    checked = _check_arrays(splits, kind, content_names, style_names, split_style_names)
    tmp = out.with_name(out.name + ".tmp-writing")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _write_dataset(tmp, checked, kind=kind, content_names=content_names, style_names=style_names,
                       split_style_names=split_style_names, generator=generator, seed=seed, params=params)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"writing dataset {out} failed ({e.strerror or e}); check the disk space and permissions") \
            from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return open_dataset(out)


def _write_dataset(tmp: Path, splits: dict, *, kind, content_names, style_names, split_style_names, generator, seed,
                   params) -> None:
    tmp.mkdir(parents=True)
    manifest: dict = {
        "format": FORMAT,
        "generator": generator,
        "version": __version__,
        "seed": seed,
        "params": params or {},
        "kind": kind,
        "splits": {},
    }
    for name, (x, content, style) in splits.items():
        x = np.ascontiguousarray(x)
        n = x.shape[0]
        (tmp / name).mkdir()
        files = {}
        for key, arr in (("x", x), ("content", content), ("style", style)):
            path = tmp / name / f"{key}.npy"
            np.save(path, arr, allow_pickle=False)
            files[f"{key}.npy"] = {"shape": list(arr.shape), "dtype": str(arr.dtype), "sha256": sha256_file(path)}
        entry = {"n": int(n), "files": files}
        if split_style_names and name in split_style_names:
            entry["style_names"] = [str(v) for v in split_style_names[name]]
        manifest["splits"][name] = entry
    x0 = splits["train"][0]
    manifest["fragment_shape"] = list(x0.shape[2:])
    manifest["n_fragments"] = int(x0.shape[1])
    manifest["scale"] = 255.0 if x0.dtype == np.uint8 else 1.0
    n_content = max(int(c.max()) if c.size else -1 for _, c, _ in splits.values()) + 1
    train_style = splits["train"][2]
    n_style = int(train_style.max()) + 1 if train_style.size else 0
    manifest["content_names"] = [str(v) for v in content_names] if content_names else [str(i) for i in range(n_content)]
    manifest["style_names"] = [str(v) for v in style_names] if style_names else [str(i) for i in range(max(n_style, 0))]
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
