import json

import pytest

from labelloop.model.export.validation import detect_format, validate_file, validate_lines
from labelloop.model.export.tokens import TokenCounter, token_counter

# whitespace tokens: enough to test the limits without a tokenizer file
WORDS = TokenCounter("whitespace", lambda texts: [len(t.split()) for t in texts])


def chat(*turns, **extra):
    return json.dumps({"messages": [dict(zip(("role", "content"), t)) | extra for t in turns]})


GOOD = chat(("user", "How?"), ("assistant", "Like so."))


def codes(lines, **kwargs):
    report = validate_lines(lines, counter=WORDS, **kwargs)
    return sorted({code for _, code, _ in report.errors}), report


@pytest.mark.parametrize("line, code", [
    ("{not json", "invalid_json"),
    ("[1, 2]", "data_type"),
    (json.dumps({"messages": []}), "missing_messages_list"),
    (json.dumps({"messages": [{"role": "user"}, {"role": "assistant", "content": "x"}]}), "message_missing_key"),
    (json.dumps({"messages": [{"role": "user", "content": "x", "mood": 1},
                              {"role": "assistant", "content": "y"}]}), "message_unrecognized_key"),
    (chat(("robot", "x"), ("assistant", "y")), "unrecognized_role"),
    (chat(("user", "x"), ("assistant", "  ")), "missing_content"),
    (chat(("user", "x"), ("user", "y"), ("assistant", "z")), "role_order"),
    (chat(("system", "s"), ("assistant", "y")), "role_order"),
    (chat(("user", "x")), "example_missing_assistant_message"),
    (json.dumps({"messages": [{"role": "user", "content": "x", "weight": 1},
                              {"role": "assistant", "content": "y"}]}), "invalid_weight"),
    (json.dumps({"messages": [{"role": "user", "content": "x"},
                              {"role": "assistant", "content": "y", "weight": 0.5}]}), "invalid_weight"),
    (json.dumps({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}],
                 "extra": 1}), "unknown_key"),
])
def test_each_cookbook_check_catches_its_problem(line, code):
    found, report = codes([GOOD] * 20 + [line])
    assert code in found and set(found) <= {code, "role_order"}, report.errors  # a bad role also breaks the order
    assert report.errors[0][0] == 21  # 1-based line number


@pytest.mark.parametrize("content", ["Classify: {text}", "$prompt"])
def test_placeholders_are_warnings_not_errors(content):
    # code prompts legitimately hold braces: a placeholder look-alike never fails a file
    found, report = codes([GOOD] * 60 + [chat(("user", content), ("assistant", "y"))])
    assert found == []
    assert any(w.startswith("line 61:") and "placeholder" in w for w in report.warnings)


def test_good_file_passes_and_counts_tokens_per_example():
    found, report = codes([GOOD] * 60 + [chat(("system", "Be kind."), ("user", "a b c"), ("assistant", "d"),
                                                ("user", "e"), ("assistant", "f g"))])
    assert found == [] and report.n_examples == 61 and not report.warnings
    # 3 per message + 3 priming + role and content words
    assert report.tokens[0] == 3 * 2 + 3 + 2 + 3 and report.format == "openai-chat"


def test_token_limit_size_floor_and_warning():
    long_line = chat(("user", "word " * 50), ("assistant", "ok"))
    found, _ = codes([GOOD] * 20 + [long_line], max_tokens=40)
    assert found == ["too_many_tokens"]
    found, report = codes([GOOD] * 9)
    assert found == ["too_few_examples"]
    found, report = codes([GOOD] * 20)
    assert found == [] and "recommended" in report.warnings[0]


def test_preference_and_other_formats():
    dpo = {"input": {"messages": [{"role": "user", "content": "q"}]},
           "preferred_output": [{"role": "assistant", "content": "good"}],
           "non_preferred_output": [{"role": "assistant", "content": "bad"}]}
    assert detect_format(dpo) == "openai-dpo"
    assert codes([json.dumps(dpo)] * 12)[0] == []
    same = {**dpo, "non_preferred_output": dpo["preferred_output"]}
    assert codes([json.dumps(dpo)] * 12 + [json.dumps(same)])[0] == ["invalid_preference"]
    ends_on_assistant = {**dpo, "input": {"messages": [{"role": "user", "content": "q"},
                                                       {"role": "assistant", "content": "a"}]}}
    assert codes([json.dumps(ends_on_assistant)] + [json.dumps(dpo)] * 12)[0] == ["role_order"]
    alpaca = {"instruction": "Translate", "input": "", "output": "Done"}
    assert codes([json.dumps(alpaca)] * 12)[0] == []
    assert codes([json.dumps({**alpaca, "output": ""})] + [json.dumps(alpaca)] * 12)[0] == ["missing_content"]
    share = {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
    assert codes([json.dumps(share)] * 12)[0] == []
    bad_share = {"conversations": [{"from": "gpt", "value": "a"}]}
    assert codes([json.dumps(bad_share)] + [json.dumps(share)] * 12)[0] == ["role_order"]
    clf = {"text": "t", "label": "x"}
    assert codes([json.dumps(clf)] * 12)[0] == []
    assert codes([json.dumps({"text": "t", "label": ""})] + [json.dumps(clf)] * 12)[0] == ["missing_content"]


def test_files_conll_and_bad_encoding(tmp_path):
    good = tmp_path / "train.conll"
    good.write_text("Ada\tB-person\nLovelace\tI-person\n\nLondon\tB-location\n", encoding="utf-8")
    report = validate_file(good, counter=WORDS, min_examples=2)
    assert report.ok and report.n_examples == 2 and report.format == "conll"
    bad = tmp_path / "bad.conll"
    bad.write_text("Ada\tI-person\nx y\n", encoding="utf-8")
    assert {c for _, c, _ in validate_file(bad, counter=WORDS, min_examples=1).errors} == {
        "invalid_bio", "invalid_conll_line"}
    binary = tmp_path / "latin1.jsonl"
    binary.write_bytes("café".encode("latin-1"))
    assert validate_file(binary, counter=WORDS).errors[0][1] == "encoding"


def test_the_offline_default_tokenizer_says_which_it_is():
    counter = token_counter("auto")
    assert "tiktoken" in counter.name  # either tiktoken itself or why it was not used
    assert counter.count("How does a BJT operate in active mode?") > 5


def test_the_huggingface_counter_counts_long_texts_whole_and_repeats_once():
    from transformers import AutoTokenizer

    from labelloop.model.embeddings import resolve_model_path

    counter = token_counter("default")  # its tokenizer file pads and truncates to 128: counting must not
    long_text = " ".join(f"word{i}" for i in range(400))
    reference = AutoTokenizer.from_pretrained(resolve_model_path("default"), model_max_length=10 ** 9)
    assert counter.count(long_text) == len(reference(long_text, add_special_tokens=False)["input_ids"]) > 400
    assert counter.count("") == 0 and counter.count("hi") == 1
    calls = []
    counting = TokenCounter("spy", lambda texts: calls.append(list(texts)) or [len(t.split()) for t in texts])
    chat = [{"role": "user", "content": "a b"}, {"role": "assistant", "content": "c"}]
    assert counting.count_chats([chat, chat]) == [3 * 2 + 3 + 1 + 2 + 1 + 1] * 2
    assert sorted(calls[0]) == sorted(["user", "a b", "assistant", "c"])  # each distinct text once
