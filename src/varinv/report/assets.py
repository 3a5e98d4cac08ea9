"""Pictures and sounds for the report: compact sprites of the recombination grid, example data,
3-D latent coordinates as lazily loaded scripts, and short re-encoded WAV clips."""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["StripGeometry", "read_strips", "save_sprite", "latents_script", "example_images",
           "wav_plan", "reencode_wav", "wav_duration", "AudioBudget", "WavPlan"]

_ATOM_RE = re.compile(r"^atom_(\d+)_all_styles\.png$")
_STYLE_RE = re.compile(r"^style_(\d+)_(.*)_all_atoms\.png$")
_PAD = 2  # white gutter of varinv.eval.recombine.grid_image


@dataclass
class StripGeometry:
    upscale: int
    h: int
    w: int


def _geometry(img: np.ndarray, n_tiles: int, shape_hw: tuple[int, int] | None) -> StripGeometry | None:
    """Tile geometry of a one-row strip of ``n_tiles`` tiles (white gutter ``_PAD`` px, then
    nearest-neighbour upscaled). Uses the dataset's fragment shape when known, else the gutter width."""
    H, W = img.shape[:2]
    cands = []
    if shape_hw is not None:
        h, w = shape_hw
        cands = [u for u in range(1, 9) if H == u * (h + 2 * _PAD) and W == u * (n_tiles * (w + _PAD) + _PAD)]
        return StripGeometry(cands[0], h, w) if cands else None
    white = np.all(img.reshape(H, -1) == 255, axis=1)
    lead = int(np.argmin(white)) if not white.all() else 0
    if lead == 0 or lead % _PAD:
        return None
    u = lead // _PAD
    if H % u or W % u:
        return None
    h = H // u - 2 * _PAD
    wt = (W // u - _PAD)
    if wt % n_tiles or wt // n_tiles - _PAD <= 0 or h <= 0:
        return None
    return StripGeometry(u, h, wt // n_tiles - _PAD)


def read_strips(recombine_dir: Path, shape_hw: tuple[int, int] | None):
    """Tiles of the "fix an atom, traverse all styles" strips.

    Returns ``(tiles {atom id: [S arrays (h, w, 3) uint8]}, styles [(index, name)])`` or None when the
    folder has no strips or their geometry cannot be read.
    """
    atoms = {}
    styles = []
    for f in sorted(recombine_dir.iterdir()) if recombine_dir.is_dir() else []:
        m = _ATOM_RE.match(f.name)
        if m:
            atoms[int(m.group(1))] = f
        m = _STYLE_RE.match(f.name)
        if m:
            styles.append((int(m.group(1)), m.group(2)))
    styles.sort()
    if not atoms or not styles:
        return None
    n = len(styles)
    tiles = {}
    for aid, f in sorted(atoms.items()):
        try:
            img = np.asarray(Image.open(f).convert("RGB"))
        except OSError:
            return None
        g = _geometry(img, n, shape_hw)
        if g is None:
            return None
        u, y0 = g.upscale, g.upscale * _PAD
        row = []
        for j in range(n):
            x0 = u * (_PAD + j * (g.w + _PAD))
            row.append(np.ascontiguousarray(img[y0:y0 + u * g.h:u, x0:x0 + u * g.w:u]))
        tiles[aid] = row
    return tiles, styles


def _encode(img: Image.Image) -> tuple[bytes, str]:
    """The smaller of a PNG and a JPEG (quality 90) of ``img``; PNG wins unless JPEG is 1.5× smaller."""
    png = io.BytesIO()
    img.save(png, format="PNG", optimize=True)
    jpg = io.BytesIO()
    img.save(jpg, format="JPEG", quality=90, optimize=True)
    if len(jpg.getvalue()) * 1.5 < len(png.getvalue()):
        return jpg.getvalue(), "jpg"
    return png.getvalue(), "png"


def save_sprite(rows: list[list[np.ndarray]], out_stem: Path, grey: bool = False) -> Path:
    """One image holding ``rows`` of equally sized tiles (no gutter); returns its path."""
    h, w = rows[0][0].shape[:2]
    n = max(len(r) for r in rows)
    canvas = np.full((len(rows) * h, n * w, 3), 255, np.uint8)
    for i, r in enumerate(rows):
        for j, t in enumerate(r):
            canvas[i * h:(i + 1) * h, j * w:(j + 1) * w] = t[..., :3]
    img = Image.fromarray(canvas)
    if grey:
        img = img.convert("L")
    data, ext = _encode(img)
    path = out_stem.with_suffix("." + ext)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def save_image(arr: np.ndarray, out_stem: Path) -> Path:
    data, ext = _encode(Image.fromarray(arr))
    path = out_stem.with_suffix("." + ext)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _quantise(xyz: np.ndarray, centre: np.ndarray, scale: float) -> list:
    q = np.round((xyz - centre) / scale * 999).astype(int)
    return q.reshape(-1).tolist()


def latents_script(gid: str, zc_json: Path | None, zs_json: Path | None, max_points: int = 1500) -> str | None:
    """A script that registers the group's 3-D t-SNE coordinates with the page (``VARINV.load``).

    Coordinates are centred, scaled to [-1, 1] and stored as integers in -999..999 (flat x, y, z);
    ``content`` / ``style`` are the points' labels. Scripts (not JSON) so the page works from file://.
    """
    doc: dict = {}
    for tag, path in (("zc", zc_json), ("zs", zs_json)):
        if path is None or not path.is_file():
            continue
        try:
            d = json.loads(path.read_text())
            xyz = np.asarray(d["coords"], dtype=np.float64).reshape(-1, 3)
        except (OSError, ValueError, KeyError, TypeError):
            continue
        c = np.asarray(d.get("content") or [], dtype=int)
        s = np.asarray(d.get("style") or [], dtype=int)
        if len(c) != len(xyz) or len(s) != len(xyz) or len(xyz) == 0:
            continue
        if len(xyz) > max_points:
            sel = np.linspace(0, len(xyz) - 1, max_points).round().astype(int)
            xyz, c, s = xyz[sel], c[sel], s[sel]
        atoms = d.get("atoms")
        a = np.asarray(atoms, dtype=np.float64).reshape(-1, 3) if atoms else np.zeros((0, 3))
        allp = np.concatenate([xyz, a]) if len(a) else xyz
        centre = (allp.max(0) + allp.min(0)) / 2
        scale = float(np.abs(allp - centre).max()) or 1.0
        doc[tag] = {"xyz": _quantise(xyz, centre, scale), "atoms": _quantise(a, centre, scale) if len(a) else [],
                    "content": c.tolist(), "style": s.tolist()}
    if not doc:
        return None
    return f"VARINV.load({json.dumps(gid)},{json.dumps(doc, separators=(',', ':'))});\n"


def _spectrogram_rgb(logmag: np.ndarray) -> np.ndarray:
    """(F, T) log-magnitude → (F, T, 3) uint8, low frequencies at the bottom, magma colours."""
    import matplotlib

    lo, hi = np.percentile(logmag, 1), np.percentile(logmag, 99.5)
    v = np.clip((logmag - lo) / max(hi - lo, 1e-6), 0, 1)[::-1]
    return (matplotlib.colormaps["magma"](v)[..., :3] * 255).astype(np.uint8)


def pick_examples(style: np.ndarray, n: int) -> list[int]:
    """Up to ``n`` sample indices, one per style first (in style order), then the rest in order."""
    s = np.asarray(style)
    s = s if s.ndim == 1 else s[:, 0]
    first = {}
    for i, v in enumerate(s.tolist()):
        first.setdefault(v, i)
    picks = [first[v] for v in sorted(first) if v >= 0][:n]
    for i in range(len(s)):
        if len(picks) >= n:
            break
        if i not in picks:
            picks.append(i)
    return picks


def example_images(ds, out_dir: Path, rel, budget: "AudioBudget", n_images: int = 8, n_audio: int = 3) -> list[dict]:
    """Example samples of a dataset: rows of image fragments, or spectrograms with a WAV each."""
    split = None
    for name in ("test", "val", "train"):
        if name in ds.splits:
            split = ds.split(name)
            break
    if split is None or len(split) == 0:
        return []
    kind = "spectrogram" if ds.manifest.get("kind") == "spectrogram" else "image"
    picks = pick_examples(split.style, n_images if kind == "image" else n_audio)
    out = []
    cnames, snames = ds.content_names, split.style_names
    for j, i in enumerate(picks):
        x = np.asarray(split.x[i], dtype=np.float32)  # (L, C, H, W)
        c = np.asarray(split.content[i]).reshape(-1).tolist()
        s = np.asarray(split.style[i]).reshape(-1)[0]
        style_name = snames[int(s)] if 0 <= int(s) < len(snames) else str(int(s))
        caption = {"style": style_name,
                   "content": " ".join(cnames[v] if 0 <= v < len(cnames) else "?" for v in c)}
        if kind == "image":
            L, C, H, W = x.shape
            canvas = np.full((H, L * (W + 2) - 2, 3), 255, np.uint8)
            for f in range(L):
                t = x[f].transpose(1, 2, 0)
                if C == 1:
                    t = np.repeat(t, 3, axis=2)
                canvas[:, f * (W + 2):f * (W + 2) + W] = np.clip(t[..., :3], 0, 255).astype(np.uint8)
            p = save_image(canvas, out_dir / f"example_{j}")
            out.append({"img": rel(p), **caption})
        else:
            logmag = np.concatenate([x[f, 0] for f in range(x.shape[0])], axis=1)  # (F, L*T)
            p = save_image(_spectrogram_rgb(logmag), out_dir / f"example_{j}")
            item = {"img": rel(p), **caption}
            wav = _griffin_lim_wav(logmag, out_dir / f"example_{j}.wav", budget)
            if wav is not None:
                item["audio"] = rel(wav)
            out.append(item)
    return out


def _griffin_lim_wav(logmag: np.ndarray, path: Path, budget: "AudioBudget") -> Path | None:
    try:
        import soundfile  # noqa: F401

        from varinv.audio.features import SR
        from varinv.audio.griffinlim import griffin_lim, write_wav
    except ImportError:
        return None
    wave = griffin_lim(np.ascontiguousarray(logmag, dtype=np.float32), n_iter=48).numpy()
    tmp = path.with_suffix(".full.wav")
    write_wav(tmp, wave, SR)
    try:
        plan = wav_plan(tmp, band_hz=_band_hz(logmag.shape[0]))
        if plan is None or not budget.take(plan.size(16)):
            return None
        return reencode_wav(tmp, path, plan, 16)
    finally:
        tmp.unlink(missing_ok=True)


def _band_hz(n_bins: int) -> float:
    from varinv.audio.features import BIN_HZ

    return n_bins * BIN_HZ


class AudioBudget:
    """Bytes of audio the site may still take (the whole page must stay small)."""

    def __init__(self, limit_bytes: int):
        self.left = int(limit_bytes)
        self.spent = 0
        self.skipped = 0

    def take(self, n: int) -> bool:
        if n > self.left:
            self.skipped += 1
            return False
        self.left -= n
        self.spent += n
        return True


_RATES = (4000, 6000, 8000, 11025, 16000, 22050)


@dataclass
class WavPlan:
    """How a WAV will be copied: ``frames`` in, at ``sr``; written at ``target`` Hz, ``out_frames`` long."""

    sr: int
    target: int
    frames: int
    out_frames: int

    def size(self, bits: int) -> int:
        return 44 + self.out_frames * bits // 8


def wav_plan(src: Path, band_hz: float | None = None, max_seconds: float = 30.0) -> WavPlan | None:
    """Plan a short mono copy of ``src``: at most ``max_seconds``, resampled down to the lowest of
    4 / 6 / 8 / 11.025 / 16 / 22.05 kHz that keeps ``band_hz`` (the top frequency the features hold).
    None when the file does not read as audio."""
    try:
        import soundfile

        info = soundfile.info(str(src))
    except Exception:  # noqa: BLE001 - an unreadable file is left out, not fatal
        return None
    sr = int(info.samplerate)
    frames = min(int(info.frames), int(max_seconds * sr))
    if frames <= 0 or sr <= 0:
        return None
    target = sr
    if band_hz:
        target = next((r for r in _RATES if r >= 2 * band_hz and r < sr), sr)
    return WavPlan(sr, target, frames, int(np.ceil(frames * target / sr)))


def reencode_wav(src: Path, dst: Path, plan: WavPlan, bits: int = 16) -> Path | None:
    """Write the planned copy of ``src`` to ``dst`` as 16-bit (or 8-bit) PCM WAV; None if unreadable."""
    import soundfile

    try:
        x, sr = soundfile.read(str(src), dtype="float32", always_2d=True, frames=plan.frames)
    except Exception:  # noqa: BLE001
        return None
    x = x.mean(axis=1)
    if x.size == 0:
        return None
    if plan.target != sr:
        from math import gcd

        from scipy.signal import resample_poly

        g = gcd(int(plan.target), int(sr))
        x = resample_poly(x, plan.target // g, sr // g).astype(np.float32)
    peak = float(np.abs(x).max())
    if peak > 1.0:
        x = x / peak
    dst.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(dst), x, int(plan.target), subtype="PCM_16" if bits == 16 else "PCM_U8")
    return dst


def wav_duration(path: Path) -> float:
    import soundfile

    info = soundfile.info(str(path))
    return info.frames / info.samplerate
