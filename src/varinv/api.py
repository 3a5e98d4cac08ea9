"""Use a trained run from Python (``varinv.load_model``) and the `varinv encode` / `varinv transfer` commands.

::

    import varinv
    model = varinv.load_model("runs/pn")      # a run folder; needs no dataset (RUN/model.json)
    codes = model.encode(x)                   # x (B, L, C, H, W) in stored units (uint8 images, float spectrograms)
    codes.index, codes.content, codes.style   # (B, L) atom ids, (B, L, d_c) z_c, (B, L, d_s) z_s (numpy)
    y = model.decode(codes.index, style)      # style (B, L, d_s) or (B, d_s) -> (B, L, C, H, W) in model units
    z = model.transfer(a, b)                  # the content of a, fragment by fragment, in the mean style of b
    raw = varinv.api.read_raw(model, "my_pngs/")  # raw files with the run's own settings: raw.x (N, L, C, H, W)

Everything runs on the CPU in eval mode without gradients, in batches. "Model units" are what the
decoder produces: stored values divided by the run's input scale (images in [0, 1], spectrograms as
stored: log-magnitudes). The file writers (codes CSV, fragment PNG / WAV) are :mod:`varinv.writers`,
re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from varinv.errors import ConfigError, DataError
from varinv.writers import fragments_image, write_codes_csv, write_fragments_png, write_fragments_wav  # noqa: F401

__all__ = ["Codes", "Model", "load_model", "parse_sample_ref", "encode_dataset", "read_raw", "encode_raw",
           "is_dataset", "fragments_image", "write_fragments_png", "write_fragments_wav"]


@dataclass
class Codes:
    """What :meth:`Model.encode` returns, as numpy arrays."""

    index: np.ndarray | None  # (B, L) int64 atom ids; None for methods without a codebook
    content: np.ndarray  # (B, L, d_c) continuous content embedding z_c (before quantisation)
    style: np.ndarray  # (B, L, d_s) style vectors z_s

    def __len__(self) -> int:
        return int(self.content.shape[0])


class Model:
    """A trained run: the network (``module``, eval mode), its config (``cfg``) and RUN/model.json (``meta``)."""

    def __init__(self, cfg, module: torch.nn.Module, meta: dict, *, run: str | Path | None = None,
                 state: dict | None = None, batch_size: int = 64):
        self.cfg, self.module, self.meta = cfg, module.eval(), dict(meta)
        self.run = Path(run) if run is not None else None
        self.state = state or {}
        self.batch_size = int(batch_size)

    @classmethod
    def load(cls, run: str | Path, checkpoint: str = "final", data: str | Path | None = None,
             command: str | None = None) -> Model:
        """Load run folder ``run`` (checkpoint ``final``, else ``last``). Runs made before RUN/model.json
        existed need their dataset: at the config's ``data.path``, or at ``data``. ``command``: the CLI
        command to name in the error when that dataset is missing (default: this function)."""
        from varinv.runs import load_run_with_meta

        cfg, _, module, state, meta = load_run_with_meta(run, checkpoint, data=data, need_data=False,
                                                         command=command)
        return cls(cfg, module, meta, run=run, state=state)

    # ------------------------------------------------------------------------------ description
    @property
    def method(self) -> str:
        return str(self.meta.get("method", self.cfg.method))

    @property
    def fragment_shape(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.meta["fragment_shape"])

    @property
    def n_fragments(self) -> int | None:
        """L of the training data (the model itself takes samples of any length)."""
        n = self.meta.get("n_fragments")
        return int(n) if n is not None else None

    @property
    def scale(self) -> float:
        """Stored values / scale = model input (255 for uint8 images, 1 for spectrograms)."""
        return float(self.meta.get("scale", 1.0))

    @property
    def kind(self) -> str:
        """``"image"`` or ``"spectrogram"``."""
        return str(self.meta.get("kind", "image"))

    @property
    def params(self) -> dict:
        """The training dataset's feature parameters (audio: ``sr``, ``n_fft``, ``hop``, ``n_bins``, ...)."""
        return dict(self.meta.get("params") or {})

    @property
    def content_names(self) -> list[str]:
        return list(self.meta.get("content_names") or [])

    @property
    def style_names(self) -> list[str]:
        return list(self.meta.get("style_names") or [])

    @property
    def codebook(self) -> np.ndarray | None:
        """(K, d_c) content atoms, or None for methods without a codebook."""
        book = self.module.codebook()
        return None if book is None else book.detach().float().cpu().numpy()

    @property
    def n_atoms(self) -> int | None:
        book = self.module.codebook()
        return None if book is None else int(book.shape[0])

    def __repr__(self) -> str:
        where = f" from {self.run}" if self.run is not None else ""
        return (f"<varinv.Model {self.method}{where}: fragments {self.fragment_shape} ({self.kind}), "
                f"{self.n_atoms or 'no'} atoms>")

    # ------------------------------------------------------------------------------ inference
    def _samples(self, x, what: str = "x") -> tuple[torch.Tensor, bool]:
        """Stored-unit samples (B, L, C, H, W) or one sample (L, C, H, W) → float model input, and
        whether a single sample was given."""
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu()
        else:
            arr = np.asarray(x)
            t = torch.from_numpy(arr if arr.flags.writeable else arr.copy())  # memory-mapped datasets are read-only
        single = t.ndim == 4
        if single:
            t = t[None]
        if t.ndim != 5 or tuple(t.shape[2:]) != self.fragment_shape:
            raise DataError(
                f"{what} has shape {tuple(t.shape)}; this model takes samples (B, L, C, H, W) or (L, C, H, W) "
                f"with fragments (C, H, W) = {self.fragment_shape}"
            )
        if t.shape[1] < 1 or t.shape[0] < 1:
            raise DataError(f"{what} has shape {tuple(t.shape)}: no samples or no fragments")
        t = t.float()
        if self.scale != 1.0:
            t = t / self.scale
        return t, single

    def encode(self, x, batch_size: int | None = None) -> Codes:
        """Atom ids, z_c and z_s of samples ``x`` (B, L, C, H, W) (numpy or torch, stored units: uint8
        images or float spectrograms; the run's input scale is applied). A single sample (L, C, H, W)
        gives B = 1."""
        t, _ = self._samples(x)
        bs = int(batch_size or self.batch_size)
        idx, zc, zs = [], [], []
        with torch.no_grad():
            for i in range(0, t.shape[0], bs):
                enc = self.module.encode(t[i:i + bs])
                zc.append(enc.content.float().numpy())
                zs.append(enc.style.float().numpy())
                if enc.content_index is not None:
                    idx.append(enc.content_index.long().numpy())
        return Codes(index=np.concatenate(idx) if idx else None, content=np.concatenate(zc), style=np.concatenate(zs))

    def _content_vectors(self, index) -> torch.Tensor:
        """(B, L) atom ids → the atoms (B, L, d_c); a float (B, L, d_c) array passes as content vectors."""
        arr = index.detach().cpu().numpy() if isinstance(index, torch.Tensor) else np.asarray(index)
        if arr.dtype.kind in "iu":
            if arr.ndim != 2:
                raise DataError(f"index has shape {arr.shape}; expected (B, L) atom ids")
            book = self.module.codebook()
            if book is None:
                raise ConfigError(f"method {self.method} has no codebook; decode content vectors (B, L, d_c) "
                                  "instead of atom ids, e.g. codes.content")
            k = int(book.shape[0])
            if arr.size and (arr.min() < 0 or arr.max() >= k):
                raise DataError(f"atom ids must be in 0..{k - 1}, got {int(arr.min())}..{int(arr.max())}")
            return book.detach().float()[torch.from_numpy(arr.astype(np.int64))]
        if arr.dtype.kind == "f" and arr.ndim == 3:
            d = int(self.cfg.model.d_content)
            if arr.shape[-1] != d:
                raise DataError(f"content vectors have {arr.shape[-1]} dimensions; this model's z_c has {d}")
            return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        raise DataError(f"index has shape {arr.shape} and dtype {arr.dtype}; expected (B, L) integer atom ids "
                        "(or (B, L, d_c) float content vectors)")

    def _styles(self, style, b: int, length: int) -> torch.Tensor:
        s = style.detach().cpu().float() if isinstance(style, torch.Tensor) else torch.as_tensor(
            np.asarray(style, dtype=np.float32))
        given = tuple(s.shape)
        d = int(self.cfg.model.d_style)
        if s.ndim == 1:
            s = s[None]
        if s.ndim == 2:
            s = s[:, None].expand(s.shape[0], length, s.shape[-1])
        if s.ndim != 3 or s.shape[-1] != d or s.shape[0] not in (1, b) or s.shape[1] != length:
            raise DataError(f"style has shape {given}; expected (B, L, {d}) or (B, {d}) "
                            f"with B = {b}, L = {length}")
        return s.expand(b, length, d)

    def _decode(self, content: torch.Tensor, style: torch.Tensor, batch_size: int | None = None) -> np.ndarray:
        bs = int(batch_size or self.batch_size)
        out = []
        with torch.no_grad():
            for i in range(0, content.shape[0], bs):
                s = self.module.decoder_style(style[i:i + bs])  # style_pool models: each sample's mean, as in training
                out.append(self.module.decode(content[i:i + bs], s).float().numpy())
        return np.concatenate(out)

    def decode(self, index, style, batch_size: int | None = None) -> np.ndarray:
        """Fragments (B, L, C, H, W) in model units from atom ids ``index`` (B, L) (or content vectors
        (B, L, d_c)) and ``style`` (B, L, d_s), or one style per sample (B, d_s)."""
        content = self._content_vectors(index)
        b, length = content.shape[:2]
        return self._decode(content, self._styles(style, b, length), batch_size)

    def transfer(self, a, b, batch_size: int | None = None) -> np.ndarray:
        """The content of samples ``a`` (their atoms, fragment by fragment) decoded in the mean style
        (over its fragments) of samples ``b``; both (L, C, H, W) or (B, L, C, H, W), stored units, and
        b may have another L. Returns a's shape (a batch when either is one) in model units."""
        ta, single_a = self._samples(a, "a")
        tb, single_b = self._samples(b, "b")
        if ta.shape[0] != tb.shape[0] and 1 not in (ta.shape[0], tb.shape[0]):
            raise DataError(f"a holds {ta.shape[0]} samples and b {tb.shape[0]}; give as many, or one of either")
        bs = int(batch_size or self.batch_size)
        contents, styles = [], []
        with torch.no_grad():
            for i in range(0, ta.shape[0], bs):
                contents.append(self.module.decoder_content(self.module.encode(ta[i:i + bs])).float())
            for i in range(0, tb.shape[0], bs):
                styles.append(self.module.encode(tb[i:i + bs]).style.float().mean(1))
        content, style = torch.cat(contents), torch.cat(styles)  # (Ba, La, d_c), (Bb, d_s)
        n = max(content.shape[0], style.shape[0])
        content = content.expand(n, *content.shape[1:])
        style = style[:, None].expand(n, content.shape[1], style.shape[-1])
        y = self._decode(content, style, batch_size)
        return y[0] if single_a and single_b else y


def load_model(run: str | Path, checkpoint: str = "final", data: str | Path | None = None) -> Model:
    """Load a trained run folder (see :class:`Model`). ``data``: old runs (no RUN/model.json) only."""
    return Model.load(run, checkpoint=checkpoint, data=data)


# ---------------------------------------------------------------------------------- CLI helpers
def parse_sample_ref(ref: str, ds, option: str) -> tuple[str, int]:
    """``SPLIT:INDEX`` → (split, index), checked against dataset ``ds``."""
    split, sep, idx = str(ref).rpartition(":")
    if not sep or not split:
        raise ConfigError(f"{option} {ref!r} must look like SPLIT:INDEX, e.g. test:0")
    try:
        i = int(idx)
    except ValueError:
        raise ConfigError(f"{option} {ref!r}: the index {idx!r} is not an integer (SPLIT:INDEX, e.g. test:0)") from None
    if split not in ds.splits:
        raise DataError(f"{option} {ref!r}: dataset {ds.root} has no split '{split}' (it has: {', '.join(ds.splits)})")
    n = int(ds.manifest["splits"][split]["n"])
    if not 0 <= i < n:
        raise DataError(f"{option} {ref!r}: index {i} is out of range; split '{split}' of {ds.root} has {n} samples "
                        f"(0..{n - 1})")
    return split, i


def encode_dataset(model: Model, ds, splits: list[str], batch_size: int = 64) -> dict[str, np.ndarray]:
    """Per-fragment arrays of the given splits of dataset ``ds``: sample ("split:row"), split, row,
    position, atom (-1 without a codebook), zc (N, d_c), zs (N, d_s), and, when any label is known,
    content / style labels (-1 where unknown) with their names ("" where unknown)."""
    if tuple(ds.fragment_shape) != model.fragment_shape:
        raise DataError(f"dataset {ds.root} has fragments of shape {tuple(ds.fragment_shape)} but the model takes "
                        f"{model.fragment_shape}")
    cols: dict[str, list] = {k: [] for k in ("sample", "split", "row", "position", "atom", "zc", "zs", "content",
                                             "content_name", "style", "style_name")}
    content_names = list(ds.content_names)
    for name in splits:
        sp = ds.split(name)
        n, length = sp.x.shape[:2]
        snames = list(sp.style_names)
        for i in range(0, n, batch_size):
            codes = model.encode(np.asarray(sp.x[i:i + batch_size]), batch_size=batch_size)
            b = codes.content.shape[0]
            rows = np.repeat(np.arange(i, i + b), length)
            cols["sample"].append(np.array([f"{name}:{r}" for r in rows]))
            cols["split"].append(np.full(b * length, name))
            cols["row"].append(rows)
            cols["position"].append(np.tile(np.arange(length), b))
            cols["atom"].append(codes.index.reshape(-1) if codes.index is not None else np.full(b * length, -1))
            cols["zc"].append(codes.content.reshape(b * length, -1))
            cols["zs"].append(codes.style.reshape(b * length, -1))
            c = np.asarray(sp.content[i:i + b], dtype=np.int64).reshape(-1)
            s = np.asarray(sp.style_per_fragment[i:i + b], dtype=np.int64).reshape(-1)
            cols["content"].append(c)
            cols["style"].append(s)
            cols["content_name"].append(np.array([content_names[v] if 0 <= v < len(content_names) else "" for v in c]))
            cols["style_name"].append(np.array([snames[v] if 0 <= v < len(snames) else "" for v in s]))
    out = {k: np.concatenate(v) for k, v in cols.items() if v}
    if not out:
        raise DataError(f"dataset {ds.root} has no samples in {', '.join(splits)}")
    out["row"], out["position"], out["atom"] = (out[k].astype(np.int64) for k in ("row", "position", "atom"))
    out["zc"], out["zs"] = out["zc"].astype(np.float32), out["zs"].astype(np.float32)
    for k in ("content", "style"):
        if not (out[k] >= 0).any():  # no label known: leave the label columns out
            del out[k], out[f"{k}_name"]
    for k in ("sample", "split", "content_name", "style_name"):
        if k in out:
            out[k] = out[k].astype(str)
    return out


# ---------------------------------------------------------------------------------- raw input
def is_dataset(path: str | Path) -> bool:
    """Whether ``path`` is a dataset folder of the varinv store (it has manifest.json)."""
    return (Path(path) / "manifest.json").is_file()


def _raw_kinds(path: Path) -> set[str]:
    """What a raw input holds: {"image"} / {"audio"} (both, or neither, for odd folders)."""
    from varinv.data.folders import AUDIO_EXTS, IMAGE_EXTS

    if path.is_file():
        ext = path.suffix.lower()
        return {"image"} if ext in IMAGE_EXTS else {"audio"} if ext in AUDIO_EXTS else set()
    kinds = set()
    for p in path.rglob("*"):
        rel = p.relative_to(path)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        ext = p.suffix.lower()
        if ext in IMAGE_EXTS and len(rel.parts) <= 2:  # images: in the folder or one sub-folder deep
            kinds.add("image")
        elif ext in AUDIO_EXTS:
            kinds.add("audio")
        if len(kinds) == 2:
            break
    return kinds


def _raw_audio_settings(model: Model, length: int, name: str):
    """The run's audio cutting and features as :class:`varinv.data.folders.AudioSettings`."""
    from varinv.audio.features import HOP, N_FFT, SR
    from varinv.data.folders import AudioSettings

    p = model.params
    c, bins, frames = model.fragment_shape
    odd = [f"{k} {p.get(k)}" for k, v in (("sr", SR), ("n_fft", N_FFT), ("hop", HOP)) if p.get(k) != v]
    if odd or c != 1:
        raise DataError(f"run {name} was trained on spectrograms not made with varinv's audio features (sr {SR}, "
                        f"n_fft {N_FFT}, hop {HOP}, 1 channel; its data has {', '.join(odd) or f'{c} channels'}), "
                        "so raw audio cannot be imported for it; pass a dataset folder made like its training data")
    if int(p.get("frame_pool") or 1) != 1:
        raise DataError(f"run {name} was trained on spectrograms with pooled frames (frame_pool {p['frame_pool']}), "
                        "which raw audio import does not make; pass a dataset folder made like its training data")
    window = p.get("window")
    if window is None:  # a benchmark (InsNotes): fixed windows of the fragment's duration
        note = p.get("note_seconds")
        frames_of = lambda w: 1 + int(round(float(w) * SR)) // HOP  # noqa: E731
        window = note if note is not None and frames_of(note) == frames else (frames - 1) * HOP / SR
    settings = AudioSettings.from_params({**p, "window": float(window), "n_bins": bins, "length": length})
    if settings.frames != frames:
        raise DataError(f"run {name} takes fragments of {frames} frames, but its recorded window of "
                        f"{settings.window:g} s gives {settings.frames}; pass a dataset folder made like its "
                        "training data")
    return settings


def read_raw(model: Model, path: str | Path, *, one_sample: bool = False):
    """Raw images or audio as samples for ``model``, read with the run's own settings (nothing written).

    ``path`` is an image or audio file, or a folder of them: images in the layouts of ``varinv data
    images`` ((a) one image per sample, cut into the run's L tiles along its width; (b) one sub-folder
    per sample, one image per fragment, windows of the run's L), each fragment resized to the run's
    H x W and converted to its channels (RGB or grey); audio (wav, flac, ogg, searched recursively) cut
    as the run's dataset was (its recorded window or onsets; without a record, fixed windows of the
    fragment's duration) into log-STFT fragments with the run's bins, a file giving floor(fragments / L)
    samples. With ``one_sample`` the input is one sample of any length: an image file cut into L tiles,
    an audio file with all its fragments, a folder whose images (or audio files, in order) are the
    fragments. Returns a :class:`varinv.data.folders.Imported`: ``x`` (N, L, C, H, W) in the run's
    stored units (``model.encode(x)`` applies the input scale), ``rows`` (sample name, index of its first
    fragment in its file or folder) per sample. Input that does not fit the run raises
    :class:`~varinv.errors.DataError` naming the file and the fix.
    """
    from varinv.data import folders

    path = Path(path)
    name = str(model.run) if model.run is not None else "(in memory)"
    if not path.exists():
        raise DataError(f"{path} does not exist; pass a dataset folder, an image or audio file, or a folder of them")
    if path.is_dir() and is_dataset(path):
        raise DataError(f"{path} is a dataset folder, not raw files; name one of its samples as SPLIT:INDEX "
                        f"with --data {path}")
    want = "audio" if model.kind == "spectrogram" else "image"
    have = _raw_kinds(path)
    if want not in have:
        exts = folders.AUDIO_EXTS if want == "audio" else folders.IMAGE_EXTS
        what = ("holds " + " and ".join(sorted(have)) + " files") if path.is_dir() and have else \
            ("is an image file" if have == {"image"} else "is an audio file" if have == {"audio"} else
             "holds no image or audio files" if path.is_dir() else "is neither an image nor an audio file")
        raise DataError(f"{path} {what}, but run {name} was trained on {model.kind} data; pass "
                        f"{want} files ({', '.join(e[1:] for e in exts)}) or a folder of them, or "
                        + ("a dataset sample SPLIT:INDEX" if one_sample else "a dataset folder"))
    length = model.n_fragments
    if length is None or length < 2:
        raise DataError(f"run {name} records no sample length L >= 2 (n_fragments {length!r} in model.json); "
                        "pass a dataset folder instead of raw files")
    if want == "audio":
        data = folders.read_audio(path, _raw_audio_settings(model, length, name), one_sample=one_sample,
                                  for_run=name)
    else:
        c, h, w = model.fragment_shape
        if c not in (1, 3):
            raise DataError(f"run {name} takes images of {c} channels; raw images come as RGB (3) or grey (1): "
                            "pass a dataset folder made like its training data")
        layout = folders.image_layout(path, one_sample=one_sample, for_run=name)
        tiled = layout == "image-per-sample"
        data = folders.read_images(path, tiles=length if tiled else None, size=(h, w),
                                   channels="rgb" if c == 3 else "grey",
                                   length=None if tiled or one_sample else length, one_sample=one_sample,
                                   for_run=name)
        if model.scale != 255.0:  # the run's data stored images otherwise than as uint8
            data.x = data.x.astype(np.float32) * np.float32(model.scale / 255.0)
    if tuple(data.x.shape[2:]) != model.fragment_shape:  # the readers make the run's shape; a safety net
        raise DataError(f"{path} gives fragments of shape {tuple(data.x.shape[2:])} but run {name} takes "
                        f"{model.fragment_shape}; pass a dataset folder made like its training data")
    return data


def encode_raw(model: Model, path: str | Path, batch_size: int = 64):
    """:func:`read_raw` then per-fragment arrays as :func:`encode_dataset` gives them, without split and
    labels: sample (the file's stem or sub-folder's name), row (the sample's index), fragment (index of
    the fragment in its file or folder), position (0..L-1 in the sample), atom, zc, zs. Returns
    ``(arrays, imported)``."""
    data = read_raw(model, path)
    n, length = data.x.shape[:2]
    codes = model.encode(data.x, batch_size=batch_size)
    pos = np.tile(np.arange(length), n)
    out = {
        "sample": np.repeat(np.array([name for name, _ in data.rows], dtype=str), length),
        "row": np.repeat(np.arange(n), length).astype(np.int64),
        "fragment": (np.repeat(np.array([start for _, start in data.rows]), length) + pos).astype(np.int64),
        "position": pos.astype(np.int64),
        "atom": (codes.index.reshape(-1) if codes.index is not None else np.full(n * length, -1)).astype(np.int64),
        "zc": codes.content.reshape(n * length, -1).astype(np.float32),
        "zs": codes.style.reshape(n * length, -1).astype(np.float32),
    }
    return out, data
