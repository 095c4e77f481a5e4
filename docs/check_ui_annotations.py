"""Annotate the way a person does, in Label Studio's labelling UI, and check that `labelloop
export` writes exactly what was annotated (a maintainer's tool, like `screenshot_ner.py`).

- NER: for each of 14 texts with emoji, flags, CJK, a decomposed accent and CRLF, click a label
  and select a word, three times, and submit. Label Studio must store offsets that slice the
  task's text to the span's text (code points), and the openai-chat export's JSON spans must be
  the annotated ones, text and offsets alike. The tests check offsets in both units through the
  API (`tests/test_store_and_spec.py`); this checks annotations that only the UI made.
- LLM responses: for each of 14 prompts, type a multi-line answer (Enter between lines; in Label
  Studio 1.23 Shift+Enter submits the box) with leading, trailing and tab whitespace and emoji,
  and submit. The openai-chat export's assistant turns must be those answers.

Needs Playwright and a Chromium (see `browser.py`).

Usage: .venv/bin/python docs/check_ui_annotations.py [--chromium /usr/bin/chromium]
"""
from __future__ import annotations

import json
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
# typed line by line, Enter between lines
ANSWERS = [[f"  Answer {i}, indented, with trailing spaces   ", "", f"café — naïve {EMOJI[i % 10]} 中文",
            f"\tstep {i * 7}", "last line"] for i in range(14)]


def exported_turns(out: Path) -> list[list[dict]]:
    """The messages of every example in an openai-chat export folder."""
    return [json.loads(line)["messages"] for split in ("train", "validation", "test")
            for line in (out / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]


def check_ner(client, ls, creds, chromium: str, tmp: Path) -> None:
    from browser import logged_in

    from labelloop.model.export.manifest import ExportOptions
    from labelloop.scripts import projects
    from labelloop.scripts.client import as_dict
    from labelloop.scripts.export import run_export

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
    run_export(client, project.id, tmp / "ner", ExportOptions(fmt="openai-chat"), data_dir=tmp / "data")
    exported = {user["content"].split("\n\n", 1)[1]:  # the text follows the instruction
                sorted((s["start"], s["end"], s["text"], s["label"]) for s in json.loads(answer["content"]))
                for user, answer in exported_turns(tmp / "ner")}
    print(f"NER: {sum(map(len, annotated.values()))} spans marked in the UI over {len(annotated)} texts; "
          f"{len(exported)} examples exported")
    if exported != annotated:
        raise SystemExit("the NER export differs from what was annotated in the UI")


def check_responses(client, ls, creds, chromium: str, tmp: Path) -> None:
    from browser import logged_in

    from labelloop.model.export.manifest import ExportOptions
    from labelloop.scripts import projects
    from labelloop.label_config import load
    from labelloop.label_config.regions import textarea_text
    from labelloop.label_config.spec import parse_label_config
    from labelloop.scripts.client import as_dict
    from labelloop.scripts.export import run_export

    project = projects.create_project(client, "LLM answers typed in the UI", "llm_fine_tuning")
    spec = parse_label_config(load("llm_fine_tuning"))
    projects.import_tasks(client, project.id, [{"prompt": f"Question {i}: {VERBS[i]} where?"} for i in range(14)])
    typed = {}
    with logged_in(chromium, ls, creds) as (_, page):
        for task, lines in zip(sorted(projects.iter_tasks(client, project.id), key=lambda t: t.id), ANSWERS):
            page.goto(f"{ls.url}/projects/{project.id}/data?task={task.id}")
            box = page.locator("textarea[name=response]")
            box.wait_for(timeout=60_000)
            box.click()
            for n, line in enumerate(lines):
                page.keyboard.insert_text(line)  # a typed Tab would move the focus
                if n < len(lines) - 1:
                    page.keyboard.press("Enter")
            page.get_by_role("button", name="Submit").click()
            page.wait_for_timeout(2500)
            typed[task.data["prompt"]] = "\n".join(lines)
    stored = {task.data["prompt"]: textarea_text(as_dict(task.annotations[0])["result"], spec)
              for task in projects.iter_tasks(client, project.id)}
    run_export(client, project.id, tmp / "llm", ExportOptions(fmt="openai-chat"), data_dir=tmp / "data")
    exported = {user["content"]: answer["content"] for user, answer in exported_turns(tmp / "llm")}
    for prompt in typed:
        if stored[prompt] != typed[prompt]:
            print(f"  Label Studio stored {stored[prompt]!r} for typed {typed[prompt]!r}")
    print(f"LLM: {len(typed)} multi-line answers typed in the UI; {len(exported)} examples exported")
    if exported != typed:
        for prompt in sorted(set(exported) | set(typed)):
            if exported.get(prompt) != typed.get(prompt):
                print(f"  {prompt!r}: typed {typed.get(prompt)!r}, exported {exported.get(prompt)!r}")
        raise SystemExit("the LLM export differs from what was typed in the UI")


def main() -> None:
    from browser import chromium_path, label_studio_and_backend

    chromium = chromium_path(__doc__)
    with label_studio_and_backend(with_backend=False) as (ls, creds, _, client, tmp):
        check_ner(client, ls, creds, chromium, tmp)
        check_responses(client, ls, creds, chromium, tmp)
    print("every exported text, span and answer is exactly what was annotated in the UI")


if __name__ == "__main__":
    main()
