"""Take the README's screenshot of NER prelabels in Label Studio, and check in the browser that
each prelabelled span is drawn over exactly its characters, emoji before it or not (a
maintainer's tool, like `screenshot_llm_draft.py`).

The tests check the same offsets through the API (`tests/test_integration_ner.py`); this reads
what Label Studio's labelling UI actually highlights. Needs Playwright and a Chromium; neither
is a labelloop dependency (see `browser.py`).

Usage: .venv/bin/python docs/screenshot_ner.py [--chromium /usr/bin/chromium]
"""
from __future__ import annotations

from pathlib import Path

OUT = Path(__file__).resolve().parent / "images" / "ner-prelabel.png"
TEXT = "🎉🎉 Barack Obama 😀 flew to London 🇬🇧 to meet Google 🚀 staff, then Taylor Swift played Paris 🗼"


def main() -> None:
    from browser import chromium_path, label_studio_and_backend, labelling_page

    chromium = chromium_path(__doc__)
    from labelloop.scripts import projects
    from labelloop.scripts.client import as_dict

    with label_studio_and_backend() as (ls, creds, backend, client, _):
        project = projects.create_project(client, "Named entities (prelabelled by labelloop)", "ner")
        projects.import_tasks(client, project.id, [{"text": TEXT}])
        projects.connect_backend(client, project.id, backend.url)
        projects.retrieve_predictions(client, project.id)
        [task] = list(projects.iter_tasks(client, project.id))
        expected = sorted(r["value"]["text"] for r in as_dict(task.predictions[0])["result"])
        with labelling_page(chromium, ls, creds, project.id, task.id, ready=".htx-highlight", height=600,
                            settle_ms=3000, debug=OUT.with_name("debug.png")) as page:
            # Label Studio draws a region as one or more highlight spans inside the text
            drawn = page.eval_on_selector_all(
                ".htx-highlight", "els => els.map(e => e.textContent)")
            OUT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(OUT))
    shown = sorted(t for t in drawn if t)
    print(f"predicted spans: {expected}\nhighlighted in the UI: {shown}")
    if shown != expected:
        raise SystemExit("the UI highlights other characters than the prelabels name")
    print(f"every span is drawn over exactly its characters; wrote {OUT}")


if __name__ == "__main__":
    main()
