"""Versioned model artefacts per project, written atomically.

Layout under the model directory::

    <root>/<project>/versions/v1/   head.joblib, meta.json
    <root>/<project>/versions/v2/
    <root>/<project>/CURRENT        the version that serves, e.g. "v2"

A version directory is written under a temporary name and renamed into place, then CURRENT is
replaced atomically. A crash at any point leaves the previous version serving.

Several processes (gunicorn workers, backend replicas, `labelloop worker`) may share one model
directory: numbering a version and moving CURRENT happen under a per-project file lock, so each
save gets its own number and CURRENT only ever moves forward.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from filelock import FileLock

from .errors import ModelNotFoundError

_VERSION_RE = re.compile(r"^v(\d+)$")
# a version being written: ".v0.<random>" until it is numbered (see ModelStore.save)
_PARTIAL_RE = re.compile(r"^\.v\d+\.")
#: what every model version labelloop reports to Label Studio starts with
VERSION_PREFIX = "labelloop-"


def safe_name(name: str) -> str:
    """A file-system-safe form of a project key such as ``"12.1732550000"``."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", str(name)).strip(".")
    if not cleaned:
        raise ValueError(f"unusable project key: {name!r}")
    return cleaned


def project_key(project_id: int, created_at) -> str:
    """The key Label Studio uses for a project in /setup and /predict: ``"<id>.<created unix time>"``."""
    return f"{project_id}.{int(created_at.timestamp())}"


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new content, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ModelStore:
    """Stores model versions (anything with ``save(directory)``) for each project under ``root``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def project_dir(self, project: str) -> Path:
        """Where everything of ``project`` lives (versions, CURRENT, snapshots, settings)."""
        return self.root / safe_name(project)

    def versions(self, project: str) -> list[str]:
        """Complete versions of ``project``, oldest first."""
        vdir = self.project_dir(project) / "versions"
        if not vdir.is_dir():
            return []
        found = [(int(m.group(1)), p.name) for p in vdir.iterdir()
                 if (m := _VERSION_RE.match(p.name)) and (p / "meta.json").exists()]
        return [name for _, name in sorted(found)]

    def current_version(self, project: str) -> str | None:
        """The serving version of ``project``, or None before the first training."""
        try:
            version = (self.project_dir(project) / "CURRENT").read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return version or None

    def _lock(self, project: str) -> FileLock:
        """The project's store lock: an OS file lock, released even when its holder is killed."""
        pdir = self.project_dir(project)
        pdir.mkdir(parents=True, exist_ok=True)
        return FileLock(pdir / ".store.lock", timeout=60)

    def save(self, project: str, model, *, activate: bool = True,
             meta: dict | None = None) -> str:
        """Write a new version of ``project`` and (by default) make it current; returns its name.

        ``meta`` is merged into the version's meta.json (label counts, timestamps...). The model is
        written outside the lock; only numbering, the rename and CURRENT are serialised.
        """
        vdir = self.project_dir(project) / "versions"
        vdir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=vdir, prefix=".v0."))
        try:
            model.save(tmp)
            if meta:
                merged = {**json.loads((tmp / "meta.json").read_text(encoding="utf-8")), **meta}
                (tmp / "meta.json").write_text(json.dumps(merged, indent=2), encoding="utf-8")
            with self._lock(project):
                existing = [int(m.group(1)) for p in vdir.iterdir() if (m := _VERSION_RE.match(p.name))]
                version = f"v{max(existing, default=0) + 1}"
                os.rename(tmp, vdir / version)  # fails rather than replace an existing version
                if activate:
                    self._activate_locked(project, version)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return version

    def activate(self, project: str, version: str, *, allow_backwards: bool = False) -> bool:
        """Make ``version`` serve. An older version than the current one is refused (returns False)
        unless ``allow_backwards``: two trainers finishing out of order must not roll back."""
        with self._lock(project):
            return self._activate_locked(project, version, allow_backwards=allow_backwards)

    def _activate_locked(self, project: str, version: str, *, allow_backwards: bool = False) -> bool:
        if version not in self.versions(project):
            raise ModelNotFoundError(f"project {project} has no complete version {version!r}")
        current = self.current_version(project)
        if not allow_backwards and current and _VERSION_RE.match(current) and \
                int(current[1:]) > int(version[1:]):
            return False
        atomic_write_text(self.project_dir(project) / "CURRENT", version + "\n")
        return True

    def discard_partial(self, project: str) -> list[str]:
        """Remove versions, and temporary copies of CURRENT, that a killed trainer left half-written;
        returns their names.

        Call it only while holding the project's training lock (`labelloop.backend.locks`):
        then no other process is writing a version of ``project``.
        """
        vdir = self.project_dir(project) / "versions"
        if not vdir.is_dir():
            return []
        removed = []
        for path in vdir.iterdir():
            if _PARTIAL_RE.match(path.name):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path.name)
        with self._lock(project):  # CURRENT is only written under this lock: a temp copy seen here is a dead writer's
            for path in self.project_dir(project).glob(".CURRENT.*.tmp"):
                path.unlink(missing_ok=True)
                removed.append(path.name)
        return removed

    def read_meta(self, project: str, version: str) -> dict:
        """The ``meta.json`` of a stored version (classes, multi_label, model_name)."""
        path = self.project_dir(project) / "versions" / version / "meta.json"
        return json.loads(path.read_text(encoding="utf-8"))

    def load(self, project: str, version: str, *, loader: Callable[[Path, dict], object]):
        """The stored model, as ``loader(version directory, meta)`` reads it (the project kind's)."""
        path = self.project_dir(project) / "versions" / version
        if not (path / "meta.json").exists():
            raise ModelNotFoundError(f"project {project} has no stored version {version!r} at {path}")
        return loader(path, self.read_meta(project, version))

    def read_settings(self, project: str) -> dict:
        """Per-project settings (e.g. the query strategy), ``{}`` if none were written."""
        try:
            return json.loads((self.project_dir(project) / "settings.json").read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return {}

    def write_settings(self, project: str, settings: dict) -> None:
        atomic_write_text(self.project_dir(project) / "settings.json", json.dumps(settings, indent=2))
