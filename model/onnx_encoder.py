"""The sentence encoder on ONNX Runtime, optionally with int8 weights: same tokens, pooling and
normalisation as `labelloop.model.embeddings.TransformerEncoder`, faster on CPU.

``LABELLOOP_ENCODER_RUNTIME`` (`labelloop.model.embeddings.runtime_from_env`) picks it: ``onnx``
(fp32 graph) or ``onnx-int8`` (MatMul weights quantised per channel, dynamic activations). The graph is exported
once per encoder with PyTorch's dynamo exporter and kept next to the embedding cache
(``<cache>/onnx/<identity>/``); `bench/scale.py` measures speed and parity against torch.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .embeddings import token_batches

logger = logging.getLogger(__name__)

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def export_onnx(model, tokenizer, folder: Path, *, int8: bool) -> Path:
    """Write ``model.onnx`` (and ``model-int8.onnx``) into ``folder`` unless already there; returns
    the graph to run. Written under temporary names and renamed, so readers never see a part."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    fp32 = folder / "model.onnx"
    if not fp32.exists():
        class Wrapped(torch.nn.Module):  # keyword inputs: BertModel's positional order has use_cache
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, input_ids, attention_mask, token_type_ids):
                return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids).last_hidden_state

        example = tokenizer(["a short text", "a somewhat longer text with more words"], padding=True,
                            return_tensors="pt")
        dims = {name: {0: torch.export.Dim("batch"), 1: torch.export.Dim("seq", max=512)} for name in _INPUTS}
        tmp = folder / f".model.{os.getpid()}.onnx"
        # the dynamo exporter: the older tracer bakes the example's padding into the mask code
        torch.onnx.export(Wrapped(model).eval(), tuple(example[n] for n in _INPUTS), str(tmp), input_names=list(_INPUTS),
                          output_names=["last_hidden_state"], dynamic_shapes=dims, dynamo=True, external_data=False)
        os.replace(tmp, fp32)
    if not int8:
        return fp32
    quantised = folder / "model-int8.onnx"
    if not quantised.exists():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        tmp = folder / f".model-int8.{os.getpid()}.onnx"
        # per-channel, MatMul only: whole-graph per-tensor int8 lost too much (cosine 0.96 to torch)
        quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"])
        os.replace(tmp, quantised)
    return quantised


class OnnxEncoder:
    """`TransformerEncoder`'s interface (``encode``, ``dim``, ``tokenizer``, ``max_length``) on ONNX Runtime."""

    def __init__(self, model_name: str, *, int8: bool = True, max_length: int = 256, batch_size: int = 64,
                 folder: Path | None = None):
        """``folder``: where the exported graphs live (default: under the embedding cache)."""
        import onnxruntime as ort
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        from .embedding_cache import cache_root, encoder_identity
        from .embeddings import quiet_loading, resolve_model_path, short_model_name

        self.model_name = model_name
        self.max_length = max_length
        self.batch_size = batch_size
        self.runtime = "onnx-int8" if int8 else "onnx"
        path = resolve_model_path(model_name)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        if folder is None:
            root = cache_root() or Path.home() / ".cache" / "labelloop"
            folder = root / "onnx" / encoder_identity(short_model_name(model_name), path, max_length=max_length, dim=0)
        self.dim = int(AutoConfig.from_pretrained(path).hidden_size)
        graph = folder / ("model-int8.onnx" if int8 else "model.onnx")
        if not graph.exists():
            logger.info("exporting %s to ONNX%s (once): %s", model_name, " int8" if int8 else "", folder)
            with quiet_loading(path):
                weights = AutoModel.from_pretrained(path)
            graph = export_onnx(weights, self.tokenizer, folder, int8=int8)
        options = ort.SessionOptions()
        options.intra_op_num_threads = os.cpu_count() or 1
        self.session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])

    def token_states(self, batch) -> np.ndarray:
        """The last hidden state ``(batch, pieces, dim)`` for a tokenizer output (numpy arrays)."""
        ids = np.asarray(batch["input_ids"], dtype=np.int64)
        feeds = {name: np.asarray(batch[name], dtype=np.int64) if name in batch else np.zeros_like(ids)
                 for name in _INPUTS}
        return self.session.run(None, feeds)[0]

    def encode(self, texts: Sequence[str], *, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Embed ``texts``; a float32 array of shape ``(len(texts), dim)``, rows of unit length."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for idx, batch in token_batches(self.tokenizer, texts, batch_size=self.batch_size, max_length=self.max_length):
            hidden = self.token_states(batch)
            mask = np.asarray(batch["attention_mask"])[..., None].astype(np.float32)
            pooled = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)
            out[idx] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            if progress is not None:
                progress(len(idx))
        return out
