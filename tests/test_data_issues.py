import numpy as np

from labelloop.model.data_issues import find_data_issues, knn_graph, near_duplicate_groups


def clustered(n=400, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(4, dim))
    return (centers[rng.integers(4, size=n)] + 0.3 * rng.normal(size=(n, dim))).astype(np.float32), rng


def test_knn_graph_holds_cosine_distances_to_the_nearest_others():
    X, _ = clustered(50)
    graph = knn_graph(X, n_neighbors=3)
    assert graph.shape == (50, 50) and (graph.getnnz(axis=1) == 3).all()
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    cosine = 1.0 - unit @ unit.T
    np.fill_diagonal(cosine, np.inf)
    row = graph.getrow(0)
    assert set(row.indices) == set(np.argsort(cosine[0])[:3])
    assert np.allclose(np.sort(row.data), np.sort(cosine[0])[:3], atol=1e-5)


def test_planted_near_duplicates_and_an_outlier_are_found():
    X, rng = clustered()
    X[10] = X[20] + 1e-4 * rng.normal(size=X.shape[1])
    X[30] = X[20]
    X[5] = 0.0
    X[5, :2] = (-40.0, 40.0)  # a direction no cluster has
    issues = find_data_issues(X)
    assert {10, 20, 30} <= set(np.flatnonzero(issues.is_near_duplicate))
    assert set(issues.near_duplicate_of[20]) == {10, 30}
    assert issues.is_outlier[5]
    assert issues.outlier_score[5] < np.median(issues.outlier_score)
    assert not issues.is_near_duplicate[5]


def test_near_duplicate_groups_follow_the_threshold_and_are_deterministic():
    X, rng = clustered(200)
    X[7] = X[3] * 1.01           # cosine 1.0 with 3
    X[9] = X[7] + 1e-3 * rng.normal(size=X.shape[1])  # chain 3 - 7 - 9
    groups = near_duplicate_groups(X, threshold=0.999)
    assert groups[3] == groups[7] == groups[9]
    assert (groups == groups[3]).sum() == 3
    assert len(np.unique(groups)) == 200 - 2
    assert groups[0] == 0 and list(groups) == list(near_duplicate_groups(X, threshold=0.999))
    # a loose threshold merges whole clusters
    assert len(np.unique(near_duplicate_groups(X, threshold=0.5))) < 20


def test_tiny_inputs_do_not_fail():
    assert not find_data_issues(np.ones((2, 4))).is_near_duplicate.any()
    assert len(near_duplicate_groups(np.zeros((0, 4)))) == 0
    assert list(near_duplicate_groups(np.eye(1, 4))) == [0]
