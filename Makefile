# make venv  - .venv with bachbridge installed (idempotent; .venv/bin/bachbridge works after it)
# make run   - set up if needed, then open the window (the live bridge and offline work)
# make example - set up if needed, then harmonize the bundled example melody and print it
# make test  - .venv with the test extras, jackd2 and jack-midi-clock when missing (port tests), then every test (GUI tests offscreen)
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

# the port tests start their own JACK server (dummy driver) and play against stock JACK programs:
# install Debian's jackd2 (jackd, jack_midiseq, jack_midi_dump) and jack-midi-clock when missing
JACK_PACKAGES := jackd:jackd2 jack_midiseq:jackd2 jack_midi_dump:jackd2 jack_midi_clock:jack-midi-clock
jackd:
	@missing=$$(for pair in $(JACK_PACKAGES); do command -v $${pair%%:*} >/dev/null 2>&1 || echo $${pair##*:}; done | sort -u | tr '\n' ' '); \
	[ -z "$$missing" ] || { \
	  echo "installing Debian packages for the MIDI port tests: $$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; \
	  else echo "make: cannot install $$missing (not root, no sudo): the MIDI port tests will be skipped" >&2; exit 0; fi; \
	  command -v apt-get >/dev/null 2>&1 || { echo "make: no apt-get here: install $$missing yourself, or the MIDI port tests will be skipped" >&2; exit 0; }; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing \
	    || { $$SUDO apt-get update -q && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; } \
	    || echo "make: could not install $$missing: the MIDI port tests will be skipped" >&2; \
	}

bench: venv
	$(BIN)/python bench/bench_harmonize.py
	$(BIN)/python bench/bench_forward.py
	$(BIN)/python bench/bench_live.py

clean:
	rm -rf $(VENV) build *.egg-info example_chorale.mid
