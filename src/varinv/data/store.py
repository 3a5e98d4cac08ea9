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
"""

from __future__ import annotations

import hashlib
import json
import os
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
    """One split in memory (or memory-mapped). ``x`` is (N, L, C, H, W)."""

    x: np.ndarray
    content: np.ndarray
    style: np.ndarray
    name: str = "train"
    style_names: list[str] = field(default_factory=list)

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
            name=name, style_names=entry.get("style_names", self.style_names), **arrays
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
    when unknown (stored as -1: training needs none, evaluation needs them). The folder is written
    to a temporary sibling and renamed, so a crash never leaves a half-written dataset behind.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise DataError(f"{out} already exists; pass overwrite=True (CLI: --overwrite) or choose another path")
    check_replaceable(out)
    if "train" not in splits:
        raise DataError("from_arrays needs at least a 'train' split")
    tmp = out.with_name(out.name + ".tmp-writing")
    shutil.rmtree(tmp, ignore_errors=True)
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
        n, length = x.shape[:2] if x.ndim >= 2 else (0, 0)
        content = np.full((n, length), -1, np.int64) if content is None else np.asarray(content, np.int64)
        style = np.full((n,), -1, np.int64) if style is None else np.asarray(style, np.int64)
        _check_split(name, x, content, style)
        (tmp / name).mkdir()
        files = {}
        for key, arr in (("x", x), ("content", content), ("style", style)):
            path = tmp / name / f"{key}.npy"
            np.save(path, arr, allow_pickle=False)
            files[f"{key}.npy"] = {"shape": list(arr.shape), "dtype": str(arr.dtype), "sha256": sha256_file(path)}
        entry = {"n": int(n), "files": files}
        if split_style_names and name in split_style_names:
            entry["style_names"] = list(split_style_names[name])
        manifest["splits"][name] = entry
    x0 = splits["train"][0]
    manifest["fragment_shape"] = list(x0.shape[2:])
    manifest["n_fragments"] = int(x0.shape[1])
    manifest["scale"] = 255.0 if x0.dtype == np.uint8 else 1.0
    n_content = int(max(np.max(np.asarray(s[1])) if s[1] is not None else -1 for s in splits.values())) + 1
    n_style = int(np.max(np.asarray(splits["train"][2]))) + 1 if splits["train"][2] is not None else 0
    manifest["content_names"] = content_names or [str(i) for i in range(n_content)]
    manifest["style_names"] = style_names or [str(i) for i in range(n_style)]
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return open_dataset(out)
