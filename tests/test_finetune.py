"""The optional full fine-tune, on a tiny random BERT so it runs in seconds on CPU."""
import numpy as np
import pytest

from labelloop.kinds.classification import ClassificationKind
from labelloop.label_config import load
from labelloop.label_config.spec import parse_label_config
from labelloop.model.classification import load_model
from labelloop.model.classification.classifier import EmbeddingClassifier
from labelloop.model.errors import NotEnoughLabelsError
from labelloop.model.classification.finetune import FineTunedClassifier
from labelloop.model.store import ModelStore


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    from transformers import AutoTokenizer, BertConfig, BertModel

    from labelloop.model.embeddings import resolve_model_path

    path = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("default"))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


TEXTS = ["sunny bright happy day"] * 12 + ["dark gloomy rainy night"] * 12
LABELS = ["Positive"] * 12 + ["Negative"] * 12


def test_fine_tune_learns_and_round_trips_through_the_store(tiny_path, tmp_path):
    clf = FineTunedClassifier(model_name=tiny_path, epochs=20, learning_rate=3e-3, batch_size=8, device="cpu")
    assert clf.fit(TEXTS, LABELS) is clf
    proba = clf.predict_proba(["sunny bright happy day", "dark gloomy rainy night"])
    assert proba.shape == (2, 2)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)
    assert list(clf.predict(["sunny bright happy day", "dark gloomy rainy night"])) == ["Positive", "Negative"]

    store = ModelStore(tmp_path)
    version = store.save("1.1", clf)
    loaded = store.load("1.1", version, loader=load_model)
    assert isinstance(loaded, FineTunedClassifier)
    np.testing.assert_allclose(loaded.predict_proba(["sunny bright happy day"]),
                               clf.predict_proba(["sunny bright happy day"]), atol=1e-5)


def test_fine_tune_multi_label_and_bad_input(tiny_path):
    clf = FineTunedClassifier(model_name=tiny_path, epochs=1, multi_label=True, device="cpu")
    clf.fit(["a b", "c d", "a d"], [["x"], ["y"], ["x", "y"]])
    assert clf.predict_proba(["a"]).shape == (1, 2)
    with pytest.raises(NotEnoughLabelsError):
        FineTunedClassifier(model_name=tiny_path).fit(["a", "b"], ["same", "same"])
    with pytest.raises(TypeError):
        FineTunedClassifier(model_name=tiny_path).fit(np.zeros((2, 3), dtype=np.float32), ["a", "b"])


def test_training_switches_to_fine_tuning_past_the_threshold(tiny_model, monkeypatch):
    from labelloop.kinds.classification import LabelledTask

    fitted = []
    monkeypatch.setattr(FineTunedClassifier, "fit", lambda self, X, y: fitted.append(self) or self)
    kind, spec = ClassificationKind(), parse_label_config(load("text_classification"))

    def items(n):
        return [LabelledTask(i, f"text {i}", ("Positive" if i % 2 else "Negative",), i, "") for i in range(n)]

    assert isinstance(kind.fit(items(9), spec, model_name=tiny_model, finetune_min_labels=10), EmbeddingClassifier)
    assert isinstance(kind.fit(items(10), spec, model_name=tiny_model, finetune_min_labels=10), FineTunedClassifier)
    assert isinstance(kind.fit(items(12), spec, model_name=tiny_model), EmbeddingClassifier)  # off by default
    assert len(fitted) == 1


def test_a_study_for_a_fine_tuning_retrain_searches_its_learning_rate_and_epochs(tiny_path):
    from labelloop.model.classification.tuning import tune

    result = tune(TEXTS, LABELS, labels=["Positive", "Negative"], model_name=tiny_path, finetune=True, n_trials=3,
                  timeout_s=120, max_folds=2)
    assert set(result.params) == {"learning_rate", "epochs", "prior_strength"} and result.trials == 3
    assert 1e-5 <= result.params["learning_rate"] <= 1e-4 and 1 <= result.params["epochs"] <= 5
    assert result.n_folds == 2 and 0 <= result.default_score <= 1
