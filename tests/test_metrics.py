"""Metrics against hand-computed values on tiny inputs, and the vectorised code against plain loops."""

from __future__ import annotations

import math

import numpy as np
import pytest

from varinv.eval import metrics as M

# --------------------------------------------------------------------------------------------------
# precision / recall @ k
# --------------------------------------------------------------------------------------------------

# Five points on a line, x = 0, 1, 3, 7, 8 with labels 0, 0, 1, 0, 1 (no distance ties).
# Neighbours of each query in distance order (query excluded) and whether each is a positive:
#   q0 (x=0, l0): 1(d1,+) 2(d3,-) 3(d7,+) 4(d8,-)   positives 2   TP@1=1 TP@2=1 TP@4=2
#   q1 (x=1, l0): 0(d1,+) 2(d2,-) 3(d6,+) 4(d7,-)   positives 2   TP@1=1 TP@2=1 TP@4=2
#   q2 (x=3, l1): 1(d2,-) 0(d3,-) 3(d4,-) 4(d5,+)   positives 1   TP@1=0 TP@2=0 TP@4=1
#   q3 (x=7, l0): 4(d1,-) 2(d4,-) 1(d6,+) 0(d7,+)   positives 2   TP@1=0 TP@2=0 TP@4=2
#   q4 (x=8, l1): 3(d1,-) 2(d5,+) 1(d7,-) 0(d8,-)   positives 1   TP@1=0 TP@2=1 TP@4=1
# precision@1 = (1+1+0+0+0)/5 = 0.4          recall@1 = (1/2+1/2+0+0+0)/5 = 0.2
# precision@2 = (1/2+1/2+0+0+1/2)/5 = 0.3    recall@2 = (1/2+1/2+0+0+1)/5 = 0.4
# precision@4 = (2+2+1+2+1)/4/5 = 0.4        recall@4 = 1
# F1@1 per query: 2/3, 2/3, 0, 0, 0 → 4/15;  F1@2: 1/2, 1/2, 0, 0, 2/3 → 1/3
# k = 10 > N-1 = 4 is clipped to 4.
LINE_X = np.array([[0.0], [1.0], [3.0], [7.0], [8.0]])
LINE_Y = np.array([0, 0, 1, 0, 1])


def test_precision_recall_on_a_line_by_hand():
    r = M.precision_recall_at_k(LINE_X, LINE_Y, [1, 2, 4, 10])
    assert r["k"].tolist() == [1, 2, 4, 4]
    np.testing.assert_allclose(r["precision"], [0.4, 0.3, 0.4, 0.4], rtol=0, atol=1e-15)
    np.testing.assert_allclose(r["recall"], [0.2, 0.4, 1.0, 1.0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(r["f1"][:2], [4 / 15, 1 / 3], rtol=0, atol=1e-15)
    # PR-AUC over k = 1, 2, 4: (0.4 − 0.2)·0.3 + (1 − 0.4)·0.4 = 0.06 + 0.24 = 0.30
    s = M.retrieval_scores(LINE_X, LINE_Y, [1, 2, 4])
    assert s["pr_auc"] == pytest.approx(0.30, abs=1e-15)


def test_ties_break_by_lower_index_and_no_positive_queries_count_as_zero_recall():
    # x = 0, 1, 2 with labels 0, 1, 1. q1 has two neighbours at distance 1: index 0 (label 0) and
    # index 2 (label 1); the tie goes to index 0, so TP_1(1) = 0. q0 has no positive (recall 0).
    # TP@1: q0 0, q1 0, q2 1 (its nearest is index 1, a positive) → precision@1 = 1/3,
    # recall@1 = (0 + 0 + 1/1) / 3 = 1/3.
    x = np.array([[0.0], [1.0], [2.0]])
    y = np.array([0, 1, 1])
    r = M.precision_recall_at_k(x, y, [1], per_query=True)
    assert r["tp"][:, 0].tolist() == [0, 0, 1]
    assert r["precision"][0] == pytest.approx(1 / 3)
    assert r["recall"][0] == pytest.approx(1 / 3)
    # mirrored order: now the tied neighbour with the lower index is the positive
    r2 = M.precision_recall_at_k(x[::-1], y[::-1], [1], per_query=True)
    assert r2["tp"][:, 0].tolist() == [1, 1, 0]


def _loop_reference(x, y, k_list):
    """The paper-era semantics written plainly: per-pair np.linalg.norm, per-query sort, self excluded."""
    n = len(x)
    ks = [min(k, n - 1) for k in k_list]
    p_all, r_all, f_all = [], [], []
    for i in range(n):
        d = [(float(np.linalg.norm(x[i] - x[j])), j) for j in range(n) if j != i]
        d.sort()
        n_pos = sum(1 for j in range(n) if j != i and y[j] == y[i])
        p_row, r_row, f_row = [], [], []
        for k in ks:
            tp = sum(1 for _, j in d[:k] if y[j] == y[i])
            p = tp / k
            r = tp / n_pos if n_pos else 0.0
            p_row.append(p)
            r_row.append(r)
            f_row.append(2 * p * r / (p + r) if p + r > 0 else 0.0)
        p_all.append(p_row)
        r_all.append(r_row)
        f_all.append(f_row)
    return np.mean(p_all, 0), np.mean(r_all, 0), np.mean(f_all, 0)


def test_vectorised_equals_per_pair_loop():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((60, 3))
    y = rng.integers(0, 4, 60)
    ks = [1, 2, 5, 10, 20, 59, 100]
    p, r, f = _loop_reference(x, y, ks)
    out = M.precision_recall_at_k(x, y, ks, chunk=7)
    np.testing.assert_allclose(out["precision"], p, rtol=0, atol=1e-12)
    np.testing.assert_allclose(out["recall"], r, rtol=0, atol=1e-12)
    np.testing.assert_allclose(out["f1"], f, rtol=0, atol=1e-12)
    assert M.pr_auc(out["recall"], out["precision"]) == pytest.approx(M.pr_auc(r, p), abs=1e-12)


def test_chunked_equals_unchunked_and_threads():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((300, 5))
    y = rng.integers(0, 6, 300)
    a = M.precision_recall_at_k(x, y, per_query=True, chunk=1000)
    b = M.precision_recall_at_k(x, y, per_query=True, chunk=7)
    c = M.precision_recall_at_k(x, y, per_query=True, chunk=13, n_jobs=2)
    for key in ("precision", "recall", "f1", "tp"):
        assert np.array_equal(a[key], b[key])
        assert np.array_equal(a[key], c[key])


def _stable_tp(x, y, ks, queries):
    """Exact TP counts by a full stable sort per query (integer coordinates → exact distances)."""
    out = []
    for q in queries:
        d = ((x - x[q]) ** 2).sum(1)
        d[q] = np.inf
        order = np.argsort(d, kind="stable")
        out.append(np.cumsum(y[order] == y[q])[np.asarray(ks) - 1])
    return np.array(out)


def test_sampled_path_is_exact_with_heavy_ties():
    # N >= 8192 with a small max k uses the sampled-threshold path; integer grid coordinates make many
    # exact distance ties, all of which must go to the lower index exactly as a full stable sort.
    rng = np.random.default_rng(5)
    n = 9000
    x = rng.integers(0, 7, (n, 2)).astype(float)
    y = rng.integers(0, 3, n)
    ks = [1, 5, 20, 100, 500]
    queries = rng.choice(n, 40, replace=False)
    r = M.precision_recall_at_k(x, y, ks, query_idx=queries, per_query=True)
    assert np.array_equal(r["tp"], _stable_tp(x, y, ks, queries))
    xf = rng.standard_normal((n, 4))  # the same without ties
    r = M.precision_recall_at_k(xf, y, ks, query_idx=queries, per_query=True)
    assert np.array_equal(r["tp"], _stable_tp(xf, y, ks, queries))


def test_separated_clusters_and_random_labels():
    # 5 clusters of m = 20 points far apart: every query has 19 positives, all nearer than any negative.
    # k ≤ 19: precision 1, recall k/19; k > 19: recall 1. With k = 1, 2, 5, 10, 19, 50, 99 the AUC is
    # (2−1)/19 + (5−2)/19 + (10−5)/19 + (19−10)/19 (all at precision 1) + 0 + 0 = 18/19.
    rng = np.random.default_rng(6)
    m, c = 20, 5
    y = np.repeat(np.arange(c), m)
    x = 100.0 * np.eye(c)[y] + rng.normal(scale=0.1, size=(c * m, c))
    ks = [1, 2, 5, 10, 19, 50, 99]
    s = M.retrieval_scores(x, y, ks)
    assert s["pr_auc"] == pytest.approx(18 / 19, abs=1e-12)
    np.testing.assert_allclose(s["precision"], [1, 1, 1, 1, 1, 19 / 50, 19 / 99], atol=1e-12)
    # the same points with shuffled labels: each query has ~19 positives among 99 → about 0.2
    s_rand = M.retrieval_scores(x, rng.permutation(y), ks)
    assert s_rand["pr_auc"] < 0.4


def test_pr_auc_by_hand_three_points():
    # (0.5 − 0.2)·0.8 + (0.9 − 0.5)·0.4 = 0.24 + 0.16 = 0.40; the first point adds nothing.
    assert M.pr_auc([0.2, 0.5, 0.9], [1.0, 0.8, 0.4]) == pytest.approx(0.40, abs=1e-15)
    assert M.pr_auc([0.2, 0.5, 0.9], [0.0, 0.8, 0.4]) == pytest.approx(0.40, abs=1e-15)
    assert M.pr_auc([0.7], [1.0]) == 0.0


def test_adaptive_k_list():
    ks = M.adaptive_k_list(1000)
    assert ks == sorted(set(ks))
    assert {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000}.issubset(ks)
    assert 300 in ks and 900 in ks and max(ks) == 1000
    assert M.adaptive_k_list(3) == [1, 2, 3, 5, 10, 20, 50, 100, 200, 500]


def test_four_pairs_keys_and_subset():
    rng = np.random.default_rng(7)
    n = 200
    content = rng.integers(0, 4, n)
    style = rng.integers(0, 5, n)
    z_c = 10.0 * np.eye(4)[content] + rng.normal(scale=0.1, size=(n, 4))
    z_s = 10.0 * np.eye(5)[style] + rng.normal(scale=0.1, size=(n, 5))
    ks = list(range(1, 120))  # every rank: a perfect embedding then scores 1 − recall@1 ≈ 0.96
    out = M.four_pairs(z_c, z_s, content, style, n_eval=120, seed=1, k_list=ks)
    assert out["n_eval"] == 120 and len(out["indices"]) == 120
    assert out["prauc_zc_content"] > 0.9 and out["prauc_zs_style"] > 0.9
    assert out["prauc_zs_content"] < 0.5 and out["prauc_zc_style"] < 0.5
    assert set(out["curve_zc_content"]) == {"k", "precision", "recall", "f1"}
    again = M.four_pairs(z_c, z_s, content, style, n_eval=120, seed=1, k_list=ks)
    assert again["prauc_zc_style"] == out["prauc_zc_style"]


# --------------------------------------------------------------------------------------------------
# codebook metrics
# --------------------------------------------------------------------------------------------------


def _from_counts(counts):
    counts = np.asarray(counts)
    k, c = np.nonzero(counts)
    reps = counts[k, c]
    return np.repeat(k, reps), np.repeat(c, reps)


def test_confusion_and_macro_purity_by_hand():
    counts = np.array([[8, 2, 0], [0, 0, 0], [1, 1, 2], [0, 5, 0]])
    atoms, content = _from_counts(counts)
    assert np.array_equal(M.confusion_matrix(atoms, content, 4, 3), counts)
    # used rows 0, 2, 3: purities 8/10, 2/4, 5/5 → (0.8 + 0.5 + 1.0) / 3
    assert M.macro_purity(counts) == pytest.approx(2.3 / 3, abs=1e-15)


def test_ordered_confusion_rows():
    counts = np.array([[0, 3, 1], [0, 0, 0], [4, 0, 0], [1, 1, 2], [0, 9, 1]])
    mat, order = M.ordered_confusion(counts)
    # argmax classes: a0→1 (0.75), a2→0 (1.0), a3→2 (0.5), a4→1 (0.9); a1 unused → last.
    assert order.tolist() == [2, 4, 0, 3, 1]
    np.testing.assert_allclose(mat[0], [1, 0, 0])
    np.testing.assert_allclose(mat.sum(1), [1, 1, 1, 1, 0])


def test_hungarian_beats_greedy_on_3x3():
    # Greedy on the largest cell takes (a0, c0) = 5 and then only (a2, c2) = 3 is worth anything: 8.
    # The optimal one-to-one map is a0→c1 (4), a1→c0 (4), a2→c2 (3): 11 of 16 fragments.
    counts = np.array([[5, 4, 0], [4, 0, 0], [0, 0, 3]])
    atoms, content = _from_counts(counts)
    assert M.one_to_one_accuracy(atoms, content, 3, 3) == pytest.approx(11 / 16)
    # many-to-one: row maxima 5 + 4 + 3 = 12 of 16
    assert M.many_to_one_accuracy(atoms, content, 3, 3) == pytest.approx(12 / 16)


def test_hungarian_with_more_atoms_than_classes():
    # K = 3 > C = 2: atoms 0 → c0 (6) and 1 → c1 (3) are matched; atom 2's 4 fragments count as wrong.
    counts = np.array([[6, 0], [0, 3], [4, 0]])
    atoms, content = _from_counts(counts)
    assert M.one_to_one_accuracy(atoms, content, 3, 2) == pytest.approx(9 / 13)


def test_atom_usage_by_hand():
    u = M.atom_usage([0, 0, 1, 3], 4)
    assert u["n_used"] == 3
    np.testing.assert_allclose(u["fractions"], [0.5, 0.25, 0.0, 0.25])
    # exp(−(½ ln ½ + 2·¼ ln ¼)) = exp(1.5 ln 2) = 2^1.5
    assert u["perplexity"] == pytest.approx(2**1.5)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(M.MetricInputError, match="atom_index"):
        M.confusion_matrix([0, 5], [0, 1], 3, 2)
    with pytest.raises(M.MetricInputError, match="labels"):
        M.precision_recall_at_k(np.zeros((4, 2)), [0, 1, 2])
    with pytest.raises(M.MetricInputError, match="k_list"):
        M.precision_recall_at_k(np.zeros((4, 2)), [0, 1, 0, 1], [5, 2])


# --------------------------------------------------------------------------------------------------
# EER and reconstruction
# --------------------------------------------------------------------------------------------------


def test_eer_exact_by_hand():
    # x = 0, 2, 3, 7 with labels 0, 0, 1, 1. Pair distances in order: 1 (1,2 diff), 2 (0,1 same),
    # 3 (0,2 diff), 4 (2,3 same), 5 (1,3 diff), 7 (0,3 diff); 2 same, 4 different pairs.
    # accept d ≤ t:  t=−∞ FAR 0 FRR 1;  t=1 FAR ¼ FRR 1;  t=2 FAR ¼ FRR ½;  t=3 FAR ½ FRR ½ → EER ½.
    x = np.array([[0.0], [2.0], [3.0], [7.0]])
    y = np.array([0, 0, 1, 1])
    e, t = M.eer_exact(x, y, return_threshold=True)
    assert e == 0.5 and t == 3.0
    assert M.eer(x, y) == 0.5
    # perfectly separated pairs: EER 0
    assert M.eer_exact(np.array([[0.0], [1.0], [10.0], [11.0]]), np.array([0, 0, 1, 1])) == 0.0


def test_eer_histogram_matches_exact():
    rng = np.random.default_rng(8)
    n = 400
    y = rng.integers(0, 5, n)
    x = rng.standard_normal((n, 6)) + 0.8 * np.eye(6)[y]
    exact = M.eer_exact(x, y)
    hist, thr = M.eer(x, y, chunk=37, return_threshold=True)
    # the histogram can only miss the crossing by the pairs in one bin of width D / 2^16 (~1 pair here)
    assert abs(hist - exact) < 1e-3
    assert 0.05 < exact < 0.5
    sub = M.eer(x, y, max_pairs=20000)
    assert abs(sub - exact) < 0.05


def test_recon_mse():
    assert M.recon_mse([[1.0, 2.0], [3.0, 4.0]], [[1.0, 2.0], [3.0, 6.0]]) == pytest.approx(1.0)
    with pytest.raises(M.MetricInputError):
        M.recon_mse([1.0], [1.0, 2.0])


def test_docstring_examples():
    import doctest

    failures, _ = doctest.testmod(M, verbose=False)
    assert failures == 0
    assert math.isclose(M.pr_auc([0.2, 0.5, 0.9], [1.0, 0.8, 0.4]), 0.4)


# --------------------------------------------------------------------------------------------------
# plots (smoke tests: files are written, shapes are right)
# --------------------------------------------------------------------------------------------------


def test_plots_write_files(tmp_path):
    import json

    from varinv.eval import plots as P

    rng = np.random.default_rng(9)
    counts = np.array([[0, 3, 1], [0, 0, 0], [4, 0, 0], [1, 1, 2]])
    svg = P.plot_confusion(counts, ["a", "b", "c"], tmp_path / "conf.svg", "test")
    text = svg.read_text()
    assert text.startswith("<?xml") and "1 unused atoms hidden" in text
    assert P.plot_confusion(counts, ["a", "b", "c"], tmp_path / "conf2.svg", "test").read_text() == text

    x = rng.standard_normal((40, 5))
    atoms = rng.standard_normal((3, 5))
    xyz, axyz = P.tsne_3d(x, seed=0, extra=atoms, max_iter=250)
    assert xyz.shape == (40, 3) and axyz.shape == (3, 3)
    assert P.tsne_3d(x, seed=0, max_iter=250)[1] is None
    labels = rng.integers(0, 3, 40)
    png = P.plot_latent_3d(xyz, labels, ["a", "b", "c"], tmp_path / "lat.png", "t", axyz)
    assert png.read_bytes()[:4] == b"\x89PNG"
    js = P.save_latent_json(tmp_path / "lat.json", xyz, labels, labels, atoms=axyz, content_names=["a", "b", "c"])
    doc = json.loads(js.read_text())
    assert len(doc["coords"]) == 40 and len(doc["atoms"]) == 3 and doc["content_names"] == ["a", "b", "c"]
