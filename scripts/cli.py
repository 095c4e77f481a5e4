"""The `labelloop` command-line tool."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn

from labelloop.model.errors import LabelloopError

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Close the loop between Label Studio and fine-tuning files.")
console = Console()


def _progress() -> Progress:
    return Progress(SpinnerColumn(), *Progress.get_default_columns(), console=console, transient=True)


def _step_bars(progress: Progress):
    """``step(name, total) -> advance(n)``: one bar per long step; ``total`` None gives a pulsing bar."""
    def step(name, total):
        bar = progress.add_task(name, total=total)
        return lambda n: progress.advance(bar, n)

    return step


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind; 0.0.0.0 inside a container."),
    port: int = typer.Option(9090, help="Port Label Studio connects to."),
    model_dir: Optional[Path] = typer.Option(None, help="Per-project models. Env: LABELLOOP_MODEL_DIR."),
    model_name: Optional[str] = typer.Option(
        None, help="Encoder: 'default' (offline all-MiniLM-L6-v2), a local path or a Hugging Face "
                   "name. Env: LABELLOOP_MODEL_NAME."),
    batch_size: Optional[int] = typer.Option(None, help="Texts per model call. Env: LABELLOOP_BATCH_SIZE."),
    workers: int = typer.Option(1, help="gunicorn worker processes (each holds its own model cache)."),
    threads: int = typer.Option(8, help="Threads per worker."),
    log_level: str = typer.Option("info"),
    allow_unauthenticated: bool = typer.Option(
        False, help="Listen beyond loopback without BASIC_AUTH_USER/BASIC_AUTH_PASS. Anyone who reaches the "
                    "port can then read task texts through /predict and start training runs."),
):
    """Run the ML backend that Label Studio connects to (gunicorn)."""
    import os
    import sys

    argv = [sys.executable, "-m", "labelloop.backend.server", "--host", host, "--port", str(port),
            "--workers", str(workers), "--threads", str(threads), "--log-level", log_level]
    for flag, value in (("--model-dir", model_dir), ("--model-name", model_name), ("--batch-size", batch_size)):
        if value is not None:
            argv += [flag, str(value)]
    if allow_unauthenticated:
        argv.append("--allow-unauthenticated")
    sys.stdout.flush()
    os.execv(sys.executable, argv)  # by module path: the command-line tool never imports the backend


@app.command()
def worker(
    queue: str = typer.Option("labelloop", help="RQ queue the backends enqueue training runs on."),
):
    """Run training jobs from Redis (REDIS_URL), for backends started with REDIS_URL set.

    Several backend replicas then share this one trainer (or several: runs of one project never
    overlap); it needs the same LABELLOOP_MODEL_DIR (a shared volume) and
    LABEL_STUDIO_URL/LABEL_STUDIO_API_KEY as the backends. Runs that find Label Studio down are
    retried with backoff.
    """
    import logging
    import os

    from redis import Redis
    from rq import Queue, SimpleWorker

    url = os.environ.get("REDIS_URL")
    if not url:
        raise typer.BadParameter("set REDIS_URL, e.g. redis://localhost:6379/0")
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    connection = Redis.from_url(url)
    try:
        connection.ping()
    except Exception as exc:  # redis.ConnectionError, a wrong URL...
        console.print(f"[red]error:[/red] Redis at {url} is unreachable: {exc}")
        raise typer.Exit(1)
    # jobs run in this process, not a fork per job: the encoder and its embedding cache stay warm
    # between runs (a crash still only loses the run: the store writes versions atomically)
    SimpleWorker([Queue(queue, connection=connection)], connection=connection).work()


@app.command()
def stack(
    state_dir: Path = typer.Option(Path(".labelloop/stack"), help="PostgreSQL, Redis, Label Studio data, models, logs."),
    port: int = typer.Option(8080, help="Label Studio port."),
    proxy_port: int = typer.Option(9090, help="nginx port: the one backend URL to connect in Label Studio."),
    replicas: int = typer.Option(2, min=1, help="Backend replicas behind nginx."),
    workers_per_replica: int = typer.Option(2, min=1, help="gunicorn workers in each replica."),
    trainers: int = typer.Option(1, min=1, help="`labelloop worker` processes that run training jobs."),
):
    """Run the multi-process topology locally: Label Studio on PostgreSQL, Redis (never on 6379),
    backend replicas behind nginx and RQ training workers, sharing one model directory."""
    import time

    from rich.table import Table

    from .services import ServiceError
    from .stack import build_stack, start_stack

    try:
        running = build_stack(state_dir, replicas=replicas, workers_per_replica=workers_per_replica,
                              trainers=trainers, port=port, proxy_port=proxy_port)
        with console.status("starting") as status:
            start_stack(running, progress=status.update)
    except ServiceError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1)
    table = Table("service", "where", "log")
    table.add_row("Label Studio (PostgreSQL)", running.label_studio.url, str(running.label_studio.log_path))
    table.add_row("PostgreSQL", f"127.0.0.1:{running.database.port}", str(running.postgres.log_path))
    table.add_row("Redis", running.redis.redis_url, str(running.redis.log_path))
    for replica in running.replicas:
        table.add_row(replica.name, replica.url, str(replica.log_path))
    table.add_row("nginx: connect this URL", running.backend_url, str(running.state_dir / "nginx" / "error.log"))
    for worker in running.workers:
        table.add_row(worker.name, "RQ queue 'labelloop'", str(worker.log_path))
    console.print(table)
    console.print(f"Log in as {running.credentials.username} / {running.credentials.password}; API token "
                  f"{running.credentials.token}. Connect the model at {running.backend_url}. Ctrl-C stops everything.")
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()


@app.command()
def demo(
    port: int = typer.Option(8080, help="Label Studio port."),
    backend_port: int = typer.Option(9090, help="Backend port."),
    state_dir: Path = typer.Option(Path(".labelloop/demo"), help="Label Studio data, models and logs."),
    tasks: int = typer.Option(200, help="Review snippets to import."),
    seed_labels: int = typer.Option(20, help="Most informative tasks to annotate with their hidden "
                                             "labels, to show retraining (0: none)."),
    llm_prompts: int = typer.Option(36, help="ChatterBot prompts in the LLM project, drafted by SmolLM2 "
                                             "(0: no LLM project; 14 at least for a valid export)."),
    ner_tweets: int = typer.Option(60, help="WNUT tweets in the NER project; half get annotated (0: no NER project)."),
    wait: bool = typer.Option(True, help="Keep the services running until Ctrl-C."),
):
    """Start a real Label Studio, the backend and a local LLM, and run three demo projects through the loop."""
    from .demo import run_demo

    run_demo(state_dir=state_dir.resolve(), port=port, backend_port=backend_port, n_tasks=tasks,
             seed_labels=seed_labels, llm_prompts=llm_prompts, ner_tweets=ner_tweets, wait=wait, console=console)


@app.command()
def rank(
    project: int = typer.Option(..., help="Label Studio project ID."),
    strategy: Optional[str] = typer.Option(
        None, help="least_confidence, margin, entropy or random; stored in the ML backend's extra "
                   "params. Default: keep the project's choice (or the backend's LABELLOOP_STRATEGY)."),
    timeout: float = typer.Option(600, help="Seconds to wait for the backend to refresh predictions."),
    url: Optional[str] = typer.Option(None, help="Label Studio URL. Env: LABEL_STUDIO_URL."),
    api_key: Optional[str] = typer.Option(None, help="Env: LABEL_STUDIO_API_KEY."),
):
    """Serve the most informative task next: uncertainty sampling, fresh predictions, a saved view."""
    from .client import connect
    from .rank import VIEW_TITLE, rank_project

    client = connect(url, api_key)
    report = rank_project(client, project, strategy=strategy, timeout=timeout)
    console.print(f"[green]project {report.project_id}[/]: sampling is 'Uncertainty sampling', "
                  f"model version {report.model_version}, strategy {report.strategy}")
    console.print(f"  {report.current}/{report.unlabelled} unlabelled tasks carry a current prediction "
                  f"with a score")
    console.print(f"  saved view '{VIEW_TITLE}' (id {report.view_id}): unlabelled tasks, lowest score first")
    if report.missing:
        ids = ", ".join(map(str, report.missing_ids)) + (", ..." if report.missing > len(report.missing_ids) else "")
        console.print(f"[yellow]  {report.missing} unlabelled tasks have no prediction of this version "
                      f"(tasks {ids})[/]: "
                      "the backend could not predict them (for an LLM project, the endpoint refused or failed: see "
                      "the backend log), or newer annotations started another refresh. Label Studio serves them "
                      "after the ranked tasks; run `labelloop rank` again to retry.")


@app.command()
def prelabel(
    project: int = typer.Option(..., help="Label Studio project ID."),
    model_dir: Optional[Path] = typer.Option(
        None, help="The backend's model directory, where LLM drafts are kept. Env: LABELLOOP_MODEL_DIR."),
    url: Optional[str] = typer.Option(None, help="Label Studio URL. Env: LABEL_STUDIO_URL."),
    api_key: Optional[str] = typer.Option(None, help="Env: LABEL_STUDIO_API_KEY."),
):
    """Prelabel a whole project (LLM drafts and judge verdicts included) and import the predictions; resumable."""
    from labelloop.backend.config import Settings

    from .client import connect
    from .prelabel import prelabel_project

    settings = Settings.from_env(model_dir=str(model_dir) if model_dir else None)
    client = connect(url, api_key)
    with _progress() as progress:
        report = prelabel_project(client, project, settings=settings,
                                  progress=lambda total: _step_bars(progress)("tasks prelabelled", total))
    console.print(f"project {project}: {report.imported} predictions of [bold]{report.model_version}[/] imported "
                  f"({report.new_drafts} new LLM drafts or verdicts; {report.already_current} tasks were already current"
                  + (f"; {report.variants} augment variants keep their source's label" if report.variants else "")
                  + ")")
    if report.failed or report.unusable:
        console.print(f"[yellow]note:[/] {report.failed} tasks got no prediction (the endpoint failed; run again to "
                      f"retry) and {report.unusable} could not be prelabelled (empty or too long): see the log")


@app.command()
def gazetteer(
    project: int = typer.Option(..., help="Label Studio project ID (an NER project)."),
    label: str = typer.Option(..., help="The config label the entries get, e.g. Person."),
    file: Path = typer.Option(..., help="UTF-8 text file, one entity string per line."),
    model_dir: Optional[Path] = typer.Option(
        None, help="The backend's model directory. Env: LABELLOOP_MODEL_DIR (default ./models)."),
    replace: bool = typer.Option(False, help="Replace the label's entries instead of adding to them."),
    url: Optional[str] = typer.Option(None, help="Label Studio URL. Env: LABEL_STUDIO_URL."),
    api_key: Optional[str] = typer.Option(None, help="Env: LABEL_STUDIO_API_KEY."),
):
    """Add entity strings to an NER project's gazetteer; the backend prelabels matches from then on."""
    import os

    from .client import connect
    from .gazetteer import add_gazetteer

    report = add_gazetteer(connect(url, api_key), project, label, file,
                           model_dir=model_dir or Path(os.environ.get("LABELLOOP_MODEL_DIR") or "./models"),
                           replace=replace)
    console.print(f"{file}: {report.read}; {report.added} new, {report.total} {report.label!r} entries in {report.path}")


@app.command()
def sync(
    project: int = typer.Option(..., help="Label Studio project ID."),
    out: Path = typer.Option(Path("labelloop-data/snapshots"), help="Snapshot folder."),
    full: bool = typer.Option(False, help="Pull everything instead of what changed."),
    url: Optional[str] = typer.Option(None, help="Label Studio URL. Env: LABEL_STUDIO_URL."),
    api_key: Optional[str] = typer.Option(None, help="Env: LABEL_STUDIO_API_KEY."),
):
    """Pull tasks, annotations and predictions into a local snapshot (read-only, incremental)."""
    from .client import connect
    from .sync import ProjectSnapshot

    client = connect(url, api_key)
    with _progress() as progress:
        pulled = _step_bars(progress)("tasks pulled", None)
        report = ProjectSnapshot(out, project).sync(client, full=full, progress=pulled)
    console.print(f"project {project}: {report.fetched} tasks pulled, {report.removed} deleted ones removed, "
                  f"{report.total} in {report.path}")


@app.command()
def audit(
    project: int = typer.Option(..., help="Label Studio project ID."),
    out: Path = typer.Option(Path("labelloop-data"), help="Snapshots and reports go here."),
    push: bool = typer.Option(True, help="Send findings back to Label Studio for review."),
    folds: Optional[int] = typer.Option(None, help="Cross-validation folds for out-of-sample probabilities "
                                                    "(default: 10 for classification, 5 for NER spans)."),
    full: bool = typer.Option(False, help="Pull the whole project again instead of what changed."),
    judge: bool = typer.Option(False, help="LLM projects: also score each answer with a rubric, asking the "
                                           "LABELLOOP_LLM_* endpoint to act as a judge."),
    watch: bool = typer.Option(False, help="Keep running: audit again each time a share of the queue has been "
                                           "reviewed (the corrections make the next queue better), until no "
                                           "likely label error is left to review. Ctrl-C stops."),
    rerun_after: Optional[int] = typer.Option(None, min=1, help="With --watch: reviewed tasks before the next "
                                                                "audit (default: a quarter of the queue, at "
                                                                "least 5)."),
    poll: float = typer.Option(30.0, min=1.0, help="With --watch: seconds between checks for reviews."),
    url: Optional[str] = typer.Option(None, help="Label Studio URL. Env: LABEL_STUDIO_URL."),
    api_key: Optional[str] = typer.Option(None, help="Env: LABEL_STUDIO_API_KEY."),
):
    """Find likely label errors (or bad LLM answers) and queue them for review in Label Studio."""
    from labelloop.kinds.base import for_review

    from .audit import run_audit, watch_audit
    from .client import connect

    if watch and not push:
        raise typer.BadParameter("--watch needs --push: it reads the reviews of the queue in Label Studio")
    llm = None
    if judge:
        from labelloop.model.responses.llm import LLMConfig

        llm = LLMConfig.from_env()
    client = connect(url, api_key)
    with _progress() as progress:
        options = dict(out_dir=out, n_folds=folds, push=push, full=full, progress=_step_bars(progress), judge=llm)
        if not watch:
            _audit_summary(project, run_audit(client, project, **options))
            return
        waiting = progress.add_task("waiting for reviews", total=None, visible=False)

        def on_report(report):
            for bar in [b for b in progress.task_ids if b != waiting]:  # the finished audit's bars
                progress.remove_task(bar)
            _audit_summary(project, report)
            progress.update(waiting, completed=0, visible=False)

        def on_poll(reviewed, due, queued):
            progress.update(waiting, completed=reviewed, total=due, visible=True,
                            description=f"reviewed in the queue of {queued} (audit again at {due})")

        try:
            last = watch_audit(client, project, every=rerun_after, poll_s=poll, on_report=on_report,
                               on_poll=on_poll, **options)
        except KeyboardInterrupt:
            console.print("stopped watching; the last queue stays in Label Studio")
            return
        left = sum(map(for_review, last.findings))
        console.print("no likely label error left to review: stopped watching"
                      + (f"; the {left} task(s) still queued hold labels the model doubts past Cleanlab's "
                         "estimate of the errors" if left else ""))


def _audit_summary(project: int, report) -> None:
    from labelloop.kinds.base import for_review, held_back, review_queue

    from .audit import VIEW_TITLE

    for message in report.messages:
        console.print(f"[yellow]note:[/] {message}")
    kinds = Counter(kind for finding in report.findings for kind in finding["issues"])
    queued = sum(map(for_review, report.findings))
    console.print(f"project {project}: {len(report.findings)} findings among {report.n_labelled} labelled tasks "
                  f"({', '.join(f'{n} {kind}' for kind, n in sorted(kinds.items())) or 'none'}), {queued} for "
                  f"review; "
                  f"report: {report.report_dir / 'report.html'}")
    if report.view_id is not None and not queued:
        console.print(f"  nothing to review: view '{VIEW_TITLE}' in Label Studio is empty now")
    elif report.view_id is not None:
        console.print(f"  review them in Label Studio: view '{VIEW_TITLE}' (predictions {report.model_version})")
        likely = [i for i, f in enumerate(review_queue(report.findings), 1) if held_back(f)]
        if likely and likely[-1] < queued:  # where the likely errors end in the view
            console.print(f"  its {len(likely)} likely errors are all among its first {likely[-1]}; the last "
                          f"{queued - likely[-1]} are labels the model doubts past Cleanlab's estimate of how many "
                          "are wrong, mostly right on ambiguous data")


@app.command()
def export(
    project: int = typer.Option(..., help="Label Studio project ID."),
    format: str = typer.Option(..., "--format", "-f",
                               help="openai-chat, openai-dpo, messages, alpaca, sharegpt, classification-jsonl "
                                    "or conll."),
    out: Path = typer.Option(..., help="Output directory (refused if it holds files, unless --overwrite)."),
    split: str = typer.Option("0.8,0.1,0.1", help="train,validation,test shares."),
    seed: int = typer.Option(0, help="Same seed and annotations: byte-identical files."),
    system: Optional[str] = typer.Option(None, help="System message for chat formats (none by default)."),
    instruction: Optional[str] = typer.Option(
        None, help="Classification/NER: the instruction before the text; {labels} becomes the label names."),
    near_duplicate_threshold: float = typer.Option(
        0.95, min=0.0, max=1.0,
        help="Cosine similarity of the texts' embeddings above which examples are near-duplicates "
             "(kept in one split). 0 skips the embedding: only repeated texts are grouped."),
    exclude_flagged: bool = typer.Option(
        False, help="Leave out tasks whose labels the last audit found likely wrong or undecided, until reviewed."),
    max_tokens: int = typer.Option(16385, help="Per-example token limit checked on every line."),
    tokenizer: str = typer.Option("auto", help="'auto' (tiktoken o200k_base if cached, else the local encoder's "
                                               "tokenizer), 'tiktoken:<encoding>', or a local/HF tokenizer."),
    overwrite: bool = typer.Option(False, help="Replace the files already in --out."),
    plot: bool = typer.Option(False, help="Also write label_distribution.png (label shares per split)."),
    data: Path = typer.Option(Path("labelloop-data"), help="Snapshots, and the audits `labelloop audit` wrote."),
    full: bool = typer.Option(False, help="Pull the whole project again instead of what changed."),
    minhash_threshold: float = typer.Option(
        0.8, min=0.0, max=1.0, help="Word-shingle Jaccard similarity (MinHash-LSH) above which examples are "
                                    "near-duplicates. 0 turns this detector off."),
    no_synthetic: bool = typer.Option(False, "--no-synthetic",
                                      help="Leave out the variants `labelloop augment` made (kept by default, "
                                           "always in their source's split)."),
    url: Optional[str] = typer.Option(None, help="Label Studio URL. Env: LABEL_STUDIO_URL."),
    api_key: Optional[str] = typer.Option(None, help="Env: LABEL_STUDIO_API_KEY."),
):
    """Write clean, deduplicated, leakage-free, validated fine-tuning files for a project."""
    from rich.table import Table

    from .client import connect
    from .export import ExportOptions, run_export

    options = ExportOptions(format, split, seed, system, instruction, near_duplicate_threshold, minhash_threshold,
                            exclude_flagged, max_tokens, tokenizer, overwrite=overwrite, plot=plot,
                            synthetic=not no_synthetic)
    try:
        from labelloop.model.export.splits import parse_fractions

        parse_fractions(split)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--split") from None
    client = connect(url, api_key)
    with _progress() as progress:
        result = run_export(client, project, out, options, data_dir=data, full=full, progress=_step_bars(progress))
    manifest = result.manifest
    for message in result.messages:
        console.print(f"[yellow]note:[/] {message}")
    table = Table(title=f"project {project} -> {format} in {out}")
    for column in ("split", "examples", "tokens mean / max", "labels"):
        table.add_column(column)
    for name, counts in manifest["counts"].items():
        stats = manifest["tokens"].get(name) or {}
        labels = ", ".join(f"{k} {v}" for k, v in list(counts["labels"].items())[:6])
        table.add_row(name, str(counts["examples"]), f"{stats.get('mean', '-')} / {stats.get('max', '-')}", labels)
    console.print(table)
    dups = manifest["near_duplicates"]
    dropped = ", ".join(f"{len(ids)} {reason}" for reason, ids in manifest["dropped"].items()) or "none"
    console.print(f"dropped: {dropped}. Near-duplicate pairs across splits: {dups['cross_split_pairs']} "
                  f"(a random split would have had {dups['cross_split_pairs_random_split']}). "
                  f"Tokens counted with {manifest['tokens']['tokenizer']}.")


@app.command()
def augment(
    project: int = typer.Option(..., help="Label Studio project ID (text classification or LLM responses)."),
    method: str = typer.Option(..., help="paraphrase (the LLM endpoint of LABELLOOP_LLM_*), or AugLy's typos, "
                                         "char-swaps, contractions, punctuation."),
    n: int = typer.Option(1, "--n", min=1, max=20, help="Variants per annotated example."),
    limit: Optional[int] = typer.Option(None, min=1, help="Only the first N annotated tasks (by id)."),
    seed: int = typer.Option(0, help="AugLy's randomness: the same seed gives the same variants."),
    data: Path = typer.Option(Path("labelloop-data"), help="Where the project's snapshot is kept."),
    url: Optional[str] = typer.Option(None, help="Label Studio URL. Env: LABEL_STUDIO_URL."),
    api_key: Optional[str] = typer.Option(None, help="Env: LABEL_STUDIO_API_KEY."),
):
    """Add synthetic variants of annotated examples as new tasks, prelabelled with their source's label."""
    from .augment import VIEW_TITLE, run_augment
    from .client import connect

    client = connect(url, api_key)
    with _progress() as progress:
        report = run_augment(client, project, method=method, n=n, limit=limit, seed=seed, data_dir=data,
                             progress=_step_bars(progress))
    console.print(f"project {project}: {report.created} {method} variants of {report.sources} annotated tasks, "
                  f"each with its source's label as a prediction (no annotation); review them in the "
                  f"\"{VIEW_TITLE}\" tab.")
    if report.already_done:
        console.print(f"{report.already_done} tasks already had {method} variants: skipped")
    if report.without_variant:
        console.print(f"[yellow]note:[/] no usable {method} variant for {len(report.without_variant)} tasks "
                      f"(e.g. {report.without_variant[:5]})")
    if report.failed:
        console.print(f"[red]{len(report.failed)} variants were imported but not found again to prelabel[/]")


@app.command()
def validate(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="A JSONL (or .conll) fine-tuning file."),
    format: Optional[str] = typer.Option(None, "--format", "-f", help="Detected from the first line if omitted."),
    max_tokens: int = typer.Option(16385, help="Per-example token limit."),
    tokenizer: str = typer.Option("auto", help="As for `labelloop export`."),
    min_examples: int = typer.Option(10, help="Fewer examples than this is an error."),
):
    """Check a fine-tuning file line by line as OpenAI's cookbook does; exit code 1 on errors."""
    from labelloop.model.export.validation import validate_file
    from labelloop.model.export.tokens import token_counter

    counter = token_counter(tokenizer)
    with console.status(f"validating {file}"):
        report = validate_file(file, fmt=format, counter=counter, max_tokens=max_tokens, min_examples=min_examples)
    for line, code, message in report.errors[:50]:
        console.print(f"[red]{f'line {line}' if line else 'file'}[/] {code}: {message}")
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    stats = report.token_stats()
    console.print(f"{file}: {report.n_examples} examples, format {report.format}, {len(report.errors)} errors "
                  f"{report.error_counts() or ''}; tokens ({report.tokenizer}): {stats or 'n/a'}")
    raise typer.Exit(1 if report.errors else 0)


@app.command()
def evaluate(
    split: Path = typer.Option(..., exists=True, dir_okay=False,
                               help="An exported split, e.g. out/test.jsonl (its manifest.json names the kind) "
                                    "or out/test.conll."),
    endpoint: Optional[str] = typer.Option(None, help="OpenAI-compatible URL serving the fine-tuned model, "
                                                      "e.g. http://127.0.0.1:8000/v1."),
    model: Optional[str] = typer.Option(None, help="The name the endpoint serves the model as."),
    api_key: Optional[str] = typer.Option(None, envvar="LABELLOOP_EVAL_API_KEY",
                                          help="The endpoint's key. Env: LABELLOOP_EVAL_API_KEY."),
    answers: Optional[Path] = typer.Option(None, exists=True, dir_okay=False,
                                           help="Answers you generated instead: JSONL, line i answers line i "
                                                "(a JSON string or {\"answer\": ...}); for a CoNLL split, CoNLL "
                                                "with the split's tokens and the predicted tags."),
    kind: Optional[str] = typer.Option(None, help="llm, preference, classification or ner; default: the manifest's."),
    name: Optional[str] = typer.Option(None, help="Name of this run (default: the model or the answers file)."),
    out: Optional[Path] = typer.Option(None, help="Folder of the runs (default: <split folder>/evaluations)."),
    max_tokens: int = typer.Option(256, min=1, help="Per answer, from the endpoint."),
    concurrency: int = typer.Option(4, min=1, max=256, help="Requests in flight."),
    perplexity_model: Optional[Path] = typer.Option(
        None, exists=True, dir_okay=False, help="GGUF to score the references' perplexity with (default: the "
                                                "SmolLM2 the LLM prelabels use, when installed)."),
    bertscore_model: str = typer.Option("default", help="BERTScore's encoder: 'default' (the offline MiniLM), "
                                                       "a local path or a Hugging Face name."),
):
    """Score a fine-tuned model on an exported test split; writes metrics.json and report.html."""
    from rich.table import Table

    from .evaluate import EvaluationOptions, evaluate as run_evaluation
    from labelloop.model.evaluation.report import headline

    options = EvaluationOptions(endpoint, model, api_key, answers, kind, name, out, max_tokens, concurrency,
                                perplexity_model=perplexity_model, bertscore_model=bertscore_model)
    with _progress() as progress:
        result = run_evaluation(split, options, step=_step_bars(progress))
    metrics = result.metrics
    table = Table(title=f"{metrics['name']} on {split} ({metrics['examples']} examples)")
    runs = [*result.earlier, metrics]
    table.add_column("metric")
    for run in runs:
        table.add_column(run["name"] + (" (this run)" if run is metrics else ""), justify="right")
    for metric in headline(metrics):
        table.add_row(metric, *("n/a" if headline(r).get(metric) is None else f"{headline(r)[metric]:.4g}"
                                for r in runs))
    console.print(table)
    for metric, value in metrics.items():
        if isinstance(value, dict) and "unavailable" in value:
            console.print(f"[yellow]{metric} not computed:[/] {value['unavailable']}")
    if metrics.get("failed_answers"):
        console.print(f"[yellow]note:[/] {metrics['failed_answers']} prompts got no answer (scored as empty)")
    console.print(f"report: {result.report}")


def main() -> None:
    from .client import label_studio_error

    try:
        app()
    except LabelloopError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise SystemExit(2) from None
    except Exception as exc:
        message = label_studio_error(exc)
        if message is None:
            raise
        console.print(f"[bold red]error:[/] {message}")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
