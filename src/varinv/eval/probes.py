"""Downstream probes: how well a frozen latent predicts each factor (the MARL table).

A probe is a small classifier trained on the training-set latents and scored (accuracy) on the
test-set latents. ``probe_table`` fills the MARL layout: rows = latent (z_c, z_s, both), columns =
factor (content, style), one accuracy per probe kind (linear, mlp).

Example
-------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.standard_normal((400, 2)); y = (x[:, 0] > 0).astype(int)
>>> probe(x[:300], y[:300], x[300:], y[300:], kind="linear") > 0.95
True
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from varinv.eval.metrics import MetricInputError

__all__ = ["PROBE_KINDS", "probe", "probe_table"]

PROBE_KINDS = ("linear", "mlp")


def _xy(x, y, what: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    y = np.asarray(y).reshape(-1)
    if x.ndim != 2 or x.shape[0] == 0:
        raise MetricInputError(f"{what} latents must be a non-empty (N, d) array, got shape {x.shape}")
    if x.shape[0] != y.shape[0]:
        raise MetricInputError(f"{what} latents have {x.shape[0]} rows but {y.shape[0]} labels")
    if not np.all(np.isfinite(x)):
        raise MetricInputError(f"{what} latents contain NaN or inf")
    return x, y


def probe(train_x, train_y, test_x, test_y, kind: str = "linear", seed: int = 0) -> float:
    """Test accuracy of a classifier trained on frozen latents.

    * ``kind="linear"``: StandardScaler → LogisticRegression (lbfgs, L2, C = 1, max_iter 1000).
    * ``kind="mlp"``: StandardScaler → MLPClassifier(hidden_layer_sizes=(64,), adam, early stopping
      on a 10 % validation split, max_iter 200, random_state=seed) — the "lightweight MLP" of MARL.

    The scaler is fitted on the training latents only. If the training labels hold a single class,
    the probe predicts that class. Convergence warnings are silenced (the accuracy is what counts).
    Takes about a second for 8000 × 32 training points.

    Returns:
        Accuracy in [0, 1] on (test_x, test_y).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind not in PROBE_KINDS:
        raise MetricInputError(f"probe kind must be one of {PROBE_KINDS}, got {kind!r}")
    x_tr, y_tr = _xy(train_x, train_y, "train")
    x_te, y_te = _xy(test_x, test_y, "test")
    if x_tr.shape[1] != x_te.shape[1]:
        raise MetricInputError(f"train latents have {x_tr.shape[1]} dims but test latents {x_te.shape[1]}")
    classes = np.unique(y_tr)
    if len(classes) < 2:
        return float(np.mean(y_te == classes[0]))
    if kind == "linear":
        clf = LogisticRegression(C=1.0, max_iter=1000)
    else:
        clf = MLPClassifier(hidden_layer_sizes=(64,), early_stopping=True, validation_fraction=0.1,
                            max_iter=200, n_iter_no_change=10, random_state=seed)
    model = make_pipeline(StandardScaler(), clf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x_tr, y_tr)
    return float(model.score(x_te, y_te))


def probe_table(
    train: Mapping[str, np.ndarray],
    test: Mapping[str, np.ndarray],
    train_labels: Mapping[str, np.ndarray],
    test_labels: Mapping[str, np.ndarray],
    kinds: Sequence[str] = PROBE_KINDS,
    seed: int = 0,
    both: str | None = "both",
) -> dict[str, dict[str, dict[str, float]]]:
    """Probe accuracy for every (latent, factor, kind): the MARL table layout.

    Args:
        train, test: ``{latent name: (N, d) array}``, e.g. ``{"z_c": ..., "z_s": ...}``; the same
            names in both.
        train_labels, test_labels: ``{factor name: (N,) labels}``, e.g. ``{"content": ..., "style": ...}``.
        kinds: probe kinds (see :func:`probe`).
        seed: seed for the MLP probe.
        both: when not None, there are at least two latents and no latent has this name, a latent of
            that name is added: all latents concatenated along the feature axis (dict order).

    Returns:
        ``{latent: {factor: {kind: accuracy}}}``.
    """
    if set(train) != set(test):
        raise MetricInputError(f"train latents {sorted(train)} and test latents {sorted(test)} differ")
    if set(train_labels) != set(test_labels):
        raise MetricInputError(
            f"train factors {sorted(train_labels)} and test factors {sorted(test_labels)} differ"
        )
    for k in kinds:
        if k not in PROBE_KINDS:
            raise MetricInputError(f"probe kind must be one of {PROBE_KINDS}, got {k!r}")
    train = {k: np.asarray(v, dtype=np.float64).reshape(len(v), -1) for k, v in train.items()}
    test = {k: np.asarray(v, dtype=np.float64).reshape(len(v), -1) for k, v in test.items()}
    if both is not None and len(train) >= 2 and both not in train:
        train[both] = np.concatenate(list(train.values()), axis=1)
        test[both] = np.concatenate([test[k] for k in train if k != both], axis=1)
    return {
        latent: {
            factor: {
                kind: probe(train[latent], train_labels[factor], test[latent], test_labels[factor],
                            kind=kind, seed=seed)
                for kind in kinds
            }
            for factor in train_labels
        }
        for latent in train
    }
