"""Likely label errors: out-of-sample probabilities by K-fold cross-validation, then Cleanlab.

`out_of_sample_proba` cross-validates an ensemble of three heads on the same `N_FOLDS` folds and
averages their probabilities: logistic regression over the sentence embeddings (the served
classifier's head, class-balanced), a cosine k-nearest-neighbour vote over the same embeddings, and
logistic regression over TF-IDF word uni- and bigrams of the texts. Each sees the data
differently, so one head's confident mistake is outvoted. With 10% uniform flips (3 seeds) the
ensemble put more real errors among the first k than any single head on Rotten Tomatoes,
ChatterBot topics and BBC News; under 20% class-conditional noise on Rotten Tomatoes the
embedding head alone still ranks better (``bench/label_errors.py``). With ``groups``, folds
keep each near-duplicate group together (`StratifiedGroupKFold`), so a duplicated text with a
wrong label cannot confirm itself. Multi-label folds are stratified iteratively (iterative-stratification)
so every label stays in every training part.
`find_label_issues` hands those probabilities to `cleanlab.filter.find_label_issues` and
`cleanlab.rank.get_label_quality_scores` (``self_confidence``: with 10% uniform flips it beat
``normalized_margin`` and ``confidence_weighted_entropy`` on all three datasets). An item is
flagged when the ensemble, which never saw its label, predicts another class (`FILTER_BY`). Input
validation lives in `_prepare`: items of a class too rare to cross-validate are left out with a
message instead of failing the whole audit.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_val_predict

from .classifier import EmbeddingClassifier, embed
from ..embeddings import DEFAULT_MODEL
from ..errors import NotEnoughLabelsError


@dataclass
class LabelIssues:
    """Per-item results, all arrays of shape ``(n_samples,)`` unless stated.

    ``scored`` is False for items left out (their class had fewer than 2 examples); their
    ``quality`` is NaN, ``is_issue`` False and ``suggested`` their given label.
    ``pred_probs`` has shape ``(n_samples, n_classes)``, columns in ``classes`` order.
    ``n_estimated``: how many of the scored labels Cleanlab estimates are wrong (its
    `count.num_label_issues`), or None where it was not estimated (multi-label).
    """

    classes: np.ndarray
    given: np.ndarray
    suggested: np.ndarray
    quality: np.ndarray
    is_issue: np.ndarray
    scored: np.ndarray
    pred_probs: np.ndarray
    n_folds: int
    messages: list[str] = field(default_factory=list)
    n_estimated: int | None = None

    def ranked(self) -> np.ndarray:
        """Indices of flagged items, worst (lowest quality) first."""
        flagged = np.flatnonzero(self.is_issue)
        return flagged[np.argsort(self.quality[flagged], kind="stable")]

    def likely_errors(self) -> np.ndarray:
        """Mask ``(n_samples,)`` of the flagged labels that Cleanlab's estimate counts as wrong: the
        ``n_estimated`` most doubtful; every flagged label where there is no estimate (multi-label).
        Every label the ensemble would not predict is flagged, but on ambiguous data many are right,
        and `labelloop export --exclude-flagged` leaves out only these (``bench/outcome.py``,
        ChatterBot topics, a review stopped halfway: the export recovered 0.70 of the accuracy the
        flips cost without these, -0.03 without every flagged label)."""
        if self.n_estimated is None:
            return self.is_issue.copy()
        likely = np.zeros(len(self.is_issue), dtype=bool)
        likely[self.ranked()[:self.n_estimated]] = True
        return likely


def _prepare(y, n_folds: int) -> tuple[np.ndarray, np.ndarray, int, list[str]]:
    """Validate labels; returns (labels, mask of usable items, folds, messages)."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"labels must have shape (n_samples,), got {y.shape}")
    if len(y) == 0:
        raise NotEnoughLabelsError("no labelled items to audit")
    messages = []
    classes, counts = np.unique(y, return_counts=True)
    rare = classes[counts < 2]
    if len(rare):
        messages.append(f"{len(rare)} class(es) with a single example cannot be checked out of sample and "
                        f"are left out: {', '.join(map(str, rare[:10]))}")
    usable = ~np.isin(y, rare)
    kept_counts = counts[counts >= 2]
    if len(kept_counts) < 2:
        raise NotEnoughLabelsError(
            f"label errors need at least two classes with two examples each; found {len(classes)} class(es) "
            f"with counts {dict(zip(map(str, classes), counts.tolist()))}")
    folds = int(min(n_folds, kept_counts.min()))
    if folds < n_folds:
        messages.append(f"using {folds} folds instead of {n_folds}: the rarest class has only "
                        f"{kept_counts.min()} examples")
    return y, usable, folds, messages


def _group_ids(groups, n: int) -> np.ndarray | None:
    if groups is None:
        return None
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise ValueError(f"groups must have shape ({n},), got {groups.shape}")
    return groups


# 10 folds, not 5: each head trains on 90% of the labels instead of 80%. Paired over the same
# seeds (bench/outcome.py --baseline-folds 5), the queue's precision@k rose by 0.010 +- 0.004 on
# Rotten Tomatoes (10 seeds), by 0.006 +- 0.008 on ChatterBot topics (20) and 0.001 +- 0.003 on
# BBC News (10), for an audit 1.5-1.8x as long (3,000-12,000 texts)
N_FOLDS = 10

# balanced, like the served head: under class-conditional noise (bench/label_errors.py) unweighted
# heads lean to the inflated class and rank fewer real errors first
CLASS_WEIGHT = "balanced"

# the ensemble's embedding head keeps the C its queue figures were measured with: the served
# head's "auto" choice (cross-validation inside every fold) costs each fold six more fits, and
# in bench/outcome.py it moved ChatterBot's precision@k from 0.804 to 0.800
AUDIT_HEAD_C = 1.0

# which items Cleanlab flags; the queue orders them by self-confidence either way. Flagging every
# item whose out-of-sample prediction differs from its label put more real errors among the first
# k than cleanlab's default "prune_by_noise_rate" (bench/outcome.py --baseline-filter-by, 10%
# flips, 5 seeds): ChatterBot topics 0.888 vs 0.804 (+0.084 +- 0.017), BBC News 0.969 vs 0.919
# (+0.049 +- 0.011), Rotten Tomatoes the same. The default prunes a fixed count per pair of
# classes by margin, which left out flips whose label the ensemble found least likely;
# "low_self_confidence" (the lowest self-confidence, as many as Cleanlab estimates) also queued
# labels the ensemble agreed with (BBC 0.88 on 3 seeds)
FILTER_BY = "predicted_neq_given"


def _heads(n_train: int, with_texts: bool) -> dict:
    """The ensemble's heads by name; ``n_train``: the smallest training part's size."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline

    from ..neighbours import FaissKNNClassifier

    # cosine neighbours through FAISS, 1 / distance votes
    knn = FaissKNNClassifier(n_neighbors=max(1, min(15, n_train)))
    heads = {"embedding": EmbeddingClassifier(C=AUDIT_HEAD_C, class_weight=CLASS_WEIGHT),
             "knn": knn}
    if with_texts:
        heads["tfidf"] = make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), min_df=2 if n_train >= 50 else 1, sublinear_tf=True,
                            max_features=500_000),
            LogisticRegression(C=10.0, class_weight=CLASS_WEIGHT, max_iter=1000))
    return heads


def out_of_sample_proba(X, y, *, n_folds: int = N_FOLDS, random_state: int = 0, estimator=None, groups=None,
                        texts=None):
    """Cross-validated probabilities for the usable items.

    ``X``: texts ``(n_samples,)`` or embeddings ``(n_samples, dim)``; ``y``: ``(n_samples,)``;
    ``groups``: ``(n_samples,)`` near-duplicate group ids, kept within one fold, or None;
    ``texts``: ``(n_samples,)`` strings for the TF-IDF head when ``X`` holds embeddings.
    With ``estimator``, that one model is cross-validated instead of the ensemble.
    Returns ``(pred_probs, classes, usable, n_folds, messages)`` where ``pred_probs`` has shape
    ``(n_usable, n_classes)`` for the items where ``usable`` is True.
    """
    y, usable, folds, messages = _prepare(y, n_folds)
    groups = _group_ids(groups, len(y))
    X_used = X[usable] if isinstance(X, np.ndarray) else [x for x, keep in zip(X, usable) if keep]
    y_used = y[usable]
    if groups is not None and len(np.unique(groups[usable])) >= folds:
        cv = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=random_state)
        splits = list(cv.split(X_used, y_used, groups[usable]))
    else:
        splits = list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state).split(X_used, y_used))
    if estimator is not None:
        heads = {"estimator": estimator}
    else:
        if texts is None and not (isinstance(X, np.ndarray) and X.dtype.kind == "f"):
            texts = X  # X holds the texts themselves
        X_used = embed(X_used, DEFAULT_MODEL)  # an embedding array passes through unchanged
        heads = _heads(min(len(train) for train, _ in splits), texts is not None)
    probs = []
    for name, head in heads.items():
        data = np.asarray([t for t, keep in zip(texts, usable) if keep], dtype=object) if name == "tfidf" else X_used
        try:
            probs.append(cross_val_predict(head, data, y_used, cv=splits, method="predict_proba"))
        except ValueError as exc:
            if name != "tfidf":
                raise
            # texts without words leave TF-IDF an empty vocabulary; the other heads still judge
            messages.append(f"the {name} head of the label-error ensemble was skipped: {exc}")
    return np.mean(probs, axis=0), np.unique(y_used), usable, folds, messages


def find_label_issues(X, y, *, n_folds: int = N_FOLDS, random_state: int = 0, estimator=None, groups=None,
                      texts=None, filter_by: str = FILTER_BY) -> LabelIssues:
    """Flag likely label errors and score every usable label's quality (lower is worse).
    ``groups``, ``texts``: as for `out_of_sample_proba`."""
    pred_probs, classes, usable, folds, messages = out_of_sample_proba(
        X, y, n_folds=n_folds, random_state=random_state, estimator=estimator, groups=groups, texts=texts)
    full_probs = np.full((len(usable), len(classes)), np.nan)
    full_probs[usable] = pred_probs
    issues = issues_from_proba(y, full_probs, classes, usable, filter_by=filter_by)
    issues.n_folds, issues.messages = folds, messages
    return issues


def issues_from_proba(y, pred_probs: np.ndarray, classes, scored, *,
                      filter_by: str = FILTER_BY) -> LabelIssues:
    """Cleanlab on given out-of-sample ``pred_probs`` ``(n_samples, n_classes)``; rows where
    ``scored`` is False are skipped. Lets a caller re-check new labels (say, a consensus that
    changed) without cross-validating again."""
    from cleanlab.count import num_label_issues
    from cleanlab.filter import find_label_issues as cleanlab_find
    from cleanlab.rank import get_label_quality_scores

    y = np.asarray(y)
    classes = np.asarray(classes)
    scored = np.asarray(scored, dtype=bool) & np.isin(y, classes)
    codes = np.searchsorted(classes, y[scored])
    probs = pred_probs[scored]
    n = len(y)
    quality = np.full(n, np.nan)
    quality[scored] = get_label_quality_scores(codes, probs)
    is_issue = np.zeros(n, dtype=bool)
    # n_jobs=1: cleanlab's worker pool relies on fork-inherited globals and breaks under the
    # "spawn" start method that label-studio-ml sets process-wide when it is imported
    is_issue[scored] = cleanlab_find(codes, probs, filter_by=filter_by, n_jobs=1)
    suggested = y.astype(object).copy()
    suggested[scored] = classes[probs.argmax(axis=1)]
    return LabelIssues(classes=classes, given=y, suggested=suggested, quality=quality, is_issue=is_issue,
                       scored=scored, pred_probs=pred_probs, n_folds=0,
                       n_estimated=int(num_label_issues(codes, probs)))


def multilabel_folds(label_sets, classes, *, n_folds: int = 5, random_state: int = 0, groups=None):
    """``[(train indices, test indices), ...]`` for multi-label items, iteratively stratified
    (iterative-stratification's `MultilabelStratifiedKFold`) so that each label is spread over
    the folds and stays in every training part. With ``groups`` ``(n_samples,)``, whole groups
    are stratified by the union of their labels and land in one fold."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    classes = list(classes)
    n = len(label_sets)
    groups = _group_ids(groups, n)
    groups = np.arange(n) if groups is None else groups
    unique, member = np.unique(groups, return_inverse=True)
    Y = np.zeros((len(unique), len(classes)), dtype=int)
    for i, labels in enumerate(label_sets):
        for label in labels:
            Y[member[i], classes.index(label)] = 1
    cv = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=random_state)
    return [(np.flatnonzero(np.isin(member, g_train)), np.flatnonzero(np.isin(member, g_test)))
            for g_train, g_test in cv.split(np.zeros((len(unique), 1)), Y)]


def find_multilabel_issues(X, label_sets, classes, *, n_folds: int = 5, random_state: int = 0,
                           estimator=None, groups=None) -> LabelIssues:
    """Multi-label version of `find_label_issues`, through `cleanlab.multilabel_classification`.

    ``label_sets``: ``(n_samples,)`` collections of labels from ``classes``. Out-of-sample
    probabilities ``(n_samples, n_classes)`` come from one-vs-rest heads over `multilabel_folds`
    (``groups`` as there). ``given`` and
    ``suggested`` hold sorted label tuples; the suggestion is every label with probability >= 0.5,
    or the most likely one.
    """
    from cleanlab.multilabel_classification.filter import find_label_issues as cleanlab_find
    from cleanlab.multilabel_classification.rank import get_label_quality_scores

    from .classifier import align_columns

    classes = np.asarray(sorted(map(str, classes)))
    sets = [tuple(sorted(str(label) for label in labels)) for labels in label_sets]
    if not sets:
        raise NotEnoughLabelsError("no labelled items to audit")
    used = sorted({label for labels in sets for label in labels})
    if len(used) < 2:
        raise NotEnoughLabelsError(f"label errors need at least two labels in use; found {used}")
    n_groups = len(np.unique(groups)) if groups is not None else len(sets)
    folds = int(min(n_folds, n_groups))
    if folds < 2:
        raise NotEnoughLabelsError(f"need at least 2 labelled items to cross-validate, got {len(sets)}")
    messages = [] if folds == n_folds else [f"using {folds} folds instead of {n_folds}: only {len(sets)} items"]
    X = np.asarray(X)
    pred_probs = np.zeros((len(sets), len(classes)))
    for train, test in multilabel_folds(sets, classes, n_folds=folds, random_state=random_state, groups=groups):
        model = clone(estimator) if estimator is not None else EmbeddingClassifier(C=AUDIT_HEAD_C, multi_label=True)
        model.fit(X[train], [sets[i] for i in train])
        pred_probs[test] = align_columns(model.predict_proba(X[test]), model.classes_, classes)
    codes = [[int(np.searchsorted(classes, label)) for label in labels] for labels in sets]
    quality = get_label_quality_scores(codes, pred_probs)
    is_issue = cleanlab_find(codes, pred_probs, n_jobs=1)  # n_jobs=1: see issues_from_proba
    chosen = pred_probs >= 0.5
    chosen[np.arange(len(sets)), pred_probs.argmax(axis=1)] = True
    given, suggested = np.empty(len(sets), dtype=object), np.empty(len(sets), dtype=object)
    given[:] = sets
    suggested[:] = [tuple(str(c) for c in classes[row]) for row in chosen]
    return LabelIssues(classes=classes, given=given, suggested=suggested, quality=np.asarray(quality, float),
                       is_issue=np.asarray(is_issue, bool), scored=np.ones(len(sets), dtype=bool),
                       pred_probs=pred_probs, n_folds=folds, messages=messages)
