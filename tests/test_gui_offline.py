"""The control window's offline work (pytest-qt, offscreen): harmonizing a file and playing it
out of the port, regenerating a passage, converting a folder, and batch_convert's cancel hook.
Nothing is mocked."""
from __future__ import annotations

import shutil
import threading
from pathlib import Path

import mido
import numpy as np
import pytest
from PyQt6.QtCore import QPoint, Qt

from bridge.midifile import read_voices
from conftest import EXAMPLE_MELODY, run_cli
from guirig import START_TIMEOUT_MS, WAIT_MS, finished, live_window, store, window  # noqa: F401  (fixtures)
from test_live import is_note_on, unreleased
from test_ports import wait_for


# ------------------------------------------------------------- offline work

def make_melodies(folder: Path, count: int) -> Path:
    folder.mkdir()
    for k in range(count):
        shutil.copy(EXAMPLE_MELODY, folder / f"melody{k:02d}.mid")
    return folder


def test_harmonize_a_file_from_the_window_then_play_it_out_of_the_port(live_window, outside, qtbot, tmp_path):
    w = live_window
    w.sampling.steps.setValue(4)
    target = tmp_path / "chorale.mid"
    finished(w, w.harmonize_file(EXAMPLE_MELODY, target), qtbot)
    assert target.exists() and w.offline.progress.value() == 1 and w.offline.reveal_button.isEnabled()
    assert not list(tmp_path.glob(".*partial*"))
    outside.receiver("bachbridge out")
    w.toggle_play()
    qtbot.waitUntil(lambda: len({m[0] & 0x0F for m in outside.messages() if is_note_on(m)}) == 4,
                    timeout=WAIT_MS)  # soprano, alto, tenor, bass on channels 1-4
    w.toggle_play()  # stop
    qtbot.waitUntil(lambda: not w.offline.player.playing(), timeout=WAIT_MS)
    assert wait_for(lambda: not unreleased(outside.messages()), timeout=10), unreleased(outside.messages())


def test_regenerate_a_passage_step_through_keep_undo_and_export(window, qtbot, tmp_path):
    from test_regenerate import notes_of

    w, panel = window, window.passage
    source = tmp_path / "chorale.mid"
    result = run_cli("harmonize", EXAMPLE_MELODY, "-o", source, "--seed", 2)
    assert result.returncode == 0, result.stderr
    assert not panel.regenerate_button.isEnabled()
    assert panel.open(source)
    w.centre_tabs.setCurrentWidget(panel)
    view = panel.view
    qtbot.waitUntil(lambda: view.isVisible() and view.width() > 100)
    assert view.bars == 9 and view.selection is None and not panel.regenerate_button.isEnabled()
    # a drag from the middle of bar 2 to the middle of bar 3 chooses bars 2-3
    area = view._area()
    x_of_bar = lambda bar: int(area.left() + (bar - 0.5) / view.bars * area.width())  # noqa: E731
    y = int(area.center().y())
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=QPoint(x_of_bar(2), y))
    qtbot.mouseMove(view, QPoint(x_of_bar(3), y))
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=QPoint(x_of_bar(3), y))
    assert view.selection == (2, 3)
    assert view.chosen_voices == (1, 2, 3)                  # the melody kept unless asked
    panel.variants.setValue(3)
    panel.regenerate_button.click()
    qtbot.waitUntil(lambda: panel.job is None and len(panel.alternatives) == 3, timeout=WAIT_MS)
    assert panel.alternative_label.text() == "1 of 3"
    panel.next_button.click()
    assert panel.alternative_label.text() == "2 of 3" and panel.current_path == panel.alternatives[1]
    second = panel.current_path
    panel.keep_button.click()
    assert panel.history[-1] == second and not panel.alternatives and panel.undo_button.isEnabled()

    # kept: every note outside the ATB notes that begin in bars 2-3 exactly as in the file
    step = mido.MidiFile(source).ticks_per_beat / 4

    def outside(notes, voice):
        return [n for n in notes if voice == 0 or not 16 <= int(n[0] / step + 0.5) < 48]

    kept, original = notes_of(second), notes_of(source)
    assert all(outside(kept[v], v) == outside(original[v], v) for v in range(4))
    assert any(kept[v] != original[v] for v in (1, 2, 3))
    # the file written and the one dragged out are the score as it is now
    exported = panel.export(tmp_path / "out.mid")
    assert exported.read_bytes() == second.read_bytes()
    assert panel.drag_handle.mime_data().urls()[0].toLocalFile() == str(second)
    panel.undo_button.click()
    assert panel.current_path.read_bytes() == source.read_bytes() and not panel.undo_button.isEnabled()
    assert np.array_equal(view.score.pitches, read_voices(source).pitches)
    # a harmonization from the window opens in the passage view
    target = tmp_path / "from_window.mid"
    job = w.harmonize_file(EXAMPLE_MELODY, target)
    finished(w, job, qtbot)
    qtbot.waitUntil(lambda: panel.history and panel.history[0].name.endswith("from_window.mid"), timeout=WAIT_MS)


def test_convert_a_folder_with_progress_then_cancel_one(window, qtbot, tmp_path):
    w = window
    w.sampling.steps.setValue(2)
    melodies = make_melodies(tmp_path / "in", 4)
    result = finished(w, w.convert_folder(melodies, tmp_path / "out"), qtbot)
    assert not result.cancelled and len(result.outputs) == 4 and all(p.exists() for p in result.outputs)
    assert w.offline.progress.value() == 4 and w.offline.progress.maximum() == 4
    assert "4 converted" in w.offline.offline_label.text()

    many = make_melodies(tmp_path / "many", 40)
    job = w.convert_folder(many, tmp_path / "out2")
    qtbot.waitUntil(lambda: w.offline.progress.maximum() == 40 and w.offline.progress.value() >= 1,
                    timeout=START_TIMEOUT_MS)
    w.offline.cancel_button.click()
    result = finished(w, job, qtbot)
    written = sorted((tmp_path / "out2").glob("*.mid"))
    assert result.cancelled and 1 <= len(written) < 40
    assert written == sorted(result.outputs)
    assert not [p for p in (tmp_path / "out2").iterdir() if p.name.startswith(".")]  # nothing half-written
    assert "cancelled" in w.offline.offline_label.text() and w.offline.harmonize_button.isEnabled()


def test_a_bad_file_is_a_message_in_the_window(window, qtbot, tmp_path):
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"not midi at all")
    window.harmonize_file(bad, tmp_path / "out.mid")
    # (the window's own handler: connected before the job started, where a waitSignal here could
    # come after a fast failure)
    qtbot.waitUntil(lambda: "bad.mid" in window.statusBar().currentMessage(), timeout=START_TIMEOUT_MS)
    assert not (tmp_path / "out.mid").exists()


# ------------------------------------------------------------- batch_convert's cancel hook

@pytest.mark.parametrize("jobs", [1, 2])
def test_batch_convert_stops_between_files_when_cancelled(tiny_model, tmp_path, jobs):
    from bridge.convert import batch_convert
    from bridge.settings import Settings

    melodies = make_melodies(tmp_path / "in", 12)
    cancel = threading.Event()
    progress = []

    def on_progress(done, total):
        progress.append((done, total))
        if done == 2:
            cancel.set()   # from the converting thread itself: deterministic

    summary = batch_convert(melodies, tmp_path / "out", str(tiny_model), Settings(steps=2, seed=1), jobs=jobs,
                            progress=on_progress, cancel=cancel)
    written = sorted((tmp_path / "out").glob("*.mid"))
    assert summary.cancelled and "(cancelled)" in summary.lines()[0]
    # one process stops at once; a pool finishes the files it had already handed to its workers
    assert len(summary.converted) == 2 if jobs == 1 else 2 <= len(summary.converted) < 12
    assert sorted(tmp_path / "out" / p.name for p in summary.converted) == written
    assert not summary.failed and progress[-1] == (len(written), 12)
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]
    again = batch_convert(melodies, tmp_path / "out", str(tiny_model), Settings(steps=2, seed=1), jobs=1)
    assert not again.cancelled and len(again.converted) == 12 - len(written) and len(again.skipped) == len(written)
