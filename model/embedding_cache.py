"""Embeddings on disk, shared by every process that embeds with the same encoder: the backend's
workers, `labelloop audit`, `labelloop export`. A text is embedded once per machine (or shared
volume), not once per command.

One SQLite file per encoder under ``LABELLOOP_EMBEDDING_CACHE`` (default
``$XDG_CACHE_HOME/labelloop/embeddings``, i.e. ``~/.cache/labelloop/embeddings``; ``off``
disables it). Rows are keyed by the text's 16-byte BLAKE2 digest; the file's name carries the
encoder's identity (name, a digest of the weights' bytes, token budget, runtime), so other weights
never read these rows, and the same weights reinstalled elsewhere (a new venv, a rebuilt image)
still do. SQLite's write-ahead log lets many processes read and write at once.
"""
from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

logger = logging.getLogger(__name__)

_CHUNK = 500  # keys per SELECT: under SQLite's limit of bound parameters


def cache_root() -> Path | None:
    """Where embedding caches live, or None when ``LABELLOOP_EMBEDDING_CACHE=off``."""
    value = os.environ.get("LABELLOOP_EMBEDDING_CACHE", "").strip()
    if value.lower() in {"off", "0", "false", "none"}:
        return None
    if value:
        return Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "labelloop" / "embeddings"


_digests: dict[tuple, str] = {}


def weights_digest(path: Path) -> str:
    """BLAKE2 of a weights file's bytes, once per process and file version (path, size, mtime)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _digests:
        digest = hashlib.blake2b(digest_size=16)
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
        _digests[key] = digest.hexdigest()
    return _digests[key]


def encoder_identity(name: str, path: str, *, max_length: int, dim: int, runtime: str = "torch") -> str:
    """A file-name-safe id that changes when the encoder's weights, settings or runtime change
    (int8 rows must never mix with fp32 ones). Local weights count by content, not by where they
    are installed or when; an encoder without local weight files counts by its path or name."""
    parts = [name, str(max_length), str(dim), runtime]
    local = Path(path)
    weights = (sorted(local.glob("*.safetensors")) + sorted(local.glob("pytorch_model*.bin"))) if local.is_dir() else []
    if weights:
        parts += [f"{w.name}:{weights_digest(w)}" for w in weights]
    else:
        parts.append(str(path))
    digest = hashlib.blake2b("\x1f".join(parts).encode("utf-8"), digest_size=8).hexdigest()
    readable = "".join(c if c.isalnum() or c in "-_." else "_" for c in name.rstrip("/").split("/")[-1])[:60]
    return f"{readable}-{digest}"


class DiskEmbeddingCache:
    """Rows of one encoder, ``dim`` float32 values each, keyed by text digest. Thread-safe."""

    def __init__(self, path: str | os.PathLike, *, dim: int):
        self.path = Path(path)
        self.dim = dim
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS rows (key BLOB PRIMARY KEY, vec BLOB NOT NULL) WITHOUT ROWID")

    def get_many(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """The stored rows among ``keys``."""
        found: dict[bytes, np.ndarray] = {}
        with self._lock:
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start:start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                for key, blob in self._db.execute(f"SELECT key, vec FROM rows WHERE key IN ({marks})", chunk):
                    if len(blob) == 4 * self.dim:
                        found[bytes(key)] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put_many(self, items: Iterable[tuple[bytes, np.ndarray]]) -> None:
        rows = [(key, np.ascontiguousarray(row, dtype=np.float32).tobytes()) for key, row in items]
        if not rows:
            return
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany("INSERT OR IGNORE INTO rows (key, vec) VALUES (?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM rows").fetchone()[0]


def open_cache(identity: str, *, dim: int) -> DiskEmbeddingCache | None:
    """The disk cache for an encoder, or None when disabled or unusable (then nothing is cached)."""
    root = cache_root()
    if root is None:
        return None
    try:
        return DiskEmbeddingCache(root / f"{identity}.sqlite", dim=dim)
    except (OSError, sqlite3.Error) as exc:
        logger.warning("embedding cache at %s is unusable (%s); embedding without it", root, exc)
        return None
