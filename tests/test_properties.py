"""Property-based tests (hypothesis) for the metrics and the dataset store."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from varinv.data.store import from_arrays, open_dataset
from varinv.eval import metrics as M

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def labelled_points(draw, max_n=40, max_classes=5):
    n = draw(st.integers(4, max_n))
    k = draw(st.integers(2, max_classes))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)), rng.integers(0, k, n), k


@FAST
@given(labelled_points())
def test_retrieval_curves_are_bounded_and_recall_monotone(data):
    emb, labels, _ = data
    out = M.precision_recall_at_k(emb, labels, k_list=[1, 2, 3, 5, 8])
    assert np.all((out["precision"] >= 0) & (out["precision"] <= 1))
    assert np.all((out["recall"] >= 0) & (out["recall"] <= 1))
    assert np.all(np.diff(out["recall"]) >= -1e-12)


@FAST
@given(labelled_points())
def test_retrieval_is_invariant_to_the_order_of_fragments(data):
    emb, labels, _ = data
    perm = np.random.default_rng(0).permutation(len(labels))
    a = M.retrieval_scores(emb, labels, k_list=[1, 2, 4])["pr_auc"]
    b = M.retrieval_scores(emb[perm], labels[perm], k_list=[1, 2, 4])["pr_auc"]
    assert abs(a - b) < 1e-12


@FAST
@given(st.integers(1, 8), st.integers(1, 8), st.integers(1, 200), st.integers(0, 2**16))
def test_codebook_metrics_are_ordered(n_atoms, n_classes, n, seed):
    rng = np.random.default_rng(seed)
    idx, content = rng.integers(0, n_atoms, n), rng.integers(0, n_classes, n)
    counts = M.confusion_matrix(idx, content, n_atoms, n_classes)
    assert counts.sum() == n
    purity = M.macro_purity(counts)
    one = M.one_to_one_accuracy(idx, content, n_atoms, n_classes)
    many = M.many_to_one_accuracy(idx, content, n_atoms, n_classes)
    assert 0 < purity <= 1 and 0 <= one <= many <= 1


@FAST
@given(st.integers(1, 6), st.integers(0, 2**16))
def test_a_relabelled_codebook_is_perfect(n_classes, seed):
    rng = np.random.default_rng(seed)
    content = rng.integers(0, n_classes, 50)
    perm = rng.permutation(n_classes)
    idx = perm[content]  # every atom holds exactly one class
    counts = M.confusion_matrix(idx, content, n_classes, n_classes)
    assert M.macro_purity(counts) == 1.0
    assert M.one_to_one_accuracy(idx, content, n_classes, n_classes) == 1.0


@FAST
@given(
    n=st.integers(1, 5),
    length=st.integers(2, 4),
    shape=st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6)),
    dtype=st.sampled_from([np.uint8, np.float16, np.float32]),
    per_fragment_style=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_store_roundtrip(tmp_path_factory, n, length, shape, dtype, per_fragment_style, seed):
    rng = np.random.default_rng(seed)
    x = (rng.random((n, length, *shape)) * 200).astype(dtype)
    content = rng.integers(0, 4, (n, length))
    style = rng.integers(0, 3, (n, length) if per_fragment_style else (n,))
    root = tmp_path_factory.mktemp("store") / "d"
    from_arrays(root, {"train": (x, content, style)})
    sp = open_dataset(root).split("train", verify=True)
    assert sp.x.dtype == x.dtype and np.array_equal(sp.x, x)
    assert np.array_equal(sp.content, content) and np.array_equal(sp.style, style)
    assert sp.style_per_fragment.shape == (n, length)
