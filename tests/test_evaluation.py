"""The metrics, split reading and perplexity behind `labelloop evaluate`."""
import json

import pytest

from labelloop.model.evaluation.metrics import (NO_LABEL, EvaluationError, classification_metrics,
                                                generation_metrics, ner_metrics, parse_label, parse_spans)
from labelloop.model.evaluation.split_file import read_split
from labelloop.model.export.formats import Example, RenderOptions, render


def test_parse_label_takes_the_whole_answer_then_the_first_label_named():
    labels = ["Positive", "Negative", "Very negative"]
    assert parse_label(" positive. ", labels) == "Positive"
    assert parse_label("It is very negative, not positive", labels) == "Very negative"
    assert parse_label("Negative, I think", labels) == "Negative"
    assert parse_label("positively unclear", labels) == NO_LABEL  # whole words only


def test_parse_spans_trusts_offsets_only_where_they_point_at_the_text():
    text = "Bob met Bob in Paris"
    answer = 'Sure: [{"text": "Bob", "label": "PER", "start": 0, "end": 3}, {"text": "Bob", "label": "PER"}, ' \
             '{"text": "Paris", "label": "LOC", "start": 1, "end": 6}, {"text": "Rome", "label": "LOC"}]'
    assert parse_spans(answer, text) == [(0, 3, "PER"), (8, 11, "PER"), (15, 20, "LOC")]
    assert parse_spans("no JSON here", text) == [] and parse_spans("[{oops", text) == []


def test_scores_move_the_right_way():
    refs = ["The cat sat on the mat.", "Paris is the capital of France."]
    good = generation_metrics(refs, refs, bertscore_model=None)
    bad = generation_metrics(refs, ["Bananas are yellow.", "I like trains."], bertscore_model=None)
    assert good["bleu"] == pytest.approx(100) and good["rouge_l"] == pytest.approx(1)
    assert bad["bleu"] < 5 and bad["rouge_l"] < 0.3 and bad["chrf"] < good["chrf"]
    with pytest.raises(EvaluationError, match="pair up"):
        generation_metrics(refs, refs[:1], bertscore_model=None)
    cls = classification_metrics(["a", "a", "b", "b"], ["a", "b", "b", NO_LABEL], labels=["a", "b"])
    assert cls["accuracy"] == 0.5 and cls["per_label"]["a"]["recall"] == 0.5 and cls["per_label"]["b"]["precision"] == 0.5
    assert cls["confusion"]["labels"] == ["a", "b", NO_LABEL]
    ner = ner_metrics(["Alice met Bob"], [[(0, 5, "PER"), (10, 13, "PER")]], [[(0, 5, "PER"), (10, 13, "LOC")]])
    assert ner["entity_precision"] == 0.5 and ner["entity_recall"] == 0.5


@pytest.mark.parametrize("fmt", ["openai-chat", "messages", "alpaca", "sharegpt", "classification-jsonl"])
def test_every_exported_format_reads_back_to_its_prompt_and_answer(tmp_path, fmt):
    opts = RenderOptions(kind="classification", label_names=("Negative", "Positive"), system="Be brief.")
    examples = [Example(1, "A fine film.\n\nTruly.", labels=("Positive",)), Example(2, "Dull.", labels=("Negative",))]
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(render(e, fmt, opts)) + "\n" for e in examples))
    read = read_split(path, kind="classification", labels=["Negative", "Positive"])
    assert [r.reference for r in read] == ["Positive", "Negative"]
    assert [r.text for r in read] == ["A fine film.\n\nTruly.", "Dull."]  # the instruction cut off, the text whole
    assert "Answer with one of these labels: Negative, Positive" in read[0].messages[-1]["content"]


def test_ner_text_is_found_where_the_reference_spans_fit(tmp_path):
    opts = RenderOptions(kind="ner", label_names=("PER",), instruction="Find people.\n\nAnswer in JSON.")
    example = Example(1, "Hi\n\nAlice here", spans=((4, 9, "PER"),))
    path = tmp_path / "test.jsonl"
    path.write_text(json.dumps(render(example, "openai-chat", opts)) + "\n")
    (read,) = read_split(path, kind="ner")
    assert read.text == "Hi\n\nAlice here"
    path.write_text("A\tB-PER\n\n")
    with pytest.raises(EvaluationError, match="CoNLL"):
        read_split(path, kind="ner")


def test_perplexity_prefers_the_right_answer(tmp_path):
    from conftest import _require_or_skip
    from labelloop.model.evaluation.perplexity import reference_perplexity
    from labelloop.scripts.services import ServiceError, llm_server_python, smollm2_gguf

    try:
        python = llm_server_python()
        model = smollm2_gguf(python)
    except ServiceError as exc:
        _require_or_skip(str(exc))
    question = [{"role": "user", "content": "What is the capital of France?"}]
    result = reference_perplexity([question, question], ["The capital of France is Paris.",
                                                         "Purple seventeen bananas sleep loudly."],
                                  model_path=model, python=python)
    right, wrong = result["per_example"]
    assert 1 < right < 10 < wrong and result["tokens"] > 10
    with pytest.raises(EvaluationError, match="no GGUF"):
        reference_perplexity([question], ["x"], model_path=tmp_path / "missing.gguf", python=python)


def test_an_unreachable_endpoint_is_a_clear_error_and_writes_nothing(tmp_path):
    from labelloop.model.errors import LabelloopError
    from labelloop.scripts.evaluate import EvaluationOptions, evaluate

    split = tmp_path / "test.jsonl"
    split.write_text(json.dumps({"messages": [{"role": "user", "content": "Hi"},
                                              {"role": "assistant", "content": "Hello"}]}) + "\n")
    with pytest.raises(LabelloopError) as caught:
        evaluate(split, EvaluationOptions(endpoint="http://127.0.0.1:9/v1", model="mine", timeout_s=2))
    assert "127.0.0.1:9" in str(caught.value) or "reach" in str(caught.value).lower()
    assert not (tmp_path / "evaluations").exists()
    with pytest.raises(EvaluationError, match="either --endpoint"):
        evaluate(split, EvaluationOptions())


def test_a_conll_split_is_scored_from_a_token_classifier_s_tags(tmp_path):
    """The CoNLL export's test split against a tagger's output over the same tokens."""
    from labelloop.model.export.formats import conll_block
    from labelloop.scripts.evaluate import EvaluationOptions, evaluate

    sentences = [("Ann flew to New York 🇺🇸 today", [(0, 3, "PER"), (12, 20, "LOC")]),
                 ("Cafe\u0301 Bleu opened in Paris", [(0, 10, "ORG"), (21, 26, "LOC")]),
                 ("nothing here", [])]
    split = tmp_path / "test.conll"
    split.write_text("\n".join(conll_block(t, s) for t, s in sentences), encoding="utf-8")
    # the tagger finds Ann and New York, misses the ORG, tags Paris as PER
    found = [[(0, 3, "PER"), (12, 20, "LOC")], [(21, 26, "PER")], []]
    answers = tmp_path / "tagger.conll"
    answers.write_text("\n".join(conll_block(t, s) for (t, _), s in zip(sentences, found)), encoding="utf-8")
    result = evaluate(split, EvaluationOptions(answers=answers, bertscore_model=None))
    m = result.metrics
    assert (m["task"], m["kind"], m["examples"]) == ("ner", "ner", 3)
    assert m["entity_precision"] == pytest.approx(2 / 3) and m["entity_recall"] == pytest.approx(2 / 4)
    assert m["per_label"]["LOC"]["recall"] == pytest.approx(0.5) and m["per_label"]["ORG"]["recall"] == 0.0
    html = result.report.read_text(encoding="utf-8")
    assert "LOC: New York" in html and "ORG: Cafe\u0301 Bleu" in html

    # a file over other tokens, a tag that is no BIO tag, or an endpoint: a clear error
    shifted = tmp_path / "shifted.conll"
    shifted.write_text(answers.read_text(encoding="utf-8").replace("York\t", "york\t"), encoding="utf-8")
    with pytest.raises(EvaluationError, match=r"sentence 1 of shifted.conll does not have the split's tokens "
                                              r"\(token 5: 'york' for 'York'\)"):
        evaluate(split, EvaluationOptions(answers=shifted))
    bad = tmp_path / "bad.conll"
    bad.write_text("Ann\tPERSON\n", encoding="utf-8")
    with pytest.raises(EvaluationError, match="'PERSON' is not a BIO tag"):
        evaluate(split, EvaluationOptions(answers=bad))
    with pytest.raises(EvaluationError, match="scored from a token classifier's tags"):
        evaluate(split, EvaluationOptions(endpoint="http://127.0.0.1:9/v1", model="m"))
