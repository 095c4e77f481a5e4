"""FAISS neighbour search: exact where it says so, close to exact where it is approximate, and the
same answers as the scikit-learn search it replaced."""
import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

from labelloop.model import neighbours
from labelloop.model.data_issues import cross_split_neighbours, knn_graph
from labelloop.model.neighbours import FaissKNNClassifier, nearest, normalised


def clustered(n, dim=32, k=20, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, dim))
    y = rng.integers(0, k, n)
    return (centers[y] + 0.7 * rng.normal(size=(n, dim))).astype(np.float32), y


def brute(X, Q, k):
    sims = normalised(Q) @ normalised(X).T
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def test_exact_search_matches_brute_force_and_self_search_leaves_each_row_out():
    X, _ = clustered(500)
    _, idx = nearest(X, X[:50], k=5)
    assert (idx == brute(X, X[:50], 5)).mean() > 0.99  # ties may swap
    sims, own = nearest(X, k=5)
    assert own.shape == (500, 5) and not (own == np.arange(500)[:, None]).any()
    assert np.all(np.diff(sims, axis=1) <= 1e-6)  # most similar first


def test_exact_duplicates_still_leave_the_row_itself_out():
    X = np.repeat(np.eye(4, dtype=np.float32), 3, axis=0)  # every row has two exact copies
    sims, idx = nearest(X, k=2)
    assert not (idx == np.arange(12)[:, None]).any()
    assert np.allclose(sims, 1.0)


def test_large_sets_are_searched_exactly_unless_approximate_search_is_asked_for(monkeypatch):
    monkeypatch.setattr(neighbours, "EXACT_MAX_ITEMS", 1000)
    X = np.random.default_rng(1).normal(size=(6000, 32)).astype(np.float32)  # no clusters: hard for an index
    truth = brute(X, X[:300], 10)
    _, exact = nearest(X, X[:300], k=10)
    assert (exact == truth).mean() > 0.99
    monkeypatch.setenv("LABELLOOP_NEIGHBOURS", "approximate")
    _, approx = nearest(X, X[:300], k=10)
    recall = np.mean([len(set(a) & set(t)) / 10 for a, t in zip(approx, truth)])
    assert 0.5 <= recall < 1.0, recall  # an inverted-file index: close, not exact
    monkeypatch.setenv("LABELLOOP_NEIGHBOURS", "fast")
    with pytest.raises(ValueError, match="LABELLOOP_NEIGHBOURS"):
        nearest(X, X[:3], k=2)


def test_knn_graph_matches_the_former_scikit_learn_graph():
    X, _ = clustered(400, seed=2)
    graph = knn_graph(X, n_neighbors=8)
    ref = NearestNeighbors(n_neighbors=8, algorithm="brute").fit(normalised(X)).kneighbors_graph(mode="distance")
    ref.data = ref.data ** 2 / 2.0
    assert graph.shape == ref.shape and graph.nnz == ref.nnz
    assert abs(graph - ref).max() < 1e-4


def test_cross_split_check_finds_planted_leaks_exactly():
    X, _ = clustered(300, seed=3)
    split = np.array([0] * 240 + [1] * 30 + [2] * 30)
    X[250] = X[10]  # a validation copy of a training item
    X[290] = X[255] * 1.0001  # a test near-copy of a validation item
    pairs = cross_split_neighbours(X, split, threshold=0.999)
    assert {tuple(p) for p in pairs} == {(10, 250), (255, 290)}


def test_knn_classifier_votes_like_scikit_learn_with_inverse_cosine_distance_weights():
    X, y = clustered(600, seed=4)
    train, test = slice(0, 500), slice(500, None)
    ours = FaissKNNClassifier(n_neighbors=15).fit(X[train], y[train])
    Xn = normalised(X)

    def inverse_cosine(d):
        return 1.0 / np.maximum(d ** 2 / 2.0, 1e-9)

    ref = KNeighborsClassifier(n_neighbors=15, weights=inverse_cosine, algorithm="brute").fit(Xn[train], y[train])
    assert list(ours.classes_) == list(ref.classes_)
    assert np.abs(ours.predict_proba(X[test]) - ref.predict_proba(Xn[test])).max() < 1e-3
    assert (ours.predict(X[test]) == ref.predict(Xn[test])).mean() > 0.99


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="n_samples, dim"):
        nearest(np.zeros(5), k=2)


def test_the_certified_bf16_search_gives_the_exact_answer_and_redoes_rows_it_cannot_certify(monkeypatch):
    from labelloop.model import embeddings

    X, _ = clustered(1500, dim=48, seed=5)
    X[100:140] = X[99]  # 41 identical rows: their top 10 are ties the bf16 pass cannot order
    Q = X[:300] + 0.05 * np.random.default_rng(6).normal(size=(300, 48)).astype(np.float32)
    faiss_self, faiss_query = nearest(X, k=10), nearest(X, Q, k=15)
    monkeypatch.setattr(neighbours, "CERTIFIED_MIN_PAIRS", 0)
    monkeypatch.setattr(neighbours, "_BLOCK", 128)  # many blocks: the row sides and the later rows' merge
    monkeypatch.setattr(embeddings, "native_bf16", lambda: True)
    redone = []
    real_faiss = neighbours._faiss_search
    monkeypatch.setattr(neighbours, "_faiss_search", lambda X_, Q_, **kw: redone.append(len(Q_)) or real_faiss(X_, Q_, **kw))
    for (sims, idx), (ref_sims, ref_idx) in ((nearest(X, k=10), faiss_self), (nearest(X, Q, k=15), faiss_query)):
        assert np.abs(sims - ref_sims).max() < 1e-5  # the same cosines, rank by rank
        assert (idx == ref_idx).mean() > 0.97  # up to the order of exact ties
    assert not (nearest(X, k=10)[1] == np.arange(1500)[:, None]).any()  # never a row itself
    assert redone and 41 <= redone[0] < 1500  # the tied rows, not the whole set, went back to FAISS


def test_the_certified_search_is_exact_where_most_scores_are_negative(monkeypatch):
    """Ten rows opposite everything else have fewer than c scores above 0: no group bound holds
    for them, and they are searched whole."""
    from labelloop.model import embeddings

    rng = np.random.default_rng(7)
    axis = np.eye(48, dtype=np.float32)[0]
    X = np.vstack([axis + 0.3 * rng.normal(size=(1490, 48)), -axis + 0.05 * rng.normal(size=(10, 48))])
    X = X[rng.permutation(len(X))].astype(np.float32)
    ref_sims, ref_idx = nearest(X, k=12)
    monkeypatch.setattr(neighbours, "CERTIFIED_MIN_PAIRS", 0)
    monkeypatch.setattr(neighbours, "_BLOCK", 256)
    monkeypatch.setattr(embeddings, "native_bf16", lambda: True)
    sims, idx = nearest(X, k=12)
    lonely = np.flatnonzero(X[:, 0] < 0)
    assert (ref_sims[lonely, -1] < 0).all()  # their 10th neighbour and on lie across the origin
    assert np.abs(sims - ref_sims).max() < 1e-5
    assert (idx == ref_idx).mean() > 0.99
