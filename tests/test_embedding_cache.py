"""The on-disk embedding cache: a text embedded by one process is not embedded again by another."""
import multiprocessing
import os
from pathlib import Path

import numpy as np

from labelloop.model import embedding_cache
from labelloop.model.embedding_cache import DiskEmbeddingCache, encoder_identity, open_cache
from labelloop.model.embeddings import CachedEmbedder, text_key


class CountingEncoder:
    """A deterministic stand-in for the transformer: counts what it really embeds."""

    dim = 8
    max_length = 16

    def __init__(self):
        self.embedded = []

    def encode(self, texts, *, progress=None):
        self.embedded += list(texts)
        rows = np.array([[hash((t, i)) % 997 for i in range(self.dim)] for t in texts], dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True).clip(1e-9)


def test_a_second_embedder_on_the_same_disk_cache_embeds_nothing_again(tmp_path):
    texts = ["a review", "another one", "a review", "ünïcödé ✓"]
    first_encoder, second_encoder = CountingEncoder(), CountingEncoder()
    first = CachedEmbedder(first_encoder, disk=DiskEmbeddingCache(tmp_path / "e.sqlite", dim=8))
    rows = first.embed(texts)
    assert sorted(first_encoder.embedded) == sorted(set(texts))
    second = CachedEmbedder(second_encoder, disk=DiskEmbeddingCache(tmp_path / "e.sqlite", dim=8))
    again = second.embed(texts + ["new text"])
    assert second_encoder.embedded == ["new text"]
    assert np.array_equal(again[:4], rows) and second.disk_hits == 3


def _child_writes(path):
    DiskEmbeddingCache(path, dim=4).put_many([(text_key("from a child"), np.arange(4, dtype=np.float32))])


def test_rows_written_by_another_process_are_read(tmp_path):
    path = tmp_path / "shared.sqlite"
    parent = DiskEmbeddingCache(path, dim=4)
    child = multiprocessing.get_context("fork").Process(target=_child_writes, args=(path,))
    child.start()
    child.join(30)
    found = parent.get_many([text_key("from a child"), text_key("never written")])
    assert list(found) == [text_key("from a child")] and list(found[text_key("from a child")]) == [0, 1, 2, 3]


def test_the_identity_changes_with_the_weights_and_settings(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    one = encoder_identity("m", str(tmp_path), max_length=256, dim=384)
    assert one == encoder_identity("m", str(tmp_path), max_length=256, dim=384)
    assert one != encoder_identity("m", str(tmp_path), max_length=128, dim=384)
    (tmp_path / "model.safetensors").write_bytes(b"other weights")
    assert one != encoder_identity("m", str(tmp_path), max_length=256, dim=384)


def test_the_same_weights_installed_elsewhere_share_the_cache(tmp_path):
    import os

    for folder, when in (("venv-a", 1_000_000_000), ("venv-b", 1_700_000_000)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "model.safetensors").write_bytes(b"the same weights")
        os.utime(tmp_path / folder / "model.safetensors", (when, when))
    assert encoder_identity("m", str(tmp_path / "venv-a"), max_length=256, dim=384) == \
        encoder_identity("m", str(tmp_path / "venv-b"), max_length=256, dim=384)


def test_the_cache_can_be_turned_off_or_moved(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELLOOP_EMBEDDING_CACHE", "off")
    assert open_cache("x", dim=4) is None
    monkeypatch.setenv("LABELLOOP_EMBEDDING_CACHE", str(tmp_path / "here"))
    assert open_cache("x", dim=4).path == tmp_path / "here" / "x.sqlite"
    monkeypatch.delenv("LABELLOOP_EMBEDDING_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert embedding_cache.cache_root() == tmp_path / "xdg" / "labelloop" / "embeddings"


def test_an_unusable_cache_folder_means_no_cache_not_a_crash(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("LABELLOOP_EMBEDDING_CACHE", str(blocker))
    assert open_cache("x", dim=4) is None


def test_a_forgotten_embedder_loads_again_and_opens_the_cache_named_now(tmp_path, monkeypatch):
    from labelloop.model import embeddings

    monkeypatch.setattr(embeddings, "_registry", {})  # the session's encoders stay registered
    monkeypatch.setattr(embeddings, "_disk_cache", lambda name, encoder: DiskEmbeddingCache(
        Path(os.environ["LABELLOOP_EMBEDDING_CACHE"]) / "e.sqlite", dim=encoder.dim))
    monkeypatch.setenv("LABELLOOP_EMBEDDING_CACHE", str(tmp_path / "first"))
    first = embeddings.get_embedder("counting", factory=lambda name: CountingEncoder())
    first.embed(["a review"])
    assert embeddings.get_embedder("counting") is first
    monkeypatch.setenv("LABELLOOP_EMBEDDING_CACHE", str(tmp_path / "second"))
    embeddings.forget_embedders()
    second = embeddings.get_embedder("counting", factory=lambda name: CountingEncoder())
    second.embed(["a review"])
    assert second is not first and second.encoder.embedded == ["a review"]  # an empty cache: embedded again


def test_loading_a_model_from_disk_draws_no_weights_bar_and_leaves_progress_bars_on(capfd):
    from transformers.utils import logging as hf_logging

    from labelloop.model.embeddings import TransformerEncoder

    assert hf_logging.is_progress_bar_enabled()
    TransformerEncoder("default", device="cpu")
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()  # a download from the Hub still shows its bar
