"""Swap metrics (TS-DSAE, papers.md §2.4): does swapping latents swap the factor?

An LDA classifier (``sklearn.discriminant_analysis.LinearDiscriminantAnalysis``) is fitted on the
training split's **sample-level style embeddings** (the mean of z_s over a sample's L fragments) to
predict the sample's style class. On the evaluation samples, with x̂ = decode(content, style) and
"re-encode" = the sample mean of z_s of encode(x̂):

* ``pre_swap``: decode(own content, own style), re-encode, predict; truth = **own** style.
* ``style_swap`` (TS-DSAE's gswap): decode(own content, donor's style), re-encode, predict;
  truth = the **donor's** style.
* ``content_swap`` (TS-DSAE's lswap): decode(donor's contents, own style), re-encode, predict;
  truth = **own** style.

Each score is macro-F1 (sklearn ``f1_score(average="macro")``: the unweighted mean F1 over the classes
present in truth or prediction). Every sample gets one donor drawn uniformly from the samples of a
**different** style class (:func:`donors_different`), and the same donor serves both swaps. V3's
latents are per fragment, so a swap is fragment-aligned: fragment t of the result is decoded from
fragment t's content (of the content source) and fragment t's style vector (of the style source).
The decoder is fed ``model.decoder_content(enc)`` (the quantised content for V3). A sample's style
label is its first fragment's (style is per sample in every benchmark).

A high ``style_swap`` and ``content_swap`` mean style moves with z_s and not with z_c; ``pre_swap`` is
the ceiling set by reconstruction.
"""

from __future__ import annotations

import numpy as np
import torch

from varinv.data.batching import iterate
from varinv.data.store import Split
from varinv.eval.metrics import MetricInputError

__all__ = [
    "encode_samples",
    "decode_encode",
    "donors_different",
    "donors_any",
    "sample_labels",
    "macro_f1",
    "swap_f1",
    "fit_lda",
    "swap_metrics",
]


# ------------------------------------------------------------------------------------------ arrays
def sample_labels(labels) -> np.ndarray:
    """Per-sample labels from (N,) or (N, L) labels (first fragment)."""
    a = np.asarray(labels)
    return a if a.ndim == 1 else a[:, 0]


def donors_different(labels, seed: int = 0) -> np.ndarray:
    """For every sample i a donor j drawn uniformly among the samples whose label differs from i's.

    Vectorised: samples sorted by label; for i of class c (block [s_c, e_c) of the sorted order) draw
    r uniform in [0, N − n_c) and take sorted position r if r < s_c else r + n_c. Samples with no
    other-class sample (a single class) get -1.

    >>> d = donors_different(np.array([0, 0, 1, 2]), seed=1); bool(np.all(np.array([0, 0, 1, 2])[d] != [0, 0, 1, 2]))
    True
    """
    y = np.asarray(labels).reshape(-1)
    n = y.size
    order = np.argsort(y, kind="stable")
    ys = y[order]
    classes, starts, counts = np.unique(ys, return_index=True, return_counts=True)
    ci = np.searchsorted(classes, y)
    s, c = starts[ci], counts[ci]
    others = n - c
    rng = np.random.default_rng(seed)
    r = np.floor(rng.random(n) * np.maximum(others, 1)).astype(np.int64)
    pos = np.where(r < s, r, r + c)
    out = order[np.minimum(pos, n - 1)]
    return np.where(others > 0, out, -1)


def donors_any(n: int, seed: int = 0) -> np.ndarray:
    """For every sample i a donor j != i drawn uniformly (i + 1 + uniform(N − 1) mod N); -1 if N = 1."""
    if n < 2:
        return np.full(n, -1, np.int64)
    rng = np.random.default_rng(seed)
    return (np.arange(n) + 1 + rng.integers(0, n - 1, n)) % n


def macro_f1(y_true, y_pred) -> float:
    """Macro-F1 over the classes present in either array (sklearn's definition, zero_division = 0)."""
    from sklearn.metrics import f1_score

    y_true, y_pred = np.asarray(y_true).reshape(-1), np.asarray(y_pred).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise MetricInputError(f"truth {y_true.shape} and prediction {y_pred.shape} differ in length")
    if y_true.size == 0:
        raise MetricInputError("macro_f1 needs at least one sample")
    return float(f1_score(y_true, y_pred, average="macro", zero_division=0))


def swap_f1(own, donor, pred_pre, pred_style_swap, pred_content_swap) -> dict:
    """The three TS-DSAE scores from per-sample predictions.

    ``own``: each sample's style; ``donor``: its donor's style; ``pred_*``: the LDA's predictions for
    the pre-swap, style-swapped and content-swapped re-encodings.

    Returns ``{"pre_swap": F1(own, pred_pre), "style_swap": F1(donor, pred_style_swap),
    "content_swap": F1(own, pred_content_swap)}``.
    """
    return {
        "pre_swap": macro_f1(own, pred_pre),
        "style_swap": macro_f1(donor, pred_style_swap),
        "content_swap": macro_f1(own, pred_content_swap),
    }


def fit_lda(sample_style_emb, sample_style):
    """LDA on (N, Ds) sample-mean style embeddings → fitted classifier."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    x = np.asarray(sample_style_emb, dtype=np.float64)
    y = sample_labels(sample_style)
    if np.unique(y).size < 2:
        raise MetricInputError("the LDA style classifier needs at least two style classes in the train split")
    return LinearDiscriminantAnalysis().fit(x, y)


# ------------------------------------------------------------------------------------------ model
@torch.no_grad()
def encode_samples(model, split: Split, batch_size: int = 64) -> dict:
    """Per-sample latents of every row: ``dec`` (R, L, Dc) what the decoder is fed, ``zc`` (R, L, Dc),
    ``zs`` (R, L, Ds), ``index`` (R, L) or None."""
    model.eval()
    dec, zc, zs, idx = [], [], [], []
    for batch in iterate(split, batch_size):
        enc = model.encode(batch["x"])
        dec.append(model.decoder_content(enc).float())
        zc.append(enc.content.float())
        zs.append(enc.style.float())
        if enc.content_index is not None:
            idx.append(enc.content_index)
    return {
        "dec": torch.cat(dec),
        "zc": torch.cat(zc),
        "zs": torch.cat(zs),
        "index": torch.cat(idx) if idx else None,
    }


@torch.no_grad()
def decode_encode(model, content: torch.Tensor, style: torch.Tensor, batch_size: int = 64, keep_x: bool = False,
                  consumer=None) -> dict:
    """Decode (R, L, ·) content/style pairs in chunks of samples and re-encode the result.

    Returns ``{"zs": (R, L, Ds), "zc": (R, L, Dc)}`` of the re-encoding (and ``"x"`` if ``keep_x``);
    ``consumer(x_chunk, rows)`` is called on every decoded chunk (e.g. the judge).
    """
    model.eval()
    zs, zc, xs = [], [], []
    for s in range(0, content.shape[0], batch_size):
        x = model.decode(content[s:s + batch_size], style[s:s + batch_size])
        enc = model.encode(x)
        zs.append(enc.style.float())
        zc.append(enc.content.float())
        if keep_x:
            xs.append(x)
        if consumer is not None:
            consumer(x, slice(s, s + x.shape[0]))
    out = {"zs": torch.cat(zs), "zc": torch.cat(zc)}
    if keep_x:
        out["x"] = torch.cat(xs)
    return out


def swap_metrics(model, lda, lat: dict, style, seed: int = 0) -> dict:
    """The TS-DSAE swap scores of ``model`` on samples with latents ``lat`` (:func:`encode_samples`) and
    per-sample styles ``style``; ``lda`` from :func:`fit_lda`."""
    own = sample_labels(style)
    donor = donors_different(own, seed)
    ok = donor >= 0
    if not ok.any():
        raise MetricInputError("swap metrics need at least two style classes among the evaluated samples")
    rows = np.flatnonzero(ok)
    d = torch.from_numpy(donor[rows])
    r = torch.from_numpy(rows)
    dec, zs = lat["dec"], lat["zs"]
    pre = decode_encode(model, dec[r], zs[r])["zs"].mean(1).numpy()
    gswap = decode_encode(model, dec[r], zs[d])["zs"].mean(1).numpy()
    lswap = decode_encode(model, dec[d], zs[r])["zs"].mean(1).numpy()
    out = swap_f1(own[rows], own[donor[rows]], lda.predict(pre), lda.predict(gswap), lda.predict(lswap))
    out["n_samples"] = int(rows.size)
    out["lda_accuracy_real"] = float(np.mean(lda.predict(zs[r].mean(1).numpy()) == own[rows]))
    return out
