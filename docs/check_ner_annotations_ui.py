"""Annotate NER spans the way a person does, in Label Studio's labelling UI, over text with emoji,
CJK, a decomposed accent and CRLF, and check that `labelloop export` writes exactly those spans
(a maintainer's tool, like `screenshot_ner.py`; no screenshot).

For each task it clicks a label, selects a word in the text, and submits. Then it checks that
Label Studio stored offsets that slice the task's text to the span's text (code points), and
that the openai-chat export's JSON spans are the annotated ones, text and offsets alike. The
tests check offsets in both units through the API (`tests/test_store_and_spec.py`); this checks
annotations that only the UI made. Needs Playwright and a Chromium (see `browser.py`).

Usage: .venv/bin/python docs/check_ner_annotations_ui.py [--chromium /usr/bin/chromium]
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

# selects ``word`` in the labelling UI's text and lets Label Studio see the selection end
SELECT = """(word) => {
  const line = document.querySelector('.lsf-richtext__line');
  const walker = document.createTreeWalker(line, NodeFilter.SHOW_TEXT);
  let node;
  while ((node = walker.nextNode())) {
    const i = node.data.indexOf(word);
    if (i >= 0) {
      const range = document.createRange();
      range.setStart(node, i);
      range.setEnd(node, i + word.length);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      node.parentElement.dispatchEvent(new MouseEvent('mouseup', {bubbles: true}));
      return true;
    }
  }
  return false;
}"""
EMOJI = ["🎉", "😀", "🇬🇧", "👩‍👩‍👧", "🚀", "é", "中文", "🗼", "❤️", "𝔘"]
VERBS = ["flew to", "drove through", "spoke in", "wrote about", "dreamed of", "tweeted from", "ran across",
         "sang near", "argued over", "painted", "left", "returned to", "invested in", "photographed"]
# 14 tasks: the export refuses a train split of fewer than 10
TEXTS = [f"{EMOJI[i % 10]}{EMOJI[(i + 3) % 10]} Barack Obama {EMOJI[(i + 1) % 10]} {VERBS[i]} London "
         f"{EMOJI[(i + 2) % 10]} then met Cafe\u0301 Google number {i * 37}\r\nline two {i}" for i in range(14)]
MARKS = (("Barack Obama", "person"), ("London", "location"), ("Google", "company"))


def main() -> None:
    from browser import chromium_path, logged_in

    chromium = chromium_path(__doc__)
    from labelloop.scripts import projects
    from labelloop.scripts.client import as_dict, connect
    from labelloop.model.export.manifest import ExportOptions
    from labelloop.scripts.export import run_export
    from labelloop.scripts.services import label_studio_service

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ls, creds = label_studio_service(tmp / "ls")
        with ls:
            client = connect(ls.url, creds.token)
            project = projects.create_project(client, "NER annotated in the UI", "ner")
            projects.import_tasks(client, project.id, [{"text": text} for text in TEXTS])
            with logged_in(chromium, ls, creds) as (_, page):
                for task in sorted(projects.iter_tasks(client, project.id), key=lambda t: t.id):
                    page.goto(f"{ls.url}/projects/{project.id}/data?task={task.id}")
                    page.wait_for_selector(".lsf-richtext__line", timeout=60_000)
                    page.wait_for_timeout(1500)
                    for word, label in MARKS:
                        page.locator(".lsf-label", has_text=label).first.click()
                        if not page.evaluate(SELECT, word):
                            raise SystemExit(f"no {word!r} in the labelling UI's text")
                        page.wait_for_timeout(500)
                    page.get_by_role("button", name="Submit").click()
                    page.wait_for_timeout(2500)
            annotated = {}
            for task in projects.iter_tasks(client, project.id):
                [annotation] = task.annotations
                spans = sorted((r["value"]["start"], r["value"]["end"], r["value"]["text"], r["value"]["labels"][0])
                               for r in as_dict(annotation)["result"])
                if len(spans) != len(MARKS):
                    raise SystemExit(f"task {task.id}: the UI made {len(spans)} spans, not {len(MARKS)}")
                for start, end, text, _ in spans:
                    if task.data["text"][start:end] != text:
                        raise SystemExit(f"task {task.id}: Label Studio stored {start}-{end} for {text!r}")
                annotated[task.data["text"]] = spans
            out = tmp / "export"
            run_export(client, project.id, out, ExportOptions(fmt="openai-chat"), data_dir=tmp / "data")
        exported = {}
        for split in ("train", "validation", "test"):
            for line in (out / f"{split}.jsonl").read_text(encoding="utf-8").splitlines():
                messages = json.loads(line)["messages"]
                text = messages[0]["content"].split("\n\n", 1)[1]  # after the instruction
                exported[text] = sorted((s["start"], s["end"], s["text"], s["label"])
                                        for s in json.loads(messages[1]["content"]))
    print(f"{len(annotated)} tasks, {sum(map(len, annotated.values()))} spans made in the UI; "
          f"{len(exported)} examples exported")
    if exported != annotated:
        raise SystemExit("the export differs from what was annotated in the UI")
    print("every exported text and span is exactly what was annotated in the UI")


if __name__ == "__main__":
    main()
