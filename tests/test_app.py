"""The standalone app (`make app`: installers/bachbridge.spec, PyInstaller, one folder
dist/bachbridge/) run as a user runs it on a machine without Python: from outside the checkout,
with no virtualenv on the PATH and no PYTHONPATH. It writes what the checkout writes for the same
seed, byte for byte, with every shipped engine and from `batch`'s worker processes; renders the
window offscreen and opens it under X, also where the system lacks the X libraries Qt's xcb plugin
needs; lists the ports; plays live on a JACK server, its speculation process spawned from the
frozen executable, and stops cleanly on SIGINT; and keeps numba's compiled kernels in the user's
cache, never in the app folder.

Run by `make app-test` (BACHBRIDGE_APP_TEST=1), skipped otherwise: it builds the app first (about
a minute) unless dist/bachbridge is newer than everything that goes into it.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, run_cli
from jackrig import missing_programs
from test_ports import wait_for
from xdisplay import Xvfb, can_hide_libraries, have_xvfb, run_without, xcb_libraries_desktops_lack

pytestmark = pytest.mark.skipif(os.environ.get("BACHBRIDGE_APP_TEST") != "1",
                                reason="the standalone app: `make app-test` (BACHBRIDGE_APP_TEST=1) builds and runs it")

APP_DIR = ROOT / "dist" / "bachbridge"
APP = APP_DIR / ("bachbridge.exe" if sys.platform == "win32" else "bachbridge")
# what goes into the app: a change to any of these makes the build stale
APP_INPUTS = ("bridge/**/*.py", "gui/**/*.py", "models/*.py", "models/*.onnx", "bridge/examples/*.mid",
              "installers/bachbridge.spec", "installers/app_entry.py", "installers/pyi-hooks/*.py", "pyproject.toml")
BUILD_TIMEOUT_S = 1800


def newest_input() -> float:
    stamps = [path.stat().st_mtime for pattern in APP_INPUTS for path in ROOT.glob(pattern)]
    # an installed or upgraded package in the virtualenv the app is built from
    stamps += [path.stat().st_mtime for path in (ROOT / ".venv" / "lib").glob("python*/site-packages")]
    return max(stamps)


@pytest.fixture(scope="module")
def app() -> Path:
    if not APP.exists() or APP.stat().st_mtime < newest_input():
        if shutil.which("make") is None:
            pytest.fail("dist/bachbridge is missing or stale and there is no make to build it (make app)")
        build = subprocess.run(["make", "app"], cwd=ROOT, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    assert APP.exists()
    return APP


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """The user's folders for the module's runs: its numba cache is shared, so the later runs load
    the kernels the first compiled."""
    return tmp_path_factory.mktemp("app-user")


@pytest.fixture
def app_env(home) -> dict:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PYTHON", "NUMBA_", "VIRTUAL_ENV", "QT_QPA_PLATFORM", "DISPLAY"))}
    env["PATH"] = os.pathsep.join(entry for entry in env.get("PATH", "").split(os.pathsep)
                                  if entry and not entry.startswith(str(ROOT)))
    for name in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME"):
        env[name] = str(home / name.lower())
    return env


def run_app(*args, env: dict, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(APP), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def numba_cache(home: Path) -> dict[Path, int]:
    """The app's numba cache (installers/app_entry.py: under the user's cache folder, in a folder
    of the build's own, named by the hash of its sources): file -> mtime."""
    build = (APP_DIR / "_internal" / "build-id").read_text().strip()
    folder = home / "xdg_cache_home" / "bachbridge" / "numba" / build
    return {path: path.stat().st_mtime_ns for path in folder.rglob("*.nb*")}


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("command, engine", [("harmonize", "coconet"), ("harmonize", "biaxial"),
                                             ("harmonize", "rnnrbm"), ("continue", "phrase")])
def test_the_app_writes_what_the_checkout_writes(app, app_env, home, tmp_path, command, engine):
    melody = APP_DIR / "_internal" / "bridge" / "examples" / "chorale_melody.mid"
    assert melody.exists(), "the example melody is not in the app"
    more = ["--bars", "2"] if command == "continue" else []
    made = run_app(command, melody, "-o", tmp_path / "app.mid", "--engine", engine, "--seed", 5, *more,
                   env=app_env, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    reference = run_cli(command, melody, "-o", tmp_path / "checkout.mid", "--engine", engine, "--seed", 5, *more)
    assert reference.returncode == 0, reference.stderr
    assert (tmp_path / "app.mid").read_bytes() == (tmp_path / "checkout.mid").read_bytes()

    compiled = numba_cache(home)
    assert any(path.suffix == ".nbi" for path in compiled), "numba cached nothing in the user's cache folder"
    assert not list(APP_DIR.rglob("*.nb*")), "numba wrote into the app folder"
    # once compiled, a second run loads the kernels: not one cache file is written again
    again = run_app(command, melody, "-o", tmp_path / "again.mid", "--engine", engine, "--seed", 5, *more,
                    env=app_env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "again.mid").read_bytes() == (tmp_path / "app.mid").read_bytes()
    assert numba_cache(home) == compiled


def test_batch_with_worker_processes(app, app_env, tmp_path):
    """`batch --jobs 2`: worker processes spawned from the frozen executable, as from a checkout."""
    melody = APP_DIR / "_internal" / "bridge" / "examples" / "chorale_melody.mid"
    (tmp_path / "in" / "more").mkdir(parents=True)
    for name in ("a.mid", "b.mid", "more/c.mid"):
        shutil.copy(melody, tmp_path / "in" / name)
    made = run_app("batch", tmp_path / "in", tmp_path / "app", "--jobs", 2, "--seed", 3, env=app_env, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    reference = run_cli("batch", tmp_path / "in", tmp_path / "checkout", "--seed", 3)
    assert reference.returncode == 0, reference.stderr
    for name in ("a.mid", "b.mid", "more/c.mid"):
        assert (tmp_path / "app" / name).read_bytes() == (tmp_path / "checkout" / name).read_bytes(), name


def test_the_window_renders_offscreen(app, app_env, tmp_path):
    shot = tmp_path / "window.png"
    result = run_app("gui", "--screenshot", shot, env={**app_env, "QT_QPA_PLATFORM": "offscreen"}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    width, height = png_size(shot)
    assert width >= 1000 and height >= 600, (width, height)


def test_the_window_opens_under_x(app, app_env, tmp_path):
    """Qt's xcb plugin, with the X libraries the app carries, and the check before Qt starts."""
    if not have_xvfb():
        pytest.skip("no Xvfb (Debian: xvfb; `make test` installs it)")
    server = Xvfb()
    try:
        grab = tmp_path / "shown.png"
        result = run_app("gui", "--no-bridge", "--quit-after", 1, "--grab", grab,
                         env={**app_env, "DISPLAY": server.display, "QT_QPA_PLATFORM": "xcb"}, cwd=tmp_path,
                         timeout=120)
    finally:
        server.close()
    assert result.returncode == 0, result.stdout + result.stderr
    assert png_size(grab)[0] >= 1000


def test_the_window_opens_where_the_system_lacks_the_xcb_libraries(app, app_env, tmp_path):
    """libxcb-cursor0 and libxcb-icccm4, which desktops often lack, hidden from the system: the
    app opens its window with the copies it carries, and its check before Qt starts agrees."""
    if not have_xvfb():
        pytest.skip("no Xvfb (Debian: xvfb; `make test` installs it)")
    if not can_hide_libraries():
        pytest.skip("cannot make a mount namespace here (unshare -m needs root): the libraries cannot be hidden")
    hidden = xcb_libraries_desktops_lack()
    assert all((APP_DIR / "_internal" / Path(path).name).exists() for path in hidden), "the app lacks them"
    server = Xvfb()
    try:
        grab = tmp_path / "shown.png"
        done = run_without(hidden, [APP, "gui", "--no-bridge", "--quit-after", "1", "--grab", grab],
                           {**app_env, "DISPLAY": server.display, "QT_QPA_PLATFORM": "xcb"}, tmp_path, cwd=tmp_path)
    finally:
        server.close()
    if "mount" in done.stderr and not grab.exists():
        pytest.skip(f"overlay mounts are not allowed here: {done.stderr.strip()[-300:]}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert png_size(grab)[0] >= 1000


def test_ports_and_the_live_bridge_on_jack(app, app_env, jack_rig, outside, tmp_path):
    if missing_programs(["jack_lsp"]):
        pytest.skip("jack_lsp not installed (Debian: jackd2)")
    env = {**app_env, "JACK_DEFAULT_SERVER": jack_rig.name, "JACK_NO_START_SERVER": "1"}
    listed = run_app("ports", env=env, cwd=tmp_path, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert "MIDI APIs compiled in:" in listed.stdout and "auto picks: jack" in listed.stdout, listed.stdout

    stats = tmp_path / "stats.json"
    live = subprocess.Popen([str(APP), "live", "--api", "jack", "--stats-json", stats], cwd=tmp_path, env=env,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = live.stdout.readline()
        assert "ports up" in line, line + live.stderr.read()
        ports = subprocess.run(["jack_lsp"], env=env, capture_output=True, text=True, timeout=30).stdout.splitlines()
        assert any(port.endswith(":bachbridge in") for port in ports), ports
        assert any(port.endswith(":bachbridge out") for port in ports), ports

        sender = outside.sender("bachbridge in")
        outside.receiver("bachbridge out")
        for pitch in (67, 69, 71):
            sender.send_message([0x90, pitch, 100])
            time.sleep(0.3)
            sender.send_message([0x80, pitch, 0])
            time.sleep(0.1)

        def channels_played() -> set[int]:
            return {m[0] & 0x0F for m in outside.messages() if m[0] & 0xF0 == 0x90 and m[2] > 0}

        # alto, tenor and bass on channels 2, 3, 4: the engine answered in the app
        assert wait_for(lambda: {1, 2, 3} <= channels_played(), timeout=5), channels_played()
        # the speculation process (the frozen executable spawned again as multiprocessing's child:
        # installers/app_entry.py's freeze_support) still runs after it was given work
        assert "--multiprocessing-fork" in children(live.pid), children(live.pid)
    finally:
        live.send_signal(signal.SIGINT)
        code = live.wait(30)
    assert code == 0, live.stderr.read()
    assert "stopped:" in live.stdout.read()
    figures = json.loads(stats.read_text())
    assert figures["speculation_lookups"] >= 1, figures
    assert figures["speculation_errors"] == 0, figures


def children(pid: int) -> str:
    """The command lines of a process's children (Linux)."""
    found = subprocess.run(["ps", "--ppid", str(pid), "-o", "args="], capture_output=True, text=True)
    return found.stdout
