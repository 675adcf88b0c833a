"""The control window's test rig (pytest-qt, offscreen): a window with a bridge in a process of
its own on the session's JACK server (`live_window`), or without ports (`window`), on the tiny
Coconet trained for the test session, its settings in a file of the test's own."""
from __future__ import annotations

import pytest
from PyQt6.QtCore import QSettings

from gui.session import PortChoice
from gui.window import MainWindow

START_TIMEOUT_MS = 120_000   # a loaded 2-core machine: warm-up and ports can take a while
WAIT_MS = 30_000


@pytest.fixture
def store(tmp_path) -> QSettings:
    return QSettings(str(tmp_path / "gui.ini"), QSettings.Format.IniFormat)


def open_window(qtbot, store, tiny_model, tmp_path, live: bool) -> MainWindow:
    window = MainWindow(store, model=str(tiny_model), ports=PortChoice(api="jack") if live else None,
                        presets_dir=tmp_path / "presets", start_bridge=live)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.session.engine is not None, timeout=START_TIMEOUT_MS)
    if live:
        qtbot.waitUntil(lambda: window.session.bridge is not None and window.session.bridge.input is not None,
                        timeout=START_TIMEOUT_MS)
    return window


@pytest.fixture
def live_window(qtbot, store, jack_server, tiny_model, tmp_path):
    window = open_window(qtbot, store, tiny_model, tmp_path, live=True)
    yield window
    window.close()


@pytest.fixture
def window(qtbot, store, tiny_model, tmp_path):
    """The window without ports (presets, offline work)."""
    window = open_window(qtbot, store, tiny_model, tmp_path, live=False)
    yield window
    window.close()

def finished(window, job, qtbot):
    """The job's result once the window has taken it in (its slot ran). Not qtbot.waitSignal
    after the job started: a job done before the wait began would never be seen."""
    qtbot.waitUntil(lambda: job.result is not None and not window.offline.cancel_button.isEnabled(),
                    timeout=START_TIMEOUT_MS)
    return job.result
