"""The control window (pytest-qt, offscreen): its controls drive a real bridge (in a process of its own) on a real JACK server
(dummy driver), an outside rtmidi client plays the DAW, and the engine is the tiny Coconet
trained for the test session. Nothing is mocked."""
from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time

import pytest
from PyQt6.QtCore import Qt, QTimer
from PyQt6.QtGui import QAction, QColor, QKeySequence
from PyQt6.QtTest import QTest
from PyQt6.QtWidgets import QAbstractButton, QAbstractSpinBox, QComboBox, QGroupBox, QLabel, QTabBar

from bridge.live import LIVE_SETTINGS, LiveConfig
from bridge.live.learn import KNOBS
from bridge.onnxmodel import OnnxModel
from bridge.settings import DEFAULT_VOICE_RANGES
from conftest import EXAMPLE_MELODY
from gui import presets, theme
from gui.session import PortChoice
from gui.window import MainWindow
from models import shipped_model
from test_live import ECHO_CHANNEL, MELODY, cc123_channels, connect, harmony_ons, unreleased
from test_ports import wait_for
from test_remote import play_through_a_stall, stall_marker

from guirig import (START_TIMEOUT_MS, WAIT_MS, finished, live_window, open_window, store,  # noqa: F401  (fixtures)
                    window)

NOTE_ON, NOTE_OFF = 0x90, 0x80


# ------------------------------------------------------------- helpers

def snapshot_value(window: MainWindow, part: str, field: str):
    snapshot = window.session.bridge.snapshot
    return getattr(snapshot.config if part == "config" else snapshot.settings, field)


# ------------------------------------------------------------- every control reaches the bridge

def test_every_control_changes_the_bridges_snapshot(live_window, qtbot, tiny_model, tmp_path):
    w = live_window

    def expect(part, field, value, turn):
        turn()
        qtbot.waitUntil(lambda: snapshot_value(w, part, field) == value, timeout=WAIT_MS)

    ranges = [list(pair) for pair in DEFAULT_VOICE_RANGES]
    steps = [
        ("settings", "temperature", 0.8, lambda: w.sampling.temperature.setValue(0.8)),
        ("settings", "temperature", 1.5, lambda: w.sampling.temperature_slider.setValue(150)),
        ("settings", "steps", 5, lambda: w.sampling.steps.setValue(5)),
        ("settings", "pmax", 0.9, lambda: w.sampling.pmax.setValue(0.9)),
        ("settings", "pmin", 0.1, lambda: w.sampling.pmin.setValue(0.1)),
        ("settings", "alpha", 0.8, lambda: w.sampling.alpha.setValue(0.8)),
        ("settings", "candidates", 2, lambda: w.sampling.candidates.setValue(2)),
        ("settings", "parallel_penalty", 3.0, lambda: w.sampling.parallel_penalty.setValue(3.0)),
        ("settings", "key", "G", lambda: w.harmony.key.setCurrentText("G")),
        ("settings", "key", "F#m", lambda: w.harmony.key.setCurrentText("F#m")),
        ("config", "mode", "phrase", lambda: w.playing.mode.setCurrentIndex(w.playing.mode.findData("phrase"))),
        ("config", "lookahead_beats", 3.0, lambda: w.playing.lookahead.setValue(3.0)),
        ("config", "mode", "respond", lambda: w.playing.mode.setCurrentIndex(w.playing.mode.findData("respond"))),
        ("config", "respond_after_beats", 2.5, lambda: w.respond.respond_after.setValue(2.5)),
        ("config", "answer_bars", 4, lambda: w.respond.answer_bars.setValue(4)),
        ("config", "respond_cc", 64, lambda: w.respond.respond_cc.setCurrentIndex(w.respond.respond_cc.findData(64))),
        ("settings", "top_p", 0.8, lambda: w.respond.top_p.setValue(0.8)),
        ("settings", "repeat_limit", 2, lambda: w.respond.repeat_limit.setValue(2)),
        ("settings", "harmonizer", "chords",
         lambda: w.respond.harmonizer.setCurrentIndex(w.respond.harmonizer.findData("chords"))),
        ("config", "mode", "note", lambda: w.playing.mode.setCurrentIndex(w.playing.mode.findData("note"))),
        ("config", "speculate", False, lambda: w.playing.speculate.setChecked(False)),
        ("config", "clock", "free", lambda: w.playing.clock.setCurrentIndex(w.playing.clock.findData("free"))),
        ("config", "bpm", 132.0, lambda: w.playing.bpm.setValue(132.0)),
        ("config", "context_steps", 24, lambda: w.playing.context.setValue(24)),
        ("config", "channels", (4, 2, 3), lambda: w.channels.channel_boxes[0].setValue(5)),
        ("config", "channels", (4, 6, 3), lambda: w.channels.channel_boxes[1].setValue(7)),
        ("config", "channels", (4, 6, 8), lambda: w.channels.channel_boxes[2].setValue(9)),
        ("config", "echo", False, lambda: w.channels.echo.setChecked(False)),
        ("config", "echo_channel", 9, lambda: w.channels.echo_channel.setValue(10)),
        ("config", "in_channel", 2, lambda: w.channels.in_channel.setCurrentIndex(w.channels.in_channel.findData(2))),
        ("config", "in_channel", None, lambda: w.channels.in_channel.setCurrentIndex(0)),
    ]
    for voice, (low_box, high_box) in enumerate(w.harmony.voice_range_boxes):
        for end, box, delta in ((0, low_box, -1), (1, high_box, 1)):
            ranges[voice][end] += delta
            steps.append(("settings", "voice_ranges", tuple(tuple(r) for r in ranges),
                          lambda box=box, value=ranges[voice][end]: box.setValue(value)))
    for part, field, value, turn in steps:
        expect(part, field, value, turn)

    # the schedule plot follows the annealing knobs
    assert w.sampling.schedule_plot.values[0] == pytest.approx(0.9) and len(w.sampling.schedule_plot.values) == 5

    # the model picker: another exported model, loaded and warmed off the GUI thread
    other = tmp_path / "other.onnx"
    shutil.copy(tiny_model, other)
    w.load_model(str(other))
    qtbot.waitUntil(lambda: w.session.bridge.snapshot.model == str(other), timeout=START_TIMEOUT_MS)
    assert w.model_panel.model_combo.currentData() == str(other)


def test_the_knobs_an_engine_does_not_read_are_disabled(window, qtbot):
    """coconet reads every knob; rnnrbm no Gibbs schedule: its steps, pmax, pmin, alpha and the
    schedule's plot are disabled while it is the engine, and enabled again after."""
    w = window
    assert w.sampling.steps.isEnabled() and w.sampling.pmax.isEnabled() and w.sampling.temperature.isEnabled()
    w.load_model("rnnrbm")
    qtbot.waitUntil(lambda: w.session.engine is not None and w.session.engine.name == "rnnrbm",
                    timeout=START_TIMEOUT_MS)
    qtbot.waitUntil(lambda: not w.sampling.steps.isEnabled(), timeout=START_TIMEOUT_MS)
    assert not any(box.isEnabled() for box in (w.sampling.pmax, w.sampling.pmin, w.sampling.alpha))
    assert not w.sampling.schedule_plot.isEnabled()
    assert w.sampling.temperature.isEnabled() and w.sampling.candidates.isEnabled() and w.harmony.key.isEnabled()
    assert not w.respond.top_p.isEnabled() and not w.respond.harmonizer.isEnabled()     # the phrase engine's knobs
    w.load_model("coconet-live")
    qtbot.waitUntil(lambda: w.sampling.steps.isEnabled() and w.sampling.pmax.isEnabled(), timeout=START_TIMEOUT_MS)
    w.load_model("phrase")
    qtbot.waitUntil(lambda: w.respond.top_p.isEnabled() and w.respond.harmonizer.isEnabled(), timeout=START_TIMEOUT_MS)


def test_a_models_own_defaults_are_shown_beside_it_and_the_knobs_stay_the_users(window, qtbot):
    """The shipped coconet brings its own temperature (its export says so): the window names it
    under the model and leaves the temperature where the user put it."""
    own = OnnxModel(shipped_model("coconet"), threads=1).sampling_defaults()["temperature"]
    assert own != 0.7
    w = window
    assert "plays best at" not in w.model_panel.model_info.text()   # the tiny model brings none
    w.sampling.temperature.setValue(0.7)
    w.load_model("coconet")
    qtbot.waitUntil(lambda: "plays best at" in w.model_panel.model_info.text(), timeout=START_TIMEOUT_MS)
    assert f"plays best at temperature {own:g}" in w.model_panel.model_info.text()
    assert w.sampling.temperature.value() == 0.7 and w.session.settings.temperature == 0.7


def test_an_invalid_value_is_refused_with_a_message_and_the_bridge_keeps_the_last_good_one(live_window, qtbot):
    w = live_window
    w.sampling.pmax.setValue(0.5)
    qtbot.waitUntil(lambda: snapshot_value(w, "settings", "pmax") == 0.5, timeout=WAIT_MS)
    w.sampling.pmin.setValue(0.7)   # pmin above pmax
    assert "pmin" in w.statusBar().currentMessage() and "pmax" in w.statusBar().currentMessage()
    assert w.sampling.pmin.property("invalid") is True
    w.harmony.key.setCurrentText("H minor")
    assert "key" in w.statusBar().currentMessage()
    w.sampling.alpha.setValue(0.0)
    assert "alpha" in w.statusBar().currentMessage()
    w.session.wait_idle()
    settings = w.session.bridge.snapshot.settings
    assert (settings.pmin, settings.key, settings.alpha) == (LIVE_SETTINGS.pmin, "off", LIVE_SETTINGS.alpha)
    # mending the other end of the pair applies both together
    w.sampling.alpha.setValue(0.6)
    w.harmony.key.setCurrentText("off")
    w.sampling.pmax.setValue(0.9)
    qtbot.waitUntil(lambda: snapshot_value(w, "settings", "pmin") == 0.7, timeout=WAIT_MS)
    assert w.sampling.pmin.property("invalid") is False


# ------------------------------------------------------------- presets and the last state

V1_PRESET = {"version": 1, "name": "Old warm", "engine": "coconet-live", "temperature": 0.7, "steps": 4,
             "pmax": 0.8, "pmin": 0.2, "alpha": 0.5, "key": "Bb", "bpm": 84, "clock": "internal",
             "echo": False, "channels": [5, 6, 7]}


def test_presets_round_trip(window, qtbot):
    w = window
    w.sampling.temperature.setValue(0.9)
    w.sampling.steps.setValue(7)
    w.harmony.key.setCurrentText("Dm")
    w.playing.mode.setCurrentIndex(w.playing.mode.findData("phrase"))
    w.playing.lookahead.setValue(4.0)
    w.channels.channel_boxes[2].setValue(12)
    w.harmony.voice_range_boxes[3][0].setValue(34)
    saved_settings, saved_config = w.session.settings, w.session.config
    path = w.save_preset("Dark & slow")
    assert path is not None and path.exists()
    assert json.loads(path.read_text())["version"] == presets.VERSION
    assert w.header.preset_combo.findText("Dark & slow") >= 0

    w.sampling.temperature.setValue(0.2)
    w.playing.mode.setCurrentIndex(w.playing.mode.findData("note"))
    w.harmony.voice_range_boxes[3][0].setValue(36)
    assert w.session.settings != saved_settings
    assert w.load_preset("Dark & slow")
    assert (w.session.settings, w.session.config) == (saved_settings, saved_config)
    # the controls show what was loaded
    assert w.sampling.temperature.value() == 0.9 and w.harmony.key.currentText() == "Dm"
    assert w.channels.channel_boxes[2].value() == 12
    assert w.harmony.voice_range_boxes[3][0].value() == 34 and w.playing.lookahead.isEnabled()


def test_a_version_1_preset_loads(window, tmp_path):
    old = tmp_path / "old.json"
    old.write_text(json.dumps(V1_PRESET))
    assert window.load_preset(old)
    settings, config = window.session.settings, window.session.config
    assert (settings.temperature, settings.steps, settings.pmax, settings.pmin, settings.alpha, settings.key) == \
        (0.7, 4, 0.8, 0.2, 0.5, "Bb")
    assert (config.bpm, config.clock, config.echo) == (84, "internal", False)
    assert config.channels == (4, 5, 6)          # v1 counted channels 1-16
    assert config.mode == "note" and config.lookahead_beats == LiveConfig().lookahead_beats
    assert window.channels.channel_boxes[0].value() == 5 and window.harmony.key.currentText() == "Bb"
    assert window.model_panel.model_combo.currentData() == "coconet-live"  # v1's 'engine': a shipped model's name


def test_preset_documents_migrate_and_bad_ones_say_why():
    migrated = presets.migrate(dict(V1_PRESET))
    assert migrated["version"] == 3 and migrated["live"]["channels"] == [4, 5, 6] and migrated["controls"] == {}
    preset = presets.from_dict(dict(V1_PRESET), "coconet")
    assert presets.from_json(preset.to_json(), "x") == preset
    version_2 = {"format": presets.FORMAT, "version": 2, "name": "v2", "model": "coconet",
                 "settings": {"temperature": 0.4}, "live": {"mode": "phrase"}}
    preset = presets.from_dict(version_2, "x")
    assert preset.config.mode == "phrase" and preset.config.knob_controls == () and preset.settings.temperature == 0.4
    bound = preset.config.replace(knob_controls=(("temperature", 21), ("mode", "program")))
    document = presets.Preset("bound", "coconet", bound, preset.settings).to_dict()
    assert document["controls"] == {"temperature": 21, "mode": "program"} and "knob_controls" not in document["live"]
    assert presets.from_dict(document, "x").config == bound
    for document, reason in (({"version": 4}, "newer bachbridge"), ({"name": "x"}, "no version"),
                             ({**document, "controls": {"temperature": 300}}, "0..119"),
                             ({**V1_PRESET, "temperature": -1}, "temperature"),
                             ({"format": presets.FORMAT, "version": 2, "settings": {"warmth": 1}}, "warmth")):
        with pytest.raises(presets.BadInput, match=reason):
            presets.from_dict(document, "coconet")
    with pytest.raises(presets.BadInput, match="bad JSON"):
        presets.from_json("{", "coconet")


def test_the_last_state_comes_back(qtbot, store, tiny_model, tmp_path):
    first = open_window(qtbot, store, tiny_model, tmp_path, live=False)
    first.sampling.temperature.setValue(1.1)
    first.playing.clock.setCurrentIndex(first.playing.clock.findData("internal"))
    first.channels.channel_boxes[1].setValue(9)
    first.close()
    assert store.value("state/preset")
    again = MainWindow(store, presets_dir=tmp_path / "presets", start_bridge=False)
    qtbot.addWidget(again)
    try:
        assert again.session.model == str(tiny_model)
        assert again.session.settings.temperature == 1.1 and again.sampling.temperature.value() == 1.1
        assert again.session.config.clock == "internal" and again.session.config.channels[1] == 8
    finally:
        again.close()


def test_every_control_has_a_tooltip_and_the_actions_have_shortcuts(window):
    controls = [widget for knob in window.knobs for widget in knob.widgets]
    controls += [window.model_panel.model_combo, window.model_panel.load_model_button, window.header.preset_combo,
                 window.header.save_preset_button, window.header.import_preset_button, window.header.panic_button,
                 window.ports.api_combo, window.ports.in_combo, window.ports.out_combo, window.ports.refresh_ports_button,
                 window.ports.connect_button, window.offline.harmonize_button, window.offline.convert_button,
                 window.offline.cancel_button, window.offline.reveal_button, window.offline.play_button,
                 window.sampling.temperature_slider]
    assert all(widget.toolTip() for widget in controls), [w.objectName() or type(w).__name__
                                                         for w in controls if not w.toolTip()]
    # and every button, spin box and list anywhere in the window (the MIDI learn and passage panels too)
    every = [c for kind in (QAbstractButton, QAbstractSpinBox, QComboBox) for c in window.findChildren(kind)
             if not isinstance(c.parent(), QTabBar)]    # the tab bar's own scroll arrows
    assert len(every) > len(controls) + 30
    assert all(widget.toolTip() for widget in every), [w.text() if isinstance(w, QAbstractButton) else type(w).__name__
                                                      for w in every if not w.toolTip()]
    assert all(not action.shortcut().isEmpty() for action in window.actions_by_name.values())
    assert window.actions_by_name["panic"].shortcut().toString() == "Esc"


def shown_mnemonics(window) -> dict[str, list[str]]:
    """Each Alt+letter the window answers to as it is shown now, with what it reaches: a label's
    (with a buddy), a button's or check box's, a group box's title, a tab's title, or a window action's
    own Alt+letter shortcut."""
    found: dict[str, list[str]] = {}

    def add(text: str, what: str) -> None:
        key = QKeySequence.mnemonic(text).toString()
        if key:
            found.setdefault(key, []).append(f"{what} {text!r}")

    for label in window.findChildren(QLabel):
        if label.isVisible() and label.buddy() is not None:
            add(label.text(), "label")
    for button in window.findChildren(QAbstractButton):
        if button.isVisible():
            add(button.text(), type(button).__name__)
    for group in window.findChildren(QGroupBox):
        if group.isVisible():
            add(group.title(), "group box")
    for bar in window.findChildren(QTabBar):
        if bar.isVisible():
            for index in range(bar.count()):
                add(bar.tabText(index), "tab")
    for action in set(window.findChildren(QAction)) | set(window.actions()):
        for shortcut in action.shortcuts():
            key = shortcut.toString()
            if key.startswith("Alt+") and len(key) == len("Alt+X"):
                found.setdefault(key, []).append(f"action {action.text()!r}")
    return found


def test_no_two_controls_shown_together_answer_the_same_alt_letter(window, qtbot):
    """Alt+letter reaches exactly one control on every page of the window: no label, check box,
    button, group box, tab or action shown at the same time uses the same letter."""
    tabs = window.centre_tabs
    for page in range(tabs.count()):
        tabs.setCurrentIndex(page)
        qtbot.waitUntil(lambda: tabs.currentWidget().isVisible())
        found = shown_mnemonics(window)
        assert len(found) > 15, found     # the knobs' labels are found at all
        clashes = {key: whats for key, whats in found.items() if len(whats) > 1}
        assert not clashes, f"on the {tabs.tabText(page)!r} page: {clashes}"

    # and Qt agrees: Alt and a label's letter focuses its control, every time (Qt takes turns among
    # shortcuts that clash, so an ambiguous one would miss every other press)
    tabs.setCurrentIndex(0)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    labelled = [label for label in window.findChildren(QLabel) if label.isVisible() and label.buddy() is not None
                and not QKeySequence.mnemonic(label.text()).isEmpty() and label.buddy().isEnabled()]
    assert len(labelled) > 10
    for label in labelled:
        letter = QKeySequence.mnemonic(label.text()).toString()[-1].lower()
        for _ in range(2):
            window.roll.setFocus()
            QTest.keyClick(window, letter, Qt.KeyboardModifier.AltModifier)
            focused = window.focusWidget()
            assert focused is label.buddy() or label.buddy().isAncestorOf(focused), (label.text(), focused)


# ------------------------------------------------------------- the roll

def near(c: QColor, colour: QColor, tolerance: int = 60) -> bool:
    return abs(c.red() - colour.red()) + abs(c.green() - colour.green()) + abs(c.blue() - colour.blue()) < tolerance


def voices_drawn(roll) -> set[int]:
    """Voices whose colour is on screen at the centre of one of their notes (a note another voice
    covers, in unison, does not count: it is rightly hidden)."""
    roll.freeze(roll.now_ns())   # the same moment for the picture and the geometry
    try:
        image = roll.grab().toImage()
        frame = roll.frame()
        notes = roll.visible_notes()
        drawn = set()
        for k, note in enumerate(notes):
            centre = roll.note_rect(note, frame).center()
            if not frame.area.contains(centre) or any(roll.note_rect(later, frame).contains(centre)
                                                      for later in notes[k + 1:]):
                continue
            if near(image.pixelColor(int(centre.x()), int(centre.y())), theme.VOICE_COLOURS[note.voice]):
                drawn.add(note.voice)
        return drawn
    finally:
        roll.freeze(None)


def test_midi_learn_binds_a_controller_and_the_controller_then_moves_the_knob(live_window, outside, qtbot, tmp_path):
    w = live_window
    panel = w.learn_panel
    sender = connect(outside)
    panel.learn_buttons["temperature"].click()
    assert panel.learn_buttons["temperature"].text() == "Move a control…"
    sender.send_message([0xB0, 21, 40])          # the controller the musician moves
    qtbot.waitUntil(lambda: snapshot_value(w, "config", "knob_controls") == (("temperature", 21),), timeout=WAIT_MS)
    assert panel.learn_buttons["temperature"].text() == "CC 21" and panel.waiting is None
    for value in (0, 64, 127):
        sender.send_message([0xB0, 21, value])
        expected = KNOBS["temperature"].value(value)
        qtbot.waitUntil(lambda: w.sampling.temperature.value() == pytest.approx(expected, abs=0.01), timeout=WAIT_MS)
        assert snapshot_value(w, "settings", "temperature") == expected
        assert w.session.settings.temperature == expected
    # a knob turned in the window afterwards still reaches the bridge, the binding kept
    w.sampling.steps.setValue(9)
    qtbot.waitUntil(lambda: snapshot_value(w, "settings", "steps") == 9, timeout=WAIT_MS)
    assert snapshot_value(w, "settings", "temperature") == 2.0
    assert snapshot_value(w, "config", "knob_controls") == (("temperature", 21),)
    # program change, for a knob with choices; then the binding goes into a preset and comes back
    panel.learn_buttons["mode"].click()
    sender.send_message([0xC0, 1])
    qtbot.waitUntil(lambda: ("mode", "program") in snapshot_value(w, "config", "knob_controls"), timeout=WAIT_MS)
    sender.send_message([0xC0, 1])
    qtbot.waitUntil(lambda: w.playing.mode.currentData() == "phrase", timeout=WAIT_MS)
    path = w.save_preset("bound")
    assert json.loads(path.read_text())["controls"] == {"temperature": 21, "mode": "program"}
    panel.clear_buttons["temperature"].click()
    qtbot.waitUntil(lambda: snapshot_value(w, "config", "knob_controls") == (("mode", "program"),), timeout=WAIT_MS)
    assert panel.learn_buttons["temperature"].text() == "Learn"
    assert w.load_preset("bound")
    qtbot.waitUntil(lambda: len(snapshot_value(w, "config", "knob_controls")) == 2, timeout=WAIT_MS)
    assert panel.learn_buttons["temperature"].text() == "CC 21"
    # a program change cannot bind a knob with a range: it says so and binds nothing
    panel.learn_buttons["alpha"].click()
    sender.send_message([0xC0, 0])
    qtbot.waitUntil(lambda: panel.waiting is None, timeout=WAIT_MS)
    assert "has a range" in w.statusBar().currentMessage()
    assert not [b for b in w.session.config.knob_controls if b[0] == "alpha"]
    # the model, from a controller: loaded in the bridge's process, then shown in the window
    panel.learn_buttons["engine"].click()
    sender.send_message([0xB0, 30, 0])
    qtbot.waitUntil(lambda: ("engine", 30) in snapshot_value(w, "config", "knob_controls"), timeout=WAIT_MS)
    sender.send_message([0xB0, 30, 0])                   # the first slice: coconet-live
    qtbot.waitUntil(lambda: w.session.bridge.snapshot.model == "coconet-live", timeout=START_TIMEOUT_MS)
    qtbot.waitUntil(lambda: w.session.model == "coconet-live"
                    and w.model_panel.model_combo.currentData() == "coconet-live", timeout=START_TIMEOUT_MS)


def test_the_roll_draws_notes_that_came_through_a_jack_port(live_window, outside, qtbot):
    w = live_window
    w.playing.clock.setCurrentIndex(w.playing.clock.findData("free"))
    qtbot.waitUntil(lambda: snapshot_value(w, "config", "clock") == "free", timeout=WAIT_MS)
    assert voices_drawn(w.roll) == set()
    sender = connect(outside)
    for k, pitch in enumerate(MELODY[:6]):
        sender.send_message([NOTE_ON, pitch, 100])
        qtbot.waitUntil(lambda: sum(n.voice == 0 for n in w.roll.notes) == k + 1, timeout=WAIT_MS)
        sender.send_message([NOTE_OFF, pitch, 0])
    qtbot.waitUntil(lambda: {n.voice for n in w.roll.notes} == {0, 1, 2, 3}, timeout=WAIT_MS)
    melody = [n.pitch for n in w.roll.notes if n.voice == 0]
    assert melody == MELODY[:6]
    # what the roll shows as harmony is what went out of the port
    sent = {m[1] for m in harmony_ons(outside.messages())}
    assert {n.pitch for n in w.roll.notes if n.voice > 0} <= sent
    # and it is drawn, each voice in its colour (the melody always; a harmony voice unless every
    # one of its notes is in unison under another's)
    assert 0 in voices_drawn(w.roll) and len(voices_drawn(w.roll)) >= 3
    assert wait_for(lambda: not unreleased(outside.messages()), timeout=10)
    qtbot.waitUntil(lambda: w.meters.notes_meter.value.text() == "6", timeout=WAIT_MS)   # the meters read the stats


# ------------------------------------------------------------- stopping cleanly

def test_closing_the_window_releases_every_note_and_saves_the_state(qtbot, store, jack_server, tiny_model, tmp_path,
                                                                    outside):
    w = open_window(qtbot, store, tiny_model, tmp_path, live=True)
    sender = connect(outside)
    sender.send_message([NOTE_ON, 67, 90])   # held: never released by the DAW
    assert wait_for(lambda: len(harmony_ons(outside.messages())) >= 1, timeout=10)
    sender.send_message([NOTE_ON, 72, 90])   # legato, also held
    assert wait_for(lambda: sum(1 for m in outside.messages() if m == bytes([NOTE_ON, 72, 90])) == 1, timeout=10)
    assert unreleased(outside.messages())
    bridge = w.session.bridge
    w.close()
    assert wait_for(lambda: cc123_channels(outside.messages()) >= {ECHO_CHANNEL, 1, 2, 3}, timeout=10)
    assert unreleased(outside.messages()) == {}
    assert bridge.closed and bridge.released   # the bridge's process closed its ports, then ended
    assert json.loads(store.value("state/preset"))["model"] == str(tiny_model)


def test_panic_releases_every_note_at_once(live_window, outside, qtbot):
    sender = connect(outside)
    sender.send_message([NOTE_ON, 70, 90])
    assert wait_for(lambda: unreleased(outside.messages()), timeout=10)
    live_window.header.panic_button.click()
    assert wait_for(lambda: not unreleased(outside.messages()), timeout=10)
    assert not live_window.roll.sounding()


def test_a_bridge_process_that_dies_is_shown_and_connect_starts_another(live_window, qtbot):
    w = live_window
    dead = w.session.bridge
    os.kill(dead.pid, signal.SIGKILL)
    qtbot.waitUntil(lambda: w.session.bridge is None, timeout=WAIT_MS)
    # the session lets go of the bridge on its lane, then tells the window (the GUI thread) why
    qtbot.waitUntil(lambda: "process ended" in w.header.status_label.text(), timeout=WAIT_MS)
    assert "SIGKILL" in w.header.status_label.toolTip()
    assert "SIGKILL" in w.statusBar().currentMessage()
    w.ports.connect_button.click()
    qtbot.waitUntil(lambda: w.header.status_label.text().startswith("Live"), timeout=START_TIMEOUT_MS)
    assert w.session.bridge.alive and w.session.bridge.pid != dead.pid


def test_the_window_says_whether_the_bridge_keeps_the_cpus_awake(live_window, qtbot):
    """The bridge's process asks the OS to keep the CPUs awake; the window learns what it was
    granted and, where refused, says so as the command does."""
    from bridge.scheduling import CPU_DMA_LATENCY, cpu_latency_limit_us

    w = live_window
    qtbot.waitUntil(lambda: "ports up in" in w.statusBar().currentMessage(), timeout=WAIT_MS)
    granted = os.access(CPU_DMA_LATENCY, os.W_OK)
    assert w.session.bridge.cpus_awake == granted
    if granted:
        assert cpu_latency_limit_us() == 0
    said = "CPUs may idle deep" in w.statusBar().currentMessage()
    assert said == (not granted and sys.platform.startswith("linux"))


# ------------------------------------------------------------- a stalled GUI does not touch the MIDI

def test_a_gui_thread_holding_the_gil_changes_neither_latency_nor_timing(live_window, jack_rig, outside, qtbot,
                                                                         capsys):
    """The GUI thread is blocked for 500 ms by a call that holds the GIL and burns a core (numba
    code without nogil; a Qt call or drawing that keeps the GIL is the same to the bridge) while
    jack_midiseq, a process of its own, plays a melody into the window's bridge, and
    jack_midi_dump stamps, on JACK's clock, the melody, the harmony and markers that the GUI
    thread sends right before and after the block (test_remote.play_through_a_stall). Notes played
    during the block must be answered during it, as fast as with the GUI idle."""
    w = live_window
    marker = stall_marker(outside)
    w.playing.clock.setCurrentIndex(w.playing.clock.findData("free"))
    w.playing.speculate.setChecked(False)   # every note answered by the engine: the same work idle and blocked
    w.channels.echo.setChecked(False)        # the melody's note-ons at the dump are the sequencer's only
    qtbot.waitUntil(lambda: snapshot_value(w, "config", "echo") is False
                    and snapshot_value(w, "config", "speculate") is False, timeout=WAIT_MS)
    stall = play_through_a_stall(jack_rig, marker, lambda block: QTimer.singleShot(0, block),
                                 lambda seconds: qtbot.wait(int(seconds * 1e3)))
    with capsys.disabled():
        print(f"\n  GUI thread holding the GIL: note-on -> harmony {stall.line()}")
    # timing: notes played while the GUI thread was blocked were answered while it was
    assert stall.answered_meanwhile(), stall
    # latency: the same as with the GUI idle, within what a loaded 2-core machine jitters
    assert stall.as_fast_as_idle(), stall


# ------------------------------------------------------------- ports and the command

def test_choosing_an_existing_port_reconnects_the_bridge_to_it(live_window, outside, qtbot):
    w = live_window
    keyboard = outside.sender(virtual="gui test keyboard")   # an existing port, as a DAW's would be
    w.session.refresh_ports()
    qtbot.waitUntil(lambda: any("gui test keyboard" in (w.ports.in_combo.itemData(i) or "")
                                for i in range(w.ports.in_combo.count())), timeout=WAIT_MS)
    index = next(i for i in range(w.ports.in_combo.count())
                 if "gui test keyboard" in (w.ports.in_combo.itemData(i) or ""))
    w.ports.in_combo.setCurrentIndex(index)
    old = w.session.bridge
    w.ports.connect_button.click()
    qtbot.waitUntil(lambda: w.session.bridge is not old and w.session.bridge is not None, timeout=START_TIMEOUT_MS)
    assert "gui test keyboard" in w.session.bridge.input.connected_to
    assert old.closed and old.released
    assert "gui test keyboard" in w.header.status_label.text()
    outside.receiver("bachbridge out")   # the new bridge's output port
    keyboard.send_message([NOTE_ON, 72, 80])
    assert wait_for(lambda: harmony_ons(outside.messages()), timeout=10), "no harmony from the connected port"
    keyboard.send_message([NOTE_OFF, 72, 0])
    assert wait_for(lambda: not unreleased(outside.messages()), timeout=10)


def test_the_gui_command_opens_the_ports_and_sigterm_releases_every_note(fresh_jack, tiny_model, outside, tmp_path,
                                                                         capsys):
    """`bachbridge gui` as a user starts it: the bridge's process comes up (launched before the
    window is made), plays, and SIGTERM to the window closes it cleanly, state saved."""
    import subprocess
    import sys

    from conftest import ROOT

    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path / "config"),
               XDG_DATA_HOME=str(tmp_path / "data"))
    log = tmp_path / "gui.log"
    graph = fresh_jack.graph()   # a server of its own: no earlier bridge's ports, no earlier clients (see fresh_jack)
    started = time.perf_counter()
    with open(log, "wb") as output:
        gui = subprocess.Popen([sys.executable, "-m", "bridge", "gui", "--api", "jack", "--model", str(tiny_model)],
                               cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        fresh_jack.port("bachbridge in", timeout=120)
        fresh_jack.port("bachbridge out", timeout=120)
        ports_up = time.perf_counter() - started
        sender = connect(outside)
        sender.send_message([NOTE_ON, 67, 90])   # held
        assert wait_for(lambda: harmony_ons(outside.messages()), timeout=30), (
            f"received {[m.hex() for m in outside.messages()]}, gui exit status {gui.poll()}, "
            f"connections {({port: graph.connections(port) for port in graph.ports('')})}, "
            f"cycles jackd timed out on: {fresh_jack.log_path.read_text().count('SuspendRefNum')}, "
            f"gui's log: {log.read_text()[-2000:]}")
        gui.send_signal(signal.SIGTERM)
        assert gui.wait(60) == 0, log.read_text()
    finally:
        if gui.poll() is None:
            gui.kill()
    assert cc123_channels(outside.messages()) >= {ECHO_CHANNEL, 1, 2, 3}
    assert unreleased(outside.messages()) == {}
    assert list((tmp_path / "config").rglob("*.conf")), "the window's state was not saved"
    with capsys.disabled():
        print(f"\n  bachbridge gui: ports up {ports_up * 1e3:.0f} ms after the command started")


def test_the_screenshot_command_writes_a_png(tiny_model, tmp_path):
    from conftest import run_cli

    target = tmp_path / "window.png"
    result = run_cli("gui", "--screenshot", target, "--model", tiny_model, timeout=300)
    assert result.returncode == 0, result.stderr
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PyQt6.QtGui import QImage

    image = QImage(str(target))
    assert image.width() >= 1200 and image.height() >= 800


# ------------------------------------------------------------- no MIDI system

def test_with_no_midi_system_the_window_says_what_to_do_and_goes_live_when_one_starts(
        qtbot, store, tiny_model, tmp_path, monkeypatch):
    from jackrig import SERVER_SLOTS, JackServer, _accepts_clients, missing_programs

    if os.path.exists("/dev/snd/seq"):
        pytest.skip("this machine has an ALSA sequencer: there is always a MIDI system")
    if missing_programs(["jackd"]):
        pytest.skip("no jackd (Debian: jackd2; `make test` installs it)")
    name = next(f"bachbridge-rig-{k}" for k in range(SERVER_SLOTS) if not _accepts_clients(f"bachbridge-rig-{k}"))
    monkeypatch.setenv("JACK_DEFAULT_SERVER", name)   # a JACK server nobody runs (yet)
    window = MainWindow(store, model=str(tiny_model), ports=PortChoice(), presets_dir=tmp_path / "presets")
    qtbot.addWidget(window)
    window.show()
    server = JackServer(log=tmp_path / "jackd.log")
    try:
        qtbot.waitUntil(lambda: window.no_midi_system() and not window.session.starting, timeout=START_TIMEOUT_MS)
        # where the user looks: the status line and the Ports panel, with what to do
        assert window.ports.no_midi_hint.isVisible() and "JACK" in window.ports.no_midi_hint.text()
        status = window.header.status_label.text()
        assert "no MIDI system" in status and "offline work still runs" in status
        target = tmp_path / "offline.mid"
        result = finished(window, window.harmonize_file(EXAMPLE_MELODY, target), qtbot)
        assert target.exists(), result
        server.name = name
        server.start()   # the user starts JACK: the window looks again and goes live by itself
        # as the window shows it (the session's bridge is there a moment before the window hears of it)
        qtbot.waitUntil(lambda: window.header.status_label.text().startswith("Live"), timeout=WAIT_MS)
        assert window.session.bridge is not None and not window.ports.no_midi_hint.isVisible()
        assert len(server.graph().ports(r":bachbridge (in|out)$")) == 2
    finally:
        window.close()
        server.close()
