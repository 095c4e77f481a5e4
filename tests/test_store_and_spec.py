import numpy as np
import pytest

from labelloop.label_config.spec import UnsupportedLabelConfig, parse_label_config
from labelloop.label_config import TEMPLATES, load
from labelloop.model.classification import load_model
from labelloop.model.classification.classifier import EmbeddingClassifier
from labelloop.model.errors import ModelNotFoundError
from labelloop.model.store import ModelStore


def fitted(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(20, 4)).astype(np.float32)
    return EmbeddingClassifier().fit(X, ["a" if x[0] > 0 else "b" for x in X])


def test_store_versions_and_current(tmp_path):
    store = ModelStore(tmp_path)
    assert store.current_version("3.17") is None
    assert store.save("3.17", fitted()) == "v1"
    assert store.save("3.17", fitted(1)) == "v2"
    assert store.versions("3.17") == ["v1", "v2"]
    assert store.current_version("3.17") == "v2"
    assert list(store.load("3.17", "v1", loader=load_model).classes_) == ["a", "b"]
    with pytest.raises(ModelNotFoundError):
        store.load("3.17", "v9", loader=load_model)


def test_crash_while_saving_keeps_previous_version(tmp_path, monkeypatch):
    store = ModelStore(tmp_path)
    store.save("p", fitted())

    def boom(self, directory):
        (directory / "head.joblib").write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(EmbeddingClassifier, "save", boom)
    with pytest.raises(OSError):
        store.save("p", fitted(1))
    assert store.current_version("p") == "v1"
    assert store.versions("p") == ["v1"]
    assert [p.name for p in (tmp_path / "p" / "versions").iterdir()] == ["v1"]


def test_project_keys_are_sanitised(tmp_path):
    store = ModelStore(tmp_path)
    store.save("../../etc", fitted())
    assert all(tmp_path in p.parents for p in tmp_path.rglob("*"))


def test_classification_templates_parse():
    single = parse_label_config(load("text_classification"))
    assert (single.from_name, single.to_name, single.value_key) == ("sentiment", "text", "text")
    assert single.labels == ("Positive", "Negative") and not single.multi_label
    multi = parse_label_config(load("multi_label_classification"))
    assert multi.multi_label and len(multi.labels) == 5


def test_the_preference_judge_needs_exactly_two_answers(tmp_path):
    from labelloop.backend.registry import ModelRegistry
    from labelloop.kinds import parse

    three = ("<View><Text name='prompt' value='$prompt'/><Text name='a' value='$a'/><Text name='b' value='$b'/>"
             "<Text name='c' value='$c'/><Choices name='pick' toName='prompt'><Choice value='A' alias='a'/>"
             "<Choice value='B' alias='b'/><Choice value='C' alias='c'/></Choices></View>")
    spec, kind = parse(three)
    assert kind.name == "preference" and spec.to_name == "prompt" and len(spec.answers) == 3
    with pytest.raises(UnsupportedLabelConfig, match="compares two answers.*names 3"):
        kind.configure(ModelRegistry(str(tmp_path), "default"), "1.1", spec, {})


@pytest.mark.parametrize("config, reason", [
    ("", "no label config"),
    ("<View><Choices name='c' toName='t'>", "could not be parsed"),
    ("<View><Text name='t' value='$t'/></View>", "a <Choices> control over a <Text> object"),
    ("<View><Text name='t' value='$t'/><Choices name='c' toName='t'></Choices></View>", "has no <Choice> values"),
    # the backend would classify (or mark spans in, or answer) the URL string itself
    ("<View><Text name='t' value='$url' valueType='url'/><Choices name='c' toName='t'><Choice value='a'/>"
     "</Choices></View>", r'<Text name="t"> loads its text from a URL.*task data field \$url'),
    ("<View><Text name='t' value='$url' valueType='url'/><Labels name='l' toName='t'><Label value='PER'/>"
     "</Labels></View>", "loads its text from a URL"),
    ("<View><Text name='p' value='$prompt' valueType='url'/><TextArea name='r' toName='p'/></View>",
     "loads its text from a URL"),
    ("<View><Text name='p' value='$prompt'/><Text name='a1' value='$a1' valueType='url'/><Text name='a2' value='$a2'/>"
     "<Choices name='c' toName='p'><Choice value='a1'/><Choice value='a2'/></Choices></View>",
     '<Text name="a1"> loads its text from a URL'),
    # Label Studio addresses HyperText spans by XPath; character offsets would land in the wrong place
    ("<View><HyperText name='h' value='$html'/><Labels name='l' toName='h'><Label value='PER'/></Labels></View>",
     "spans over <HyperText.*XPath"),
])
def test_bad_configs(config, reason):
    with pytest.raises(UnsupportedLabelConfig, match=reason):
        parse_label_config(config)


def test_all_templates_are_listed():
    for name in TEMPLATES:
        assert load(name).lstrip().startswith("<View")
    with pytest.raises(KeyError):
        load("nope")


def test_export_specs_for_every_template_and_a_clear_refusal():
    import pytest

    from labelloop.label_config import load
    from labelloop.label_config.regions import labelled_spans, textarea_text
    from labelloop.label_config.spec import (ClassificationSpec, PreferenceSpec, ResponseSpec, SpanSpec,
                                             UnsupportedLabelConfig)
    from labelloop.label_config.spec import parse_label_config as parse_project_config

    assert parse_project_config(load("llm_fine_tuning")) == ResponseSpec("response", "prompt", "prompt", ("prompt",))
    preference = parse_project_config(load("llm_preference"))
    assert isinstance(preference, PreferenceSpec) and dict(preference.answers) == {"answer1": "answer1",
                                                                                  "answer2": "answer2"}
    ner = parse_project_config(load("ner"))
    assert isinstance(ner, SpanSpec) and "person" in ner.labels
    assert isinstance(parse_project_config(load("text_classification")), ClassificationSpec)
    with pytest.raises(UnsupportedLabelConfig, match="supports text classification.*found controls: RectangleLabels"):
        parse_project_config('<View><Image name="img" value="$image"/>'
                             '<RectangleLabels name="box" toName="img"><Label value="cat"/></RectangleLabels></View>')
    spec = parse_project_config(load("llm_fine_tuning"))
    assert textarea_text([{"from_name": "response", "value": {"text": ["a", "b"]}}], spec) == "a\nb"
    assert textarea_text([{"from_name": "other", "value": {"text": ["x"]}}], spec) is None
    spans = labelled_spans([{"from_name": "label", "value": {"start": 4, "end": 9, "labels": ["person"]}},
                            {"from_name": "label", "value": {"start": 0, "end": 0, "labels": ["x"]}}], ner)
    assert spans == [(4, 9, "person")]


def test_span_offsets_are_written_as_label_studio_draws_them_and_read_in_either_unit():
    from labelloop.label_config.regions import labelled_spans, span_result
    from labelloop.label_config.spec import parse_label_config

    spec = parse_label_config(load("ner"))
    text = "🎬 Greta 🎉 Gerwig in Paris"
    start, end = text.index("Gerwig"), text.index("Gerwig") + len("Gerwig")
    region = span_result(spec, text, start, end, "person", region_id=1)
    # Label Studio 1.23 draws code points (docs/screenshot_ner.py checks it in a browser)
    assert (region["value"]["start"], region["value"]["end"]) == (start, end)
    assert region["id"] == "1" and region["value"]["text"] == "Gerwig"
    # older releases counted UTF-16 units: two emoji before it, two units more
    old = span_result(spec, text, start, end, "person", region_id=1, offsets="utf16")
    assert (old["value"]["start"], old["value"]["end"]) == (start + 2, end + 2)
    assert labelled_spans([region], spec, text) == labelled_spans([old], spec, text) == [(start, end, "person")]
    # a span past the end of the text is left out
    assert labelled_spans([{**region, "value": {**region["value"], "end": 99}}], spec, text) == []

def test_a_second_choices_control_is_named_where_its_answers_are_left_out(caplog):
    """labelloop reads one <Choices>; the answers of another are not silently lost: /setup logs it,
    and export and audit say how many annotations hold answers they leave out."""
    from labelloop.kinds.classification import ClassificationKind

    config = ("<View><Text name='text' value='$text'/>"
              "<Choices name='sentiment' toName='text'><Choice value='pos'/><Choice value='neg'/></Choices>"
              "<Choices name='flag' toName='text'><Choice value='offensive'/></Choices>"
              "<Image name='img' value='$image'/><Choices name='photo' toName='img'><Choice value='ok'/></Choices>"
              "</View>")
    spec = parse_label_config(config)
    assert (spec.from_name, spec.other_controls) == ("sentiment", ("flag",))
    assert parse_label_config(load("text_classification")).other_controls == ()

    def task(i, *, flag: bool, cancelled=False):
        result = [{"from_name": "sentiment", "to_name": "text", "type": "choices",
                   "value": {"choices": ["pos" if i % 2 else "neg"]}}]
        if flag:
            result.append({"from_name": "flag", "to_name": "text", "type": "choices",
                           "value": {"choices": ["offensive"]}})
        return {"id": i, "data": {"text": f"text number {i} about things"},
                "annotations": [{"id": i, "completed_by": 1, "result": result, "was_cancelled": cancelled,
                                 "updated_at": "2026-01-01T00:00:00Z"}]}

    kind = ClassificationKind()
    tasks = {i: task(i, flag=i < 3) for i in range(20)}
    tasks[20] = task(20, flag=True, cancelled=True)  # a cancelled annotation is not counted
    examples, _, messages = kind.examples(tasks, spec)
    assert len(examples) == 20 and all(len(e.labels) == 1 for e in examples)
    assert messages[0] == ('only the labels of <Choices name="sentiment">, the config\'s first, are exported: '
                           'the answers of <Choices name="flag"> in 3 annotations stay in Label Studio')
    rng = np.random.default_rng(0)
    result = kind.audit(tasks, spec, embed=lambda texts: rng.normal(size=(len(texts), 8)), n_folds=2)
    assert any('are audited: the answers of <Choices name="flag"> in 3' in m for m in result.messages)
    # without answers in the other control there is nothing to say
    quiet = {i: task(i, flag=False) for i in range(20)}
    assert kind.examples(quiet, spec)[2] == []
    with caplog.at_level("WARNING"):
        kind.configure(None, "7", spec, {})
        kind.configure(None, "7", spec, {})  # Label Studio's /setup before every batch: said once
    assert "2 <Choices> controls over text" in caplog.text and "'sentiment', the first, and leaves flag" in caplog.text
    assert caplog.text.count("<Choices> controls over text") == 1


def test_a_verdict_imported_into_label_studio_is_adopted_and_not_judged_again(tmp_path):
    """The backend's refresh takes `labelloop prelabel`'s verdicts from Label Studio instead of asking the judge."""
    from labelloop.kinds import parse
    from labelloop.kinds.preference import PairJudge
    from labelloop.model.responses.draft_store import DraftStore

    spec, kind = parse(load("llm_preference"))
    judge = PairJudge(None, DraftStore(tmp_path / "verdicts.jsonl"))  # no endpoint: any call would fail
    task = {"id": 3, "data": {"prompt": "2 + 2?", "answer1": "5", "answer2": "4"}}
    imported = {"model_version": "v", "score": 0.4,
                "result": [{"from_name": "preference", "to_name": "prompt", "type": "choices",
                            "value": {"choices": ["answer2"]}}]}
    assert kind.adopt(task, imported, spec, judge) and not kind.adopt(task, imported, spec, judge)
    assert not kind.adopt(task, {"result": []}, spec, judge)
    pair, _ = kind.task_input(task, spec, judge, max_chars=100)
    values, scores = kind.predict([pair], spec, judge, strategy="margin")
    assert values == ["answer2"] and scores.tolist() == [0.4]
    assert kind.regions(spec, values[0]) == imported["result"]


def test_a_tie_between_the_two_orders_preselects_no_answer_and_is_asked_first(tmp_path):
    """A judge that says "1" whatever the order cannot tell: no prelabel, the lowest score."""
    from labelloop.kinds import parse
    from labelloop.kinds.preference import PairJudge
    from labelloop.model.responses.draft_store import DraftStore
    from labelloop.model.responses.pairs import Verdict

    class FirstSayer:  # the in-process judge object; its verdicts are what a position-biased model gives
        def compare_many(self, pairs, progress=None):
            return [Verdict((1.0 + 1.0 - 1.0) / 2, "digits") for _ in pairs]

    spec, kind = parse(load("llm_preference"))
    judge = PairJudge(FirstSayer(), DraftStore(tmp_path / "verdicts.jsonl"))
    pair, _ = kind.task_input({"id": 1, "data": {"prompt": "p", "answer1": "a", "answer2": "b"}}, spec, judge,
                              max_chars=100)
    values, scores = kind.predict([pair], spec, judge, strategy="margin")
    assert values == [""] and scores.tolist() == [0.0] and kind.regions(spec, values[0]) == []
