import numpy as np
import pytest

from labelloop.model.export.formats import Example
from labelloop.model.export.pipeline import prepare
from labelloop.model.export.splits import cross_split_pairs, leakage_free_split, parse_fractions, random_split


def test_groups_stay_together_labels_are_stratified_and_seeds_repeat():
    rng = np.random.default_rng(0)
    n = 1000
    groups = np.arange(n)
    groups[500:600] = groups[400:500]
    labels = rng.choice(["a", "b", "c"], size=n, p=[0.7, 0.2, 0.1])
    labels[500:600] = labels[400:500]
    split = leakage_free_split(groups, labels, fractions=(0.8, 0.1, 0.1), seed=1)
    assert (split[500:600] == split[400:500]).all()
    assert np.allclose(np.bincount(split) / n, [0.8, 0.1, 0.1], atol=0.01)
    for label in "abc":
        share = np.bincount(split[labels == label], minlength=3) / (labels == label).sum()
        assert np.allclose(share, [0.8, 0.1, 0.1], atol=0.02), (label, share)
    assert (split == leakage_free_split(groups, labels, fractions=(0.8, 0.1, 0.1), seed=1)).all()
    assert (split != leakage_free_split(groups, labels, fractions=(0.8, 0.1, 0.1), seed=2)).any()
    pairs = np.c_[np.arange(400, 500), np.arange(500, 600)]
    assert cross_split_pairs(pairs, split) == 0 and cross_split_pairs(pairs, random_split(n, seed=1)) > 0


def test_fractions_are_checked():
    assert parse_fractions("0.9,0.1") == (0.9, 0.1)
    for bad in ("0.8,0.1", "a,b", "0,0.5,0.5", "0.5,0.5,-0.1,0.1", "1.2,-0.2"):
        with pytest.raises(ValueError):
            parse_fractions(bad)


def test_prepare_cleans_collapses_duplicates_and_groups_identical_prompts():
    examples = [Example(i, f"Question  {i}?", response=f"Answer {i}.") for i in range(30)]
    examples += [Example(100, "Question  3?\r\n", response="Answer 3."),  # exact duplicate after cleaning
                 Example(101, "Question  4?", response="A different answer."),  # same prompt, new answer
                 Example(104, "QUESTION 5 ?", response="Another answer."),  # a variant of 5
                 Example(102, " \n", response="x"), Example(103, "Fine?", response="  ")]
    prepared = prepare(examples, fractions="0.8,0.1,0.1", seed=0)
    assert prepared.dropped == {"exact duplicate": [100], "prompt/text empty": [102], "empty response": [103]}
    ids = [e.task_id for e in prepared.examples]
    assert ids == list(range(30)) + [101, 104]
    assert prepared.examples[0].prompt == "Question  0?"  # verbatim: the double space stays
    assert prepared.split[ids.index(4)] == prepared.split[ids.index(101)]
    assert prepared.split[ids.index(5)] == prepared.split[ids.index(104)]
    assert prepared.overlap_after == 0 and len(prepared.near_duplicate_pairs) == 2
    assert prepared.pairs_by_detector == {"normalised_text": 2, "minhash": 2, "embedding": None}
