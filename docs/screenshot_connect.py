"""Take the README's screenshot of Label Studio's Connect Model dialog filled in for labelloop, and
check the README's steps in the browser (a maintainer's tool, like `screenshot_ner.py`).

It starts the backend with Basic Auth, connects it through the dialog as the README says, and
checks that Label Studio reports it connected with the extra params stored. It then opens a task
that has no prediction, with *Interactive preannotations* off, and checks that Label Studio
fetched the prelabel for it. Needs Playwright and a Chromium; neither is a labelloop dependency
(see `browser.py`).

Usage: .venv/bin/python docs/screenshot_connect.py [--chromium /usr/bin/chromium]
"""
from __future__ import annotations

from pathlib import Path

OUT = Path(__file__).resolve().parent / "images" / "connect-model.png"
USER, PASSWORD = "labelstudio", "a-long-random-password"
EXTRA = '{"strategy": "margin"}'


def main() -> None:
    from browser import chromium_path, label_studio_and_backend, logged_in

    chromium = chromium_path(__doc__)
    from labelloop.kinds.base import extra_params_dict
    from labelloop.scripts import projects
    from labelloop.scripts.client import as_dict

    with label_studio_and_backend(backend_env={"BASIC_AUTH_USER": USER, "BASIC_AUTH_PASS": PASSWORD}) as (
            ls, creds, backend, client, _):
        project = projects.create_project(client, "Movie reviews", "text_classification")
        projects.import_tasks(client, project.id, [{"text": "A warm, funny film."}, {"text": "Dull and long."}])
        with logged_in(chromium, ls, creds, width=1280, height=860) as (_, page):
            page.goto(f"{ls.url}/projects/{project.id}/settings/ml")
            page.get_by_text("Connect Model").first.click()
            page.fill("input[name=title]", "labelloop")
            page.fill("input[name=url]", backend.url)
            page.click("[data-testid=select-trigger-auth_method-NONE]")
            page.get_by_text("Basic Authentication").first.click()
            page.fill("input[name=basic_auth_user]", USER)
            page.fill("input[name=basic_auth_pass]", PASSWORD)
            page.fill("textarea[name=extra_params]", EXTRA)
            page.wait_for_timeout(500)
            OUT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(OUT))
            page.get_by_text("Validate and Save").click()
            page.get_by_text("Connected").first.wait_for(timeout=60_000)
            [ml] = client.ml.list(project=project.id)
            task = next(iter(projects.iter_tasks(client, project.id)))
            assert not task.predictions, "the task had a prediction before it was opened"
            page.goto(f"{ls.url}/projects/{project.id}/data?task={task.id}")
            page.wait_for_selector(".lsf-choices, [class*=choices]", timeout=60_000)
            page.wait_for_timeout(2000)
        opened = client.tasks.get(id=task.id)
    print(f"connected: state {ml.state}, auth {ml.auth_method}, interactive {ml.is_interactive}, "
          f"extra params {ml.extra_params!r}")
    # the dialog's text box is kept as JSON text, which labelloop reads as an object
    if ml.state != "CO" or ml.auth_method != "BASIC_AUTH" or extra_params_dict(ml.extra_params) != {"strategy": "margin"}:
        raise SystemExit("Label Studio did not keep the connection as the dialog set it")
    predictions = [as_dict(p) for p in opened.predictions or []]
    print(f"opening task {task.id} gave it {len(predictions)} prediction(s): "
          f"{[p['model_version'] for p in predictions]}")
    if not predictions:
        raise SystemExit("opening a task without a prediction did not fetch one")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
