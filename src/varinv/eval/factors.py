"""Factor-based disentanglement metrics: MIG, DCI and SAP, plus the MI-matrix heat map.

Every metric is a pure function of two arrays:

* ``codes``: (N, D) float, one row per sample (a latent vector, e.g. z_c, z_s or both concatenated);
* ``factors``: (N, F) discrete labels, one column per ground-truth factor (e.g. column 0 = content,
  column 1 = style). A 1-D array is read as a single factor. Labels may be any integers (or any
  sortable values); each column is re-indexed to 0..K_j-1 internally.

Definitions follow the papers (and the way google-research/disentanglement_lib reads them for
discrete factors); where we choose something the papers leave open, the function's docstring says so.
All mutual informations and entropies are in nats.

Longer than our ~450-line guide on purpose: MIG, DCI and SAP share the input checks, the discretisation
and the train/test split defined here, and the plot reads the same MI matrices.

Example
-------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> y = np.stack([rng.integers(0, 5, 500), rng.integers(0, 4, 500)], axis=1)
>>> z = y + 0.01 * rng.standard_normal(y.shape)          # code i carries factor i only
>>> mig(z, y)["score"] > 0.95
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from varinv.eval.metrics import MetricInputError  # re-exported: the one metric-input error

__all__ = [
    "MetricInputError",
    "discretize",
    "mutual_info_matrix",
    "factor_entropy",
    "mig",
    "dci",
    "dci_from_importance",
    "importance_matrix",
    "sap",
    "sap_score_matrix",
    "plot_mi_matrix",
]

DCI_MODELS = ("forest", "logistic", "lasso", "gbt")


# --------------------------------------------------------------------------- input checks
def _as_codes(codes, name: str = "codes") -> np.ndarray:
    c = np.asarray(codes, dtype=np.float64)
    if c.ndim == 1:
        c = c[:, None]
    if c.ndim != 2:
        raise MetricInputError(f"{name} must be a (N, D) array, got shape {c.shape}; reshape to (N, D)")
    if c.shape[0] == 0 or c.shape[1] == 0:
        raise MetricInputError(f"{name} is empty (shape {c.shape}); pass at least one sample and dimension")
    if not np.all(np.isfinite(c)):
        raise MetricInputError(f"{name} contains NaN or inf; check the encoder output before evaluating")
    return c


def _as_factors(factors, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Re-index every factor column to 0..K_j-1. Returns (labels (N, F) int64, n_classes (F,))."""
    f = np.asarray(factors)
    if f.ndim == 1:
        f = f[:, None]
    if f.ndim != 2 or f.shape[1] == 0:
        raise MetricInputError(f"factors must be a (N, F) label array, got shape {f.shape}")
    if n is not None and f.shape[0] != n:
        raise MetricInputError(
            f"codes have {n} samples but factors have {f.shape[0]}; pass one factor row per code row"
        )
    if f.dtype.kind == "f":
        if not np.all(np.isfinite(f)) or not np.all(f == np.round(f)):
            raise MetricInputError("factors must be discrete labels (integers); got non-integer floats")
    labels = np.empty(f.shape, dtype=np.int64)
    n_classes = np.empty(f.shape[1], dtype=np.int64)
    for j in range(f.shape[1]):  # F is tiny (2-4): one np.unique per factor
        uniq, inv = np.unique(f[:, j], return_inverse=True)
        labels[:, j] = inv.reshape(-1)
        n_classes[j] = len(uniq)
    return labels, n_classes


def _split(n: int, test_frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if not 0.0 < test_frac < 1.0:
        raise MetricInputError(f"test_frac must be in (0, 1), got {test_frac}")
    n_test = int(round(n * test_frac))
    if n_test < 1 or n - n_test < 2:
        raise MetricInputError(f"{n} samples are too few for a train/test split with test_frac={test_frac}")
    perm = np.random.default_rng(seed).permutation(n)
    return perm[n_test:], perm[:n_test]


# --------------------------------------------------------------------------- information theory
def discretize(codes, n_bins: int = 20) -> np.ndarray:
    """Equal-width histogram binning of every code dimension separately.

    Dimension d is cut into ``n_bins`` intervals of equal width between its own minimum and maximum
    (as ``np.histogram(codes[:, d], n_bins)`` would), and each value is replaced by the index of its
    interval, 0..n_bins-1; the maximum falls in the last bin. A constant dimension maps to bin 0.
    This is the "histogram discretiser" disentanglement_lib uses before MIG (20 bins by default).

    Args:
        codes: (N, D) floats.
        n_bins: number of bins per dimension (>= 1).

    Returns:
        (N, D) int64 bin indices.

    >>> discretize(np.array([[0.0], [1.0], [2.0], [3.0]]), n_bins=2).ravel().tolist()
    [0, 0, 1, 1]
    """
    c = _as_codes(codes)
    return _bin_with_edges(c, *_bin_range(c), n_bins)


def _bin_range(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return c.min(axis=0), c.max(axis=0)


def _bin_with_edges(c: np.ndarray, lo: np.ndarray, hi: np.ndarray, n_bins: int) -> np.ndarray:
    if int(n_bins) != n_bins or n_bins < 1:
        raise MetricInputError(f"n_bins must be a positive integer, got {n_bins}")
    width = hi - lo
    safe = np.where(width > 0, width, 1.0)
    idx = np.floor((c - lo) / safe * n_bins).astype(np.int64)
    idx = np.clip(idx, 0, n_bins - 1)  # the max lands on n_bins exactly; unseen test values clip
    return np.where(width > 0, idx, 0)


def _joint_counts(bins: np.ndarray, n_bins: int, labels: np.ndarray, k: int) -> np.ndarray:
    """Joint histogram (D, n_bins, k) of every code dimension against one factor: one bincount."""
    n, d = bins.shape
    flat = (np.arange(d)[None, :] * n_bins + bins) * k + labels[:, None]  # (N, D)
    return np.bincount(flat.ravel(), minlength=d * n_bins * k).reshape(d, n_bins, k)


def _mi_from_counts(counts: np.ndarray) -> np.ndarray:
    """Discrete MI (nats) from joint counts (..., A, B), summed over the last two axes."""
    total = counts.sum(axis=(-2, -1), keepdims=True).astype(np.float64)
    p = counts / total
    pa = p.sum(axis=-1, keepdims=True)
    pb = p.sum(axis=-2, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p / (pa * pb)), 0.0)
    return np.maximum(terms.sum(axis=(-2, -1)), 0.0)


def mutual_info_matrix(codes, factors, n_bins: int = 20) -> np.ndarray:
    """Discrete mutual information I(z_i; v_j) in nats, for every code dimension i and factor j.

    I(z_i; v_j) = Σ_{a,b} p(a, b) log[p(a, b) / (p(a) p(b))], with z_i discretised by
    :func:`discretize` (equal-width bins) and the probabilities the empirical frequencies of the N
    samples (the plug-in estimator; it is biased upwards by about (n_bins-1)(K_j-1)/(2N) nats).

    Vectorised over D: one ``np.bincount`` per factor builds all D joint histograms at once.

    Args:
        codes: (N, D) floats.
        factors: (N, F) discrete labels.
        n_bins: histogram bins per code dimension.

    Returns:
        (D, F) float64 array.
    """
    c = _as_codes(codes)
    labels, n_classes = _as_factors(factors, c.shape[0])
    bins = discretize(c, n_bins)
    out = np.empty((c.shape[1], labels.shape[1]))
    for j, k in enumerate(n_classes):
        out[:, j] = _mi_from_counts(_joint_counts(bins, n_bins, labels[:, j], int(k)))
    return out


def factor_entropy(factors) -> np.ndarray:
    """Empirical entropy H(v_j) = -Σ_k p_k log p_k (nats) of every factor column.

    Args:
        factors: (N, F) discrete labels (or (N,) for a single factor).

    Returns:
        (F,) float64 array.

    >>> factor_entropy(np.array([0, 0, 1, 1])).round(4).tolist()   # log 2
    [0.6931]
    """
    labels, n_classes = _as_factors(factors)
    n, f = labels.shape
    counts = np.bincount((labels + np.concatenate([[0], np.cumsum(n_classes)[:-1]])).ravel(),
                         minlength=int(n_classes.sum()))
    p = counts / n
    plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return -np.add.reduceat(plogp, np.concatenate([[0], np.cumsum(n_classes)[:-1]]))


# --------------------------------------------------------------------------- MIG
def mig(codes, factors, n_bins: int = 20) -> dict:
    """Mutual Information Gap (Chen et al., 2018, "Isolating Sources of Disentanglement in VAEs").

    MIG = (1/F) Σ_j [I(z_{a_j}; v_j) − I(z_{b_j}; v_j)] / H(v_j), where a_j and b_j are the code
    dimensions with the largest and second-largest MI with factor v_j. The MIs are the discrete ones
    of :func:`mutual_info_matrix` (histogram-discretised codes, as in disentanglement_lib).

    1 means each factor is carried, in full, by one dimension only; 0 means its two best dimensions
    carry it equally. With a single code dimension the second MI is taken as 0. A constant factor
    (H = 0) gets NaN and is left out of the mean.

    Returns:
        ``{"score": float, "per_factor": (F,) array, "mi": (D, F) array, "entropy": (F,) array}``.
    """
    mi = mutual_info_matrix(codes, factors, n_bins)
    h = factor_entropy(factors)
    top = -np.sort(-mi, axis=0)
    second = top[1] if mi.shape[0] > 1 else np.zeros(mi.shape[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        per = np.where(h > 0, (top[0] - second) / np.where(h > 0, h, 1.0), np.nan)
    score = float(np.nanmean(per)) if np.any(np.isfinite(per)) else float("nan")
    return {"score": score, "per_factor": per, "mi": mi, "entropy": h}


# --------------------------------------------------------------------------- DCI
def _entropy_base(p: np.ndarray, base: int, axis: int) -> np.ndarray:
    """Entropy with log base ``base`` of distributions along ``axis`` (0 log 0 = 0)."""
    plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return -plogp.sum(axis=axis) / np.log(base)


def dci_from_importance(importance) -> dict:
    """Disentanglement and completeness of an importance matrix (Eastwood & Williams, ICLR 2018).

    With R (D, F) the non-negative importance of code i for predicting factor j:

    * P_ij = R_ij / Σ_k R_ik (code i's importance spread over factors);
      D_i = 1 − H_F(P_i.), entropy in log base F; ρ_i = Σ_j R_ij / Σ_ij R_ij;
      **disentanglement** = Σ_i ρ_i D_i.
    * P̃_ij = R_ij / Σ_k R_kj (factor j's importance spread over codes);
      C_j = 1 − H_D(P̃_.j), entropy in log base D; **completeness** = (1/F) Σ_j C_j
      (the plain mean over factors, as in the paper; disentanglement_lib weights C_j by the
      factor's share of total importance instead).

    Conventions: with F = 1 every code is trivially disentangled (D_i = 1), with D = 1 every factor is
    trivially complete (C_j = 1); an all-zero row has D_i = 0 (and weight 0), an all-zero column has
    C_j = 0.

    >>> dci_from_importance(np.eye(2))["disentanglement"], dci_from_importance(np.ones((2, 2)))["completeness"]
    (1.0, 0.0)
    """
    r = np.asarray(importance, dtype=np.float64)
    if r.ndim != 2 or r.size == 0 or np.any(r < 0) or not np.all(np.isfinite(r)):
        raise MetricInputError(f"importance must be a non-negative finite (D, F) array, got shape {r.shape}")
    d, f = r.shape
    row = r.sum(axis=1)
    col = r.sum(axis=0)
    total = r.sum()
    if f == 1:
        per_code = np.where(row > 0, 1.0, 0.0)
    else:
        p = r / np.where(row > 0, row, 1.0)[:, None]
        per_code = np.where(row > 0, 1.0 - _entropy_base(p, f, axis=1), 0.0)
    if d == 1:
        per_factor = np.where(col > 0, 1.0, 0.0)
    else:
        q = r / np.where(col > 0, col, 1.0)[None, :]
        per_factor = np.where(col > 0, 1.0 - _entropy_base(q, d, axis=0), 0.0)
    rho = row / total if total > 0 else np.zeros(d)
    return {
        "disentanglement": float(np.clip(np.sum(rho * per_code), 0.0, 1.0)),
        "completeness": float(np.clip(per_factor.mean(), 0.0, 1.0)),
        "disentanglement_per_code": per_code,
        "completeness_per_factor": per_factor,
        "code_weight": rho,
    }


def _make_model(model: str, seed: int):
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    if model == "forest":
        # max_features=None: every split sees all codes, so irrelevant codes get (almost) no importance
        return RandomForestClassifier(n_estimators=50, max_depth=8, max_features=None,
                                      random_state=seed, n_jobs=1)
    if model == "gbt":
        return GradientBoostingClassifier(random_state=seed)
    if model == "logistic":
        return LogisticRegression(C=1.0, max_iter=1000)
    if model == "lasso":
        return LogisticRegression(C=0.1, l1_ratio=1.0, solver="saga", max_iter=2000, random_state=seed)
    raise MetricInputError(f"dci model must be one of {DCI_MODELS}, got {model!r}")


def importance_matrix(codes, factors, model: str = "forest", seed: int = 0, test_frac: float = 0.25) -> dict:
    """Fit one classifier per factor on a seeded train split; return importances and test accuracy.

    Models (``model=``):

    * ``"forest"`` (default): RandomForestClassifier(50 trees, max_depth 8, all features per split);
      importance = ``feature_importances_`` (mean decrease in impurity). About 0.5 s per factor at
      N = 2000, D = 64; nonlinear, scale-free, closest fast stand-in for the paper's trees.
    * ``"gbt"``: GradientBoostingClassifier (sklearn defaults), as in disentanglement_lib; accurate but
      slow (~25 s per factor at N = 2000, D = 64).
    * ``"logistic"``: L2 LogisticRegression on standardised codes; importance = |coef| averaged over
      classes.
    * ``"lasso"``: L1 LogisticRegression (saga, C = 0.1) on standardised codes; importance = |coef|
      averaged over classes. The categorical-factor analogue of the paper's Lasso regressor.

    Returns:
        ``{"importance": (D, F), "test_accuracy": (F,), "train_accuracy": (F,)}``.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    c = _as_codes(codes)
    labels, n_classes = _as_factors(factors, c.shape[0])
    if model not in DCI_MODELS:
        raise MetricInputError(f"dci model must be one of {DCI_MODELS}, got {model!r}")
    tr, te = _split(c.shape[0], test_frac, seed)
    x_tr, x_te = c[tr], c[te]
    if model in ("logistic", "lasso"):
        mu, sd = x_tr.mean(axis=0), x_tr.std(axis=0)
        sd = np.where(sd > 0, sd, 1.0)
        x_tr, x_te = (x_tr - mu) / sd, (x_te - mu) / sd
    d, f = c.shape[1], labels.shape[1]
    imp = np.zeros((d, f))
    acc_te = np.zeros(f)
    acc_tr = np.zeros(f)
    for j in range(f):
        y_tr, y_te = labels[tr, j], labels[te, j]
        if len(np.unique(y_tr)) < 2:  # nothing to learn: predict the only class, no importance
            acc_tr[j] = 1.0
            acc_te[j] = float(np.mean(y_te == y_tr[0]))
            continue
        est = _make_model(model, seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(x_tr, y_tr)
        if model in ("forest", "gbt"):
            imp[:, j] = est.feature_importances_
        else:
            imp[:, j] = np.abs(est.coef_).mean(axis=0)
        acc_tr[j] = est.score(x_tr, y_tr)
        acc_te[j] = est.score(x_te, y_te)
    return {"importance": imp, "test_accuracy": acc_te, "train_accuracy": acc_tr}


def dci(codes, factors, model: str = "forest", seed: int = 0, test_frac: float = 0.25) -> dict:
    """DCI: Disentanglement, Completeness and Informativeness (Eastwood & Williams, ICLR 2018).

    One classifier per factor predicts v_j from all codes (see :func:`importance_matrix` for the
    ``model`` choices; default a random forest); its importances form R (D, F), from which
    :func:`dci_from_importance` gives disentanglement D = Σ_i ρ_i (1 − H_F(P_i.)) and completeness
    C = mean_j (1 − H_D(P̃_.j)). **Informativeness** is the mean over factors of the predictor's
    accuracy on a held-out ``test_frac`` of the samples (seeded split); chance is the majority-class
    rate. (The paper reports prediction *error*; accuracy = 1 − error.)

    Returns:
        ``{"disentanglement", "completeness", "informativeness": float,
        "importance": (D, F), "informativeness_per_factor": (F,), "train_accuracy": (F,),
        "disentanglement_per_code": (D,), "completeness_per_factor": (F,)}``.
    """
    fit = importance_matrix(codes, factors, model=model, seed=seed, test_frac=test_frac)
    out = dci_from_importance(fit["importance"])
    out.pop("code_weight")
    return {
        "disentanglement": out["disentanglement"],
        "completeness": out["completeness"],
        "informativeness": float(fit["test_accuracy"].mean()),
        "importance": fit["importance"],
        "informativeness_per_factor": fit["test_accuracy"],
        "train_accuracy": fit["train_accuracy"],
        "disentanglement_per_code": out["disentanglement_per_code"],
        "completeness_per_factor": out["completeness_per_factor"],
    }


# --------------------------------------------------------------------------- SAP
def sap_score_matrix(codes, factors, n_bins: int = 20, seed: int = 0, test_frac: float = 0.25) -> np.ndarray:
    """Held-out balanced accuracy (D, F) of predicting factor j from code dimension i alone.

    The 1-D classifier is a histogram rule, fitted for all D dimensions at once: cut z_i into
    ``n_bins`` equal-width bins over its training range, and label each bin with the class of highest
    class-normalised training count n(bin, k) / n(k) (the in-sample balanced-accuracy-optimal
    piecewise-constant rule; an empty bin gets class 0). Test values outside the training range
    fall in the end bins. Score = balanced accuracy (mean per-class recall) on the test split, so
    chance is 1/K_j whatever the class balance. Unlike a single threshold (a stump, or a LinearSVC on
    one dimension as in disentanglement_lib), this can separate more than two classes laid out along
    one axis.
    """
    c = _as_codes(codes)
    labels, n_classes = _as_factors(factors, c.shape[0])
    tr, te = _split(c.shape[0], test_frac, seed)
    lo, hi = _bin_range(c[tr])
    b_tr = _bin_with_edges(c[tr], lo, hi, n_bins)
    b_te = _bin_with_edges(c[te], lo, hi, n_bins)
    d = c.shape[1]
    out = np.zeros((d, labels.shape[1]))
    for j, k in enumerate(n_classes):
        k = int(k)
        y_tr, y_te = labels[tr, j], labels[te, j]
        counts = _joint_counts(b_tr, n_bins, y_tr, k).astype(np.float64)  # (D, B, K)
        class_n = np.bincount(y_tr, minlength=k).astype(np.float64)
        rule = np.argmax(counts / np.where(class_n > 0, class_n, 1.0), axis=2)  # (D, B)
        pred = rule[np.arange(d)[None, :], b_te]  # (N_te, D)
        correct = pred == y_te[:, None]
        # per-class recall for every dimension: bincount over (dimension, class)
        hits = np.bincount((np.arange(d)[None, :] * k + y_te[:, None]).ravel(),
                           weights=correct.ravel().astype(np.float64), minlength=d * k).reshape(d, k)
        present = np.bincount(y_te, minlength=k)
        out[:, j] = (hits[:, present > 0] / present[present > 0]).mean(axis=1)
    return out


def sap(codes, factors, n_bins: int = 20, seed: int = 0, test_frac: float = 0.25) -> dict:
    """Separated Attribute Predictability (Kumar et al., ICLR 2018, "Variational Inference of
    Disentangled Latent Concepts from Unlabeled Observations").

    S_ij = how well code dimension i alone predicts factor j (for discrete factors, a classifier's
    accuracy; here the held-out balanced accuracy of :func:`sap_score_matrix`).
    SAP = (1/F) Σ_j (S_{a_j, j} − S_{b_j, j}), the gap between the best and second-best single
    dimension for each factor. Not chance-corrected: a perfectly disentangled code scores about
    1 − 1/K per factor (the second-best dimension still reaches chance, 1/K).

    Returns:
        ``{"score": float, "per_factor": (F,) array, "accuracy": (D, F) array}``.
    """
    s = sap_score_matrix(codes, factors, n_bins=n_bins, seed=seed, test_frac=test_frac)
    top = -np.sort(-s, axis=0)
    second = top[1] if s.shape[0] > 1 else np.zeros(s.shape[1])
    per = top[0] - second
    return {"score": float(per.mean()), "per_factor": per, "accuracy": s}


# --------------------------------------------------------------------------- plot
def plot_mi_matrix(
    mi,
    factor_names: Sequence[str] | None = None,
    code_names: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
    out_png: str | Path = "mi_matrix.png",
    title: str | None = "Mutual information (nats)",
) -> Path:
    """Heat map of an MI matrix: rows = factors, columns = latent dimensions (as in MARL's figure).

    Args:
        mi: (D, F) array from :func:`mutual_info_matrix`, or a dict ``{block name: (D_b, F) array}``
            (e.g. ``{"z_c": ..., "z_s": ...}``) drawn as side-by-side panels on one colour scale.
        factor_names: F row labels (default v1..vF).
        code_names: D column labels (default z1..zD); for a dict, a dict of lists per block.
        out_png: output path (parent folders are created).
        title: figure title (None for none).

    Cells are annotated with their value (2 decimals) when a panel has at most 32 columns.
    Uses the Agg canvas directly, so no display and no global backend change.

    Returns:
        The written path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    blocks = dict(mi) if isinstance(mi, Mapping) else {"": mi}
    if not blocks:
        raise MetricInputError("plot_mi_matrix got an empty dict of MI blocks")
    arrays = {}
    for name, m in blocks.items():
        a = np.asarray(m, dtype=np.float64)
        if a.ndim == 1:
            a = a[:, None]
        if a.ndim != 2:
            raise MetricInputError(f"MI block {name!r} must be (D, F), got shape {a.shape}")
        arrays[name] = a
    f = next(iter(arrays.values())).shape[1]
    if any(a.shape[1] != f for a in arrays.values()):
        raise MetricInputError("all MI blocks must have the same number of factors (columns)")
    if factor_names is None:
        factor_names = [f"v{j + 1}" for j in range(f)]
    if len(factor_names) != f:
        raise MetricInputError(f"factor_names has {len(factor_names)} names for {f} factors")
    vmax = max(float(a.max()) for a in arrays.values()) or 1.0

    widths = [max(a.shape[0], 2) for a in arrays.values()]
    fig = Figure(figsize=(min(2.0 + 0.55 * sum(widths), 40.0), 1.2 + 0.6 * f + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(arrays), gridspec_kw={"width_ratios": widths}, squeeze=False)[0]
    im = None
    for ax, (name, a) in zip(axes, arrays.items()):
        d = a.shape[0]
        if isinstance(code_names, Mapping):
            names = code_names.get(name)
        else:
            names = code_names if len(arrays) == 1 else None
        if names is None:
            names = [f"z{i + 1}" for i in range(d)]
        if len(names) != d:
            raise MetricInputError(f"code_names for block {name!r} has {len(names)} names for {d} dims")
        im = ax.imshow(a.T, aspect="auto", cmap="viridis", vmin=0.0, vmax=vmax)
        ax.set_yticks(range(f), labels=list(factor_names))
        step = 1 if d <= 32 else int(np.ceil(d / 32))
        ax.set_xticks(range(0, d, step), labels=[names[i] for i in range(0, d, step)],
                      rotation=90 if d > 12 else 0, fontsize=8)
        if name:
            ax.set_title(name)
        if d <= 32:
            for i in range(d):
                for j in range(f):
                    v = a[i, j]
                    ax.text(i, j, f"{v:.2f}", ha="center", va="center", fontsize=7,
                            color="black" if v > 0.6 * vmax else "white")
    fig.colorbar(im, ax=list(axes), fraction=0.03, pad=0.01, label="nats")
    if title:
        fig.suptitle(title)
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    return out
