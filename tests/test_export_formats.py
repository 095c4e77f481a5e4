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


def test_conll_keeps_accented_words_and_emoji_whole():
    # what annotators write: a decomposed accent (as macOS text has it), a
    # ZWJ family, a flag and a heart with its variation selector
    text = "Zoe\u0308 and the \U0001F469\u200d\U0001F467 met in Cafe\u0301 Paris \U0001F1EB\U0001F1F7\u2764\ufe0f"
    start = text.index("Cafe")
    spans = ((0, 4, "person"), (start, start + 5, "location"))
    lines = conll_block(text, spans).splitlines()
    assert lines == ["Zoe\u0308\tB-person", "and\tO", "the\tO", "\U0001F469\u200d\U0001F467\tO", "met\tO", "in\tO",
                     "Cafe\u0301\tB-location", "Paris\tO", "\U0001F1EB\U0001F1F7\tO", "\u2764\ufe0f\tO"]
    # every character of the text is in some token: nothing the annotators saw is lost
    assert "".join(line.split("\t")[0] for line in lines) == text.replace(" ", "")


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
