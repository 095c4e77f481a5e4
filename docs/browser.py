"""What the screenshot scripts here share: their command line, a fresh Label Studio with a
labelloop backend, and a logged-in headless Chromium (on one task's labelling view).

Needs Playwright (`pip install playwright`) and a Chromium (`apt-get install chromium`); neither
is a labelloop dependency.
"""
from __future__ import annotations

import argparse
import os
import tempfile
from contextlib import ExitStack, contextmanager
from pathlib import Path


def chromium_path(description: str) -> str:
    """The script's ``--chromium``; models load offline, as in the tests."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return parser.parse_args().chromium


@contextmanager
def label_studio_and_backend(*, backend_env: dict | None = None, with_backend: bool = True):
    """Yield ``(ls, creds, backend, client, tmp)``: a fresh Label Studio, a labelloop backend that
    reaches it (with ``backend_env`` set too; None without ``with_backend``) and an SDK client;
    both stop on exit."""
    from labelloop.scripts.client import connect
    from labelloop.scripts.services import backend_service, label_studio_service

    with tempfile.TemporaryDirectory() as tmp, ExitStack() as running:
        tmp = Path(tmp)
        ls, creds = label_studio_service(tmp / "ls")
        running.enter_context(ls)
        backend = None
        if with_backend:
            backend = running.enter_context(backend_service(tmp / "models", extra_env={
                "LABEL_STUDIO_URL": ls.url, "LABEL_STUDIO_API_KEY": creds.token, **(backend_env or {})}))
        yield ls, creds, backend, connect(ls.url, creds.token), tmp


@contextmanager
def logged_in(chromium: str, ls, creds, *, width: int = 1280, height: int = 800):
    """Yield ``(browser, page)``: a headless Chromium whose page is logged in to Label Studio."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(f"{ls.url}/user/login/")
            page.fill("input[name=email]", creds.username)
            page.fill("input[name=password]", creds.password)
            page.click("button[type=submit]")
            page.wait_for_load_state("networkidle")
            yield browser, page
        finally:
            browser.close()


@contextmanager
def labelling_page(chromium: str, ls, creds, project_id: int, task_id: int, *, ready: str, height: int,
                   settle_ms: int, debug: Path):
    """Yield the Playwright page of task ``task_id`` once ``ready`` (a selector) shows and
    ``settle_ms`` more have passed; what the page showed instead goes to ``debug`` on a timeout."""
    with logged_in(chromium, ls, creds, height=height) as (_, page):
        page.goto(f"{ls.url}/projects/{project_id}/data?task={task_id}")
        try:
            page.wait_for_selector(ready, timeout=60_000)
        except Exception:
            page.screenshot(path=str(debug))
            raise
        page.wait_for_timeout(settle_ms)
        yield page
