import numpy as np
import pytest

from labelloop.model.errors import NotEnoughLabelsError
from labelloop.model.classification.label_issues import find_label_issues


def noisy_blobs(n=300, k=3, flip=0.1, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3.0, size=(k, 8))
    truth = rng.integers(k, size=n)
    X = (centers[truth] + rng.normal(size=(n, 8))).astype(np.float32)
    given = truth.copy()
    flipped = rng.choice(n, size=int(flip * n), replace=False)
    given[flipped] = (truth[flipped] + rng.integers(1, k, size=len(flipped))) % k
    names = np.array([f"c{i}" for i in range(k)], dtype=object)
    return X, names[given], names[truth], set(flipped.tolist())


def test_flags_flipped_labels_with_good_precision_and_recall():
    X, given, truth, flipped = noisy_blobs()
    issues = find_label_issues(X, given)
    flagged = set(np.flatnonzero(issues.is_issue).tolist())
    precision = len(flagged & flipped) / max(1, len(flagged))
    recall = len(flagged & flipped) / len(flipped)
    assert precision > 0.7 and recall > 0.7, (precision, recall)
    # suggestions recover the true label for most flagged items
    assert np.mean(issues.suggested[list(flagged)] == truth[list(flagged)]) > 0.8
    ranked = issues.ranked()
    assert list(issues.quality[ranked]) == sorted(issues.quality[ranked])
    assert issues.pred_probs.shape == (300, 3) and issues.n_folds == 10
    # Cleanlab's estimate of how many labels are wrong lands near the 30 flipped
    assert 20 <= issues.n_estimated <= 45, issues.n_estimated


def test_rare_class_is_left_out_and_folds_shrink_with_messages():
    X, given, _, _ = noisy_blobs(n=40, k=2, flip=0.0)
    given = given.copy()
    given[0] = "lonely"
    given[1:4] = "tiny"
    issues = find_label_issues(X, given)
    assert not issues.scored[0] and np.isnan(issues.quality[0]) and not issues.is_issue[0]
    assert issues.n_folds == 3
    assert any("lonely" in m for m in issues.messages) and any("3 folds" in m for m in issues.messages)


@pytest.mark.parametrize("labels", [[], ["a"] * 10, ["a"] * 9 + ["b"]])
def test_not_enough_to_audit_is_a_clear_error(labels):
    X = np.zeros((len(labels), 4), dtype=np.float32)
    with pytest.raises(NotEnoughLabelsError):
        find_label_issues(X, labels)


def test_works_under_the_spawn_start_method_label_studio_ml_sets():
    """label-studio-ml switches multiprocessing to "spawn" when imported (as the backend does)."""
    import multiprocessing

    previous = multiprocessing.get_start_method()
    multiprocessing.set_start_method("spawn", force=True)
    try:
        X, given, _, flipped = noisy_blobs(n=120, flip=0.1, seed=3)
        issues = find_label_issues(X, given)
        assert issues.is_issue.any()
    finally:
        multiprocessing.set_start_method(previous, force=True)


def test_multilabel_issues_flag_wrong_label_sets():
    from labelloop.model.classification.label_issues import find_multilabel_issues

    rng = np.random.default_rng(0)
    centers = rng.normal(scale=2.0, size=(3, 16))
    names = ["a", "b", "c"]
    truth = [tuple(sorted({names[i] for i in rng.choice(3, size=rng.integers(1, 3), replace=False)}))
             for _ in range(240)]
    X = np.array([sum(centers[names.index(n)] for n in labels) + 0.5 * rng.normal(size=16) for labels in truth])
    given = list(truth)
    corrupted = set(range(0, 240, 12))
    for i in corrupted:
        given[i] = tuple(n for n in names if n not in truth[i])[:1]
    issues = find_multilabel_issues(X, given, names)
    flagged = set(np.flatnonzero(issues.is_issue).tolist())
    assert len(flagged & corrupted) / len(corrupted) > 0.8
    assert len(flagged & corrupted) / len(flagged) > 0.6
    assert issues.pred_probs.shape == (240, 3)
    assert all(issues.suggested[i] == truth[i] for i in list(corrupted)[:5])
    assert issues.given[0] == given[0] and isinstance(issues.suggested[0], tuple)


def test_multilabel_with_one_label_in_use_is_a_clear_error():
    from labelloop.model.classification.label_issues import find_multilabel_issues

    with pytest.raises(NotEnoughLabelsError, match="two labels"):
        find_multilabel_issues(np.zeros((10, 4)), [("a",)] * 10, ["a", "b"])
