"""The head's C chosen per retrain (`labelloop.model.classification.regularisation`)."""
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from labelloop.model.classification.classifier import EmbeddingClassifier, embed
from labelloop.model.classification.regularisation import GRID, choose_C, jaccard
from labelloop.model.datasets import chatterbot_topics


@pytest.fixture(scope="module")
def topics():
    items = chatterbot_topics()
    return embed([it.text for it in items], "default"), np.asarray([it.label for it in items])


def test_many_classes_get_the_weaker_regularisation(topics):
    X, y = topics
    assert len(set(y)) > 15
    clf = EmbeddingClassifier().fit(X, y)  # the default is "auto"
    assert clf.C == "auto" and clf.C_ == 4.0 == GRID[-1]
    assert clf.head_.C == 4.0


def test_rare_classes_train_in_every_fold_and_do_not_postpone_the_choice(topics):
    X, y = topics
    # one class reduced to two examples, fewer than the folds: early annotation on many classes
    keep = np.setdiff1d(np.arange(len(y)), np.flatnonzero(y == y[0])[2:])
    X, y = X[keep], y[keep]
    fitted = []

    class Recording(LogisticRegression):
        def fit(self, X, y):
            fitted.append(np.asarray(y))
            return super().fit(X, y)

    assert choose_C(X, y, make_head=lambda C: Recording(C=C, max_iter=1000)) == GRID[-1]
    assert len(fitted) == 2 * 3 and all((labels == y[0]).sum() == 2 for labels in fitted)
    # the three folds of one C score every item of the other classes exactly once
    assert sum(len(y) - len(labels) for labels in fitted[:3]) == len(y) - 2


def test_fewer_than_two_classes_with_enough_labels_keep_the_default():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 4))
    y = np.array(["a"] * 10 + ["b", "c"])
    assert choose_C(X, y, make_head=lambda C: LogisticRegression(C=C)) == GRID[0]


def test_choice_is_deterministic_and_subsampled_the_same_way(topics):
    X, y = topics
    head = lambda C: LogisticRegression(C=C, max_iter=1000)  # noqa: E731
    first = choose_C(X, y, make_head=head, max_samples=600, seed=3)
    assert first in GRID and first == choose_C(X, y, make_head=head, max_samples=600, seed=3)


def test_an_explicit_C_is_used_as_given():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 5))
    y = np.where(X[:, 0] > 0, "a", "b")
    clf = EmbeddingClassifier(C=0.25).fit(X, y)
    assert clf.C_ == 0.25 and clf.head_.C == 0.25


def test_multi_label_heads_are_scored_by_jaccard():
    np.testing.assert_allclose(
        jaccard(np.array([[0.9, 0.6, 0.1], [0.2, 0.3, 0.1]]), np.array([[1, 0, 0], [0, 1, 1]])), [0.5, 0.5])
    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 6))
    y = [tuple(lab for lab, on in (("A", x[0] > 0), ("B", x[1] > 0)) if on) or ("A",) for x in X]
    clf = EmbeddingClassifier(multi_label=True).fit(X, y)
    assert clf.C_ in GRID and clf.head_.estimator.C == clf.C_


def test_bad_grids_are_refused():
    X, y = np.zeros((10, 2)), np.array(["a", "b"] * 5)
    with pytest.raises(ValueError, match="at least one C"):
        choose_C(X, y, make_head=LogisticRegression, grid=())
    with pytest.raises(ValueError, match="two folds"):
        choose_C(X, y, make_head=LogisticRegression, n_folds=1)
