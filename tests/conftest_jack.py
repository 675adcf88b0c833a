"""The `jack_server` fixture: a private JACK server (dummy driver, 48 kHz, 64-frame period) for the
tests that need real MIDI ports. Registered in conftest.py.

It runs under a unique server name, exported as JACK_DEFAULT_SERVER for this test process (and the
subprocesses it starts), so it never meets a user's JACK server or another test run's. `make test`
installs Debian's jackd2 when jackd is missing; elsewhere the tests that need it are skipped.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid

import pytest

# --sync: the server waits for every client each cycle. Without it (asynchronous, jackd's default), a
# client that is late (likely with --no-realtime on a loaded machine) reads its input buffer while the
# next cycle already rewrites it, and rtmidi 5.0 then delivers duplicated or loses MIDI events.
JACKD_ARGS = ["--sync", "--no-realtime", "-d", "dummy", "-r", "48000", "-p", "64"]
START_TIMEOUT_S = 10.0


def _accepts_clients(env: dict) -> bool:
    """One connection attempt to the server named in env, never starting one."""
    if shutil.which("jack_lsp"):
        result = subprocess.run(["jack_lsp"], env=env, capture_output=True, timeout=5)
        return result.returncode == 0
    import rtmidi

    try:
        rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="bachbridge-test-probe").delete()
    except rtmidi.RtMidiError:
        return False
    return True


@pytest.fixture(scope="session")
def jack_server(tmp_path_factory):
    """Start jackd, wait (<= 10 s) until it accepts clients, yield its name, stop it at the end."""
    jackd = shutil.which("jackd")
    if jackd is None:
        pytest.skip("jackd not installed (Debian: apt-get install jackd2; `make test` does it)")
    import rtmidi

    if rtmidi.API_UNIX_JACK not in rtmidi.get_compiled_api():
        pytest.skip("python-rtmidi was built without JACK")

    name = f"bachbridge-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    saved = {k: os.environ.get(k) for k in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER")}
    os.environ["JACK_DEFAULT_SERVER"] = name
    os.environ["JACK_NO_START_SERVER"] = "1"
    log_path = tmp_path_factory.mktemp("jack") / "jackd.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen([jackd, "-n", name, *JACKD_ARGS], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=dict(os.environ))
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jackd exited with status {proc.returncode}:\n"
                            f"{log_path.read_text(errors='replace')[-2000:]}")
            if _accepts_clients(dict(os.environ)):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"jackd did not accept clients within {START_TIMEOUT_S:.0f} s:\n"
                            f"{log_path.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)
        yield name
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
