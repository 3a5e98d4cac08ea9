"""Factor metrics (MIG, DCI, SAP), MI heat map and probes: hand-computed values and known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from varinv.errors import VarinvError
from varinv.eval.factors import (
    MetricInputError,
    dci,
    dci_from_importance,
    discretize,
    factor_entropy,
    mig,
    mutual_info_matrix,
    plot_mi_matrix,
    sap,
    sap_score_matrix,
)
from varinv.eval.probes import probe, probe_table

# ----------------------------------------------------------------------------- synthetic latents
N = 2000
K = (5, 4)  # classes of factor 0 (content) and factor 1 (style)


@pytest.fixture(scope="module")
def factors() -> np.ndarray:
    rng = np.random.default_rng(1)
    return np.stack([rng.integers(0, K[0], N), rng.integers(0, K[1], N)], axis=1)


@pytest.fixture(scope="module")
def disentangled(factors) -> np.ndarray:
    """Code dim 0 = factor 0 + tiny noise, dim 1 = factor 1 + tiny noise."""
    return factors + 0.01 * np.random.default_rng(2).standard_normal(factors.shape)


@pytest.fixture(scope="module")
def entangled(factors) -> np.ndarray:
    """Both dims mix both (standardised) factors equally: a 45-degree rotation."""
    s = (factors - factors.mean(0)) / factors.std(0)
    rot = np.array([[1.0, -1.0], [1.0, 1.0]]) / math.sqrt(2.0)
    return s @ rot.T + 0.01 * np.random.default_rng(3).standard_normal(s.shape)


@pytest.fixture(scope="module")
def noise() -> np.ndarray:
    return np.random.default_rng(4).standard_normal((N, 2))


# ----------------------------------------------------------------------------- hand-computed
def test_discretize_equal_width_bins():
    codes = np.array([[0.0, 5.0], [1.0, 5.0], [2.0, 5.0], [3.0, 5.0]])
    # dim 0: range [0, 3], 2 bins of width 1.5 -> 0, 1 in bin 0; 2, 3 in bin 1 (max goes to the last bin)
    # dim 1: constant -> bin 0
    assert discretize(codes, n_bins=2).tolist() == [[0, 0], [0, 0], [1, 0], [1, 0]]
    # 3 bins: [0, 1), [1, 2), [2, 3] -> the max (3) joins the last bin
    assert discretize(codes, n_bins=3)[:, 0].tolist() == [0, 1, 2, 2]


def test_mutual_info_hand_computed():
    code = np.array([0.0, 0.0, 1.0, 1.0])  # 2 bins -> bins a = 0, 0, 1, 1
    # Factor v = 0, 0, 0, 1: joint p(a=0,v=0) = 1/2, p(1,0) = 1/4, p(1,1) = 1/4;
    # marginals p(a) = (1/2, 1/2), p(v) = (3/4, 1/4).
    # I = 1/2 log(1/2 / (1/2*3/4)) + 1/4 log(1/4 / (1/2*3/4)) + 1/4 log(1/4 / (1/2*1/4))
    #   = 1/2 log(4/3) + 1/4 log(2/3) + 1/4 log 2
    #   = H(v) - H(v|a) = H(3/4, 1/4) - 1/2 * log 2 = 0.5623351 - 0.3465736 = 0.2157616 nats
    v = np.array([0, 0, 0, 1])
    expected = 0.5 * math.log(4 / 3) + 0.25 * math.log(2 / 3) + 0.25 * math.log(2)
    assert expected == pytest.approx(0.2157616, abs=1e-7)
    # second factor equals the bins (I = H = log 2), third is independent of them (I = 0)
    f = np.stack([v, [0, 0, 1, 1], [0, 1, 0, 1]], axis=1)
    mi = mutual_info_matrix(code[:, None], f, n_bins=2)
    assert mi.shape == (1, 3)
    np.testing.assert_allclose(mi[0], [expected, math.log(2), 0.0], atol=1e-12)


def test_mutual_info_matches_sklearn_on_random_data():
    from sklearn.metrics import mutual_info_score

    rng = np.random.default_rng(0)
    codes = rng.standard_normal((300, 3))
    f = np.stack([rng.integers(0, 3, 300), (codes[:, 1] > 0).astype(int)], axis=1)
    mi = mutual_info_matrix(codes, f, n_bins=7)
    bins = discretize(codes, 7)
    ref = [[mutual_info_score(bins[:, i], f[:, j]) for j in range(2)] for i in range(3)]
    np.testing.assert_allclose(mi, ref, atol=1e-12)


def test_factor_entropy_hand_computed():
    # [0, 0, 1, 2]: p = (1/2, 1/4, 1/4), H = 1/2 log 2 + 2 * 1/4 log 4 = 1.5 log 2
    # [7, 7, 7, 7]: H = 0; labels need not start at 0
    h = factor_entropy(np.array([[0, 7], [0, 7], [1, 7], [2, 7]]))
    np.testing.assert_allclose(h, [1.5 * math.log(2), 0.0], atol=1e-12)
    assert factor_entropy(np.array([3, 9, 3, 9])) == pytest.approx([math.log(2)])


def test_dci_from_importance_hand_computed():
    one = dci_from_importance(np.eye(2))
    assert one["disentanglement"] == pytest.approx(1.0) and one["completeness"] == pytest.approx(1.0)
    flat = dci_from_importance(np.ones((2, 2)))
    assert flat["disentanglement"] == pytest.approx(0.0) and flat["completeness"] == pytest.approx(0.0)
    # R = [[3, 1], [0, 2]]
    # row 0: P = (3/4, 1/4), H_2 = 0.8112781 -> D_0 = 0.1887219; row 1 pure -> D_1 = 1
    # rho = (4/6, 2/6) -> D = 2/3 * 0.1887219 + 1/3 = 0.4591479
    # col 0: (1, 0) -> C_0 = 1; col 1: (1/3, 2/3), H_2 = 0.9182958 -> C_1 = 0.0817042; C = 0.5408521
    r = dci_from_importance(np.array([[3.0, 1.0], [0.0, 2.0]]))
    assert r["disentanglement"] == pytest.approx(0.4591479, abs=1e-6)
    assert r["completeness"] == pytest.approx(0.5408521, abs=1e-6)
    np.testing.assert_allclose(r["disentanglement_per_code"], [0.1887219, 1.0], atol=1e-6)


def test_mig_single_dim_and_constant_factor():
    z = np.array([0.0, 0.0, 1.0, 1.0])
    out = mig(z, np.stack([[0, 0, 1, 1], [5, 5, 5, 5]], axis=1), n_bins=2)
    assert out["per_factor"][0] == pytest.approx(1.0)  # one dim: second MI taken as 0
    assert math.isnan(out["per_factor"][1])  # H = 0: undefined, left out of the mean
    assert out["score"] == pytest.approx(1.0)


# ----------------------------------------------------------------------------- known answers
def test_disentangled_code_scores_high(disentangled, factors):
    m = mig(disentangled, factors)
    assert m["score"] >= 0.9 and m["mi"].shape == (2, 2)
    d = dci(disentangled, factors)
    assert d["disentanglement"] >= 0.9 and d["completeness"] >= 0.9
    assert d["informativeness"] >= 0.95 and d["importance"].shape == (2, 2)
    s = sap(disentangled, factors)
    # best dim is perfect, the other is at chance (1/K): gap ~ 1 - 1/K
    np.testing.assert_allclose(s["per_factor"], [1 - 1 / K[0], 1 - 1 / K[1]], atol=0.08)
    assert s["score"] >= 0.7


def test_entangled_code_scores_low(entangled, disentangled, factors):
    assert mig(entangled, factors)["score"] <= 0.2
    d_ent, d_dis = dci(entangled, factors), dci(disentangled, factors)
    assert d_ent["disentanglement"] <= 0.5 and d_ent["completeness"] <= 0.5
    assert d_dis["disentanglement"] - d_ent["disentanglement"] >= 0.4
    assert d_ent["informativeness"] >= 0.9  # entangled, yet every factor is still predictable
    assert sap(entangled, factors)["score"] <= 0.2


@pytest.mark.parametrize("model", ["logistic", "lasso"])
def test_dci_linear_models_separate_the_cases(model, disentangled, entangled, factors):
    dis, ent = dci(disentangled, factors, model=model), dci(entangled, factors, model=model)
    assert dis["disentanglement"] >= 0.9 and dis["completeness"] >= 0.9
    assert ent["disentanglement"] <= 0.5 and ent["completeness"] <= 0.5


def test_dci_gbt_small(disentangled, factors):
    d = dci(disentangled[:300], factors[:300], model="gbt")
    assert d["disentanglement"] >= 0.9 and d["completeness"] >= 0.9


def test_noise_is_uninformative(noise, factors):
    d = dci(noise, factors)
    chance = np.bincount(factors[:, 0]).max() / N, np.bincount(factors[:, 1]).max() / N
    assert np.all(d["informativeness_per_factor"] <= np.array(chance) + 0.08)
    assert mig(noise, factors)["score"] <= 0.05
    acc = sap_score_matrix(noise, factors)
    assert np.all(np.abs(acc - 1 / np.array(K)) <= 0.08)  # balanced accuracy at chance


def test_metrics_are_deterministic(entangled, factors):
    assert dci(entangled, factors, seed=3)["disentanglement"] == dci(entangled, factors, seed=3)["disentanglement"]
    assert sap(entangled, factors, seed=3)["score"] == sap(entangled, factors, seed=3)["score"]


def test_bad_inputs_raise_named_errors(disentangled, factors):
    with pytest.raises(MetricInputError, match="2000 samples but factors have 10"):
        mig(disentangled, factors[:10])
    with pytest.raises(VarinvError, match="'svm'"):
        dci(disentangled, factors, model="svm")
    with pytest.raises(ValueError, match="NaN"):
        mutual_info_matrix(np.full((4, 1), np.nan), np.zeros(4, int))


def test_plot_mi_matrix_writes_png(tmp_path, disentangled, factors):
    mi = mutual_info_matrix(disentangled, factors)
    one = plot_mi_matrix(mi, ["content", "style"], ["z1", "z2"], tmp_path / "a" / "mi.png")
    blocks = plot_mi_matrix({"z_c": mi, "z_s": np.vstack([mi] * 20)}, ["content", "style"], None,
                            tmp_path / "blocks.png")
    for p in (one, blocks):
        assert p.exists() and p.read_bytes()[:4] == b"\x89PNG"


# ----------------------------------------------------------------------------- probes
def _split(x, y, n_train):
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def test_linear_probe_on_separable_data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 5))
    score = x @ np.array([1.0, -2.0, 0.5, 0.0, 0.0])
    x = x[np.abs(score) > 0.5][:1200]  # keep a margin around the separating plane
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0, 0.0]) > 0).astype(int)
    assert probe(*_split(x, y, 900), kind="linear") >= 0.98


def test_xor_needs_the_mlp():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (3000, 2))
    y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(int)
    assert probe(*_split(x, y, 2400), kind="linear") <= 0.6
    assert probe(*_split(x, y, 2400), kind="mlp") >= 0.9


def test_probe_table_layout(disentangled, factors):
    z_c, z_s = disentangled[:, :1], disentangled[:, 1:]
    tr, te = slice(0, 1500), slice(1500, None)
    labels = {"content": factors[:, 0], "style": factors[:, 1]}
    table = probe_table(
        {"z_c": z_c[tr], "z_s": z_s[tr]}, {"z_c": z_c[te], "z_s": z_s[te]},
        {k: v[tr] for k, v in labels.items()}, {k: v[te] for k, v in labels.items()},
        kinds=("linear",),
    )
    assert list(table) == ["z_c", "z_s", "both"]
    assert list(table["z_c"]) == ["content", "style"] and list(table["z_c"]["content"]) == ["linear"]
    assert table["z_c"]["content"]["linear"] >= 0.95 and table["z_s"]["style"]["linear"] >= 0.95
    assert table["z_c"]["style"]["linear"] <= 0.4 and table["z_s"]["content"]["linear"] <= 0.35
    assert table["both"]["content"]["linear"] >= 0.95 and table["both"]["style"]["linear"] >= 0.95
