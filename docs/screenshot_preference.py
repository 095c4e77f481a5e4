"""Check a preference pair in Label Studio's labelling UI, and take the README's screenshot (a
maintainer's tool).

It runs the real thing: Label Studio, llama.cpp's server with SmolLM2, the backend, a preference
project judged by `labelloop prelabel`. In a headless Chromium it opens each judged pair and
checks that the judge's pick is the choice Label Studio shows selected; on the first pair it
selects the other answer and submits, and checks that Label Studio stored the annotator's pick.
Needs Playwright (`pip install playwright`) and a Chromium (`apt-get install chromium`); neither
is a labelloop dependency.

Usage: .venv/bin/python docs/screenshot_preference.py [--chromium /usr/bin/chromium]
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parent / "images" / "preference-judge.png"
PAIRS = [("How do I politely decline a meeting invitation?",
          "Thank the organiser, say you cannot attend, and offer to read the notes or suggest another time.",
          "Just don't go."),
         ("What is a webhook?", "An HTTP request one service sends another when an event happens.",
          "A kind of fishing hook used on the web."),
         ("Name a prime number.", "Nine.", "Seven.")]


def main() -> None:
    from browser import chromium_path, logged_in

    chromium = chromium_path(__doc__)

    from labelloop.backend.config import Settings
    from labelloop.scripts import projects
    from labelloop.scripts.client import as_dict, connect
    from labelloop.scripts.prelabel import prelabel_project
    from labelloop.scripts.services import LLM_MODEL_ALIAS, backend_service, label_studio_service, llm_service

    shown = {"answer1": "Answer 1", "answer2": "Answer 2"}  # alias -> the Choice's value, as the template has it
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ls, creds = label_studio_service(tmp / "ls")
        llm = llm_service(tmp / "llama.log")
        env = {"LABELLOOP_LLM_BASE_URL": f"{llm.url}/v1", "LABELLOOP_LLM_MODEL": LLM_MODEL_ALIAS}
        backend = backend_service(tmp / "models", extra_env={"LABEL_STUDIO_URL": ls.url,
                                                             "LABEL_STUDIO_API_KEY": creds.token, **env})
        with ls, llm, backend:
            client = connect(ls.url, creds.token)
            project = projects.create_project(client, "Which answer is better? (judged by SmolLM2)", "llm_preference")
            projects.import_tasks(client, project.id, ({"prompt": p, "answer1": a, "answer2": b} for p, a, b in PAIRS))
            projects.connect_backend(client, project.id, backend.url)
            os.environ.update(env)
            prelabel_project(client, project.id, settings=Settings.from_env(model_dir=str(tmp / "models")))
            judged = {}
            for task in sorted(projects.iter_tasks(client, project.id), key=lambda t: t.id):
                (prediction,) = [as_dict(p) for p in task.predictions]
                if prediction["result"]:  # a tie preselects nothing
                    judged[task.id] = prediction["result"][0]["value"]["choices"][0]
            if not judged:
                raise SystemExit("the judge tied on every pair: nothing to check")
            with logged_in(chromium, ls, creds, height=820) as (_, page):
                for n, (task_id, pick) in enumerate(judged.items()):
                    page.goto(f"{ls.url}/projects/{project.id}/data?task={task_id}")
                    page.wait_for_selector("text=Which answer is better?", timeout=60_000)
                    page.wait_for_timeout(3000)
                    checked = page.locator("label:has(input:checked)")
                    # a choice's label ends with its hotkey ("Answer 2[2]"); other checked toggles have no text
                    selected = [re.sub(r"\[\d+\]$", "", text.strip()) for text in checked.all_inner_texts()
                                if text.strip()]
                    if selected != [shown[pick]]:
                        page.screenshot(path=str(OUT.with_name("debug.png")))
                        raise SystemExit(f"task {task_id}: the judge picked {pick!r}; the UI shows {selected}")
                    if n == 0:
                        OUT.parent.mkdir(parents=True, exist_ok=True)
                        page.screenshot(path=str(OUT))
                        other = next(a for a in shown if a != pick)
                        page.locator("label", has_text=shown[other]).first.click()
                        page.wait_for_timeout(500)
                        page.get_by_role("button", name="Submit").click()
                        page.wait_for_timeout(2500)
                        (annotation,) = [as_dict(a) for a in client.tasks.get(id=task_id).annotations]
                        stored = annotation["result"][0]["value"]["choices"]
                        if stored != [other]:
                            raise SystemExit(f"task {task_id}: the annotator picked {other!r}; Label Studio "
                                             f"stored {stored}")
    print(f"{len(judged)} judged pairs show the judge's pick selected; the annotator's other pick was stored "
          f"as its alias; wrote {OUT}")


if __name__ == "__main__":
    main()
