"""The checks of human-written LLM responses, on planted problems, with the offline encoder."""
from __future__ import annotations

import numpy as np
import pytest

from labelloop.model.responses import audit as checks


@pytest.fixture(scope="module")
def embed():
    from labelloop.model.embeddings import get_embedder

    return get_embedder().embed


@pytest.mark.parametrize("response, reason", [
    ("```python\nprint('hi')\n", "code fence"),
    ("The three steps are: first, you open the", "mid-sentence"),
    ("You will need flour, eggs,", "mid-sentence"),
    ("word " * 60 + "and then it just keeps going without an end", "stops without ending its sentence"),
])
def test_truncated_answers_are_found(response, reason):
    assert reason in checks.truncation(response)


@pytest.mark.parametrize("response", ["Paris.", "Yes", "I am a bot", "```\ncode\n```", "Call it 42!",
                                      "Use `x = 1` here:\n\n```python\nx = 1\n```"])
def test_finished_answers_are_not_truncated(response):
    assert checks.truncation(response) is None


def test_refusals_secrets_and_pii_are_found_and_plain_text_is_not():
    assert checks.refusal("As an AI language model, I cannot have opinions.")
    assert checks.refusal("I'm sorry, but I can't help with that.")
    assert checks.refusal("The AI model predicted rain.") is None
    assert checks.secrets("Write to jane.doe@example.org for access.") == ["e-mail address"]
    assert checks.secrets("Call +44 20 7946 0958 today") == ["phone number"]
    assert checks.secrets("export OPENAI_API_KEY=sk-proj-abcdefghijklmnopqrstuvwx") == ["API key", "credential"]
    assert checks.secrets("-----BEGIN RSA PRIVATE KEY-----") == ["private key"]
    assert checks.secrets("It was founded in 1999 and had 1,250 staff in 2024.") == []
    assert checks.secrets("Version 3.14.159 is out") == []


def test_language_is_only_judged_when_there_is_enough_text():
    assert checks.language("Die Hauptstadt von Frankreich ist Paris, eine schöne Stadt.") == "de"
    assert checks.language("What is the capital city of France these days?") == "en"
    assert checks.language("Hi") is None


def test_audit_responses_flags_each_planted_problem_and_nothing_else(embed):
    prompts = [f"Tell me one fact about the number {i}." for i in range(30)]
    responses = [f"The number {i} is {'even' if i % 2 == 0 else 'odd'}." for i in range(30)]
    plants = {
        0: ("What is the capital of France?", "   ", "empty_response"),
        1: ("What is your opinion on cats?", "As an AI language model, I do not have opinions.", "refusal"),
        2: ("How do I reach support?", "Send an e-mail to help.desk@example.com.", "secret_or_pii"),
        3: ("What is the capital of Germany and why is it important?",
            "Die Hauptstadt von Deutschland ist Berlin, weil dort die Regierung sitzt.", "language_mismatch"),
        4: ("Tell me one fact about the number 4.", "It is a perfect square, two times two.", None),
        5: ("Tell me one fact about the number 4.", "Cats have whiskers and like to sleep all day long.",
            "conflicting_duplicate"),
        6: ("Tell me one fact about the number 6.", "word " * 400 + "end.", "length_outlier"),
        # English that py3langid reads as 0.56 Nigerian Pidgin, 0.44 English: no mismatch
        7: ("When will you walk", "As soon as i get enough money for my robot body.", None),
    }
    for i, (prompt, response, _) in plants.items():
        prompts[i], responses[i] = prompt, response
    result = checks.audit_responses(list(range(30)), prompts, responses, embed=embed)
    by_task = {f["task_id"]: f for f in result.findings}
    for i, (_, _, issue) in plants.items():
        if issue:
            assert issue in by_task[i]["issues"], (i, by_task.get(i))
    assert "conflicting_duplicate" in by_task[4]["issues"]  # both sides of a conflict are flagged
    assert checks.language(plants[7][1]) != "en"  # the case this guards against
    clean = set(range(7, 30))
    assert not clean & set(by_task), [by_task[t] for t in clean & set(by_task)]
    qualities = [f["quality"] for f in result.findings]
    assert qualities == sorted(qualities) and by_task[0]["quality"] == 0.0  # worst first
    assert result.response_chars.shape == (30,)


def test_a_judge_flags_the_answers_it_scores_low(embed):
    def judge(prompt, response):
        return (0.0, "off topic") if "bananas" in response else (1.0, "fine")

    result = checks.audit_responses([1, 2], ["What is 2+2?", "What is 3+3?"], ["Four.", "I like bananas."],
                                    embed=embed, judge=judge)
    assert [f["task_id"] for f in result.findings] == [2]
    assert "judge score 0.00: off topic" in result.findings[0]["reason"]


def test_length_outliers_need_a_real_departure():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 8))
    lengths = rng.integers(80, 120, size=40)
    assert not checks.length_outliers(X, lengths).any()
    lengths[5] = 5000
    assert checks.length_outliers(X, lengths).nonzero()[0].tolist() == [5]


def test_any_template_text_is_accepted_or_refused_with_a_template_error():
    from hypothesis import given, settings, strategies as st

    from labelloop.model.responses.prompts import PromptTemplate, TemplateError

    @settings(max_examples=300, deadline=None)
    @given(template=st.text(alphabet=st.sampled_from("{}!:.[]_ab0 >x"), max_size=30),
           data=st.dictionaries(st.sampled_from(["a", "b", "x"]), st.text(max_size=10)))
    def check(template, data):
        try:
            rendered = PromptTemplate(template).messages(data)
        except TemplateError:
            return
        assert rendered[-1]["role"] == "user" and len(rendered[-1]["content"]) <= len(template) + 30 * 10

    check()


def test_checks_take_any_text_without_raising():
    from hypothesis import given, settings, strategies as st

    @settings(max_examples=200, deadline=None)
    @given(st.text(max_size=300))
    def check(text):
        for reason in (checks.truncation(text), checks.refusal(text), checks.empty_response(text)):
            assert reason is None or (isinstance(reason, str) and reason)
        assert checks.empty_response(text) is None or checks.truncation(text) is None  # empty is not also cut off
        assert set(checks.secrets(text)) <= {"e-mail address", "API key", "private key", "credential", "phone number"}

    check()


def test_pairs_decided_both_ways_or_by_split_votes_are_flagged_and_one_prompt_with_many_pairs_is_not():
    from labelloop.model.responses.audit import pair_issues

    prompts = ["Is the sea salty?", "is the sea salty? ", "Name a fruit.", "Name a fruit.", "Name a fruit."]
    picks = [("Yes.", "No.", ["answer1"]),
             ("No.", "Yes.", ["answer1"]),          # the same pair, swapped and decided the other way
             ("Apple.", "Chair.", ["answer1"]),
             ("Pear.", "Table.", ["answer1", "answer2"]),  # another pair for the same prompt; votes split
             ("Plum.", "Lamp.", ["answer2", "answer2"])]
    issues = pair_issues(prompts, picks, [10, 11, 12, 13, 14])
    assert issues[0] == {"conflicting_pair": "task 11 has the same pair and chose the other answer"}
    assert issues[1] == {"conflicting_pair": "task 10 has the same pair and chose the other answer"}
    assert issues[2] == {} and issues[4] == {}
    assert issues[3] == {"annotators_disagree": "2 annotators: answer1, answer2"}
