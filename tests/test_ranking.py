import numpy as np
import pytest

from labelloop.model.ranking import (UnknownStrategyError, diversity_clusters, n_clusters_for, query,
                                              score)

P = np.array([[0.9, 0.05, 0.05],
              [0.4, 0.35, 0.25],
              [0.5, 0.5, 0.0],
              [1 / 3, 1 / 3, 1 / 3]])


def test_least_confidence_is_the_top_probability():
    np.testing.assert_allclose(score(P, strategy="least_confidence"), [0.9, 0.4, 0.5, 1 / 3])


def test_margin_is_top_two_difference():
    np.testing.assert_allclose(score(P, strategy="margin"), [0.85, 0.05, 0.0, 0.0], atol=1e-12)


def test_entropy_is_one_minus_normalised_entropy():
    s = score(P, strategy="entropy")
    assert s[3] == pytest.approx(0.0, abs=1e-9)       # uniform: most informative
    assert s[0] > s[2] > s[3]
    assert np.all((0 <= s) & (s <= 1))


def test_lower_score_is_asked_first():
    idx, scores = query(P, 2, strategy="margin")
    assert list(idx) == [2, 3] and list(scores) == [0.0, 0.0]   # stable on ties
    idx, _ = query(P, 10, strategy="least_confidence")
    assert list(idx) == [3, 1, 2, 0]


def test_multi_label_scores_the_least_certain_label():
    p = np.array([[0.95, 0.1], [0.6, 0.99]])
    np.testing.assert_allclose(score(p, strategy="least_confidence", multi_label=True), [0.9, 0.6])
    np.testing.assert_allclose(score(p, strategy="margin", multi_label=True), [0.8, 0.2])
    e = score(p, strategy="entropy", multi_label=True)
    assert e[1] < e[0]


def test_random_is_seeded_and_bad_input_is_refused():
    np.testing.assert_array_equal(score(P, strategy="random"), score(P, strategy="random"))
    with pytest.raises(UnknownStrategyError, match="margin"):
        score(P, strategy="bald")
    with pytest.raises(ValueError, match="shape"):
        score(np.ones(3))
    assert score(np.zeros((0, 2))).shape == (0,)


def test_clusters_scale_with_the_pool_and_separate_blobs():
    assert n_clusters_for(2) == 1 and n_clusters_for(200) == 10 and n_clusters_for(10**6) == 50
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=10, size=(3, 5))
    X = np.concatenate([c + rng.normal(size=(30, 5)) for c in centers])
    labels = diversity_clusters(X, n_clusters=3)
    assert [len(set(labels[i * 30:(i + 1) * 30])) for i in range(3)] == [1, 1, 1]
    assert len(set(labels)) == 3
    assert list(diversity_clusters(X[:2])) == [0, 0]


def test_refreshed_predictions_carry_a_cluster_only_when_clusters_are_on():
    from labelloop.backend.predictor import predict_tasks
    from labelloop.kinds.classification import ClassificationKind
    from labelloop.label_config import load
    from labelloop.label_config.spec import parse_label_config

    spec = parse_label_config(load("text_classification"))
    kind = ClassificationKind()
    model = kind.prior_model(spec, "default")
    texts = ["A wonderful, moving film.", "Loved every minute of it.", "Dull and far too long.",
             "The worst script this year.", "Great cast, great music.", "I walked out bored."]
    tasks = [{"id": i, "data": {spec.value_key: t}} for i, t in enumerate(texts)]
    plain = predict_tasks(tasks, spec, kind, model, "v1", batch_size=4, max_chars=1000)
    assert all("cluster" not in p and 0.0 <= p["score"] <= 1.0 for p in plain)
    clustered = predict_tasks(tasks, spec, kind, model, "v1", batch_size=4, max_chars=1000, n_clusters=2)
    assert {p["cluster"] for p in clustered} == {0, 1}
    assert [p["score"] for p in clustered] == [p["score"] for p in plain]


def test_settings_default_to_score_order_and_a_short_lived_prior_and_refuse_negatives(monkeypatch):
    from labelloop.backend.config import Settings

    monkeypatch.delenv("LABELLOOP_DIVERSITY_CLUSTERS", raising=False)
    monkeypatch.delenv("LABELLOOP_PRIOR_STRENGTH", raising=False)
    settings = Settings.from_env()
    assert settings.diversity_clusters == 0 and settings.prior_strength == 10.0
    monkeypatch.setenv("LABELLOOP_DIVERSITY_CLUSTERS", "12")
    assert Settings.from_env().diversity_clusters == 12
    monkeypatch.setenv("LABELLOOP_DIVERSITY_CLUSTERS", "-1")
    with pytest.raises(ValueError, match="DIVERSITY_CLUSTERS"):
        Settings.from_env()
