import numpy as np
import pytest

from labelloop.model.classification.consensus import crowdlab, majority_vote
from labelloop.model.errors import NotEnoughLabelsError


def test_majority_vote_with_ties_and_single_annotators():
    labels = [["a", "a", "b"],
              ["a", "b", None],    # tie
              ["b", None, None]]   # single annotator
    c = majority_vote(labels)
    assert list(c.label) == ["a", "a", "b"]
    np.testing.assert_allclose(c.agreement, [2 / 3, 0.5, 1.0])
    assert list(c.n_annotators) == [3, 2, 1] and list(c.tie) == [False, True, False]
    # the model breaks the tie when it is given
    proba = np.array([[0.5, 0.5], [0.2, 0.8], [0.5, 0.5]])
    assert majority_vote(labels, pred_probs=proba, classes=["a", "b"]).label[1] == "b"


def test_majority_vote_needs_a_label_per_item():
    with pytest.raises(NotEnoughLabelsError):
        majority_vote([["a", None], [None, None]])


def test_crowdlab_finds_the_bad_annotator():
    rng = np.random.default_rng(0)
    n = 120
    truth = rng.integers(2, size=n)
    classes = ["neg", "pos"]
    good1 = truth.copy()
    good2 = np.where(rng.random(n) < 0.05, 1 - truth, truth)
    bad = np.where(rng.random(n) < 0.45, 1 - truth, truth)
    matrix = [[classes[a], classes[b], classes[c] if i % 2 == 0 else None]
              for i, (a, b, c) in enumerate(zip(good1, good2, bad))]
    proba = np.clip(np.eye(2)[truth] * 0.8 + 0.1, 0, 1)
    c = crowdlab(matrix, proba, classes)
    assert np.mean(c.label == np.array(classes, dtype=object)[truth]) > 0.95
    stats = c.annotator_stats  # indexed by annotator column name
    assert stats.loc["annotator_2", "annotator_quality"] < stats.loc["annotator_0", "annotator_quality"]
    assert np.all((0 <= c.quality) & (c.quality <= 1))


def test_crowdlab_bad_input():
    proba = np.full((2, 2), 0.5)
    with pytest.raises(NotEnoughLabelsError, match="two annotators"):
        crowdlab([["a", None], ["b", None]], proba, ["a", "b"])
    with pytest.raises(ValueError, match="not among the classes"):
        crowdlab([["a", "zzz"], ["b", "a"]], proba, ["a", "b"])


def test_multilabel_majority_keeps_labels_most_annotators_chose_and_flags_ties():
    from labelloop.model.classification.consensus import majority_vote_multilabel

    result = majority_vote_multilabel([
        [("a", "b"), ("a",), ("a", "b")],   # a: 3/3, b: 2/3
        [("a",), ("b",), None],             # a and b tied at 1/2: kept, flagged
        [("c",), None, None],               # single annotator
    ])
    assert list(result.label) == [("a", "b"), ("a", "b"), ("c",)]
    assert list(result.tie) == [False, True, False]
    assert list(result.n_annotators) == [3, 2, 1]
    assert result.agreement[0] == 2 / 3 and result.agreement[2] == 1.0
    with pytest.raises(NotEnoughLabelsError):
        majority_vote_multilabel([[None, None]])


def test_crowdlab_keeps_single_annotator_labels_even_when_the_model_disagrees():
    rng = np.random.default_rng(0)
    truth = rng.integers(2, size=60)
    given = truth.copy()
    given[:10] = 1 - given[:10]  # single annotators who are wrong
    pred_probs = np.where(truth[:, None] == np.arange(2), 0.95, 0.05)
    names = np.array(["a", "b"], dtype=object)
    labels = [[names[g], None] for g in given]
    labels[20][1] = labels[20][0]  # CROWDLAB needs some item with two annotators
    labels[21][1] = names[1 - given[21]]
    result = crowdlab(labels, pred_probs, ["a", "b"])
    assert list(result.label[:10]) == list(names[given[:10]])
    assert result.label[21] in ("a", "b") and result.n_annotators[21] == 2
