"""Drafts on disk, one JSON line each, so that no prompt is drafted twice for a model version.

One file per model version (the version names the model and the prompt template's digest), keyed
by the rendered prompt's digest. `labelloop prelabel` and every backend worker append to the same
file under a `filelock` lock; a reader picks up lines appended by others when the file grows. An
interrupted run loses at most the drafts in flight: the next run finds the rest.
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from filelock import FileLock

from .llm import Draft


class DraftStore:
    """``get``/``put`` drafts of one model version, stored in ``path`` (a ``.jsonl`` file)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = FileLock(str(self.path) + ".lock")
        self._thread_lock = threading.Lock()
        self._drafts: dict[str, Draft] = {}
        self._read_bytes = 0

    def _refresh(self) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size <= self._read_bytes:
            return
        with open(self.path, "rb") as f:
            f.seek(self._read_bytes)
            chunk = f.read(size - self._read_bytes)
        complete = chunk[:chunk.rfind(b"\n") + 1]  # a line still being written is read next time
        for line in complete.splitlines():
            try:
                row = json.loads(line)
                self._drafts[row["key"]] = Draft(row["text"], float(row["score"]), row.get("method", "none"),
                                                 row.get("finish_reason"))
            except (ValueError, KeyError, TypeError):
                continue  # a torn line from a crash: that prompt is drafted again
        self._read_bytes += len(complete)

    def get(self, key: str) -> Draft | None:
        with self._thread_lock:
            self._refresh()
            return self._drafts.get(key)

    def put(self, key: str, draft: Draft, *, task_id=None) -> None:
        """Append one successful draft (failed drafts are not kept: they are tried again)."""
        if draft.error is not None or draft.text is None:
            return
        row = {"key": key, "task": task_id, "text": draft.text, "score": draft.score, "method": draft.method,
               "finish_reason": draft.finish_reason}
        line = (json.dumps(row, ensure_ascii=True) + "\n").encode("ascii")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._thread_lock, self._lock:
            with open(self.path, "ab") as f:
                if f.tell() and not self._ends_with_newline():
                    f.write(b"\n")  # never glue a line onto a torn one
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
            self._drafts[key] = draft

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"

    def __len__(self) -> int:
        with self._thread_lock:
            self._refresh()
            return len(self._drafts)
