"""Cross-validation folds that cannot fool the label check: near-duplicates share a fold,
multi-label folds keep every label in training, and a skipped CROWDLAB says why."""
import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from labelloop.label_config import load
from labelloop.label_config.spec import parse_label_config
from labelloop.model.data_issues import find_data_issues, groups_from_pairs
from labelloop.model.classification.label_issues import find_label_issues, multilabel_folds
from labelloop.model.classification.audit import _consensus_and_issues


def copied_wrong_labels(seed=0):
    """Two clusters of 60; six points of cluster A copied four times each, every copy labelled B."""
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 1, size=(60, 16)) + 6
    b = rng.normal(0, 1, size=(60, 16)) - 6
    copies = np.repeat(a[:6], 4, axis=0) + rng.normal(0, 1e-4, size=(24, 16))
    X = np.vstack([a[6:], b, copies])
    y = np.array(["A"] * 54 + ["B"] * 60 + ["B"] * 24)
    return X, y, np.arange(114, 138)


def test_near_duplicates_share_a_fold_so_a_copied_wrong_label_cannot_confirm_itself():
    X, y, planted = copied_wrong_labels()
    data = find_data_issues(X)
    groups = groups_from_pairs(len(X), [(i, j) for i, others in enumerate(data.near_duplicate_of) for j in others])
    assert len(set(groups[planted])) == 6  # the audit's groups: one per copied point
    knn = KNeighborsClassifier(n_neighbors=3)  # a model that trusts its nearest neighbours, as copies exploit

    grouped = find_label_issues(X, y, estimator=knn, n_folds=5, groups=groups)
    plain = find_label_issues(X, y, estimator=knn, n_folds=5)
    # without groups, the copies in training vouch for each other: most look perfect, few are flagged
    assert np.median(plain.quality[planted]) == 1.0 and np.median(grouped.quality[planted]) <= 0.5
    assert plain.is_issue[planted].mean() < 0.5 <= grouped.is_issue[planted].mean()


def test_multilabel_folds_keep_every_label_in_training_and_groups_together():
    rng = np.random.default_rng(1)
    classes = ["Acting", "Music", "Story", "Rare"]
    sets = [tuple(sorted({classes[k] for k in rng.choice(3, size=rng.integers(1, 3), replace=False)}))
            for _ in range(40)]
    sets[5], sets[30] = ("Rare",), ("Music", "Rare")  # a label on two items only
    groups = np.arange(40)
    groups[[10, 11, 12]] = 10
    folds = multilabel_folds(sets, classes, n_folds=2, random_state=0, groups=groups)
    assert sorted(np.concatenate([test for _, test in folds]).tolist()) == list(range(40))
    for train, test in folds:
        assert {label for i in train for label in sets[i]} == set(classes)
        assert len({10, 11, 12} & set(test.tolist())) in (0, 3)


def test_the_report_says_why_crowdlab_did_not_run():
    spec = parse_label_config(load("text_classification"))
    X, y, _ = copied_wrong_labels()
    matrix = [[label] for label in y]  # one annotator per task
    messages = []
    _consensus_and_issues(matrix, X, spec.labels, spec.multi_label, 3, messages)
    assert any(m.startswith("CROWDLAB did not run: every task has a single annotator") for m in messages)
    multi = parse_label_config(load("multi_label_classification"))
    messages = []
    sets = [("Story",) if i % 2 else ("Music",) for i in range(len(X))]
    _consensus_and_issues([[s, s] for s in sets], X, multi.labels, multi.multi_label, 3, messages)
    assert any("CROWDLAB did not run: it handles single-label classes only" in m for m in messages)


@pytest.mark.parametrize("bad", [np.arange(3), np.zeros((138, 2))])
def test_groups_must_match_the_items(bad):
    X, y, _ = copied_wrong_labels()
    with pytest.raises(ValueError, match="groups must have shape"):
        find_label_issues(X, y, groups=bad)
