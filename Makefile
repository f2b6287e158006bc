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
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned, from TORCH_INDEX when set (the CUDA build on a GPU cluster)
	$(PY) -m pip install -q "torch==2.13.0" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install -q -e ".[workflow,test]"
	touch $@

.PHONY: install demo test lint
install: $(VENV)/.installed

demo: $(VENV)/.installed
	snakemake --profile profiles/local --configfile config/demo.yaml
	$(PY) -c "import pyarrow.parquet as pq; t = pq.read_table('results/ranking.parquet'); \
	print(t.select(['rank', 'candidate', 'score', 'hits', 'qvalue']).slice(0, 10).to_pandas().to_string(index=False))"

test: $(VENV)/.installed
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check difffit_screen tests benchmarks
	snakemake --lint --configfile config/demo.yaml
