"""A logged-in headless Chromium on one task's labelling view, for the screenshot scripts here.

Needs Playwright (`pip install playwright`) and a Chromium (`apt-get install chromium`); neither
is a labelloop dependency.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path


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
