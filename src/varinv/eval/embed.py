"""Run a trained method over a split and collect per-fragment arrays for the metrics."""

from __future__ import annotations

import numpy as np
import torch

from varinv.data.batching import iterate
from varinv.data.store import Split
from varinv.methods.base import Method


AGREEMENT_SAMPLES = 64  # rendering every atom costs about K reconstructions per sample


@torch.no_grad()
def embed_split(model: Method, split: Split, max_samples: int | None = None, batch_size: int = 64):
    """Flattened per-fragment arrays: zc (N, Dc), zs (N, Ds) (as the decoder reads it), zs_fragments (N, Ds)
    (each fragment's own, unpooled), index (N,) or None, content (N,),
    style (N,), the reconstruction MSE over the split and, for models with a codebook and a decoder, the
    rendering agreement of the health check (None otherwise). N = samples × L."""
    model.eval()
    if max_samples is not None and max_samples < len(split):
        split = Split(
            x=split.x[:max_samples],
            content=split.content[:max_samples],
            style=split.style[:max_samples],
            name=split.name,
            style_names=split.style_names,
            scale=split.scale,
        )
    zc, zs, zs_frag, idx, content, style, sq, count = [], [], [], [], [], [], 0.0, 0
    agree, left = [], AGREEMENT_SAMPLES  # the health check's rendering agreement, on the first samples only
    for batch in iterate(split, batch_size):
        if left > 0:
            a = model.rendering_agreement(batch["x"][:left])
            left -= len(batch["x"])
            if a is not None:
                agree.append(a.numpy())
        enc = model.encode(batch["x"])
        x_hat = model.reconstruct(batch["x"])
        sq += float(((x_hat - batch["x"]) ** 2).sum())
        count += batch["x"].numel()
        zc.append(enc.content.flatten(0, 1).float().numpy())
        zs.append(enc.style.flatten(0, 1).float().numpy())
        zs_frag.append(enc.own_style.flatten(0, 1).float().numpy())
        if enc.content_index is not None:
            idx.append(enc.content_index.flatten().numpy())
        content.append(batch["content"].flatten().numpy())
        style.append(batch["style"].flatten().numpy())
    return {
        "zc": np.concatenate(zc),
        "zs": np.concatenate(zs),
        "zs_fragments": np.concatenate(zs_frag),
        "index": np.concatenate(idx) if idx else None,
        "content": np.concatenate(content),
        "style": np.concatenate(style),
        "recon_mse": sq / max(count, 1),
        "agreement": float(np.concatenate(agree).mean()) if agree else None,
    }


def content_index(model: Method, emb: dict, n_atoms: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Atom index and atoms for every method: the codebook where there is one, otherwise k-means with
    ``n_atoms`` clusters on the continuous content embeddings (so codebook metrics exist for all)."""
    book = model.codebook()
    if book is not None and emb["index"] is not None:
        return emb["index"], book.detach().float().numpy()
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=n_atoms, n_init=4, random_state=seed).fit(emb["zc"])
    return km.labels_.astype(np.int64), km.cluster_centers_.astype(np.float32)
