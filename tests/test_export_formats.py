import json

import pytest

from labelloop.model.export.formats import Example, FormatError, RenderOptions, check_format, conll_block, render
from labelloop.model.text_cleaning import unintelligible_reason

LLM = RenderOptions("llm")


def test_openai_chat_has_no_system_message_unless_configured():
    example = Example(1, "Hi?", response="Hello.")
    assert render(example, "openai-chat", LLM) == {"messages": [{"role": "user", "content": "Hi?"},
                                                                {"role": "assistant", "content": "Hello."}]}
    with_system = render(example, "openai-chat", RenderOptions("llm", system="Be brief."))
    assert with_system["messages"][0] == {"role": "system", "content": "Be brief."}


def test_every_format_for_a_classification_example():
    opts = RenderOptions("classification", ("Positive", "Negative"))
    example = Example(3, "A fine film.", labels=("Positive",))
    chat = render(example, "openai-chat", opts)["messages"]
    assert chat[0]["content"] == ("Classify the text. Answer with one of these labels: Positive, Negative."
                                  "\n\nA fine film.")
    assert chat[1]["content"] == "Positive"
    assert render(example, "alpaca", opts) == {
        "instruction": "Classify the text. Answer with one of these labels: Positive, Negative.",
        "input": "A fine film.", "output": "Positive"}
    assert render(example, "sharegpt", opts)["conversations"][1] == {"from": "gpt", "value": "Positive"}
    assert render(example, "classification-jsonl", opts) == {"text": "A fine film.", "label": "Positive"}
    multi = RenderOptions("classification", ("Acting", "Story"), multi_label=True, instruction="Topics: {labels}.")
    two = Example(4, "Great cast, thin plot.", labels=("Acting", "Story"))
    assert render(two, "openai-chat", multi)["messages"][0]["content"].startswith("Topics: Acting, Story.")
    assert render(two, "openai-chat", multi)["messages"][1]["content"] == "Acting, Story"
    assert render(two, "classification-jsonl", multi)["label"] == ["Acting", "Story"]


def test_ner_answers_with_json_spans_and_conll_bio_tags():
    opts = RenderOptions("ner", ("person", "location"))
    text = "Ada Lovelace lived in London."
    example = Example(5, text, spans=((0, 12, "person"), (22, 28, "location")))
    answer = json.loads(render(example, "openai-chat", opts)["messages"][1]["content"])
    assert answer == [{"text": "Ada Lovelace", "label": "person", "start": 0, "end": 12},
                      {"text": "London", "label": "location", "start": 22, "end": 28}]
    assert conll_block(text, example.spans).splitlines() == [
        "Ada\tB-person", "Lovelace\tI-person", "lived\tO", "in\tO", "London\tB-location", ".\tO"]


def test_preference_formats():
    example = Example(6, "Pick one", response="good", rejected="bad")
    opts = RenderOptions("preference")
    assert render(example, "openai-dpo", opts) == {
        "input": {"messages": [{"role": "user", "content": "Pick one"}]},
        "preferred_output": [{"role": "assistant", "content": "good"}],
        "non_preferred_output": [{"role": "assistant", "content": "bad"}]}
    trl = render(example, "messages", opts)
    assert trl["prompt"] == [{"role": "user", "content": "Pick one"}] and trl["rejected"][0]["content"] == "bad"


def test_format_must_exist_and_fit_the_project():
    with pytest.raises(FormatError, match="unknown format 'csv'"):
        check_format("csv", "llm")
    with pytest.raises(FormatError, match="does not fit an LLM response project; it fits NER projects.*openai-chat"):
        check_format("conll", "llm")
    check_format("conll", "ner")


def test_whitespace_and_unintelligible_text():
    assert unintelligible_reason("   ") == "empty"
    assert unintelligible_reason("?!...") == "no letters or digits"
    assert unintelligible_reason("\ufffd\ufffd\ufffdab\ufffd") == "mostly undecodable characters"
    assert unintelligible_reason(None).startswith("not text")
    assert unintelligible_reason("Fine text.") is None
