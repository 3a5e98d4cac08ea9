"""Recombination grids: "fix an atom, traverse all styles" and "fix a style, traverse all atoms".

A style is the mean style vector of one style class over the test fragments (as on the V3 demo
page); an atom is a codebook entry (or a k-means centre for methods without a codebook). The grid
cell (k, s) is decode(atom k, style s).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from varinv.eval.embed import content_index, embed_split
from varinv.eval.evaluate import n_atoms_of
from varinv.train.trainer import load_run


def style_means(zs: np.ndarray, style: np.ndarray, n_styles: int) -> np.ndarray:
    out = np.zeros((n_styles, zs.shape[1]), np.float32)
    for s in range(n_styles):
        sel = style == s
        if sel.any():
            out[s] = zs[sel].mean(0)
    return out


def atom_order(index: np.ndarray, content: np.ndarray, n_atoms: int, n_classes: int) -> np.ndarray:
    """Atoms sorted by the content class they mostly hold (the confusion matrix's row order)."""
    counts = np.zeros((n_atoms, n_classes))
    np.add.at(counts, (index, content), 1)
    purity = counts.max(1) / np.maximum(counts.sum(1), 1)
    return np.lexsort((-purity, counts.argmax(1), counts.sum(1) == 0))


@torch.no_grad()
def grid(model, atoms: np.ndarray, styles: np.ndarray) -> np.ndarray:
    """decode every (atom, style) pair → (K, S, C, H, W) float."""
    k, s = len(atoms), len(styles)
    c = torch.from_numpy(atoms).float()[:, None].expand(k, s, -1)
    z = torch.from_numpy(styles).float()[None].expand(k, s, -1)
    return model.decode(c.reshape(k * s, -1), z.reshape(k * s, -1)).reshape(k, s, *model.fragment_shape).numpy()


def _to_image(frags: np.ndarray, scale: float, pad: int = 2) -> Image.Image:
    """(rows, cols, C, H, W) in model units → one PIL image with a white gutter."""
    r, c, ch, h, w = frags.shape
    arr = np.clip(frags * (255.0 if scale != 1.0 else 1.0), 0, 255)
    if scale == 1.0:  # spectrograms: min-max to grey levels
        lo, hi = np.percentile(frags, 1), np.percentile(frags, 99.5)
        arr = np.clip((frags - lo) / max(hi - lo, 1e-6) * 255, 0, 255)
        arr = arr[:, :, :, ::-1]  # low frequencies at the bottom
    canvas = np.full((r * (h + pad) + pad, c * (w + pad) + pad, 3), 255, np.uint8)
    for i in range(r):
        for j in range(c):
            tile = arr[i, j].transpose(1, 2, 0)
            if tile.shape[2] == 1:
                tile = np.repeat(tile, 3, axis=2)
            canvas[pad + i * (h + pad): pad + i * (h + pad) + h, pad + j * (w + pad): pad + j * (w + pad) + w] = tile
    return Image.fromarray(canvas)


def recombine(run: str | Path, out: str | Path | None = None, checkpoint: str = "final", upscale: int = 2) -> dict:
    run = Path(run)
    cfg, ds, model, _ = load_run(run, checkpoint)
    out = Path(out) if out else run / "recombine"
    out.mkdir(parents=True, exist_ok=True)
    test = ds.split(cfg.data.eval_split)
    emb = embed_split(model, test, ds.scale, max_samples=500)
    k = n_atoms_of(cfg, ds)
    index, atoms = content_index(model, emb, k, seed=cfg.train.seed)
    styles = style_means(emb["zs"], emb["style"], len(test.style_names))
    order = atom_order(index, emb["content"], k, len(ds.content_names))
    frags = grid(model, atoms[order], styles)  # (K, S, C, H, W)
    files = {"grid": str(out / "atoms_x_styles.png"), "atoms": [], "styles": []}

    def save(img: Image.Image, path: Path) -> None:
        img.resize((img.width * upscale, img.height * upscale), Image.NEAREST).save(path)

    save(_to_image(frags, ds.scale), out / "atoms_x_styles.png")
    for row, atom in enumerate(order):
        p = out / f"atom_{int(atom):03d}_all_styles.png"
        save(_to_image(frags[row:row + 1], ds.scale), p)
        files["atoms"].append(str(p))
    for s, name in enumerate(test.style_names):
        p = out / f"style_{s:02d}_{name}_all_atoms.png"
        save(_to_image(frags[:, s:s + 1].transpose(1, 0, 2, 3, 4), ds.scale), p)
        files["styles"].append(str(p))
    np.save(out / "grid.npy", frags.astype(np.float16))
    return {"files": files, "atom_order": order.tolist(), "style_names": list(test.style_names)}
