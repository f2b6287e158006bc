# Two set-up commands from a fresh clone (each installs what it needs into .venv):
#   make demo   # screens the DomainFit demo density against the shipped demo library
#   make test   # runs the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: a bare 'torch' pulls a multi-GB CUDA build on CPU-only machines
	$(PY) -m pip install -q "torch==2.13.0"
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
