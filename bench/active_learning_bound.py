"""How few labels could any query strategy need? A greedy oracle as an optimistic bound for
issue 14's active-learning target (labels to 95% of full-pool accuracy, at most 0.5x random's).

The model is the one labelloop serves: the logistic head over frozen MiniLM embeddings
(`EmbeddingClassifier`, its ``C`` fixed at what "auto" chooses on the whole pool) blended with the
zero-shot prior at the default ``LABELLOOP_PRIOR_STRENGTH`` (`ClassificationKind.with_prior`).
Per seed, a stratified pool/test split (75/25) as in ``bench/outcome.py``; the test split is
halved, stratified, into a *selection* half and an *evaluation* half. Labels come in bursts of 5
and every curve is read on the evaluation half.

- random: random order;
- margin: lowest served margin first (the product's default strategy, without clusters);
- oracle: each next label is, of ``--candidates`` random unlabelled texts, the one whose label
  makes the served model most accurate on the selection half. It uses several hundred held-out
  labels that no real strategy has, so its labels-to-95% is what a strategy could hope for at
  best (greedy and myopic, so not a strict bound);
- with ``--peek``, also the oracle that selects on the evaluation half itself: it fits the
  figure it is judged by, so it is more optimistic still.

Printed per dataset: labels until the seed-averaged curve stays at or above 95% of the full-pool
model's accuracy, and each strategy's ratio to random's. The oracle stops at random's count: past
it no ratio below 1 is left to find.

Usage: python bench/active_learning_bound.py [--seeds 5] [--datasets rt,bbc] [--candidates 50] [--peek]
About 45 minutes on 2 cores for Rotten Tomatoes and BBC News; ChatterBot topics (21 classes, a
slow fit per candidate) takes hours.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import track  # noqa: E402
from rich.table import Table  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from labelloop.backend.config import Settings  # noqa: E402
from labelloop.kinds.classification import ClassificationKind  # noqa: E402
from labelloop.label_config.spec import ClassificationSpec  # noqa: E402
from labelloop.model import ranking  # noqa: E402
from labelloop.model.classification.classifier import EmbeddingClassifier, embed  # noqa: E402
from labelloop.model.text_cleaning import clean_text  # noqa: E402
from outcome import DATASETS, labels_to_reach, pool_test_split  # noqa: E402

BURST = 5
LEVEL = 0.95


class ServedModel:
    """The served model for a set of labelled pool indices: head blended with the zero-shot prior."""

    def __init__(self, X, names, prior, *, C: float, prior_strength: float, kind: ClassificationKind):
        self.X, self.names, self.prior, self.C = X, names, prior, C
        self.prior_strength, self.kind = prior_strength, kind

    def fit(self, labelled):
        labelled = list(labelled)
        if len(set(self.names[labelled])) < 2:  # a head needs two classes, as a retrain does
            return self.prior
        head = EmbeddingClassifier(C=self.C).fit(self.X[labelled], self.names[labelled])
        return self.kind.with_prior(head, self.prior, {"n_labels": len(labelled)},
                                    prior_strength=self.prior_strength)

    def accuracy(self, labelled, X_eval, names_eval) -> float:
        return float((self.fit(labelled).predict(X_eval) == names_eval).mean())


def curve(served: ServedModel, pool, evaluation, selection, *, strategy: str, budget: int, seed: int,
          candidates: int, asked: list | None = None) -> np.ndarray:
    """Accuracy on ``evaluation`` after each burst, shape ``(budget // BURST,)``. ``selection``:
    the (indices) an oracle picks by. ``asked`` collects, per oracle pick, (its margin score's
    percentile among the unlabelled texts: 0 is what margin asks first, whether the served
    model already predicted its label)."""
    rng = np.random.default_rng(seed)
    labelled: list[int] = []
    accs = []
    X, names = served.X, served.names
    model = served.fit(labelled)  # the model the last burst trained: it scores the next one
    while len(labelled) < budget:
        if strategy == "margin":
            rest = np.setdiff1d(pool, labelled)
            scores = ranking.score(model.predict_proba(X[rest]), strategy="margin")
            labelled += rest[np.argsort(scores, kind="stable")[:BURST]].tolist()
        else:
            for _ in range(BURST):
                rest = np.setdiff1d(pool, labelled)
                if strategy == "random" or len(set(names[labelled])) < 2:  # a fit needs two classes
                    labelled.append(int(rng.choice(rest)))
                    continue
                picks = rng.choice(rest, size=min(candidates, len(rest)), replace=False)
                gains = [served.accuracy(labelled + [int(c)], X[selection], names[selection]) for c in picks]
                pick = int(picks[int(np.argmax(gains))])
                if asked is not None:
                    current = served.fit(labelled)
                    scores = ranking.score(current.predict_proba(X[rest]), strategy="margin")
                    mine = scores[np.searchsorted(rest, pick)]
                    asked.append(((scores < mine).mean(), current.predict(X[[pick]])[0] == names[pick]))
                labelled.append(pick)
        model = served.fit(labelled)
        accs.append(float((model.predict(X[evaluation]) == names[evaluation]).mean()))
    return np.asarray(accs)


def measure(key: str, args, settings: Settings, kind: ClassificationKind, console: Console) -> dict:
    title, load, budget = DATASETS[key]
    items = load()
    X = embed([clean_text(it.text) for it in items], settings.model_name)
    classes, y = np.unique([it.label for it in items], return_inverse=True)
    names = np.asarray([str(c) for c in classes], dtype=object)[y]
    spec = ClassificationSpec(from_name="label", to_name="text", value_key="text",
                              labels=tuple(str(c) for c in classes), multi_label=False)
    prior = kind.prior_model(spec, settings.model_name)
    oracles = ["oracle"] + (["oracle, peeking"] if args.peek else [])
    curves: dict[str, list] = {name: [] for name in ["random", "margin", *oracles]}
    asked: list = []
    for seed in track(range(args.seeds), description=f"{title}: oracle", console=console, transient=True):
        t = time.perf_counter()
        pool, test = pool_test_split(y, seed)
        selection, evaluation = train_test_split(test, test_size=0.5, random_state=seed, stratify=y[test])
        C = EmbeddingClassifier().fit(X[pool], names[pool]).C_  # what "auto" chooses on the whole pool
        served = ServedModel(X, names, prior, C=C, prior_strength=settings.prior_strength, kind=kind)
        full = served.accuracy(pool, X[evaluation], names[evaluation])
        common = dict(seed=seed, candidates=args.candidates)
        for name in ("random", "margin"):
            curves[name].append(curve(served, pool, evaluation, selection, strategy=name,
                                      budget=min(budget, len(pool)), **common) / full)
        # past random's labels-to-95% on this seed no ratio below 1 is left to find
        horizon = labels_to_reach(BURST * np.arange(1, len(curves["random"][-1]) + 1), [curves["random"][-1]],
                                  LEVEL) or budget
        for name in oracles:
            by = selection if name == "oracle" else evaluation
            curves[name].append(curve(served, pool, evaluation, by, strategy="oracle", budget=min(horizon, len(pool)),
                                      asked=asked if name == "oracle" else None, **common) / full)
        console.print(f"{title} seed {seed}: C {C:g}, full-pool accuracy {full:.3f}, oracle to {horizon} labels "
                      f"({time.perf_counter() - t:.0f} s)")
    labels = {}
    for name, rows in curves.items():
        n = min(len(r) for r in rows)  # the oracle's horizon differs per seed: the common part
        counts = BURST * np.arange(1, n + 1)
        labels[name] = labels_to_reach(counts, [r[:n] for r in rows], LEVEL)
        labels[name + " horizon"] = int(counts[-1])
    return {"title": title, "labels": labels, "asked": np.asarray(asked, dtype=float).reshape(-1, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--datasets", default="rt,bbc")
    parser.add_argument("--candidates", type=int, default=50, help="random unlabelled texts the oracle tries per label")
    parser.add_argument("--peek", action="store_true", help="also the oracle that selects on the evaluation half")
    args = parser.parse_args()
    console = Console()
    settings, kind = Settings(), ClassificationKind()
    table = Table(title=f"Labels to {LEVEL:.0%} of full-pool accuracy, {args.seeds} seeds, bursts of {BURST}; "
                        f"÷ random's")
    for col in ("dataset", "random", "margin", "oracle (selection half)", *(["oracle (peeking)"] if args.peek else [])):
        table.add_column(col, justify="left" if col == "dataset" else "right")
    for key in args.datasets.split(","):
        run = measure(key, args, settings, kind, console)
        labels = run["labels"]
        random_labels = labels["random"]

        def cell(name):
            n = labels[name]
            if n is None:
                return f"> {labels[name + ' horizon']}"
            return f"{n}" if name == "random" or not random_labels else f"{n} ({n / random_labels:.2f})"

        table.add_row(run["title"], cell("random"), cell("margin"), cell("oracle"),
                      *([cell("oracle, peeking")] if args.peek else []))
        asked = run["asked"]
        console.print(f"{run['title']}: the held-out oracle's {len(asked)} picks sit at the {asked[:, 0].mean():.2f} "
                      f"margin percentile on average (0: what margin asks first, 0.5: random); the served model "
                      f"already predicted {asked[:, 1].mean():.0%} of the labels it asked for")
    console.print(table)


if __name__ == "__main__":
    main()
