"""Take the README's screenshot of an LLM draft in Label Studio's text area (a maintainer's tool).

It runs the real thing: Label Studio, llama.cpp's server with SmolLM2, the backend, an SFT
project drafted by `labelloop prelabel`, then opens one task in a headless Chromium. Needs
Playwright (`pip install playwright`) and a Chromium (`apt-get install chromium`); neither is a
labelloop dependency.

Usage: .venv/bin/python docs/screenshot_llm_draft.py [--chromium /usr/bin/chromium]
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parent / "images" / "llm-draft.png"
PROMPTS = ["How do I politely decline a meeting invitation?", "What is a good name for a black cat?",
           "Explain what a webhook is in one paragraph."]


def main() -> None:
    from browser import chromium_path, labelling_page

    chromium = chromium_path(__doc__)

    from labelloop.backend.config import Settings
    from labelloop.scripts import projects
    from labelloop.scripts.client import connect
    from labelloop.scripts.prelabel import prelabel_project
    from labelloop.scripts.services import LLM_MODEL_ALIAS, backend_service, label_studio_service, llm_service

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ls, creds = label_studio_service(tmp / "ls")
        llm = llm_service(tmp / "llama.log")
        env = {"LABELLOOP_LLM_BASE_URL": f"{llm.url}/v1", "LABELLOOP_LLM_MODEL": LLM_MODEL_ALIAS,
               "LABELLOOP_LLM_MAX_TOKENS": "120"}
        backend = backend_service(tmp / "models", extra_env={"LABEL_STUDIO_URL": ls.url,
                                                             "LABEL_STUDIO_API_KEY": creds.token, **env})
        with ls, llm, backend:
            client = connect(ls.url, creds.token)
            project = projects.create_project(client, "Support answers (drafted by SmolLM2)", "llm_fine_tuning")
            projects.import_tasks(client, project.id, ({"prompt": p} for p in PROMPTS))
            projects.connect_backend(client, project.id, backend.url)
            os.environ.update(env)
            prelabel_project(client, project.id, settings=Settings.from_env(model_dir=str(tmp / "models")))
            task_id = min(t.id for t in projects.iter_tasks(client, project.id))
            # ready: the labelling UI has loaded, and with it the annotation prefilled from the draft
            with labelling_page(chromium, ls, creds, project.id, task_id,
                                ready="text=Write the response the model should give", height=760, settle_ms=5000,
                                debug=OUT.with_name("debug.png")) as page:
                OUT.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(OUT))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
