# make venv  - .venv with bachbridge installed (idempotent; .venv/bin/bachbridge works after it)
# make run   - set up if needed (and the system libraries Qt's window needs), then open the window;
#              GUI_ARGS are passed on (make run GUI_ARGS="--quit-after 5": a check that it opens)
# make example - set up if needed, then harmonize the bundled example melody and print it
# make test  - .venv with the test extras; jackd2, jack-midi-clock, xvfb and Qt's xcb libraries when
#              missing (port tests, the window under X); then every test (GUI tests offscreen, one under Xvfb)
# make app   - the standalone app: dist/bachbridge/, one folder with one executable, the command line and
#              the window (dist/bachbridge/bachbridge gui), no Python needed (PyInstaller, installers/bachbridge.spec)
# make app-test - build the app unless dist/bachbridge is newer than what goes into it, then run it as a
#              user would (tests/test_app.py: files, the window offscreen and under X, ports, live on JACK)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp

.PHONY: venv test-venv run example test bench clean qt-libs test-deps app app-venv app-test

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

run: venv qt-libs
	$(BIN)/bachbridge gui $(GUI_ARGS)

# the libraries Qt's xcb platform plugin links to that a desktop may lack (libxcb-cursor0, ...):
# without them Qt aborts, so make run installs them or stops with one line naming them
qt-libs: venv
	@sh installers/debian-install.sh --required "the window (Qt's xcb platform plugin)" \
	  $$($(BIN)/python -m gui.systemcheck --debian-packages)

example: venv
	$(BIN)/bachbridge harmonize bridge/examples/chorale_melody.mid -o example_chorale.mid --seed 1
	$(BIN)/python -m bridge.showroll example_chorale.mid

test: test-venv test-deps
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -rs

# the port tests start their own JACK server (dummy driver) and play against stock JACK programs
# (Debian's jackd2: jackd, jack_midiseq, jack_midi_dump; jack-midi-clock); one test opens the
# window under Xvfb with Qt's xcb plugin: what is missing is installed, or those tests are skipped
TEST_PROGRAMS := jackd:jackd2 jack_midiseq:jackd2 jack_midi_dump:jackd2 jack_midi_clock:jack-midi-clock Xvfb:xvfb
test-deps: test-venv
	@sh installers/debian-install.sh "the MIDI port tests and the window under X" \
	  $$(for pair in $(TEST_PROGRAMS); do command -v $${pair%%:*} >/dev/null 2>&1 || echo $${pair##*:}; done | sort -u) \
	  $$(QT_QPA_PLATFORM=xcb $(BIN)/python -m gui.systemcheck --debian-packages)

app-venv: $(STAMP)-app

$(STAMP)-app: $(STAMP)-base
	$(BIN)/python -m pip install -q -e '.[app]'
	touch $@

# the X libraries Qt's xcb plugin links to go into the app from this machine: installed first
# when missing (the app is built without them otherwise, and needs them where it runs)
app: app-venv
	@sh installers/debian-install.sh "the X libraries the app carries for Qt's xcb plugin" \
	  $$(QT_QPA_PLATFORM=xcb $(BIN)/python -m gui.systemcheck --debian-packages)
	$(BIN)/pyinstaller --noconfirm --log-level WARN --distpath dist --workpath build/pyinstaller installers/bachbridge.spec
	@du -sh dist/bachbridge

app-test: app-venv test-venv test-deps
	BACHBRIDGE_APP_TEST=1 $(BIN)/python -m pytest -q -rs tests/test_app.py

bench: venv
	$(BIN)/python bench/bench_harmonize.py
	$(BIN)/python bench/bench_forward.py
	$(BIN)/python bench/bench_live.py

clean:
	rm -rf $(VENV) build dist/bachbridge *.egg-info example_chorale.mid
