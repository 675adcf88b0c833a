"""JACK servers for the tests that need real MIDI ports (tests/jackrig.py's JackServer: dummy
driver, 48 kHz, 64-frame period, realtime scheduling when jackd can get it). Registered in
conftest.py.

- `jack_server` / `jack_rig` (the session's): --sync. The functional tests send a note and wait
  for its answer; on this project's 2-core VM an asynchronous server reports xruns every few
  seconds even with realtime scheduling, and what is sent in such a cycle is lost whatever the
  clients do, so a test that waits for one particular note would fail now and then for JACK's
  sake.
- `fresh_jack`: a second --sync server that no test used before, the default one for the length
  of one test (see its docstring).
- `realtime_jack`: a second server, asynchronous (no --sync) and realtime, as a desktop runs one,
  made the default server for the length of one test: for the tests that play among stock JACK
  programs under CPU load, and tell JACK's losses (cycles it reported as xruns, see
  jackrig.XrunMonitor) from the bridge's. Without realtime scheduling those tests skip, saying
  why: a server without it, under CPU load, drops events at every turn.
`make test` installs Debian's jackd2 when jackd is missing; elsewhere the tests that need it skip.
"""
from __future__ import annotations

import pytest

from jackrig import JackServer, Outside, missing_programs


def _need_jack() -> None:
    if missing_programs(["jackd"]):
        pytest.skip("jackd not installed (Debian: apt-get install jackd2; `make test` does it)")
    import rtmidi

    if rtmidi.API_UNIX_JACK not in rtmidi.get_compiled_api():
        pytest.skip("python-rtmidi was built without JACK")


@pytest.fixture(scope="session")
def jack_rig(tmp_path_factory):
    """The session's JackServer (--sync); its name is in JACK_DEFAULT_SERVER."""
    _need_jack()
    server = JackServer(realtime=True, sync=True, log=tmp_path_factory.mktemp("jack") / "jackd.log").start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def jack_server(jack_rig) -> str:
    """The name of the session's JACK server."""
    return jack_rig.name


@pytest.fixture
def realtime_jack(jack_rig, tmp_path) -> JackServer:
    """An asynchronous JACK server with realtime scheduling, the default one during the test."""
    server = JackServer(realtime=True, log=tmp_path / "jackd-async.log").start()
    try:
        if not server.realtime_granted:
            pytest.skip("jackd could not get realtime scheduling here: under CPU load a JACK server "
                        "without it drops events whatever its clients do")
        yield server
    finally:
        server.close()


@pytest.fixture
def fresh_jack(jack_rig, tmp_path) -> JackServer:
    """A --sync server of its own, the default one during the test: for a test that starts a
    whole program, which finds the ports it plays through by name, so that no earlier test's
    ports (a bridge still closing) or clients are on it; its log is the test's own, for the
    cycles jackd timed out on."""
    server = JackServer(realtime=True, sync=True, log=tmp_path / "jackd-fresh.log").start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def outside(jack_server) -> Outside:
    """A python-rtmidi client of our own on the session's server (the DAW), closed after the test."""
    o = Outside()
    yield o
    o.close()
