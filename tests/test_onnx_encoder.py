"""The encoder runtimes give the fp32 torch encoder's embeddings: ONNX Runtime (a tiny BERT, exported
for real) and torch in bfloat16."""
import numpy as np
import pytest

from labelloop.model.embedding_cache import encoder_identity
from labelloop.model import embeddings
from labelloop.model.embeddings import TransformerEncoder, resolve_model_path, runtime_from_env
from labelloop.model.onnx_encoder import OnnxEncoder

TEXTS = ["a fine film", "", "ünïcödé and emoji 😀 in a much longer sentence than the others", "short"]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("default"))
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def test_the_onnx_graph_embeds_like_torch_and_int8_stays_close(tiny_bert, tmp_path):
    reference = TransformerEncoder(tiny_bert, device="cpu").encode(TEXTS)
    fp32 = OnnxEncoder(tiny_bert, int8=False, folder=tmp_path)
    assert fp32.dim == 32 and (tmp_path / "model.onnx").exists()
    assert fp32.encode([]).shape == (0, 32)
    assert np.min((fp32.encode(TEXTS) * reference).sum(1)) > 0.9999  # padding handled like torch
    int8 = OnnxEncoder(tiny_bert, int8=True, folder=tmp_path)
    assert np.mean((int8.encode(TEXTS) * reference).sum(1)) > 0.95
    batch = fp32.tokenizer([["two", "words"]], is_split_into_words=True, return_tensors="np")
    torch_states = TransformerEncoder(tiny_bert, device="cpu").token_states(batch)
    assert np.allclose(fp32.token_states(batch), torch_states, atol=1e-4)  # what the NER tagger reads


def test_the_runtime_is_checked_and_part_of_the_cache_identity(monkeypatch):
    monkeypatch.setenv("LABELLOOP_ENCODER_RUNTIME", "onnx-int8")
    assert runtime_from_env() == "onnx-int8"
    monkeypatch.setenv("LABELLOOP_ENCODER_RUNTIME", "tensorrt")
    with pytest.raises(ValueError, match="LABELLOOP_ENCODER_RUNTIME"):
        runtime_from_env()
    monkeypatch.delenv("LABELLOOP_ENCODER_RUNTIME")  # auto: bf16 only where the CPU does it natively
    monkeypatch.setattr(embeddings, "native_bf16", lambda: True)
    assert runtime_from_env() == "torch-bf16"
    monkeypatch.setattr(embeddings, "native_bf16", lambda: False)
    assert runtime_from_env() == "torch"
    ids = {encoder_identity("m", "/x", max_length=256, dim=384, runtime=r)
           for r in ("torch", "torch-bf16", "onnx", "onnx-int8")}
    assert len(ids) == 4


def test_bfloat16_weights_embed_like_fp32(tiny_bert):
    reference = TransformerEncoder(tiny_bert, device="cpu").encode(TEXTS)
    bf16 = TransformerEncoder(tiny_bert, device="cpu", bfloat16=True)
    rows = bf16.encode(TEXTS)
    assert bf16.runtime == "torch-bf16" and rows.dtype == np.float32
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)  # pooled and normalised in fp32
    assert np.min((rows * reference).sum(1)) > 0.999


def test_batches_group_texts_by_pieces_and_embed_as_texts_alone(tiny_bert):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    # by characters these interleave; by pieces the digits (one piece each) and the words part
    texts = ["1 2 3 4 5 6 7 8 9 0", "photosynthesis", "7 7 7 7 7 7 7 7 7 7", "extraordinary"]
    batches = list(embeddings.token_batches(tokenizer, texts, batch_size=2, max_length=64))
    assert [sorted(idx.tolist()) for idx, _ in batches] == [[1, 3], [0, 2]]
    for idx, arrays in batches:
        for row, i in enumerate(idx):  # each row is the text's own pieces, then padding the mask hides
            pieces = tokenizer(texts[i])["input_ids"]
            assert arrays["input_ids"][row, :len(pieces)].tolist() == pieces
            assert arrays["attention_mask"][row].sum() == len(pieces)
    assert list(embeddings.token_batches(tokenizer, [], batch_size=2, max_length=64)) == []
    encoder = TransformerEncoder(tiny_bert, device="cpu", batch_size=2)
    together = encoder.encode(TEXTS + texts)
    alone = np.vstack([encoder.encode([t]) for t in TEXTS + texts])
    assert np.allclose(together, alone, atol=1e-5)
