# make venv  - .venv with bachbridge installed (idempotent; .venv/bin/bachbridge works after it)
# make run   - set up if needed, then open the window (the live bridge and offline work)
# make example - set up if needed, then harmonize the bundled example melody and print it
# make test  - .venv with the test extras, jackd2 when missing (port tests), then every test (GUI tests offscreen)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp

.PHONY: venv test-venv run example test bench clean jackd

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
	$(BIN)/bachbridge gui

example: venv
	$(BIN)/bachbridge harmonize bridge/examples/chorale_melody.mid -o example_chorale.mid --seed 1
	$(BIN)/python -m bridge.showroll example_chorale.mid

test: test-venv jackd
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -rs

# the port tests start their own JACK server (dummy driver): install Debian's jackd2 when missing
jackd:
	@command -v jackd >/dev/null 2>&1 || { \
	  echo "jackd not found: installing Debian's jackd2 for the MIDI port tests"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; \
	  else echo "make: cannot install jackd2 (not root, no sudo): the MIDI port tests will be skipped" >&2; exit 0; fi; \
	  command -v apt-get >/dev/null 2>&1 || { echo "make: no apt-get here: install JACK2 (jackd) yourself, or the MIDI port tests will be skipped" >&2; exit 0; }; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends jackd2 \
	    || { $$SUDO apt-get update -q && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends jackd2; } \
	    || echo "make: could not install jackd2: the MIDI port tests will be skipped" >&2; \
	}

bench: venv
	$(BIN)/python bench/bench_harmonize.py
	$(BIN)/python bench/bench_forward.py
	$(BIN)/python bench/bench_live.py

clean:
	rm -rf $(VENV) build *.egg-info example_chorale.mid
