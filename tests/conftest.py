"""Shared fixtures: a tiny random encoder for fast tests, and real Label Studio + backend servers."""
from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# one embedding cache for this test session (backends started by the tests inherit it), never ~/.cache
if "LABELLOOP_EMBEDDING_CACHE" not in os.environ:
    import tempfile

    os.environ["LABELLOOP_EMBEDDING_CACHE"] = tempfile.mkdtemp(prefix="labelloop-embeddings-")

TINY = "tiny-random-bert"


def wait_for(condition, timeout, what):
    """``condition()``'s first true value, polled every 0.5 s; AssertionError after ``timeout`` s."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope="session")
def tiny_model() -> str:
    """Register a tiny random BERT (MiniLM's tokenizer) as encoder "tiny-random-bert".

    Its embeddings carry no meaning, but it exercises the whole code path in milliseconds.
    """
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from labelloop.model.embeddings import (CachedEmbedder, TransformerEncoder, register_embedder,
                                            resolve_model_path)

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("default"))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=512)
    encoder = TransformerEncoder(TINY, model=BertModel(config), tokenizer=tokenizer, device="cpu")
    register_embedder(TINY, CachedEmbedder(encoder))
    return TINY


@dataclass
class LabelStudioHandle:
    url: str
    token: str
    username: str
    password: str


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory):
    """A real Label Studio 1.23.2 from its own venv, on SQLite in a temp dir, stopped by PID."""
    from labelloop.scripts.services import label_studio_service

    service, creds = label_studio_service(tmp_path_factory.mktemp("label-studio"))
    service.start(timeout=300)
    try:
        yield LabelStudioHandle(service.url, creds.token, creds.username, creds.password)
    finally:
        service.stop()


@pytest.fixture(scope="session")
def ls_client(label_studio):
    from labelloop.scripts.client import connect

    return connect(label_studio.url, label_studio.token)


@pytest.fixture(scope="session")
def backend(tmp_path_factory, label_studio):
    """The real backend under gunicorn (`labelloop serve`), with the offline all-MiniLM-L6-v2.

    It reaches the test Label Studio through LABEL_STUDIO_URL/LABEL_STUDIO_API_KEY, to train.
    """
    from labelloop.scripts.services import backend_service

    model_dir = tmp_path_factory.mktemp("models")
    # diversity clusters on (off by default): this backend covers the clustered refresh, one
    # request per clustered prediction and Label Studio's cluster rotation; llm_backend runs
    # the default, score order alone
    service = backend_service(model_dir, extra_env={
        "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token,
        "LABELLOOP_DEBOUNCE_S": "0.3", "LABELLOOP_NER_MIN_SENTENCES": "10",
        "LABELLOOP_DIVERSITY_CLUSTERS": "8"})
    service.start(timeout=120)
    service.model_dir = model_dir
    try:
        yield service
    finally:
        service.stop()


LLM_API_KEY = "test-llm-key"


def _require_or_skip(reason: str):
    """Skip a test whose service is missing, or fail under LABELLOOP_REQUIRE_SERVICES (CI)."""
    import os

    if os.environ.get("LABELLOOP_REQUIRE_SERVICES"):
        pytest.fail(reason + "; LABELLOOP_REQUIRE_SERVICES is set, so this is an error")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory):
    """llama.cpp's real OpenAI-compatible server (from .venv-llm) with SmolLM2-135M-Instruct,
    on loopback, requiring the API key ``LLM_API_KEY``; stopped by PID."""
    from labelloop.scripts.services import ServiceError, llm_service

    try:
        service = llm_service(tmp_path_factory.mktemp("llm") / "llama.log", api_key=LLM_API_KEY)
    except ServiceError as exc:
        _require_or_skip(str(exc))
    service.start(timeout=120)
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="session")
def llm_env(llm_server) -> dict:
    """The environment that points labelloop at the test LLM server."""
    from labelloop.scripts.services import LLM_MODEL_ALIAS

    return {"LABELLOOP_LLM_BASE_URL": llm_server.url + "/v1", "LABELLOOP_LLM_MODEL": LLM_MODEL_ALIAS,
            "LABELLOOP_LLM_API_KEY": LLM_API_KEY, "LABELLOOP_LLM_MAX_TOKENS": "48",
            "LABELLOOP_LLM_CONTEXT_TOKENS": "2048"}


@pytest.fixture(scope="session")
def llm_backend(tmp_path_factory, label_studio, llm_env):
    """The real backend under gunicorn, drafting through the test LLM server."""
    from labelloop.scripts.services import backend_service

    model_dir = tmp_path_factory.mktemp("llm-models")
    service = backend_service(model_dir, extra_env={
        "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token,
        "LABELLOOP_DEBOUNCE_S": "0.3", **llm_env})
    service.start(timeout=120)
    service.model_dir = model_dir
    try:
        yield service
    finally:
        service.stop()
