"""Recombination grids: "fix an atom, traverse all styles" and "fix a style, traverse all atoms".

A style is the mean style vector of one style class over the test fragments (as on the V3 demo
page); an atom is a codebook entry (or a k-means centre for methods without a codebook). The grid
cell (k, s) is decode(atom k, style s).

Images are drawn as they are; spectrograms (``ds.kind == "spectrogram"``, log-magnitude in model units)
are drawn with low frequencies at the bottom, through the magma colour map, with one colour scale (the
1st–99.5th percentile of the whole grid) shared by the grid and every strip, so strips compare. For
spectrogram datasets the grid is also written as audio (:mod:`varinv.eval.recombine_audio`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from varinv.eval.embed import content_index, embed_split
from varinv.eval.metrics import atom_order, confusion_matrix
from varinv.eval.parts.context import n_atoms_of
from varinv.eval.recombine_audio import DEFAULT_N_ITER, safe_name, write_audio
from varinv.runs import RECOMBINE_DIR, load_run


def style_means(zs: np.ndarray, style: np.ndarray, n_styles: int) -> np.ndarray:
    out = np.zeros((n_styles, zs.shape[1]), np.float32)
    for s in range(n_styles):
        sel = style == s
        if sel.any():
            out[s] = zs[sel].mean(0)
    return out


@torch.no_grad()
def grid(model, atoms: np.ndarray, styles: np.ndarray) -> np.ndarray:
    """decode every (atom, style) pair → (K, S, C, H, W) float."""
    k, s = len(atoms), len(styles)
    c = torch.from_numpy(atoms).float()[:, None].expand(k, s, -1)
    z = torch.from_numpy(styles).float()[None].expand(k, s, -1)
    return model.decode(c.reshape(k * s, -1), z.reshape(k * s, -1)).reshape(k, s, *model.fragment_shape).numpy()


def spectrogram_limits(frags: np.ndarray) -> tuple[float, float]:
    """Colour scale (lo, hi) of a spectrogram grid: its 1st and 99.5th percentiles."""
    lo, hi = float(np.percentile(frags, 1)), float(np.percentile(frags, 99.5))
    return lo, max(hi, lo + 1e-6)


def _magma() -> np.ndarray:
    from matplotlib import colormaps

    return (colormaps["magma"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)


def grid_image(frags: np.ndarray, scale: float, pad: int = 2, lim: tuple[float, float] | None = None,
               spectrogram: bool | None = None) -> Image.Image:
    """(rows, cols, C, H, W) in model units → one PIL image with a white gutter.

    Images: values in [0, 1] (× 255). Spectrograms (``spectrogram``; default: ``scale == 1``):
    log-magnitudes (H = frequency bins, W = frames), coloured with magma over ``lim`` (default: this
    array's percentiles), low frequencies at the bottom.
    """
    r, c, ch, h, w = frags.shape
    if spectrogram is None:
        spectrogram = scale == 1.0
    if not spectrogram:
        arr = np.clip(frags * 255.0, 0, 255).astype(np.uint8)
        if ch == 1:
            arr = np.repeat(arr, 3, axis=2)
        arr = arr.transpose(0, 1, 3, 4, 2)  # (r, c, H, W, 3)
    else:
        lo, hi = lim if lim is not None else spectrogram_limits(frags)
        level = np.clip((frags.mean(axis=2) - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
        arr = _magma()[level[:, :, ::-1]]  # (r, c, H, W, 3), low frequencies at the bottom
    canvas = np.full((r * (h + pad) + pad, c * (w + pad) + pad, 3), 255, np.uint8)
    for i in range(r):
        for j in range(c):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            canvas[y:y + h, x:x + w] = arr[i, j]
    return Image.fromarray(canvas)


def atom_labels(index: np.ndarray, content: np.ndarray, order: np.ndarray, n_atoms: int,
                content_names: list[str]) -> tuple[list[str], list[float]]:
    """The majority content class ("-" for an unused atom) and its share (purity) of each atom in ``order``."""
    counts = np.zeros((n_atoms, len(content_names)))
    np.add.at(counts, (index, content), 1)
    labels = [content_names[int(counts[a].argmax())] if counts[a].sum() else "-" for a in order]
    purity = [float(counts[a].max() / counts[a].sum()) if counts[a].sum() else 0.0 for a in order]
    return labels, purity


def recombine(run: str | Path, out: str | Path | None = None, checkpoint: str = "final", upscale: int = 2,
              n_iter: int = DEFAULT_N_ITER, data: str | Path | None = None) -> dict:
    """PNG grid and strips (and, for spectrograms, WAVs under ``out/audio``) of a run; returns the paths.

    ``n_iter``: Griffin-Lim iterations for the audio. The style means and the atom order come from the
    evaluation split, so the dataset is needed: ``data`` gives its location when it moved.
    """
    run = Path(run)
    cfg, ds, model, _ = load_run(run, checkpoint, data=data, command="recombine", verify=True)
    out = Path(out) if out else run / RECOMBINE_DIR
    out.mkdir(parents=True, exist_ok=True)
    test = ds.split(cfg.data.eval_split)
    emb = embed_split(model, test, max_samples=500)
    k = n_atoms_of(cfg, ds)
    index, atoms = content_index(model, emb, k, seed=cfg.train.seed)
    styles = style_means(emb["zs"], emb["style"], len(test.style_names))
    order = atom_order(confusion_matrix(index, emb["content"], k, len(ds.content_names)))
    frags = grid(model, atoms[order], styles)  # (K, S, C, H, W)
    files = {"grid": str(out / "atoms_x_styles.png"), "atoms": [], "styles": []}

    def save(img: Image.Image, path: Path) -> None:
        img.resize((img.width * upscale, img.height * upscale), Image.NEAREST).save(path)

    spec = ds.kind == "spectrogram"
    lim = spectrogram_limits(frags) if spec else None

    def image(f: np.ndarray) -> Image.Image:
        return grid_image(f, ds.scale, lim=lim, spectrogram=spec)

    save(image(frags), out / "atoms_x_styles.png")
    for row, atom in enumerate(order):
        p = out / f"atom_{int(atom):03d}_all_styles.png"
        save(image(frags[row:row + 1]), p)
        files["atoms"].append(str(p))
    for s, name in enumerate(test.style_names):
        p = out / f"style_{s:02d}_{safe_name(name)}_all_atoms.png"
        save(image(frags[:, s:s + 1].transpose(1, 0, 2, 3, 4)), p)
        files["styles"].append(str(p))
    np.save(out / "grid.npy", frags.astype(np.float16))
    labels, purity = atom_labels(index, emb["content"], order, k, ds.content_names)
    if spec:
        files["audio"] = write_audio(out / "audio", frags, order, test.style_names, ds.manifest.get("params", {}),
                                     n_iter=n_iter, seed=cfg.train.seed, atom_labels=labels)
    return {"files": files, "atom_order": order.tolist(), "atom_labels": labels, "atom_purity": purity,
            "style_names": list(test.style_names)}
