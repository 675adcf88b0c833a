"""The window as a user meets it: `bachbridge gui` in its own process on a real X server (Xvfb)
with Qt's `xcb` platform plugin, not the offscreen one the other window tests use; what it shows
is read back through libX11, as a screen would show it. And what comes before Qt: a machine
without the libraries Qt's xcb plugin links to, or without a display, gets one line, not an abort.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from jackrig import MidiDump, MidiSeq, XrunMonitor, answers, hanging, missing_programs
from xdisplay import XClient, Xvfb, can_hide_libraries, have_xvfb, run_without, xcb_libraries_desktops_lack

WINDOW_TITLE = "bachbridge"
VOICE_COLOURS = ("#f2c14e", "#f78154", "#4fb3bf", "#9b7fd4")   # gui.theme's, as a screen shows them
# 8ths at 120 bpm (12,000 frames at 48 kHz), each 11,000 long: a melody from a stock sequencer
EIGHTH_FRAMES = 12_000
PATTERN = [67, 69, 71, 72, 74, 72, 71, 69]


@pytest.fixture
def xvfb():
    if not have_xvfb():
        pytest.skip("no Xvfb (Debian: xvfb; `make test` installs it)")
    from gui.systemcheck import missing_libraries, packages_to_install, plugin_path

    plugin = plugin_path("xcb")
    missing = missing_libraries(plugin) if plugin else ["PyQt6's xcb plugin"]
    if missing:
        pytest.skip(f"Qt's xcb plugin cannot load here ({', '.join(missing)}; Debian: "
                    f"{' '.join(packages_to_install()) or '?'}; `make test` installs them)")
    server = Xvfb()
    client = XClient(server.display)
    try:
        yield server, client
    finally:
        client.close()
        server.close()


def gui_env(display: str | None, config: Path, **more) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in ("QT_QPA_PLATFORM", "DISPLAY")}
    env.update(XDG_CONFIG_HOME=str(config), QT_QPA_PLATFORM="xcb", **more)
    if display:
        env["DISPLAY"] = display
    return env


def wait_viewable(client: XClient, proc: subprocess.Popen, timeout: float = 60.0) -> int:
    """The window named WINDOW_TITLE, once it is mapped on the screen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"bachbridge gui ended ({proc.returncode}): {proc.stderr.read()[-2000:]}"
        window = client.windows().get(WINDOW_TITLE)
        if window is not None and client.viewable(window):
            return window
        time.sleep(0.1)
    raise AssertionError(f"no viewable window {WINDOW_TITLE!r} in {timeout:g} s: {list(client.windows())}")


def voice_pixels(pixels: np.ndarray, tolerance: float = 0.08) -> list[int]:
    """How many bright pixels show each voice's hue: the roll shades a note by its velocity, so
    colours are compared scaled to their brightest channel."""
    rgb = pixels.astype(float)
    bright = rgb.max(axis=2)
    shape = rgb / np.maximum(bright, 1.0)[..., None]
    counts = []
    for colour in VOICE_COLOURS:
        voice = np.array([int(colour[k:k + 2], 16) for k in (1, 3, 5)], dtype=float)
        near = np.abs(shape - voice / voice.max()).max(axis=2) <= tolerance
        counts.append(int((near & (bright >= 100)).sum()))
    return counts


def save_png(pixels: np.ndarray, path: Path) -> None:
    from PyQt6.QtGui import QImage

    height, width, _ = pixels.shape
    data = np.ascontiguousarray(pixels)
    QImage(data.data, width, height, width * 3, QImage.Format.Format_RGB888).save(str(path))


def test_the_window_on_x_plays_a_stock_sequencers_melody_into_its_roll(realtime_jack, xvfb, tmp_path):
    """Shown on the X server, live on an asynchronous JACK server, a melody from jack_midiseq into
    'bachbridge in' is answered and drawn in the roll; closed (SIGTERM, as the desktop's close
    does), it leaves nothing sounding on 'bachbridge out'."""
    missing = missing_programs(["jack_midiseq", "jack_midi_dump"])
    if missing:
        pytest.skip(f"stock JACK programs missing: {', '.join(missing)} (Debian: jackd2)")
    server, (x, client) = realtime_jack, xvfb
    proc = subprocess.Popen([sys.executable, "-m", "bridge", "gui", "--api", "jack"], cwd=ROOT, text=True,
                            env=gui_env(x.display, tmp_path / "config"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dump = seq = None
    xruns = XrunMonitor(server)
    try:
        window = wait_viewable(client, proc)
        server.port("bachbridge in", timeout=60)
        dump = MidiDump(server, "dump")
        server.connect("bachbridge out", "dump:input")
        time.sleep(1.0)                    # the roll's first frames drawn: nothing sounds yet
        before = client.pixels(window)
        notes = [(k * EIGHTH_FRAMES, pitch, 11_000) for k, pitch in enumerate(PATTERN)]
        seq = MidiSeq(server, "seq", notes, loop_frames=len(PATTERN) * EIGHTH_FRAMES)
        server.connect("seq:out", "bachbridge in")
        # 20 notes at JACK's count (a slow dummy driver stretches 5 s of frames over more)
        deadline = time.monotonic() + 20.0
        while answers(dump.events()).onsets < 20 and time.monotonic() < deadline:
            time.sleep(0.1)
        during = client.pixels(window)
        seq.close()
        time.sleep(1.0)
        save_png(before, tmp_path / "window-before.png")
        save_png(during, tmp_path / "window-playing.png")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, proc.stderr.read()[-2000:]
        time.sleep(0.3)
        events = dump.events()
    finally:
        xruns.close()
        for program in (seq, dump):
            if program is not None:
                program.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # the bridge's echo of the melody on channel 1, the voices on 2-4; what was sent in a cycle
    # JACK reported as an xrun is JACK's to lose
    got = answers(events, xruns=[x - dump.start_frame for x in xruns.frames])
    assert got.onsets >= 10 and got.lost_by_sender == [], got.line()
    assert hanging([m for _, m in events]) == {}, "notes left sounding after the window closed"
    added = [after - first for first, after in zip(voice_pixels(before), voice_pixels(during))]
    # the melody's notes and each lower voice's, drawn in their colours (see window-playing.png)
    assert all(n > 1000 for n in added), f"pixels of each voice's colour added by the melody: {added}"


def test_make_run_opens_the_window(xvfb, tmp_path):
    """`make run` (as from a fresh clone, once `make` has built .venv) reaches a window drawn on
    the X server: --quit-after closes it, as its close button does, after it is shown."""
    if subprocess.run(["make", "-q", "venv"], cwd=ROOT).returncode != 0:
        pytest.skip("this checkout's .venv is not up to date (make venv): `make run` would rebuild it")
    x, _ = xvfb
    grab = tmp_path / "make-run.png"
    done = subprocess.run(["make", "--no-print-directory", "run", f"GUI_ARGS=--no-bridge --quit-after 2 --grab {grab}"],
                          cwd=ROOT, env=gui_env(x.display, tmp_path / "config"), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"window grabbed to {grab}" in done.stdout
    assert grab.stat().st_size > 10_000


def test_no_display_is_one_line_not_an_abort(tmp_path):
    done = subprocess.run([sys.executable, "-m", "bridge", "gui"], cwd=ROOT, env=gui_env(None, tmp_path / "config"),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done
    assert done.stderr.count("\n") == 1 and "no display" in done.stderr and "DISPLAY is not set" in done.stderr


def test_missing_xcb_libraries_are_named_not_a_core_dump(xvfb, tmp_path):
    """libxcb-cursor0 and libxcb-icccm4 hidden from the dynamic linker (an overlay in a mount
    namespace of the test's own), as on a desktop that lacks them: `bachbridge gui` says which
    packages to install, in one line, and exits 1, before Qt would abort."""
    paths = xcb_libraries_desktops_lack()
    if not can_hide_libraries():
        pytest.skip("cannot make a mount namespace here (unshare -m needs root): the libraries cannot be hidden")
    x, _ = xvfb
    done = run_without(paths, [sys.executable, "-m", "bridge", "gui"], gui_env(x.display, tmp_path / "config"),
                       tmp_path, cwd=ROOT)
    if "mount" in done.stderr and done.returncode not in (0, 1):
        pytest.skip(f"overlay mounts are not allowed here: {done.stderr.strip()[-300:]}")
    assert done.returncode == 1, done
    line = done.stderr.strip()
    assert "\n" not in line, line
    assert "libxcb-cursor0" in line and "libxcb-icccm4" in line and "cannot load" in line, line
