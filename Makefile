# Two set-up commands from a fresh clone (each installs what it needs into .venv):
#   make demo   # screens the DomainFit demo density against the shipped demo library
#   make test   # runs the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
# A PyTorch wheel index, e.g. https://download.pytorch.org/whl/cu128 for the CUDA 12.8 build of
# torch on a GPU cluster (README: installation on a GPU cluster); empty: pip's configured index.
TORCH_INDEX ?=
export PATH := $(abspath $(VENV))/bin:$(PATH)

$(VENV)/.installed: pyproject.toml
	@echo "make: creating $(VENV) and installing torch and difffit-screen (a few minutes: torch" \
	  "is 0.2-1 GB, more for a CUDA build)"
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned, from TORCH_INDEX when set (the CUDA build on a GPU cluster)
	$(PY) -m pip install "torch==2.13.0" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install -e ".[workflow,test]"
	@echo "make: installed into $(VENV) (difffit-screen $$($(PY) -c \
	  'import difffit_screen; print(difffit_screen.__version__)'))"
	touch $@

.PHONY: install demo test lint
install: $(VENV)/.installed

demo: $(VENV)/.installed
	snakemake --profile profiles/local --configfile config/demo.yaml
	$(PY) -m difffit_screen.workflow_helpers print-top --ranking results/ranking.parquet \
	  --report results/report/index.html

# -rs: the summary lists every skipped test with its reason (e.g. the browser test without
# Chromium, the shared-corpus tests without ../shared/data)
test: $(VENV)/.installed
	$(PY) -m pytest -q -rs

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check difffit_screen tests benchmarks
	snakemake --lint --configfile config/demo.yaml
