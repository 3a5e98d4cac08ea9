"""Zero-shot and few-shot out-of-distribution (OOD) content classification (papers.md §1.8, items 3-4).

The OOD splits hold the same contents rendered in styles never seen in training (PhoneNums: 8 new
colours). A fragment is classified through the **in-distribution atom → class map**: each atom's class
is the argmax of its row of the ID confusion counts ``M[atom, class]`` (measured on the ID evaluation
split); an OOD fragment is predicted as the class of the atom it quantises to.

Zero-shot
    :func:`atom_class_map`, :func:`map_accuracy`, :func:`one_to_one_fraction`, :func:`zero_shot`.
    The reference predicts "the position of the VQ index in the row permutation" of the sorted
    confusion matrix, which equals the argmax map exactly when K = #classes and the map is
    one-to-one; the argmax map is the same thing written so that it is defined for every K.
    **The measure is only meaningful where K equals the number of classes** (with K > #classes
    several atoms share a class and chance rises; with K < #classes some classes are never
    predicted), so :func:`zero_shot` adds a ``note`` whenever K != #classes.

Few-shot (:func:`few_shot_unsupervised`, :func:`few_shot_supervised`, :func:`shot_draws`)
    Paper protocol: deep-copy the model, freeze the codebook (``model.freeze_codebook()``), and
    fine-tune **all** weights with the method's own unsupervised loss (``model.loss``, no labels) for
    one epoch over the shot set, AdamW with lr 1e-4 (PyTorch's default weight decay 0.01), in
    ``train()`` mode (BatchNorm statistics update); then classify ``ood_test`` as in zero-shot with
    the ID map. Batches are ``batch_size`` samples (the run's ``train.batch_size``) in a seeded random
    order; a final batch of a single sample is merged into the previous one (V3's loss compares
    samples). The ``step`` passed to ``model.loss`` is the checkpoint's step.

    The supervised counterpart is the registered ``supervised`` method (built with
    ``build_method("supervised", …)`` from the run's backbone settings; a plain
    :class:`~varinv.eval.classifier.FragmentClassifier` if that method is absent) trained on the ID
    train split (short, cached in ``RUN/eval_cache``; :mod:`varinv.eval.classifier`) and fine-tuned on
    the **same** shot batches with their content
    labels (cross-entropy on the content scores; OOD style labels name new colours that the ID
    style head does not have, so they are not used), one epoch, AdamW lr 1e-4, ``train()`` mode; its
    accuracy is measured on the same ``ood_test`` fragments.

Draws
    Draw 0 is the ``ood_{N}shot`` split exactly as stored (the paper's shot set). Draw d >= 1 picks
    N rows per OOD style (colour) without replacement from the largest shot split (PhoneNums'
    shot splits are nested, ``ood_1shot`` ⊂ ``ood_5shot`` ⊂ ``ood_10shot``, so the pool is
    ``ood_10shot``: 10 rows per colour), seeded by (seed, N, d). Every draw also has its own batch
    order and torch seed. For the 1-shot split (1 row per colour) the draws are therefore different
    rows of ``ood_10shot``; where the pool has no more than N rows per colour (10-shot on PhoneNums)
    every draw uses the same rows and the draws differ only in batch order, which
    ``distinct_subsets`` reports. Mean ± std are over draws (std with ddof = 1; 0 for one draw).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from varinv.data.batching import make_batch
from varinv.data.store import Split
from varinv.eval.metrics import MetricInputError

__all__ = [
    "ONE_TO_ONE_NOTE",
    "atom_class_map",
    "map_predict",
    "map_accuracy",
    "one_to_one_fraction",
    "classes_covered",
    "zero_shot",
    "mean_std",
    "subset",
    "shot_draws",
    "shot_batches",
    "finetune_unsupervised",
    "finetune_supervised",
    "nearest_atom",
]

ONE_TO_ONE_NOTE = ("zero-/few-shot accuracy through the ID atom→class map is only meaningful where K equals "
                   "the number of content classes (here K={k}, {c} classes)")


# ------------------------------------------------------------------------------------------ arrays
def atom_class_map(counts) -> np.ndarray:
    """Class of every atom: argmax of its row of the ID confusion counts ``(K, C)``; -1 for an atom
    no ID fragment used. Ties go to the lower class index.

    >>> atom_class_map(np.array([[5, 1], [0, 0], [2, 3]])).tolist()
    [0, -1, 1]
    """
    m = np.asarray(counts)
    if m.ndim != 2:
        raise MetricInputError(f"confusion counts must be (K, C), got shape {m.shape}")
    return np.where(m.sum(1) > 0, m.argmax(1), -1).astype(np.int64)


def map_predict(index, amap) -> np.ndarray:
    """Predicted class of every fragment: ``amap[index]`` (-1 = unmapped atom, always wrong)."""
    amap = np.asarray(amap, dtype=np.int64)
    index = np.asarray(index, dtype=np.int64)
    if index.size and (index.min() < 0 or index.max() >= amap.shape[0]):
        raise MetricInputError(f"atom indices must lie in [0, {amap.shape[0]}), got {index.min()}..{index.max()}")
    return amap[index]


def map_accuracy(index, content, amap) -> float:
    """Fraction of fragments whose mapped atom class equals the true content label."""
    content = np.asarray(content).reshape(-1)
    index = np.asarray(index).reshape(-1)
    if index.shape != content.shape:
        raise MetricInputError(f"index {index.shape} and content {content.shape} differ in length")
    if index.size == 0:
        raise MetricInputError("no fragments to classify")
    return float(np.mean(map_predict(index, amap) == content))


def one_to_one_fraction(amap) -> float:
    """Fraction of the K atoms that are mapped one-to-one: used (class >= 0) and the only atom mapped
    to their class. 1.0 exactly when every atom has its own class (so K <= #classes).

    >>> one_to_one_fraction([0, 1, 1, -1])   # only atom 0 owns its class
    0.25
    """
    amap = np.asarray(amap, dtype=np.int64)
    if amap.size == 0:
        return 0.0
    used = amap >= 0
    counts = np.bincount(amap[used], minlength=1)
    own = np.zeros(amap.shape, bool)
    own[used] = counts[amap[used]] == 1
    return float(own.mean())


def classes_covered(amap, n_classes: int) -> float:
    """Fraction of the content classes that at least one atom maps to."""
    amap = np.asarray(amap, dtype=np.int64)
    return float(np.unique(amap[amap >= 0]).size / max(int(n_classes), 1))


def zero_shot(index, content, amap, n_classes: int) -> dict:
    """Zero-shot OOD accuracy through the ID map, plus how one-to-one the map is.

    Returns ``{"accuracy", "one_to_one_fraction", "classes_covered", "n_atoms", "n_classes",
    "n_fragments"}`` and a ``"note"`` when K != n_classes.
    """
    amap = np.asarray(amap, dtype=np.int64)
    out = {
        "accuracy": map_accuracy(index, content, amap),
        "one_to_one_fraction": one_to_one_fraction(amap),
        "classes_covered": classes_covered(amap, n_classes),
        "n_atoms": int(amap.shape[0]),
        "n_classes": int(n_classes),
        "n_fragments": int(np.asarray(index).size),
    }
    if amap.shape[0] != n_classes:
        out["note"] = ONE_TO_ONE_NOTE.format(k=amap.shape[0], c=n_classes)
    return out


def nearest_atom(z, atoms) -> np.ndarray:
    """Index of the nearest atom (Euclidean) for every row of ``z`` (methods without a codebook)."""
    z = np.asarray(z, dtype=np.float64)
    a = np.asarray(atoms, dtype=np.float64)
    d = (z * z).sum(1)[:, None] - 2 * z @ a.T + (a * a).sum(1)[None]
    return d.argmin(1).astype(np.int64)


def mean_std(values) -> dict:
    """``{"mean", "std" (ddof=1, 0 for one value), "values", "n"}``."""
    v = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(v.mean()) if v.size else float("nan"),
        "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
        "values": v.tolist(),
        "n": int(v.size),
    }


# ------------------------------------------------------------------------------------------ draws
def subset(split: Split, rows) -> Split:
    """A new in-memory split with the given rows (in the given order)."""
    rows = np.asarray(rows, dtype=np.int64)
    order = np.argsort(rows, kind="stable")
    inv = np.empty_like(order)
    inv[order] = np.arange(order.size)
    sl = lambda a: np.asarray(a[rows[order]])[inv]  # noqa: E731 - sorted reads from memory maps
    return Split(x=sl(split.x), content=sl(split.content), style=sl(split.style), name=split.name,
                 style_names=list(split.style_names), scale=split.scale)


def _sample_style(split: Split) -> np.ndarray:
    s = np.asarray(split.style)
    return s if s.ndim == 1 else s[:, 0]


def shot_draws(pool_style, n_shots: int, n_draws: int, seed: int = 0) -> list[np.ndarray]:
    """Row indices into the pool for draws 1..n_draws-1: ``n_shots`` rows per style, without replacement
    (all rows of a style that has fewer), seeded by (seed, n_shots, d). Sorted within each draw.

    (Draw 0, the stored shot split itself, is added by the caller.)
    """
    style = np.asarray(pool_style).reshape(-1)
    classes = np.unique(style)
    out = []
    for d in range(1, n_draws):
        rng = np.random.default_rng([seed, n_shots, d])
        # vectorised "n per class": a random key per row, rank within class, keep rank < n
        key = rng.random(style.size)
        order = np.lexsort((key, style))
        s_sorted = style[order]
        starts = np.searchsorted(s_sorted, classes)
        rank = np.arange(style.size) - np.repeat(starts, np.diff(np.append(starts, style.size)))
        out.append(np.sort(order[rank < n_shots]))
    return out


def shot_batches(n: int, batch_size: int, seed: int) -> list[np.ndarray]:
    """One epoch of batches over ``n`` rows in a seeded random order; a last batch of a single row is
    merged into the previous batch."""
    perm = np.random.default_rng(seed).permutation(n)
    batches = [perm[i:i + batch_size] for i in range(0, n, batch_size)]
    if len(batches) > 1 and len(batches[-1]) < 2:
        last = batches.pop()
        batches[-1] = np.concatenate([batches[-1], last])
    return batches


# ------------------------------------------------------------------------------------------ fine-tuning
def _finetune(model, shots: Split, loss_of, *, batch_size: int, seed: int, lr: float, epochs: int,
              freeze_codebook: bool):
    """A deep copy of ``model`` trained on ``shots`` with ``loss_of(copy, batch)``; the shared loop of
    both few-shot arms, so they see the same batches in the same order. Returns the copy in eval mode."""
    m = copy.deepcopy(model)
    if freeze_codebook:
        m.freeze_codebook()
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(m.parameters(), lr=lr)
    m.train()
    for e in range(epochs):
        for idx in shot_batches(len(shots), batch_size, seed + 7919 * e):
            loss = loss_of(m, make_batch(shots, idx))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    m.eval()
    return m


def finetune_unsupervised(model, shots: Split, *, batch_size: int, seed: int, step: int = 0,
                          lr: float = 1e-4, epochs: int = 1):
    """A deep copy of ``model`` fine-tuned on ``shots`` with its own unsupervised loss, codebook frozen
    (paper protocol, see the module docstring). Returns the copy in eval mode."""

    def loss_of(m, batch):
        return m.loss({"x": batch["x"]}, step)["total"]  # unsupervised: no labels reach the loss

    return _finetune(model, shots, loss_of, batch_size=batch_size, seed=seed, lr=lr, epochs=epochs,
                     freeze_codebook=True)


def finetune_supervised(model, shots: Split, *, batch_size: int, seed: int, lr: float = 1e-4,
                        epochs: int = 1):
    """A deep copy of a supervised classifier fine-tuned on ``shots`` with cross-entropy on their content
    labels, same batches as :func:`finetune_unsupervised`. Returns the copy in eval mode."""
    from varinv.eval.classifier import content_logits

    def loss_of(m, batch):
        logits = content_logits(m, batch["x"])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), batch["content"].reshape(-1),
                               ignore_index=-1)

    return _finetune(model, shots, loss_of, batch_size=batch_size, seed=seed, lr=lr, epochs=epochs,
                     freeze_codebook=False)
