# `make demo` and `make test` each create .venv if missing and install what they need.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
HASH := $(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: demo demo-quick test bench bench-tools lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.demo-$(HASH): $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[tsne,serve]"
	touch $@

$(VENV)/.test-$(HASH): $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[dev,tsne,serve,k8s,bench]"
	touch $@ $(VENV)/.demo-$(HASH)

demo: $(VENV)/.demo-$(HASH)
	$(BIN)/scaleml demo

demo-quick: $(VENV)/.demo-$(HASH)
	$(BIN)/scaleml demo --quick

test: $(VENV)/.test-$(HASH)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 --dist loadfile  # two test processes, each module's tests in one of them

# wrk, the load generator of bench_serve.py (a Debian package; without it the benchmark's asyncio client, which
# a 2-core machine's server outpaces, sets the ceiling)
bench-tools:
	command -v wrk >/dev/null || apt-get install -y -q wrk || echo "wrk not installed: bench_serve.py falls back to its asyncio client"

bench: $(VENV)/.test-$(HASH) bench-tools
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

lint: $(VENV)/.test-$(HASH)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) runs .pytest_cache
