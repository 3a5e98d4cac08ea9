"""Evaluation metrics: pure, vectorised functions of numpy arrays.

Every function takes arrays (embeddings ``(N, d)`` float, labels ``(N,)`` int, atom indices ``(N,)`` int)
and returns floats or arrays. Nothing here touches files, torch or a model. The definitions follow the
reference code of the V3 paper (``tester.py``, ``utils/eval_utils.py``; see
``shared/reference/papers.md`` §1.8). Each docstring says where this module differs from the reference.

Retrieval (precision/recall@k, PR-AUC)
    :func:`precision_recall_at_k`, :func:`pr_auc`, :func:`retrieval_scores`, :func:`four_pairs`,
    :data:`PAPER_K_LIST`, :func:`adaptive_k_list`.
Codebook
    :func:`confusion_matrix`, :func:`macro_purity` (the paper's "codebook accuracy"),
    :func:`atom_order`, :func:`ordered_confusion`, :func:`one_to_one_accuracy`, :func:`many_to_one_accuracy`,
    :func:`atom_usage`.
Verification
    :func:`eer` (chunked, histogram) and :func:`eer_exact` (sort-based).
Reconstruction
    :func:`recon_mse`.

Distances are Euclidean and computed in float64 as ``||a||² + ||b||² − 2 a·b`` in chunks of queries,
so memory is ``O(chunk × N)`` and no ``N × N`` matrix is ever held for large ``N``.

Longer than our ~450-line guide on purpose: it is the single home of the metric definitions that
mirror the reference code (and of :class:`MetricInputError`), kept together so each can be checked
against the reference in one place.
"""

from __future__ import annotations

import contextlib
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from varinv.errors import VarinvError

__all__ = [
    "MetricInputError",
    "PAPER_K_LIST",
    "ADAPTIVE_K_BASE",
    "ADAPTIVE_K_FRACTIONS",
    "adaptive_k_list",
    "precision_recall_at_k",
    "pr_auc",
    "retrieval_scores",
    "four_pairs",
    "confusion_matrix",
    "macro_purity",
    "atom_order",
    "ordered_confusion",
    "one_to_one_accuracy",
    "many_to_one_accuracy",
    "atom_usage",
    "eer",
    "eer_exact",
    "recon_mse",
]


class MetricInputError(VarinvError, ValueError):
    """An array or setting passed to a metric has the wrong shape, dtype or values.

    The one such error of the evaluation code (factors, probes, judged, swap, plots raise it too), so
    callers catch a single class."""


#: The k-list of the paper-era reference code (used until commit bbbc7c9).
PAPER_K_LIST: list[int] = [1, 2, 5, 10, 20, 50, 75, 100, 200, 300, 400, 500, 750, 1000, 1500, 2000, 2500, 3000]

#: Fixed part of the adaptive k-list (reference commit bbbc7c9).
ADAPTIVE_K_BASE: tuple[int, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500)

#: Fractions f of the largest number of positives P; the adaptive list adds ``round(P·f)``. The reference
#: only states "f ∈ {.001, …, 1.0}"; this 1-2-5 then tenths grid is our choice.
ADAPTIVE_K_FRACTIONS: tuple[float, ...] = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0,
)

_INT64_MAX = np.iinfo(np.int64).max


# --------------------------------------------------------------------------------------------------
# input checks and distance helpers
# --------------------------------------------------------------------------------------------------


def _as_embeddings(emb, name: str = "emb") -> np.ndarray:
    x = np.asarray(emb, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise MetricInputError(f"{name} must be a 2-D array (N, d), got shape {x.shape}; reshape it to (N, d).")
    if not np.isfinite(x).all():
        raise MetricInputError(f"{name} contains NaN or inf values; drop or fix those rows first.")
    return x


def _as_labels(labels, n: int, name: str = "labels") -> np.ndarray:
    y = np.asarray(labels)
    if y.shape != (n,):
        raise MetricInputError(f"{name} must have shape ({n},) to match the embeddings, got {y.shape}.")
    return y


def _as_index(a, n: int | None, upper: int, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 1 or (n is not None and a.shape[0] != n):
        raise MetricInputError(f"{name} must be a 1-D array of length {n}, got shape {a.shape}.")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise MetricInputError(f"{name} must hold integers, got dtype {a.dtype}.")
    a = a.astype(np.int64, copy=False)
    if a.size and (a.min() < 0 or a.max() >= upper):
        raise MetricInputError(
            f"{name} values must lie in [0, {upper}), got min {a.min()} and max {a.max()}; pass a larger bound."
        )
    return a


def _distance_factors(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``Q (N, d+2)`` and ``B (d+2, N)`` with ``Q[i] @ B[:, j] = ||x_i||² + ||x_j||² − 2 x_i·x_j``.

    One matrix product per chunk then gives squared distances with no extra elementwise passes.
    """
    n, d = x.shape
    sq = np.einsum("ij,ij->i", x, x)
    q = np.empty((n, d + 2))
    q[:, :d] = x
    q[:, d] = sq
    q[:, d + 1] = 1.0
    b = np.empty((d + 2, n))
    b[:d] = -2.0 * x.T
    b[d] = 1.0
    b[d + 1] = sq
    return q, b


def _blas_single_thread():
    """Context that limits BLAS to one thread (threadpoolctl, a scikit-learn dependency) if available."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _auto_chunk(n: int, target_elements: int = 1 << 23) -> int:
    """Queries per chunk: one chunk's ``(chunk, N)`` float64 block is about 64 MB (8M distances)."""
    return int(max(1, min(4096, target_elements // max(n, 1))))


# --------------------------------------------------------------------------------------------------
# retrieval: precision / recall @ k and PR-AUC
# --------------------------------------------------------------------------------------------------


def adaptive_k_list(n_pos_max: int) -> list[int]:
    """The reference's adaptive k-list (commit bbbc7c9), meant for test sets larger than the paper's.

    ``{1, 2, 5, 10, 20, 50, 100, 200, 500} ∪ {round(P·f) : f ∈ ADAPTIVE_K_FRACTIONS}`` with
    ``P = n_pos_max`` the largest number of positives of any query, values < 1 dropped, de-duplicated and
    sorted ascending. The largest entry is ``max(P, 500)``, so recall reaches 1 for every query.

    >>> adaptive_k_list(1000)[:12]
    [1, 2, 5, 10, 20, 50, 100, 200, 300, 400, 500, 600]
    """
    p = int(n_pos_max)
    if p < 0:
        raise MetricInputError(f"n_pos_max must be >= 0, got {n_pos_max}.")
    ks = set(ADAPTIVE_K_BASE)
    ks.update(int(round(p * f)) for f in ADAPTIVE_K_FRACTIONS)
    return sorted(k for k in ks if k >= 1)


def _class_codes(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense codes 0..C-1 for any label values, and the number of positives of each fragment."""
    _, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
    codes = codes.reshape(-1).astype(np.int64)
    return codes, counts[codes] - 1


def _tp_chunk(
    q: np.ndarray,
    b: np.ndarray,
    codes: np.ndarray,
    rows: np.ndarray,
    k_eff: np.ndarray,
    max_k: int,
    sample: tuple[np.ndarray, int] | None,
    ws: dict,
) -> np.ndarray:
    """True-positive counts ``(len(rows), len(k_eff))`` for one chunk of queries.

    Ranking is by (squared distance, index), the query itself at +inf. Fast path: each squared distance
    is turned into an int64 sort key (its IEEE bit pattern, which orders non-negative doubles, with the
    lowest bit replaced by "same label"); keys are sorted and the label bits cumulatively summed. Clearing
    the lowest bit merges values 1 ulp apart, so wherever the k-th and (k+1)-th keys share a 2-ulp bucket
    (a possible tie), or too few candidates were kept, the row is recomputed exactly with a stable sort of
    the float distances (ties → lower index first). The result therefore equals that exact stable ranking.
    """
    c = rows.shape[0]
    n = b.shape[1]
    qr = q[rows]
    # (c, N) squared distances, written into a reused per-thread buffer (fresh 100 MB arrays cost page
    # faults that double the time of this product)
    if "dist" not in ws or ws["dist"].shape[0] < c:
        ws["dist"] = np.empty((c, n))
        ws["mask"] = np.empty((c, n), dtype=bool)
    dist = np.matmul(qr, b, out=ws["dist"][:c])
    ar = np.arange(c)
    dist[ar, rows] = np.inf  # the query never retrieves itself
    qcodes = codes[rows]

    if sample is None:
        counts = np.full(c, n)
        keys = np.maximum(dist.view(np.int64), 0)  # negative round-off (and -0.0) → +0.0
        np.bitwise_and(keys, -2, out=keys)
        np.bitwise_or(keys, codes[None, :] == qcodes[:, None], out=keys)
    else:
        b_s, rank = sample  # (d+2, S) factors of a fixed random column sample
        ds = np.sort(qr @ b_s, axis=1)
        tau = ds[:, rank]
        # widen the threshold to the top of its 2-ulp bucket so that no bucket is split by the cut
        tau_top = (np.maximum(tau.view(np.int64), 0) | 1).view(np.float64)
        tau = np.where(np.isfinite(tau), tau_top, tau)
        mask = np.less_equal(dist, tau[:, None], out=ws["mask"][:c])
        flat = np.flatnonzero(mask)  # candidates, row-major: each row's candidates stay contiguous
        counts = np.diff(np.searchsorted(flat, np.arange(c + 1) * n))
        match = np.equal(codes[None, :], qcodes[:, None], out=ws["mask"][:c])  # reuse: mask is spent
        kv = dist.reshape(-1)[flat].view(np.int64)
        np.maximum(kv, 0, out=kv)
        np.bitwise_and(kv, -2, out=kv)
        np.bitwise_or(kv, match.reshape(-1)[flat], out=kv)
        width = int(max(counts.max(initial=0), max_k + 1))
        keys = np.full((c, width), _INT64_MAX, dtype=np.int64)
        keys[np.arange(width)[None, :] < counts[:, None]] = kv  # row-major fill = candidate order
        del flat, kv

    keys.sort(axis=1)
    tp = np.cumsum(keys[:, :max_k] & 1, axis=1)[:, k_eff - 1]
    # keys has >= max_k + 1 columns (N >= max_k + 1; padded in the sampled path), so column k exists
    bad = ((keys[:, k_eff - 1] >> 1) == (keys[:, k_eff] >> 1)).any(axis=1) | (counts < max_k)
    if bad.any():
        d_bad = np.maximum(dist[bad], 0.0)
        order = np.argsort(d_bad, axis=1, kind="stable")[:, :max_k]
        match = codes[order] == qcodes[bad][:, None]
        tp[bad] = np.cumsum(match, axis=1)[:, k_eff - 1]
    return tp


def precision_recall_at_k(
    emb,
    labels,
    k_list: Sequence[int] = PAPER_K_LIST,
    chunk: int | None = None,
    *,
    query_idx=None,
    n_jobs: int = 1,
    per_query: bool = False,
) -> dict:
    """Precision, recall and F1 of Euclidean k-NN retrieval, averaged over queries.

    Every fragment (or each of ``query_idx``) is a query against **all** ``N`` fragments. The query
    itself is excluded (its distance is +inf). Its positives are the other fragments with the same label.
    With ``TP_q(k)`` the number of positives among the ``k`` nearest neighbours:

    * precision@k = TP_q(k) / k
    * recall@k    = TP_q(k) / #positives(q); a query with no positives counts as recall 0
    * F1@k        = 2·p·r / (p + r) per query, 0 where p + r = 0

    Each is then averaged over the queries (F1 is averaged per query, not computed from the means).

    Ranking is by (distance, index): exact ties go to the lower index, so results are deterministic. Ties
    are exact whenever the float64 squared distances are, e.g. for integer coordinates.

    ``k`` larger than ``N − 1`` is clipped to ``N − 1`` (the returned ``k`` holds the clipped values, so
    repeated entries may appear and add nothing to :func:`pr_auc`). **Differences from the paper-era
    reference:** it kept the query in its own ranking (rank 1, never a positive) and divided by the
    unclipped k when k > N; the newer reference (bbbc7c9) excludes the query, as here.

    Cost: ``O(N_q · N · d)`` for the distances plus a sort of roughly the ``max_k`` nearest per query;
    memory ``O(chunk · N)``; no loop over queries or pairs in Python (only over chunks). Measured:
    N = 100,000, d = 16, max k ≈ 10,000 in about 40 s of CPU on one core
    (``benchmarks/bench_prauc.py``). For ``N ≥ 8192`` and ``4·(max k + 1) ≤ N`` a threshold estimated from a fixed
    random sample of columns keeps only about the ``max k`` nearest of each query before sorting; rows
    where the threshold kept too few are recomputed exactly, so the result does not depend on the sample.

    Parameters
    ----------
    emb : (N, d) array of floats.
    labels : (N,) array of labels (any comparable values).
    k_list : increasing positive integers.
    chunk : queries per block; default keeps a block of about 8M distances (64 MB per thread).
    query_idx : optional subset of fragment indices used as queries (they still search all N).
    n_jobs : threads over chunks (numpy releases the GIL in the heavy calls). BLAS is limited to one
        thread during the call (via threadpoolctl), since its threads only slow these skinny products.
    per_query : also return ``tp`` (N_q, n_k) and ``n_pos`` (N_q,).

    Returns
    -------
    dict with ``k``, ``precision``, ``recall``, ``f1`` (arrays of len(k_list)) and ``n_queries``.

    Examples
    --------
    >>> x = np.array([[0.], [1.], [3.], [7.], [8.]]); y = np.array([0, 0, 1, 0, 1])
    >>> precision_recall_at_k(x, y, [1, 2])["precision"].tolist()
    [0.4, 0.3]
    """
    x = _as_embeddings(emb)
    n = x.shape[0]
    y = _as_labels(labels, n)
    if n < 2:
        raise MetricInputError(f"retrieval needs at least 2 fragments, got N={n}.")
    k_req = np.asarray(list(k_list), dtype=np.int64).reshape(-1)
    if k_req.size == 0 or k_req.min() < 1 or np.any(np.diff(k_req) < 0):
        raise MetricInputError(f"k_list must be non-empty, positive and non-decreasing, got {list(k_list)}.")
    k_eff = np.minimum(k_req, n - 1)
    max_k = int(k_eff.max())
    codes, n_pos = _class_codes(y)
    queries = np.arange(n) if query_idx is None else _as_index(query_idx, None, n, "query_idx")
    nq = queries.shape[0]
    chunk = _auto_chunk(n) if chunk is None else int(chunk)
    if chunk < 1:
        raise MetricInputError(f"chunk must be >= 1, got {chunk}.")

    q, b = _distance_factors(x)
    sample = None
    if n >= 8192 and 4 * (max_k + 1) <= n:
        s = min(n, max(2048, n // 16))
        p = (max_k + 1) / (n - 1)
        rank = int(math.ceil(p * s + 4.0 * math.sqrt(s * p * (1.0 - p)) + 2)) + 1  # +1: the query may be sampled
        if rank < s - 1:
            cols = np.sort(np.random.default_rng(0).choice(n, size=s, replace=False))
            sample = (np.ascontiguousarray(b[:, cols]), rank)

    tp = np.empty((nq, k_eff.size), dtype=np.int64)
    starts = range(0, nq, chunk)

    local = threading.local()

    def work(s0: int) -> None:
        rows = queries[s0 : s0 + chunk]
        if not hasattr(local, "ws"):
            local.ws = {}
        tp[s0 : s0 + rows.shape[0]] = _tp_chunk(q, b, codes, rows, k_eff, max_k, sample, local.ws)

    # BLAS threads are pinned to 1 for the call: with skinny (d+2)-deep products they only spin and
    # compete with each other (measured 1.5-2x slower on 2 cores); parallelism comes from n_jobs.
    with _blas_single_thread():
        if n_jobs > 1 and nq > chunk:
            with ThreadPoolExecutor(max_workers=int(n_jobs)) as pool:
                list(pool.map(work, starts))
        else:
            for s0 in starts:
                work(s0)

    npos = n_pos[queries].astype(np.float64)
    prec = tp / k_eff[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        rec = np.where(npos[:, None] > 0, tp / npos[:, None], 0.0)
        denom = prec + rec
        f1 = np.where(denom > 0, 2.0 * prec * rec / denom, 0.0)
    out = {
        "k": k_eff,
        "precision": prec.mean(axis=0),
        "recall": rec.mean(axis=0),
        "f1": f1.mean(axis=0),
        "n_queries": int(nq),
    }
    if per_query:
        out["tp"] = tp
        out["n_pos"] = n_pos[queries]
    return out


def pr_auc(recall, precision) -> float:
    """Area under the precision-recall curve exactly as the reference computes it.

    ``AUC = Σ_{i=1}^{n-1} (r_i − r_{i−1}) · p_i`` over the k-list points ``(r_0, p_0) … (r_{n−1}, p_{n−1})``
    (ordered by increasing k): a right-endpoint Riemann sum that starts at the first k with **no anchor
    point** — there is no (r=0, p=1) start, so the first point contributes nothing and the area below
    ``r_0`` is not counted. A single point gives 0.

    >>> round(pr_auc([0.2, 0.5, 0.9], [1.0, 0.8, 0.4]), 12)  # 0.3·0.8 + 0.4·0.4
    0.4
    """
    r = np.asarray(recall, dtype=np.float64).reshape(-1)
    p = np.asarray(precision, dtype=np.float64).reshape(-1)
    if r.shape != p.shape:
        raise MetricInputError(f"recall and precision must have the same length, got {r.shape} and {p.shape}.")
    if r.size < 2:
        return 0.0
    return float(np.sum(np.diff(r) * p[1:]))


def retrieval_scores(emb, labels, k_list: Sequence[int] | None = None, **kwargs) -> dict:
    """:func:`precision_recall_at_k` plus ``"pr_auc"`` (see :func:`pr_auc`).

    With ``k_list=None``: :data:`PAPER_K_LIST` when ``N ≤ 3001`` (its largest k, 3000, then reaches every
    rank), otherwise :func:`adaptive_k_list` of the largest number of positives.
    """
    if k_list is None:
        y = np.asarray(labels)
        if y.shape[0] <= PAPER_K_LIST[-1] + 1:
            k_list = PAPER_K_LIST
        else:
            _, counts = np.unique(y, return_counts=True)
            k_list = adaptive_k_list(int(counts.max()) - 1)
    out = precision_recall_at_k(emb, labels, k_list, **kwargs)
    out["pr_auc"] = pr_auc(out["recall"], out["precision"])
    return out


def four_pairs(
    z_c,
    z_s,
    content,
    style,
    n_eval: int = 1000,
    seed: int = 0,
    k_list: Sequence[int] = PAPER_K_LIST,
    **kwargs,
) -> dict:
    """The paper's four retrieval scores on one seeded random subset of fragments.

    A subset of ``n_eval`` fragments (all of them when ``N ≤ n_eval``), drawn without replacement by
    ``np.random.default_rng(seed)`` and kept in index order, is used for all four combinations; within the
    subset every fragment is a query against the whole subset (see :func:`precision_recall_at_k`):

    * ``prauc_zc_content``: content embedding, content labels (should be high)
    * ``prauc_zs_style``:   style embedding, style labels (should be high)
    * ``prauc_zs_content``: style embedding, content labels (should be low)
    * ``prauc_zc_style``:   content embedding, style labels (should be low)

    Returns those four floats, the curves ``curve_<pair>`` (dicts of k, precision, recall, f1 arrays),
    ``n_eval`` (the subset size) and ``indices`` (the subset).
    """
    zc = _as_embeddings(z_c, "z_c")
    zs = _as_embeddings(z_s, "z_s")
    n = zc.shape[0]
    if zs.shape[0] != n:
        raise MetricInputError(f"z_c and z_s must have the same number of rows, got {n} and {zs.shape[0]}.")
    c = _as_labels(content, n, "content")
    s = _as_labels(style, n, "style")
    if n_eval < 2:
        raise MetricInputError(f"n_eval must be >= 2, got {n_eval}.")
    if n > n_eval:
        idx = np.sort(np.random.default_rng(seed).choice(n, size=int(n_eval), replace=False))
    else:
        idx = np.arange(n)
    out: dict = {"n_eval": int(idx.size), "indices": idx}
    for name, e, y in (
        ("zc_content", zc, c),
        ("zs_style", zs, s),
        ("zs_content", zs, c),
        ("zc_style", zc, s),
    ):
        res = precision_recall_at_k(e[idx], y[idx], k_list, **kwargs)
        out[f"prauc_{name}"] = pr_auc(res["recall"], res["precision"])
        out[f"curve_{name}"] = {key: res[key] for key in ("k", "precision", "recall", "f1")}
    return out


# --------------------------------------------------------------------------------------------------
# codebook metrics
# --------------------------------------------------------------------------------------------------


def confusion_matrix(atom_index, content, n_atoms: int, n_classes: int) -> np.ndarray:
    """Counts ``M[k, c]`` = number of fragments quantised to atom ``k`` whose content class is ``c``.

    Shape ``(n_atoms, n_classes)``, int64.

    >>> confusion_matrix([0, 0, 1], [1, 1, 0], 2, 2).tolist()
    [[0, 2], [1, 0]]
    """
    a = _as_index(atom_index, None, n_atoms, "atom_index")
    c = _as_index(content, a.shape[0], n_classes, "content")
    flat = np.bincount(a * n_classes + c, minlength=n_atoms * n_classes)
    return flat.reshape(n_atoms, n_classes).astype(np.int64)


def _row_normalise(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = np.asarray(counts, dtype=np.float64)
    if m.ndim != 2 or (m < 0).any():
        raise MetricInputError(f"counts must be a non-negative 2-D matrix, got shape {m.shape}.")
    tot = m.sum(axis=1)
    used = tot > 0
    norm = np.zeros_like(m)
    norm[used] = m[used] / tot[used, None]
    return norm, used


def macro_purity(counts) -> float:
    """The paper's "codebook accuracy": the unweighted mean row purity over used atoms.

    Rows of the count matrix are normalised to ``P(class | atom)``; the purity of a row is its maximum;
    the result is the mean over rows with at least one fragment (used atoms). Equivalent to the reference's
    ``Σ_rows max(row) / Σ(matrix)`` on the row-normalised matrix. Not weighted by usage, not Hungarian.

    >>> macro_purity([[8, 2], [0, 0], [1, 1]])  # (0.8 + 0.5) / 2
    0.65
    """
    norm, used = _row_normalise(counts)
    if not used.any():
        raise MetricInputError("counts has no non-zero row: no atom was used, so purity is undefined.")
    return float(norm[used].max(axis=1).mean())


def atom_order(counts) -> np.ndarray:
    """The one atom order every view shares (confusion plots, report, recombination grids).

    Used atoms sorted by their majority (argmax) class, then by purity (row max) descending, then by atom
    index; unused (all-zero) rows come last in index order. ``order[i]`` is the atom shown in row ``i``.
    """
    norm, used = _row_normalise(counts)
    arg = norm.argmax(axis=1)
    pur = norm.max(axis=1)
    idx = np.arange(norm.shape[0])
    return np.lexsort((idx, -pur, arg, ~used))


def ordered_confusion(counts) -> tuple[np.ndarray, np.ndarray]:
    """Row-normalised confusion matrix ``P(class | atom)`` with rows in :func:`atom_order` (the paper's figure).

    Returns ``(matrix[row_order], row_order)``; ``row_order[i]`` is the atom shown in row ``i``.
    """
    norm, _ = _row_normalise(counts)
    order = atom_order(counts)
    return norm[order], order


def one_to_one_accuracy(atom_index, content, n_atoms: int, n_classes: int) -> float:
    """Accuracy under the best one-to-one atom → class map (Hungarian matching on the counts).

    ``scipy.optimize.linear_sum_assignment`` maximises the matched counts; accuracy = matched / N. When
    ``K > C`` at most ``C`` atoms are matched and fragments of unmatched atoms count as wrong (likewise
    unmatched classes when ``K < C``).
    """
    counts = confusion_matrix(atom_index, content, n_atoms, n_classes)
    total = counts.sum()
    if total == 0:
        raise MetricInputError("atom_index is empty: accuracy needs at least one fragment.")
    r, c = linear_sum_assignment(counts, maximize=True)
    return float(counts[r, c].sum() / total)


def many_to_one_accuracy(atom_index, content, n_atoms: int, n_classes: int) -> float:
    """Accuracy when every atom predicts its majority class: ``Σ_k max_c M[k, c] / N``."""
    counts = confusion_matrix(atom_index, content, n_atoms, n_classes)
    total = counts.sum()
    if total == 0:
        raise MetricInputError("atom_index is empty: accuracy needs at least one fragment.")
    return float(counts.max(axis=1).sum() / total)


def atom_usage(atom_index, n_atoms: int) -> dict:
    """Codebook usage: ``fractions`` (K,) of fragments per atom, ``n_used`` atoms with any fragment, and
    ``perplexity = exp(−Σ p log p)`` (0·log 0 = 0), the effective number of atoms in use."""
    a = _as_index(atom_index, None, n_atoms, "atom_index")
    if a.size == 0:
        raise MetricInputError("atom_index is empty.")
    frac = np.bincount(a, minlength=n_atoms) / a.size
    nz = frac[frac > 0]
    return {
        "n_used": int(nz.size),
        "perplexity": float(np.exp(-np.sum(nz * np.log(nz)))),
        "fractions": frac,
    }


# --------------------------------------------------------------------------------------------------
# equal error rate
# --------------------------------------------------------------------------------------------------


def _eer_from_cumulative(cum_same: np.ndarray, cum_diff: np.ndarray, thresholds: np.ndarray) -> tuple[float, float]:
    """EER from cumulative counts of same/different pairs accepted (distance ≤ threshold)."""
    n_same, n_diff = cum_same[-1], cum_diff[-1]
    if n_same == 0 or n_diff == 0:
        raise MetricInputError("EER needs at least one same-label pair and one different-label pair.")
    far = np.concatenate([[0.0], cum_diff / n_diff])  # leading point: threshold −∞, accept nothing
    frr = np.concatenate([[1.0], 1.0 - cum_same / n_same])
    thr = np.concatenate([[-np.inf], thresholds])
    i = int(np.argmin(np.abs(far - frr)))
    return float((far[i] + frr[i]) / 2.0), float(thr[i])


def eer_exact(emb, labels, return_threshold: bool = False):
    """Equal error rate of "same label?" verification scored by Euclidean distance, by sorting all pairs.

    Every unordered pair ``i < j`` is accepted as "same" when its distance is ≤ a threshold t. With
    FAR(t) the fraction of different-label pairs accepted and FRR(t) the fraction of same-label pairs
    rejected, t runs over −∞ and every distinct pair distance; the EER is ``(FAR + FRR) / 2`` at the t
    minimising ``|FAR − FRR|`` (the smallest such t). Memory ``O(N²)``: use for N up to a few thousand.
    """
    x = _as_embeddings(emb)
    n = x.shape[0]
    y = _as_labels(labels, n)
    codes, _ = _class_codes(y)
    q, b = _distance_factors(x)
    iu, ju = np.triu_indices(n, k=1)
    d = np.sqrt(np.maximum((q @ b)[iu, ju], 0.0))
    same = codes[iu] == codes[ju]
    order = np.argsort(d, kind="stable")
    d, same = d[order], same[order]
    cum_same = np.cumsum(same)
    cum_diff = np.cumsum(~same)
    last = np.flatnonzero(np.append(d[1:] != d[:-1], True))  # last pair of each distinct distance
    e, t = _eer_from_cumulative(cum_same[last], cum_diff[last], d[last])
    return (e, t) if return_threshold else e


def eer(
    emb,
    labels,
    chunk: int | None = None,
    max_pairs: int | None = None,
    n_bins: int = 1 << 16,
    seed: int = 0,
    return_threshold: bool = False,
):
    """Equal error rate (same definition as :func:`eer_exact`) from distance histograms, in chunks.

    Two passes over all unordered pairs ``i < j``, a chunk of rows at a time (memory ``O(chunk × N)``,
    never ``N × N``): the first finds the largest distance ``D``, the second histograms same-label and
    different-label pair distances into ``n_bins`` equal bins on ``[0, D]``. Thresholds are the upper bin
    edges (plus −∞), so the result equals the exact EER up to the pairs inside one bin (bin width
    ``D / n_bins``): ``|eer − eer_exact|`` is at most the same- plus different-pair fraction of the bin
    that holds the exact crossing.

    ``max_pairs``: if the number of pairs exceeds it, a seeded random subset of ``n`` fragments with
    ``n(n−1)/2 ≤ max_pairs`` is used instead (for very large N).
    """
    x = _as_embeddings(emb)
    n = x.shape[0]
    y = _as_labels(labels, n)
    if n < 2:
        raise MetricInputError(f"EER needs at least 2 fragments, got N={n}.")
    if max_pairs is not None and n * (n - 1) // 2 > max_pairs:
        m = int((1 + math.isqrt(1 + 8 * int(max_pairs))) // 2)
        while m * (m - 1) // 2 > max_pairs:
            m -= 1
        if m < 2:
            raise MetricInputError(f"max_pairs={max_pairs} is too small; use at least 1.")
        sel = np.sort(np.random.default_rng(seed).choice(n, size=m, replace=False))
        x, y, n = x[sel], y[sel], m
    codes, _ = _class_codes(y)
    q, b = _distance_factors(x)
    chunk = _auto_chunk(n) if chunk is None else int(chunk)

    def upper_block(s0: int):
        """Distances of rows s0..s1 to columns j > i, flattened, with their same-label flags."""
        s1 = min(n, s0 + chunk)
        blk = q[s0:s1] @ b[:, s0 + 1 :]  # columns s0+1 .. n-1
        jj = np.arange(s0 + 1, n)
        keep = jj[None, :] > np.arange(s0, s1)[:, None]
        d = np.sqrt(np.maximum(blk[keep], 0.0))
        same = (codes[s0:s1, None] == codes[None, s0 + 1 :])[keep]
        return d, same

    dmax = 0.0
    for s0 in range(0, n - 1, chunk):
        d, _ = upper_block(s0)
        if d.size:
            dmax = max(dmax, float(d.max()))
    width = dmax / n_bins if dmax > 0 else 1.0
    hist = np.zeros(2 * n_bins, dtype=np.int64)
    for s0 in range(0, n - 1, chunk):
        d, same = upper_block(s0)
        bins = np.minimum((d / width).astype(np.int64), n_bins - 1)
        hist += np.bincount(bins + n_bins * same, minlength=2 * n_bins)
    diff_h, same_h = hist[:n_bins], hist[n_bins:]
    edges = width * np.arange(1, n_bins + 1)
    e, t = _eer_from_cumulative(np.cumsum(same_h), np.cumsum(diff_h), edges)
    return (e, t) if return_threshold else e


# --------------------------------------------------------------------------------------------------
# reconstruction
# --------------------------------------------------------------------------------------------------


def recon_mse(x, x_hat) -> float:
    """Mean squared error over all elements: ``mean((x − x̂)²)``.

    >>> recon_mse([1.0, 2.0], [1.0, 4.0])
    2.0
    """
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(x_hat, dtype=np.float64)
    if a.shape != b.shape:
        raise MetricInputError(f"x and x_hat must have the same shape, got {a.shape} and {b.shape}.")
    return float(np.mean((a - b) ** 2))
