"""NER: offsets, label mapping, gazetteers, the tagger, weak supervision, the audit, the kind."""
import json

import pytest
from hypothesis import given, settings, strategies as st

from labelloop.kinds import parse
from labelloop.kinds.base import ProjectSettingsError
from labelloop.label_config import load
from labelloop.label_config.regions import labelled_spans, span_result
from labelloop.label_config.spec import UnsupportedLabelConfig, parse_label_config
from labelloop.model.datasets import wnut_entities
from labelloop.model.errors import NotEnoughLabelsError
from labelloop.model.export.formats import conll_block
from labelloop.model.spans.gazetteer import Gazetteer, GazetteerFileError, entries_from_spans, parse_entries, read_entries
from labelloop.model.spans.label_issues import audit_spans, token_consensus
from labelloop.model.spans.prelabeler import NERConfig, SpanPrelabeler, TrainedSpans, train_spans
from labelloop.model.spans.pretrained import PretrainedNER, label_mapping
from labelloop.model.spans.tokens import make_docs, overlapping, spans_from_labels, trim, word_labels

SPEC = parse_label_config(load("ner"))
LABELS = SPEC.labels


# --- offsets -------------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a", "Bé", " ", "😀", "🇬🇧", "𝔘", "中", "\n"]), min_size=1, max_size=30),
       st.data(), st.sampled_from(["codepoints", "utf16"]))
def test_spans_survive_the_round_trip_in_either_unit(pieces, data, unit):
    text = "".join(pieces)
    start = data.draw(st.integers(0, len(text) - 1))
    end = data.draw(st.integers(start + 1, len(text)))
    region = span_result(SPEC, text, start, end, "person", region_id="r1", score=0.5, offsets=unit)
    value = region["value"]
    if unit == "codepoints":  # what Label Studio 1.23 draws
        assert text[value["start"]:value["end"]] == text[start:end]
    else:  # what older releases' JavaScript drew
        units = text.encode("utf-16-le")
        assert units[2 * value["start"]:2 * value["end"]].decode("utf-16-le") == text[start:end]
    assert labelled_spans([region], SPEC, text, offsets=unit) == [(start, end, "person")]


def test_spans_outside_the_text_are_reported_not_kept():
    problems = []
    text = "😀 Paris"
    regions = [{"from_name": "label", "value": {"start": 2, "end": 7, "text": "Paris", "labels": ["location"]}},
               {"from_name": "label", "value": {"start": 3, "end": 8, "text": "Paris", "labels": ["person"]}},  # UTF-16
               {"from_name": "label", "value": {"start": 3, "end": 99, "labels": ["location"]}},
               {"from_name": "label", "value": {"start": 5, "end": 2, "labels": ["location"]}}]
    assert labelled_spans(regions, SPEC, text, problems=problems) == [(2, 7, "location"), (2, 7, "person")]
    assert len(problems) == 2 and "outside the text" in problems[0] and "start < end" in problems[1]


# --- pretrained ----------------------------------------------------------------------------------
def test_label_mapping_uses_synonyms_then_the_explicit_map_and_never_invents_labels():
    mapping = label_mapping(["PERSON", "ORG", "GPE", "DATE"], ["Person", "Company", "Location"])
    assert mapping == {"PERSON": "Person", "ORG": "Company", "GPE": "Location"}
    assert label_mapping(["ORG"], ["Person", "Team"], {"ORG": "Team"}) == {"ORG": "Team"}
    assert label_mapping(["ORG"], ["Person"], {"ORG": "Team"}) == {}  # Team is not a config label


def test_pretrained_spacy_pipeline_maps_types_to_config_labels():
    ner = PretrainedNER(LABELS)
    [spans] = ner.spans(["Barack Obama flew to London with Google staff."])
    found = {("Barack Obama flew to London with Google staff."[s:e], label) for s, e, label in spans}
    assert {("Barack Obama", "person"), ("London", "location"), ("Google", "company")} <= found
    only_people = PretrainedNER(["person"])
    assert all(label == "person" for s in only_people.spans(["Obama met Merkel in Berlin."]) for *_, label in s)


def test_a_hugging_face_token_classifier_by_path(tmp_path):
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForTokenClassification

    from labelloop.model.embeddings import resolve_model_path

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("default"))
    labels = ["O", "B-PER", "I-PER", "B-MISC", "I-MISC"]
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, num_labels=len(labels), id2label=dict(enumerate(labels)),
                        label2id={v: k for k, v in enumerate(labels)})
    model = BertForTokenClassification(config)
    with torch.no_grad():  # make it say PER for everything, so the test knows what to expect
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, 5.0, 0.0, 0.0, 0.0]))
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    ner = PretrainedNER(["person", "location"], name=str(tmp_path))
    assert ner.source_labels == ("PER", "MISC") and ner.mapping_ == {"PER": "person"}
    [spans] = ner.spans(["Alice and Bob"])
    assert spans and all(label == "person" for *_, label in spans)


def test_an_unknown_pipeline_is_a_clear_error():
    from labelloop.model.spans.pretrained import PretrainedModelError

    with pytest.raises(PretrainedModelError, match="not installed here"):
        PretrainedNER(LABELS, name="xx_no_such_pipeline")


# --- gazetteers ----------------------------------------------------------------------------------
def test_gazetteer_files_report_blank_duplicate_and_non_utf8_lines(tmp_path):
    entries = parse_entries(["Paris", "", "  ", "Paris", "New  York "])
    assert entries.entries == ["Paris", "New York"] and entries.blank == 2 and entries.duplicates == 1
    assert entries.summary() == "2 entries (2 blank lines, 1 duplicate lines skipped)"
    bad = tmp_path / "bad.txt"
    bad.write_bytes("Zürich\n".encode("latin-1"))
    with pytest.raises(GazetteerFileError, match="not UTF-8"):
        read_entries(bad)
    with pytest.raises(GazetteerFileError, match="does not exist"):
        read_entries(tmp_path / "missing.txt")


def test_gazetteer_matches_whole_words_longest_first_and_case_by_option():
    gazetteer = Gazetteer({"location": ["New York", "New York City", "Paris"], "person": ["Paris Hilton"]})
    [doc] = make_docs(["Parisian people love New York City and paris, said Paris Hilton."])
    found = [(doc[s:e].text, label) for s, e, label in gazetteer.spans([doc])[0]]
    assert found == [("New York City", "location"), ("Paris Hilton", "person")]
    insensitive = Gazetteer({"location": ["Paris"]}, ignore_case=True)
    assert [(doc[s:e].text) for s, e, _ in insensitive.spans([doc])[0]] == ["paris", "Paris"]


def test_distant_supervision_takes_the_label_people_gave_most():
    texts = ["Apple pie", "Apple stock", "Apple shares"]
    spans = [[(0, 5, "product")], [(0, 5, "company")], [(0, 5, "company")]]
    assert entries_from_spans(texts, spans) == {"company": ["Apple"]}


# --- tokens, tagger, weak supervision ------------------------------------------------------------
def test_word_labels_and_spans_round_trip_and_overlaps_are_found():
    text = "Barack Obama visited New York"
    [doc] = make_docs([text])
    classes = ("O", "person", "location")
    y = word_labels(doc, [(0, 12, "person"), (21, 29, "location")], classes)
    assert y.tolist() == [1, 1, 0, 2, 2]
    assert [s[:3] for s in spans_from_labels(doc, y, classes)] == [(0, 12, "person"), (21, 29, "location")]
    assert overlapping([(0, 12, "person"), (7, 12, "person"), (21, 29, "location")]) == [
        ((0, 12, "person"), (7, 12, "person"))]
    [doc] = make_docs(["meet Google 🚀 - staff"])
    assert trim(doc, 5, 15) == (5, 11) and trim(doc, 12, 13) is None  # "Google 🚀 -" -> "Google"; "🚀" alone: nothing


@pytest.fixture(scope="module")
def wnut():
    return [s for s in wnut_entities(900) if s[1]]


def test_trained_spans_serve_config_labels_with_graded_scores_and_survive_save(tmp_path, wnut):
    texts, spans = [t for t, _ in wnut[:120]], [list(s) for _, s in wnut[:120]]
    with pytest.raises(NotEnoughLabelsError):
        train_spans(texts, [[] for _ in texts], LABELS, pretrained=None)
    pretrained = PretrainedNER(LABELS)
    trained = train_spans(texts, spans, LABELS, pretrained=pretrained, config=NERConfig(min_sentences=20))
    assert trained.tagger is not None and set(trained.sources) == {"pretrained", "gazetteer", "tagger"}
    assert 0 <= trained.weights["tagger"] <= 1 and trained.report["tagger"]["all"]["support"] > 100
    assert trained.weighting.split()[0] in ("corroborated", "alone") and len(trained.weighting_f1) == 8
    served = SpanPrelabeler(LABELS, pretrained=pretrained, trained=trained)
    held_out = [t for t, _ in wnut[300:360]]
    out = served.predict(held_out)
    assert all(s[2] in LABELS and 0 <= s[3] <= 1 for p in out for s in p.spans)
    assert len({round(p.score, 4) for p in out}) > 5
    trained.save(tmp_path)
    meta = json.loads((tmp_path / "meta.json").read_text())
    again = SpanPrelabeler(LABELS, pretrained=pretrained, trained=TrainedSpans.load(tmp_path, meta))
    assert [p.spans for p in again.predict(held_out)] == [p.spans for p in out]


def test_the_hmm_aggregation_trains_too(wnut):
    texts, spans = [t for t, _ in wnut[:60]], [list(s) for _, s in wnut[:60]]
    trained = train_spans(texts, spans, LABELS, pretrained=PretrainedNER(LABELS),
                          config=NERConfig(aggregation="hmm", min_sentences=20))
    assert trained.aggregator is not None
    assert SpanPrelabeler(LABELS, pretrained=None, trained=trained).predict(["Justin Bieber in Toronto"])


def test_no_span_scores_by_how_close_a_word_came(wnut):
    texts, spans = [t for t, _ in wnut[:80]], [list(s) for _, s in wnut[:80]]
    trained = train_spans(texts, spans, LABELS, pretrained=None, config=NERConfig(min_sentences=20))
    served = SpanPrelabeler(LABELS, pretrained=None, trained=trained)
    plain, named = served.predict(["the the the and of", "watching Justin Bieber tonight with Selena Gomez"])
    assert 0 <= named.score <= 1 and 0 <= plain.score <= 1
    if not plain.spans:
        assert plain.score > 0.5  # no word came close to an entity: asked late


# --- audit -----------------------------------------------------------------------------------------
def test_token_consensus_takes_the_majority_and_flags_ties():
    docs = make_docs(["Obama in Paris", "Obama in Paris"])
    classes = ("O", "person", "location")
    labels, ties = token_consensus(docs, [
        {"a": [(0, 5, "person")], "b": [(0, 5, "person")], "c": [(0, 5, "location")]},
        {"a": [(9, 14, "location")], "b": []}], classes)
    assert labels[0].tolist() == [1, 0, 0] and not ties[0]
    assert ties[1] and labels[1].tolist() == [0, 0, 0]  # a tie goes to O, and is flagged


def test_audit_finds_injected_span_errors(wnut):
    texts = [t for t, _ in wnut[:240]]
    spans = [list(s) for _, s in wnut[:240]]
    noisy = list(range(0, 240, 12))
    for i in noisy:  # a wrong type on the first span
        s, e, label = spans[i][0]
        spans[i][0] = (s, e, "tvshow" if label != "tvshow" else "person")
    audit = audit_spans(list(range(240)), texts, [{"a": s} for s in spans], LABELS, n_folds=5)
    flagged = {f["task_id"] for f in audit.findings if "label_error" in f["issues"]}
    assert len(flagged & set(noisy)) >= len(noisy) // 3, (len(flagged), flagged & set(noisy))
    worst = audit.findings[0]
    text, suggested = worst["value"]
    assert text == texts[worst["task_id"]] and all(lab in LABELS for _, _, lab in suggested)
    assert set(audit.report) == {"tagger", "gazetteer"} and "person" in audit.report["tagger"]
    assert audit.findings == sorted(audit.findings, key=lambda f: f["quality"])


# --- the kind and the export ----------------------------------------------------------------------
def test_setup_checks_label_map_and_refuses_two_labels_controls(tmp_path):
    from labelloop.backend.registry import ModelRegistry

    spec, kind = parse(load("ner"))
    registry = ModelRegistry(str(tmp_path), "default")
    with pytest.raises(ProjectSettingsError, match="'Team', which the config's <Labels> does not have"):
        kind.configure(registry, "1.1", spec, {"label_map": {"ORG": "Team"}})
    with pytest.raises(ProjectSettingsError, match="JSON object"):
        kind.configure(registry, "1.1", spec, {"label_map": "{not json"})
    kind.configure(registry, "1.1", spec, {"label_map": '{"ORG": "sportsteam"}', "gazetteer_ignore_case": True})
    assert registry.store.read_settings("1.1")["ner"] == {"label_map": {"ORG": "sportsteam"},
                                                         "gazetteer_ignore_case": True}
    two = ("<View><Labels name='a' toName='t'><Label value='X'/></Labels><Labels name='b' toName='t'>"
           "<Label value='Y'/></Labels><Text name='t' value='$text'/></View>")
    spec2, kind2 = parse(two)
    with pytest.raises(UnsupportedLabelConfig, match="2 <Labels> controls over text \\(a, b\\)"):
        kind2.configure(registry, "1.1", spec2, {})


def test_gazetteer_files_change_the_served_version(tmp_path):
    from labelloop.backend.registry import ModelRegistry

    spec, kind = parse(load("ner"))
    registry = ModelRegistry(str(tmp_path), "default")
    before = kind.model_version(registry, "1.1", spec)
    folder = registry.store.project_dir("1.1") / "gazetteers"
    folder.mkdir(parents=True)
    (folder / "product.txt").write_text("Galaxy S10\n", encoding="utf-8")
    after = kind.model_version(registry, "1.1", spec)
    assert before != after and after.startswith("labelloop-ner-zeroshot-")
    model, version = kind.serving_model(registry, "1.1", spec)
    [prelabel] = model.predict(["my Galaxy S10 broke"])
    assert version == after and (3, 13, "product") in [s[:3] for s in prelabel.spans]


def test_export_keeps_nested_spans_in_json_and_reports_them_for_conll():
    spec, kind = parse(load("ner"))
    text = "😀 Bank of America Tower"
    regions = [span_result(spec, text, 2, 17, "company", region_id="a"),
               span_result(spec, text, 2, 23, "facility", region_id="b", offsets="utf16"),
               {"from_name": "label", "value": {"start": 40, "end": 50, "labels": ["person"]}}]
    task = {"id": 7, "data": {"text": text}, "annotations": [{"id": 1, "result": regions, "completed_by": 1}]}
    examples, skipped, messages = kind.examples({7: task}, spec)
    assert examples[0].spans == ((2, 17, "company"), (2, 23, "facility"))
    assert any("nested" in m and "CoNLL" in m for m in messages)
    assert any("do not fit their text" in m for m in messages)
    block = conll_block(text, examples[0].spans)
    assert "Bank\tB-facility" in block and "Tower\tI-facility" in block and "company" not in block


def test_an_annotation_without_spans_teaches_that_the_text_has_none():
    spec, kind = parse(load("ner"))
    item = kind.training_item({"id": 3, "data": {"text": "nothing here"},
                               "annotations": [{"id": 9, "result": [], "completed_by": 1}]}, spec)
    assert item is not None and item.spans == ()
