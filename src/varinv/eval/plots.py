"""Evaluation figures: the codebook confusion matrix and 3-D t-SNE views of the latents.

Functions take arrays and an output path and write one file each; matplotlib runs on the Agg backend
(no display needed). SVGs are written with a fixed hash salt and no date, so the same inputs give the
same bytes. :func:`save_latent_json` stores the 3-D coordinates for the interactive demo page.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from varinv.eval.metrics import MetricInputError, ordered_confusion  # noqa: E402

__all__ = ["plot_confusion", "tsne_3d", "tsne_perplexity", "plot_latent_3d", "save_latent_json"]

_SVG_META = {"Date": None, "Creator": "varinv"}


def _label_colors(n: int) -> list:
    """n distinguishable colours: tab10, tab20, then an evenly spaced turbo map."""
    if n <= 10:
        return [plt.get_cmap("tab10")(i) for i in range(n)]
    if n <= 20:
        return [plt.get_cmap("tab20")(i) for i in range(n)]
    return [plt.get_cmap("turbo")(x) for x in np.linspace(0.05, 0.95, n)]


def plot_confusion(
    counts_or_matrix,
    content_names: Sequence[str],
    out_svg,
    title: str = "",
    used_only: bool = True,
) -> Path:
    """Write the paper-style codebook confusion matrix ``P(class | atom)`` as an SVG.

    Rows are atoms, normalised to sum to 1 and ordered by :func:`~varinv.eval.metrics.ordered_confusion`
    (argmax class, then purity descending), each labelled with its atom index; columns are the content
    classes; colours span [0, 1] with a colour bar. Accepts raw counts or an already row-normalised
    matrix (normalising again changes nothing). With ``used_only`` atoms with no fragment are left out
    and their number is added to the title.
    """
    m = np.asarray(counts_or_matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] != len(content_names):
        raise MetricInputError(
            f"confusion matrix must be (n_atoms, {len(content_names)}) to match content_names, got {m.shape}."
        )
    mat, order = ordered_confusion(m)
    used = m.sum(axis=1)[order] > 0
    n_hidden = 0
    if used_only and used.any():
        n_hidden = int((~used).sum())
        mat, order = mat[used], order[used]
    k, c = mat.shape
    fig_h = float(np.clip(0.22 * k + 1.6, 3.0, 40.0))
    fig_w = float(np.clip(0.45 * c + 2.5, 4.0, 30.0))
    fig, ax = plt.subplots(figsize=(fig_w, fig_h))
    im = ax.imshow(mat, aspect="auto", vmin=0.0, vmax=1.0, cmap="viridis", interpolation="nearest")
    fs = 8 if k <= 60 else max(3, int(480 / k))
    ax.set_yticks(np.arange(k), [str(int(a)) for a in order], fontsize=fs)
    ax.set_xticks(np.arange(c), [str(s) for s in content_names], rotation=90 if c > 12 else 0, fontsize=8)
    ax.set_xlabel("content class")
    ax.set_ylabel("atom (ordered by argmax class)")
    full_title = title + (f"  ({n_hidden} unused atoms hidden)" if n_hidden else "")
    ax.set_title(full_title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02, label="P(class | atom)")
    fig.tight_layout()
    out = Path(out_svg)
    out.parent.mkdir(parents=True, exist_ok=True)
    with plt.rc_context({"svg.hashsalt": "varinv"}):
        fig.savefig(out, format="svg", metadata=_SVG_META)
    plt.close(fig)
    return out


def tsne_perplexity(n: int) -> float:
    """Perplexity for n points: 30 (the usual default) when n ≥ 91, else (n − 1) / 3, at least 1.

    t-SNE needs perplexity < n; about a third of n keeps every point's neighbourhood meaningful.
    """
    return float(max(1.0, min(30.0, (n - 1) / 3.0)))


def tsne_3d(emb, seed: int = 0, extra=None, max_iter: int = 500, perplexity: float | None = None):
    """3-D t-SNE (scikit-learn, Barnes-Hut, PCA init) of ``emb`` (N, d).

    ``extra`` (e.g. the codebook atoms, (K, d)) is embedded together with the points, so both live in
    the same map, and returned separately. Returns ``(coords (N, 3), extra_coords (K, 3) or None)``.
    The reference ran 1000 iterations; 500 is enough for N ≈ 1000 and keeps the call to seconds.
    """
    from sklearn.manifold import TSNE

    x = np.asarray(emb, dtype=np.float64)
    if x.ndim != 2:
        raise MetricInputError(f"emb must be 2-D (N, d), got shape {x.shape}.")
    n = x.shape[0]
    parts = [x]
    if extra is not None:
        e = np.asarray(extra, dtype=np.float64)
        if e.ndim != 2 or e.shape[1] != x.shape[1]:
            raise MetricInputError(f"extra must be (K, {x.shape[1]}) like emb, got shape {e.shape}.")
        parts.append(e)
    allx = np.concatenate(parts, axis=0)
    if allx.shape[0] < 4:
        raise MetricInputError(f"t-SNE needs at least 4 points, got {allx.shape[0]}.")
    perp = tsne_perplexity(allx.shape[0]) if perplexity is None else float(perplexity)
    tsne = TSNE(
        n_components=3,
        init="pca",
        perplexity=perp,
        max_iter=int(max_iter),
        random_state=int(seed),
        learning_rate="auto",
    )
    y = tsne.fit_transform(allx)
    return y[:n], (y[n:] if extra is not None else None)


def plot_latent_3d(
    coords,
    labels,
    names: Sequence[str] | None,
    out_png,
    title: str = "",
    atoms_coords=None,
) -> Path:
    """3-D scatter of ``coords`` (N, 3) coloured by integer ``labels`` with a legend of ``names``;
    codebook atoms, if given, are drawn as large black X markers. Writes a PNG."""
    xyz = np.asarray(coords, dtype=np.float64)
    lab = np.asarray(labels)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or lab.shape != (xyz.shape[0],):
        raise MetricInputError(f"coords must be (N, 3) and labels (N,), got {xyz.shape} and {lab.shape}.")
    uniq = np.unique(lab)
    colors = _label_colors(len(uniq))
    fig = plt.figure(figsize=(7.5, 6.5))
    ax = fig.add_subplot(projection="3d")
    for col, u in zip(colors, uniq):
        sel = lab == u
        name = str(names[int(u)]) if names is not None and 0 <= int(u) < len(names) else str(u)
        ax.scatter(xyz[sel, 0], xyz[sel, 1], xyz[sel, 2], s=6, color=col, label=name, depthshade=False)
    if atoms_coords is not None:
        a = np.asarray(atoms_coords, dtype=np.float64).reshape(-1, 3)
        ax.scatter(a[:, 0], a[:, 1], a[:, 2], s=120, c="black", marker="X", label="atoms", depthshade=False)
    ax.set_title(title, fontsize=10)
    ncol = 1 if len(uniq) <= 16 else 2
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=7, markerscale=2, ncol=ncol)
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


def save_latent_json(
    path,
    coords,
    content,
    style,
    atoms=None,
    content_names: Sequence[str] | None = None,
    style_names: Sequence[str] | None = None,
    meta: dict | None = None,
) -> Path:
    """Store 3-D coordinates and labels for the interactive report page.

    JSON keys: ``coords`` [[x, y, z], ...] (4 decimals), ``content`` and ``style`` (int labels),
    ``atoms`` ([[x, y, z], ...] or null), ``content_names``, ``style_names`` and ``meta`` (provenance).
    """
    xyz = np.asarray(coords, dtype=np.float64)
    c = np.asarray(content).astype(int)
    s = np.asarray(style).astype(int)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or c.shape != (xyz.shape[0],) or s.shape != (xyz.shape[0],):
        raise MetricInputError(
            f"coords must be (N, 3) with content and style (N,), got {xyz.shape}, {c.shape}, {s.shape}."
        )
    doc = {
        "coords": np.round(xyz, 4).tolist(),
        "content": c.tolist(),
        "style": s.tolist(),
        "atoms": None if atoms is None else np.round(np.asarray(atoms, dtype=np.float64), 4).tolist(),
        "content_names": None if content_names is None else [str(n) for n in content_names],
        "style_names": None if style_names is None else [str(n) for n in style_names],
        "meta": meta or {},
    }
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, separators=(",", ":")))
    return out
