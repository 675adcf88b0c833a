# make venv  - .venv with bachbridge installed (idempotent; .venv/bin/bachbridge works after it)
# make run   - set up if needed, then harmonize the bundled example melody with the shipped model
# make test  - .venv with the test extras, then every test (GUI tests offscreen)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp

.PHONY: venv test-venv run test bench clean

venv: $(STAMP)-base

$(STAMP)-base: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $@

test-venv: $(STAMP)-test

$(STAMP)-test: $(STAMP)-base
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

run: venv
	$(BIN)/bachbridge harmonize bridge/examples/chorale_melody.mid -o example_chorale.mid --seed 1
	$(BIN)/python -m bridge.showroll example_chorale.mid

test: test-venv
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -rs

bench: venv
	$(BIN)/python bench/bench_harmonize.py
	$(BIN)/python bench/bench_forward.py

clean:
	rm -rf $(VENV) build *.egg-info example_chorale.mid
