"""Take the README's screenshots of the audit: the review queue as Label Studio's Data Manager
serves it, and the findings table of the audit report (a maintainer's tool, like
`screenshot_ner.py`).

It checks in the browser that the view lists the planted flips first: the Data Manager's first
rows are read back and compared with the audit's queue. Needs Playwright and a Chromium; neither
is a labelloop dependency (see `browser.py`).

Usage: .venv/bin/python docs/screenshot_review.py [--chromium /usr/bin/chromium]
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

IMAGES = Path(__file__).resolve().parent / "images"
QUEUE_PNG = IMAGES / "review-queue.png"
REPORT_PNG = IMAGES / "audit-report.png"
N_TASKS = 200


def bbc_config(labels) -> str:
    choices = "".join(f'<Choice value="{label}"/>' for label in labels)
    return (f'<View><Text name="text" value="$text"/>'
            f'<Choices name="section" toName="text" choice="single">{choices}</Choices></View>')


def main() -> None:
    from browser import chromium_path, label_studio_and_backend, logged_in

    chromium = chromium_path(__doc__)

    from labelloop.kinds.base import review_queue
    from labelloop.model.datasets import bbc_news
    from labelloop.scripts import projects
    from labelloop.scripts.audit import VIEW_TITLE, run_audit

    rng = np.random.default_rng(0)
    every = bbc_news()
    items = [every[i] for i in rng.choice(len(every), size=N_TASKS, replace=False)]
    labels = sorted({it.label for it in items})
    with label_studio_and_backend(with_backend=False) as (ls, creds, _, client, tmp):
        project = projects.create_project(client, "BBC News sections", bbc_config(labels))
        projects.import_tasks(client, project.id, ({"text": it.text} for it in items))
        tasks = sorted(projects.iter_tasks(client, project.id), key=lambda t: t.id)
        flipped = set(rng.choice(len(tasks), size=len(tasks) // 10, replace=False).tolist())
        for i, (task, item) in enumerate(zip(tasks, items)):
            label = item.label
            if i in flipped:
                label = str(rng.choice([x for x in labels if x != item.label]))
            client.annotations.create(id=task.id, result=[{"from_name": "section", "to_name": "text",
                                                           "type": "choices", "value": {"choices": [label]}}])
        flipped_ids = {tasks[i].id for i in flipped}
        report = run_audit(client, project.id, out_dir=tmp / "audit")
        queue = [f["task_id"] for f in review_queue(report.findings)]

        with logged_in(chromium, ls, creds, width=1400, height=640) as (browser, page):
            page.goto(f"{ls.url}/projects/{project.id}/data?tab={report.view_id}")
            page.wait_for_selector(f"text={VIEW_TITLE}", timeout=60_000)
            page.wait_for_load_state("networkidle")
            page.wait_for_timeout(3000)
            IMAGES.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(QUEUE_PNG))
            # the rows' task IDs, top to bottom, as the Data Manager draws them
            shown = page.eval_on_selector_all(
                "input[aria-label^='Select Task ']",
                "els => els.map(e => e.getAttribute('aria-label').replace('Select Task ', ''))")
            report_page = browser.new_page(viewport={"width": 1100, "height": 900})
            report_page.goto((report.report_dir / "report.html").as_uri())
            # the findings table's first rows: what a reviewer acts from
            top = report_page.locator("h2", has_text="Findings (").bounding_box()["y"]
            report_page.screenshot(path=str(REPORT_PNG), full_page=True,
                                   clip={"x": 0, "y": top - 10, "width": 1100, "height": 760})
    first = [int(x) for x in shown if x.isdigit()][:len(flipped_ids)]
    print(f"flipped {len(flipped_ids)}; queue {len(queue)}; the view's first rows: {first[:10]}")
    if first[:10] != queue[:10]:
        raise SystemExit("the Data Manager does not list the audit's queue in its order")
    hits = len(set(first) & flipped_ids)
    print(f"{hits} of the view's first {len(first)} rows are planted flips; wrote {QUEUE_PNG} and {REPORT_PNG}")


if __name__ == "__main__":
    main()
