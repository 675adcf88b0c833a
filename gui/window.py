"""The control window: knobs on the sides, the piano roll and the meters in the middle.

The window holds no knob state of its own: what the controls show is turned into a `Settings` and
a `LiveConfig` (through `.replace`, so their own checks apply) and handed to the `LiveSession`,
which pushes them into the bridge. A value they refuse is shown in the status bar and marked on
the control; the bridge keeps playing by the last good one.

The bridge plays in a process of its own (see gui.session): the GUI thread reads what it last
reported (stats, the monitor queue for the roll) on a timer and never waits for it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from PyQt6.QtCore import QSettings, Qt, QTimer, QUrl
from PyQt6.QtGui import QAction, QDesktopServices, QKeySequence
from PyQt6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QGridLayout,
                             QGroupBox, QHBoxLayout, QInputDialog, QLabel, QMainWindow, QProgressBar,
                             QPushButton, QScrollArea, QSizePolicy, QSlider, QSpinBox, QTabWidget, QVBoxLayout,
                             QWidget)

from bridge.clock import MODES as CLOCK_MODES
from bridge.engines import engine_names
from bridge.errors import BadInput
from bridge.engines.phrase import HARMONIZERS
from bridge.live import LIVE_SETTINGS, MODES, LiveConfig
from bridge.live.learn import KEYS
from bridge.settings import Settings
from gui import presets, state, theme
from gui.learnpanel import LearnPanel
from gui.offline import FilePlayer, OfflineJob
from gui.passage import PassagePanel
from gui.pianoroll import PianoRoll, note_name
from gui.scheduleplot import SchedulePlot
from gui.session import LiveSession, PortChoice, PortsSeen
from gui.widgets import NoteSpinBox, Readout, StatusLight, mark_invalid, tip

TICK_MS = 33            # the roll's frame rate (~30/s)
STATS_EVERY = 3         # ticks between meter updates (~10/s)
PROBLEM_SHOWN_MS = 10_000
MONITOR_BATCH = 4096    # most monitor events taken per tick (the queue is bounded anyway)
CLOCK_LABELS = {"auto": "Auto (DAW clock, else BPM)", "midi": "DAW clock", "internal": "Internal BPM",
                "free": "Free (each note = next 16th)"}
VOICE_RANGE_NAMES = ("Soprano", "Alto", "Tenor", "Bass")
STATUS_TIP = "The live bridge: its MIDI system and ports"
NO_MIDI_HINT = ("No MIDI system is running. Start a JACK server (qjackctl, or PipeWire's JACK) or ALSA's "
                "sequencer (sudo modprobe snd-seq): the bridge goes live when one appears. Offline work "
                "runs meanwhile.")
LOOK_FOR_MIDI_MS = 2000


@dataclass
class Knob:
    """One control (or group of controls) bound to one field of Settings ('settings') or
    LiveConfig ('config'): `read` turns what the widgets show into the field's value, `show`
    puts a value into the widgets."""
    part: str
    field: str
    widgets: list[QWidget]
    read: Callable[[], Any]
    show: Callable[[Any], None]


class MainWindow(QMainWindow):
    def __init__(self, store: QSettings, *, model: str | None = None, ports: PortChoice | None = None,
                 presets_dir: Path | None = None, start_bridge: bool = True):
        super().__init__()
        self.store = store
        self.presets_dir = Path(presets_dir) if presets_dir else state.default_presets_dir()
        self.offline_job: OfflineJob | None = None
        self.last_outputs: list[Path] = []
        self.player: FilePlayer | None = None
        self._ticks = 0
        self._closed = False
        self._port_problem: str | None = None
        self._anchored_at: tuple[int | None, int | None] = (None, None)   # (position, onset time)
        self._problem_timer = QTimer(self)   # the status bar's red ends with the message
        self._problem_timer.setSingleShot(True)
        self._problem_timer.timeout.connect(lambda: self.statusBar().setStyleSheet(""))

        restored, restore_problem = state.restored_preset(store)
        self.session = LiveSession(model or restored.model, restored.config, restored.settings,
                                   ports or state.restored_ports(store), parent=self)
        self.session.problem.connect(self.show_problem)
        self.session.bridge_changed.connect(self._bridge_changed)
        self.session.engine_changed.connect(self._engine_changed)
        self.session.ports_seen.connect(self._ports_seen)
        # the lane and the bridge's process start now, while the window builds: what they send
        # back comes through the event loop, to the built window
        self.session.load_model(self.session.model)
        self.session.refresh_ports()
        self._live_wanted = start_bridge   # (or Connect pressed): go live when a MIDI system appears
        if start_bridge:
            self.session.start()

        self.setWindowTitle("bachbridge")
        self.knobs: list[Knob] = []
        self._build()
        self._show_state(restored.config, restored.settings)
        self._select_model_item(self.session.model)
        self._refresh_preset_list()
        if restore_problem:
            self.show_problem(restore_problem)
        geometry = store.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1360, 860)

        # the roll takes the first focus, so no control starts out highlighted
        self.roll.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.roll.setFocus()
        self.timer = QTimer(self)
        self.timer.timeout.connect(self._tick)
        self.timer.start(TICK_MS)
        self._show_bridge_state()

    # ------------------------------------------------------------ building

    def _build(self) -> None:
        central = QWidget()
        outer = QVBoxLayout(central)
        outer.setContentsMargins(10, 8, 10, 4)
        outer.setSpacing(8)
        outer.addLayout(self._build_header())
        body = QHBoxLayout()
        body.setSpacing(10)
        body.addWidget(self._scrolling(self._build_model_group(), self._build_sampling_group(),
                                       self._build_harmony_group()), 0)
        body.addLayout(self._build_centre(), 1)
        body.addWidget(self._scrolling(self._build_playing_group(), self._build_respond_group(),
                                       self._build_output_group(), self._build_ports_group(),
                                       self._build_offline_group(), self._build_learn_panel()), 0)
        outer.addLayout(body, 1)
        self.setCentralWidget(central)
        self._build_actions()
        self.statusBar().showMessage("Ready")

    def _scrolling(self, *groups: QWidget) -> QScrollArea:
        column = QWidget()
        layout = QVBoxLayout(column)
        layout.setContentsMargins(0, 0, 4, 0)
        layout.setSpacing(8)
        for group in groups:
            layout.addWidget(group)
        layout.addStretch(1)
        area = QScrollArea()
        area.setWidget(column)
        area.setWidgetResizable(True)
        area.setFrameShape(QScrollArea.Shape.NoFrame)
        area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        # as wide as the panels want, plus room for the vertical scroll bar when the window is short,
        # so that no control is ever cut off at the side
        width = column.sizeHint().width() + area.verticalScrollBar().sizeHint().width() + 2
        area.setFixedWidth(max(300, width))
        area.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)
        return area

    def _build_header(self) -> QHBoxLayout:
        row = QHBoxLayout()
        title = QLabel("bachbridge")
        title.setStyleSheet("font-size: 18px; font-weight: 700; letter-spacing: 1px;")
        row.addWidget(title)
        subtitle = QLabel("live chorale harmony")
        subtitle.setProperty("role", "caption")
        row.addWidget(subtitle)
        row.addSpacing(18)
        self.status_light = StatusLight()
        row.addWidget(self.status_light)
        self.status_label = QLabel("")
        # a long port name must not widen the window: the label gives way (and elides) instead
        self.status_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        tip(self.status_label, STATUS_TIP)
        row.addWidget(self.status_label, 1)
        row.addWidget(QLabel("Preset"))
        self.preset_combo = QComboBox()
        self.preset_combo.setMinimumWidth(150)
        tip(self.preset_combo, "Load a saved preset (knobs and model; not the ports)", "Ctrl+L")
        self.preset_combo.activated.connect(self._preset_chosen)
        row.addWidget(self.preset_combo)
        self.save_preset_button = QPushButton("Save…")
        tip(self.save_preset_button, "Save the knobs and model as a named preset", "Ctrl+S")
        self.save_preset_button.clicked.connect(self._ask_save_preset)
        row.addWidget(self.save_preset_button)
        self.import_preset_button = QPushButton("Open file…")
        tip(self.import_preset_button, "Load a preset from a JSON file (older preset versions load too)", "Ctrl+O")
        self.import_preset_button.clicked.connect(self._ask_import_preset)
        row.addWidget(self.import_preset_button)
        row.addSpacing(12)
        self.panic_button = QPushButton("PANIC")
        self.panic_button.setObjectName("panic")
        tip(self.panic_button, "All notes off, now (note-offs, then CC 123 on every channel)", "Esc")
        self.panic_button.clicked.connect(self.panic)
        row.addWidget(self.panic_button)
        return row

    def _group(self, title: str) -> tuple[QGroupBox, QFormLayout]:
        group = QGroupBox(title)
        form = QFormLayout(group)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setHorizontalSpacing(8)
        form.setVerticalSpacing(5)
        return group, form

    def _row(self, form: QFormLayout, label: str, widget: QWidget, tooltip: str,
             shown: QWidget | None = None) -> QWidget:
        """A labelled row whose label's mnemonic (&X) focuses `widget`: Alt+X. `shown`: what the
        row holds when that is more than the control itself (a slider beside a spin box)."""
        caption = QLabel(label)
        caption.setBuddy(widget)
        shortcut = None
        if "&" in label:
            shortcut = "Alt+" + label[label.index("&") + 1].upper()
        tip(widget, tooltip, shortcut)
        caption.setToolTip(widget.toolTip())
        form.addRow(caption, shown or widget)
        return widget

    def _double(self, low: float, high: float, step: float, decimals: int = 2) -> QDoubleSpinBox:
        box = QDoubleSpinBox()
        box.setRange(low, high)
        box.setSingleStep(step)
        box.setDecimals(decimals)
        box.setKeyboardTracking(False)  # typed values apply on Enter/leaving, not per keystroke
        return box

    def _int(self, low: int, high: int) -> QSpinBox:
        box = QSpinBox()
        box.setRange(low, high)
        box.setKeyboardTracking(False)
        return box

    def _bind(self, part: str, field: str, widgets: list[QWidget], read, show) -> None:
        knob = Knob(part, field, widgets, read, show)
        self.knobs.append(knob)
        for widget in widgets:
            signal = (widget.valueChanged if isinstance(widget, (QSpinBox, QDoubleSpinBox))
                      else widget.toggled if isinstance(widget, QCheckBox)
                      else widget.currentIndexChanged if isinstance(widget, QComboBox) and not widget.isEditable()
                      else widget.currentTextChanged)
            signal.connect(lambda *_, k=knob: self._knob_changed(k))

    def _build_model_group(self) -> QGroupBox:
        group, form = self._group("Model")
        self.model_combo = QComboBox()
        self.model_combo.activated.connect(self._model_chosen)
        self._row(form, "&Model", self.model_combo, "The engine and model that writes the harmony")
        self.load_model_button = QPushButton("Load .onnx…")
        tip(self.load_model_button, "Load any exported model (.onnx); its metadata says what it is", "Ctrl+M")
        self.load_model_button.clicked.connect(self._ask_load_model)
        form.addRow("", self.load_model_button)
        self.model_info = QLabel("")
        self.model_info.setProperty("role", "caption")
        # short lines, no word wrap: a wrapping label in a form in a scroll area gets too little height
        self.model_info.setMinimumHeight(3 * self.model_info.fontMetrics().lineSpacing() + 4)
        form.addRow(self.model_info)
        return group

    def _build_sampling_group(self) -> QGroupBox:
        group, form = self._group("Sampling")
        temperature_row = QHBoxLayout()
        self.temperature_slider = QSlider(Qt.Orientation.Horizontal)
        self.temperature_slider.setRange(0, 200)
        self.temperature = self._double(0.0, 5.0, 0.05)
        self.temperature_slider.valueChanged.connect(lambda v: self.temperature.setValue(v / 100))
        self.temperature.valueChanged.connect(
            lambda v: (self.temperature_slider.blockSignals(True), self.temperature_slider.setValue(round(v * 100)),
                       self.temperature_slider.blockSignals(False)))
        tip(self.temperature_slider, "Temperature: 0 = always the likeliest pitch, higher = bolder choices", "Alt+T")
        temperature_row.addWidget(self.temperature_slider, 1)
        temperature_row.addWidget(self.temperature)
        holder = QWidget()
        holder.setLayout(temperature_row)
        temperature_row.setContentsMargins(0, 0, 0, 0)
        self._row(form, "&Temperature", self.temperature,
                  "Softmax temperature of every draw: 0 = always the likeliest pitch", shown=holder)
        self._bind("settings", "temperature", [self.temperature], self.temperature.value, self.temperature.setValue)

        self.steps = self._int(1, 64)
        self._row(form, "&Steps", self.steps, "Gibbs steps: network calls per answer (live: few; offline: 12 or more)")
        self._bind("settings", "steps", [self.steps], self.steps.value, self.steps.setValue)
        self.pmax = self._double(0.0, 1.0, 0.05)
        self._row(form, "pma&x", self.pmax, "Share of free notes resampled at the first Gibbs step")
        self._bind("settings", "pmax", [self.pmax], self.pmax.value, self.pmax.setValue)
        self.pmin = self._double(0.0, 1.0, 0.01)
        self._row(form, "pmi&n", self.pmin, "Share resampled at the end of the annealing (must be <= pmax)")
        self._bind("settings", "pmin", [self.pmin], self.pmin.value, self.pmin.setValue)
        self.alpha = self._double(0.0, 4.0, 0.05)
        self._row(form, "a&lpha", self.alpha, "Fraction of the steps over which the share falls from pmax to pmin (> 0)")
        self._bind("settings", "alpha", [self.alpha], self.alpha.value, self.alpha.setValue)
        self.schedule_plot = SchedulePlot(LIVE_SETTINGS)
        form.addRow(self.schedule_plot)
        self.candidates = self._int(1, 64)
        self._row(form, "&Candidates", self.candidates, "Chains sampled side by side; the likeliest under the model wins")
        self._bind("settings", "candidates", [self.candidates], self.candidates.value, self.candidates.setValue)
        self.parallel_penalty = self._double(0.0, 50.0, 0.5, 1)
        self._row(form, "&Parallels penalty", self.parallel_penalty,
                  "Nats taken off a pitch for each consecutive perfect fifth or octave it would make (0 = off)")
        self._bind("settings", "parallel_penalty", [self.parallel_penalty], self.parallel_penalty.value,
                   self.parallel_penalty.setValue)
        return group

    def _build_harmony_group(self) -> QGroupBox:
        group, form = self._group("Harmony")
        self.key = QComboBox()
        self.key.setEditable(True)
        self.key.addItems(KEYS)
        self.key.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self._row(form, "&Key", self.key, "Keep the lower voices in a key: off, auto (from the melody), "
                                          "or a key such as Bb, F#m, D minor")
        self._bind("settings", "key", [self.key], lambda: self.key.currentText().strip(), self.key.setCurrentText)

        grid = QGridLayout()
        grid.setHorizontalSpacing(6)
        grid.setVerticalSpacing(4)
        grid.addWidget(QLabel("low"), 0, 1, Qt.AlignmentFlag.AlignHCenter)
        grid.addWidget(QLabel("high"), 0, 2, Qt.AlignmentFlag.AlignHCenter)
        self.voice_range_boxes: list[tuple[NoteSpinBox, NoteSpinBox]] = []
        for voice, name in enumerate(VOICE_RANGE_NAMES):
            caption = QLabel(f"&{name}" if voice == 0 else name)
            caption.setStyleSheet(f"color: {theme.VOICE_COLOURS[voice].name()};")
            low, high = NoteSpinBox(), NoteSpinBox()
            for box, end in ((low, "lowest"), (high, "highest")):
                box.setKeyboardTracking(False)
                tip(box, f"{name}: the {end} pitch it may sing (ranges must span an octave or more)",
                    "Alt+S, then Tab" if voice == 0 else "Tab from Soprano")
            if voice == 0:
                caption.setBuddy(low)
            grid.addWidget(caption, voice + 1, 0)
            grid.addWidget(low, voice + 1, 1)
            grid.addWidget(high, voice + 1, 2)
            self.voice_range_boxes.append((low, high))
        holder = QWidget()
        holder.setLayout(grid)
        grid.setContentsMargins(0, 0, 0, 0)
        form.addRow(QLabel("Voice ranges"))
        form.addRow(holder)

        def read_ranges():
            return tuple((low.value(), high.value()) for low, high in self.voice_range_boxes)

        def show_ranges(ranges):
            for (low, high), (lo, hi) in zip(self.voice_range_boxes, ranges):
                low.setValue(lo)
                high.setValue(hi)

        self._bind("settings", "voice_ranges", [b for pair in self.voice_range_boxes for b in pair],
                   read_ranges, show_ranges)
        return group

    def _build_playing_group(self) -> QGroupBox:
        group, form = self._group("Playing")
        self.mode = QComboBox()
        for name in MODES:
            self.mode.addItem({"note": "Note: answer each onset", "phrase": "Phrase: look ahead",
                               "respond": "Respond: call and response"}.get(name, name), name)
        self._row(form, "M&ode", self.mode, "note: each melody note is answered at once; phrase: wait the "
                                            "lookahead, harmonize the phrase, play it that much later; "
                                            "respond: when you stop, answer your phrase with one of its own")
        self._bind("config", "mode", [self.mode], self.mode.currentData,
                   lambda v: self.mode.setCurrentIndex(max(0, self.mode.findData(v))))
        self.lookahead = self._double(0.25, 16.0, 0.25)
        self.lookahead.setSuffix(" beats")
        self._row(form, "Look&ahead", self.lookahead, "Phrase mode: beats the bridge waits before it plays "
                                                       "(set the DAW's track delay to match)")
        self._bind("config", "lookahead_beats", [self.lookahead], self.lookahead.value, self.lookahead.setValue)
        self.speculate = QCheckBox("Speculate")
        self._row(form, "", self.speculate, "Harmonize likely next notes ahead of time, so an answer is "
                                            "ready when the note comes (Alt+U)")
        self.speculate.setText("Spec&ulate")
        self._bind("config", "speculate", [self.speculate], self.speculate.isChecked, self.speculate.setChecked)
        self.clock = QComboBox()
        for name in CLOCK_MODES:
            self.clock.addItem(CLOCK_LABELS.get(name, name), name)
        self._row(form, "C&lock", self.clock, "auto: the DAW's MIDI clock while it runs, else the BPM below; "
                                              "DAW clock; internal BPM; free: each note is the next 16th")
        self._bind("config", "clock", [self.clock], self.clock.currentData,
                   lambda v: self.clock.setCurrentIndex(max(0, self.clock.findData(v))))
        self.bpm = self._double(20.0, 400.0, 1.0, 1)
        self.bpm.setSuffix(" bpm")
        self._row(form, "&BPM", self.bpm, "The internal tempo (auto without a DAW clock, and internal)")
        self._bind("config", "bpm", [self.bpm], self.bpm.value, self.bpm.setValue)
        self.context = self._int(0, 256)
        self.context.setSuffix(" 16ths")
        self._row(form, "Conte&xt", self.context, "16ths of the past the model is shown (16 = a bar)")
        self._bind("config", "context_steps", [self.context], self.context.value, self.context.setValue)
        return group

    def _build_respond_group(self) -> QGroupBox:
        group, form = self._group("Call and response")
        self.respond_after = self._double(0.25, 16.0, 0.25)
        self.respond_after.setSuffix(" beats")
        self._row(form, "Ans&wer after", self.respond_after, "Respond mode: the bridge answers once you have "
                                                            "been silent this long")
        self._bind("config", "respond_after_beats", [self.respond_after], self.respond_after.value,
                   self.respond_after.setValue)
        self.answer_bars = self._int(1, 16)
        self.answer_bars.setSuffix(" bars")
        self._row(form, "Answer ba&rs", self.answer_bars, "Respond mode: how long the answer is")
        self._bind("config", "answer_bars", [self.answer_bars], self.answer_bars.value, self.answer_bars.setValue)
        self.respond_cc = QComboBox()
        self.respond_cc.addItem("off", None)
        for number in range(120):
            self.respond_cc.addItem(f"CC {number}" + (" (sustain pedal)" if number == 64 else ""), number)
        self._row(form, "&Footswitch", self.respond_cc, "Respond mode: a controller that asks for the answer "
                                                       "at once (pressed: value 64 or more)")
        self._bind("config", "respond_cc", [self.respond_cc], self.respond_cc.currentData,
                   lambda c: self.respond_cc.setCurrentIndex(max(0, self.respond_cc.findData(c))))
        self.top_p = self._double(0.05, 1.0, 0.05)
        self._row(form, "To&p p", self.top_p, "Phrase engine: draw only among the likeliest notes that make up "
                                               "this share of the probability (1 = all)")
        self._bind("settings", "top_p", [self.top_p], self.top_p.value, self.top_p.setValue)
        self.repeat_limit = self._int(0, 16)
        self._row(form, "Repeat l&imit", self.repeat_limit, "Phrase engine: a pitch struck at most this many "
                                                            "times in a row (0 = any)")
        self._bind("settings", "repeat_limit", [self.repeat_limit], self.repeat_limit.value, self.repeat_limit.setValue)
        self.harmonizer = QComboBox()
        for name in HARMONIZERS:
            self.harmonizer.addItem(name, name)
        self._row(form, "Harmoni&zer", self.harmonizer, "Phrase engine: the voices under its melody, from a model "
                                                        "that fills or a plain voicing of its chords")
        self._bind("settings", "harmonizer", [self.harmonizer], self.harmonizer.currentData,
                   lambda h: self.harmonizer.setCurrentIndex(max(0, self.harmonizer.findData(h))))
        return group

    def _build_output_group(self) -> QGroupBox:
        group, form = self._group("Channels")
        self.channel_boxes = []
        for voice, (name, letter) in enumerate((("Alto", "A"), ("Tenor", "e"), ("Bass", "B")), start=1):
            box = self._int(1, 16)
            box.setPrefix("ch ")
            label = name.replace(letter, "&" + letter, 1) if letter != "B" else "Bass"
            self._row(form, label, box, f"MIDI channel {name.lower()} is sent on (all three may share one)")
            form.labelForField(box).setStyleSheet(f"color: {theme.VOICE_COLOURS[voice].name()};")
            self.channel_boxes.append(box)
        self._bind("config", "channels", self.channel_boxes,
                   lambda: tuple(b.value() - 1 for b in self.channel_boxes),
                   lambda channels: [b.setValue(c + 1) for b, c in zip(self.channel_boxes, channels)])
        self.echo = QCheckBox("Echo the melody")
        self._row(form, "", self.echo, "Send the melody on too, on its own channel (Alt+H)")
        self.echo.setText("Ec&ho the melody")
        self._bind("config", "echo", [self.echo], self.echo.isChecked, self.echo.setChecked)
        self.echo_channel = self._int(1, 16)
        self.echo_channel.setPrefix("ch ")
        self._row(form, "Mel&ody echo", self.echo_channel, "MIDI channel the melody is echoed on")
        form.labelForField(self.echo_channel).setStyleSheet(f"color: {theme.VOICE_COLOURS[0].name()};")
        self._bind("config", "echo_channel", [self.echo_channel], lambda: self.echo_channel.value() - 1,
                   lambda c: self.echo_channel.setValue(c + 1))
        self.in_channel = QComboBox()
        self.in_channel.addItem("any", None)
        for channel in range(16):
            self.in_channel.addItem(f"ch {channel + 1}", channel)
        self._row(form, "Melody &from", self.in_channel, "Take melody notes from this MIDI channel only")
        self._bind("config", "in_channel", [self.in_channel], self.in_channel.currentData,
                   lambda c: self.in_channel.setCurrentIndex(max(0, self.in_channel.findData(c))))
        return group

    def _build_ports_group(self) -> QGroupBox:
        group, form = self._group("Ports")
        self.api_combo = QComboBox()
        self._row(form, "&API", self.api_combo, "The MIDI system: auto picks JACK when a server runs, "
                                                "else ALSA (Linux), CoreMIDI (macOS), WinMM (Windows)")
        self.api_combo.currentIndexChanged.connect(self._api_chosen)
        self.in_combo = QComboBox()
        self._row(form, "&In", self.in_combo, "Where the melody comes from: our own virtual port, or an existing one")
        self.out_combo = QComboBox()
        self._row(form, "O&ut", self.out_combo, "Where the harmony goes: our own virtual port, or an existing one")
        buttons = QHBoxLayout()
        self.refresh_ports_button = QPushButton("Refresh")
        tip(self.refresh_ports_button, "Look again for MIDI systems and ports", "F5")
        self.refresh_ports_button.clicked.connect(self.session.refresh_ports)
        self.connect_button = QPushButton("Connect")
        tip(self.connect_button, "(Re)start the bridge on the ports chosen (every sounding note is released)",
            "Ctrl+R")
        self.connect_button.clicked.connect(self.start_bridge)
        buttons.addWidget(self.refresh_ports_button)
        buttons.addWidget(self.connect_button)
        form.addRow(buttons)
        self.no_midi_hint = QLabel(NO_MIDI_HINT)
        self.no_midi_hint.setWordWrap(True)
        self.no_midi_hint.setStyleSheet(f"color: {theme.WARN.name()};")
        self.no_midi_hint.hide()
        form.addRow(self.no_midi_hint)
        self._ports_seen_last: PortsSeen | None = None
        # with no MIDI system, look again now and then: the window goes live once one is started
        self._look_for_midi = QTimer(self)
        self._look_for_midi.setInterval(LOOK_FOR_MIDI_MS)
        self._look_for_midi.timeout.connect(self.session.refresh_ports)
        return group

    def _build_offline_group(self) -> QGroupBox:
        group, form = self._group("Offline")
        row = QHBoxLayout()
        self.harmonize_button = QPushButton("Harmonize file…")
        tip(self.harmonize_button, "Harmonize a MIDI file's melody in four voices, with the knobs as set", "Ctrl+H")
        self.harmonize_button.clicked.connect(self._ask_harmonize_file)
        self.convert_button = QPushButton("Convert folder…")
        tip(self.convert_button, "Harmonize every MIDI file under a folder into another folder", "Ctrl+B")
        self.convert_button.clicked.connect(self._ask_convert_folder)
        row.addWidget(self.harmonize_button)
        row.addWidget(self.convert_button)
        form.addRow(row)
        progress_row = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("")   # "%v / %m" once a conversion runs
        tip(self.progress, "Files done / files to do")
        self.cancel_button = QPushButton("Cancel")
        tip(self.cancel_button, "Stop the conversion after the file it is on (nothing half-written)", "Ctrl+.")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel_offline)
        progress_row.addWidget(self.progress, 1)
        progress_row.addWidget(self.cancel_button)
        form.addRow(progress_row)
        self.offline_label = QLabel("")
        self.offline_label.setWordWrap(True)
        self.offline_label.setProperty("role", "caption")
        form.addRow(self.offline_label)
        result_row = QHBoxLayout()
        self.reveal_button = QPushButton("Reveal")
        tip(self.reveal_button, "Show the result in the file manager", "Ctrl+E")
        self.reveal_button.clicked.connect(self.reveal_result)
        self.play_button = QPushButton("Play")
        tip(self.play_button, "Play the result out of the output port (again to stop)", "Ctrl+P")
        self.play_button.clicked.connect(self.toggle_play)
        for button in (self.reveal_button, self.play_button):
            button.setEnabled(False)
            result_row.addWidget(button)
        form.addRow(result_row)
        return group

    def _build_learn_panel(self) -> LearnPanel:
        def controls_in():
            bridge = self.session.bridge
            return None if bridge is None else bridge.stats.snapshot().controls_in

        self.learn_panel = LearnPanel(controls_in)
        self.learn_panel.bindings_changed.connect(self._bindings_chosen)
        self.learn_panel.problem.connect(self.show_problem)
        self._knob_turns_seen = 0
        return self.learn_panel

    def _bindings_chosen(self, bindings: tuple) -> None:
        try:
            config = self.session.config.replace(knob_controls=bindings)
        except BadInput as error:
            self.show_problem(f"not bound: {error}")
            return
        self.session.set_config(config)
        self.learn_panel.show_bindings(config.knob_controls)
        self.statusBar().showMessage("MIDI learn: " + (", ".join(f"{knob} <- {control}" for knob, control in bindings)
                                                       or "nothing bound"), 3000)

    def _follow_turned_knobs(self, bridge) -> None:
        """Knobs a bound controller moved, shown in the controls and kept as the session's."""
        if bridge.knob_turns == self._knob_turns_seen or bridge.snapshot is None:
            return
        self._knob_turns_seen = bridge.knob_turns
        self.session.adopt(bridge.snapshot.config, bridge.snapshot.settings)
        self._show_state(bridge.snapshot.config, bridge.snapshot.settings)

    def _build_centre(self) -> QVBoxLayout:
        column = QVBoxLayout()
        column.setSpacing(8)
        self.roll = PianoRoll()
        self.passage = PassagePanel(lambda: self.session.model, lambda: self.session.settings)
        self.passage.problem.connect(self.show_problem)
        self.passage.message.connect(lambda text: self.statusBar().showMessage(text, 6000))
        self.centre_tabs = QTabWidget()
        live = QWidget()
        inner = QVBoxLayout(live)
        inner.setContentsMargins(6, 6, 6, 6)
        inner.addWidget(self.roll)
        self.centre_tabs.addTab(live, "Live")
        self.centre_tabs.addTab(self.passage, "Passage")
        self.centre_tabs.setTabToolTip(0, "The last bars as they sound: the melody in, the harmony out")
        self.centre_tabs.setTabToolTip(1, "A four-voice file: choose bars and voices, draw them again, "
                                          "keep the alternative you like")
        column.addWidget(self.centre_tabs, 1)
        meters = QHBoxLayout()
        meters.setSpacing(8)
        self.latency_meter = Readout("Latency", "Melody note-on in -> first harmony note-on out: last, and p99 "
                                                "over the last 512 notes")
        self.speculation_meter = Readout("Speculation", "Share of notes whose harmony was ready before they came")
        self.errors_meter = Readout("Errors", "Notes the engine failed on (played through unharmonized)")
        self.notes_meter = Readout("Notes", "Melody notes in / harmony notes out")
        self.tempo_meter = Readout("Tempo", "The tempo the bridge follows, and where it comes from")
        self.position_meter = Readout("Position", "Song position, bar.beat.16th (from the DAW or the internal clock)")
        for meter in (self.latency_meter, self.speculation_meter, self.errors_meter, self.notes_meter,
                      self.tempo_meter, self.position_meter):
            meter.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
            meters.addWidget(meter)
        column.addLayout(meters)
        return column

    def _build_actions(self) -> None:
        def action(text: str, shortcut, slot) -> QAction:
            act = QAction(text, self)
            act.setShortcut(QKeySequence(shortcut))
            act.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            act.triggered.connect(slot)
            self.addAction(act)
            return act

        self.actions_by_name = {
            "panic": action("Panic", "Esc", self.panic),
            "save preset": action("Save preset…", "Ctrl+S", self._ask_save_preset),
            "open preset": action("Open preset file…", "Ctrl+O", self._ask_import_preset),
            "presets": action("Presets", "Ctrl+L", lambda: (self.preset_combo.setFocus(), self.preset_combo.showPopup())),
            "load model": action("Load model…", "Ctrl+M", self._ask_load_model),
            "harmonize": action("Harmonize file…", "Ctrl+H", self._ask_harmonize_file),
            "convert": action("Convert folder…", "Ctrl+B", self._ask_convert_folder),
            "cancel": action("Cancel conversion", "Ctrl+.", self.cancel_offline),
            "reveal": action("Reveal result", "Ctrl+E", self.reveal_result),
            "play": action("Play result", "Ctrl+P", self.toggle_play),
            "connect": action("Connect", "Ctrl+R", self.start_bridge),
            "refresh ports": action("Refresh ports", "F5", self.session.refresh_ports),
            "temperature": action("Temperature", "Alt+T", lambda: self.temperature.setFocus()),
            "quit": action("Quit", "Ctrl+Q", self.close),
        }

    # ------------------------------------------------------------ state <-> controls

    def _show_state(self, config: LiveConfig, settings: Settings) -> None:
        """Put a whole state into the controls (no knob signals while doing so)."""
        for knob in self.knobs:
            value = getattr(config if knob.part == "config" else settings, knob.field)
            for widget in knob.widgets:
                widget.blockSignals(True)
            try:
                knob.show(value)
            finally:
                for widget in knob.widgets:
                    widget.blockSignals(False)
                    mark_invalid(widget, False)
        self.temperature_slider.blockSignals(True)
        self.temperature_slider.setValue(round(settings.temperature * 100))
        self.temperature_slider.blockSignals(False)
        self.schedule_plot.set_settings(settings)
        self._enable_mode_knobs(config.mode)
        self.learn_panel.show_bindings(config.knob_controls)

    def _enable_mode_knobs(self, mode: str) -> None:
        self.lookahead.setEnabled(mode == "phrase")
        for box in (self.respond_after, self.answer_bars, self.respond_cc):
            box.setEnabled(mode == "respond")

    def _knob_changed(self, knob: Knob) -> None:
        """Rebuild the knob's part from every control of that part, so values that must agree
        (pmin <= pmax) are checked together; apply it, or say why not."""
        part_knobs = [k for k in self.knobs if k.part == knob.part]
        current = self.session.config if knob.part == "config" else self.session.settings
        try:
            changed = current.replace(**{k.field: k.read() for k in part_knobs})
        except (BadInput, TypeError, ValueError) as error:
            for widget in knob.widgets:
                mark_invalid(widget, True)
            self.show_problem(f"{knob.field.replace('_', ' ')}: not applied: {error}")
            return
        for k in part_knobs:
            for widget in k.widgets:
                mark_invalid(widget, False)
        if knob.part == "config":
            self.session.set_config(changed)
            self._enable_mode_knobs(changed.mode)
        else:
            self.session.set_settings(changed)
            self.schedule_plot.set_settings(changed)
        self.statusBar().showMessage(f"{knob.field.replace('_', ' ')}: {_shown(knob.read())}", 3000)

    def current_preset(self, name: str = state.STATE_NAME) -> presets.Preset:
        return presets.Preset(name=name, model=self.session.model, config=self.session.config,
                              settings=self.session.settings)

    def apply_preset(self, preset: presets.Preset) -> None:
        self._show_state(preset.config, preset.settings)
        self.session.set_config(preset.config)
        self.session.set_settings(preset.settings)
        if preset.model != self.session.model:
            self._select_model_item(preset.model)
            self.session.load_model(preset.model)

    def save_state(self) -> None:
        state.save(self.store, self.current_preset(), self.session.ports, self._recent_models(), self.saveGeometry())

    # ------------------------------------------------------------ presets

    def _refresh_preset_list(self) -> None:
        self.preset_combo.blockSignals(True)
        self.preset_combo.clear()
        self.preset_combo.addItem("—", None)
        for name, path in presets.list_named(self.presets_dir).items():
            self.preset_combo.addItem(name, str(path))
        self.preset_combo.blockSignals(False)

    def save_preset(self, name: str) -> Path | None:
        try:
            path = presets.save(self.presets_dir, self.current_preset(name))
        except (BadInput, OSError) as error:
            self.show_problem(f"preset not saved: {error}")
            return None
        self._refresh_preset_list()
        self.preset_combo.setCurrentIndex(max(0, self.preset_combo.findText(name)))
        self.statusBar().showMessage(f"preset {name!r} saved ({path})", 5000)
        return path

    def load_preset(self, name_or_path: str | Path) -> bool:
        """Load a preset by its name (from the presets folder) or from any file."""
        path = presets.list_named(self.presets_dir).get(str(name_or_path), Path(name_or_path))
        try:
            preset = presets.load(path, self.session.model)
        except BadInput as error:
            self.show_problem(f"preset not loaded: {error}")
            return False
        self.apply_preset(preset)
        self.statusBar().showMessage(f"preset {preset.name or path.stem!r} loaded", 5000)
        return True

    def _preset_chosen(self, index: int) -> None:
        path = self.preset_combo.itemData(index)
        if path:
            self.load_preset(path)

    def _ask_save_preset(self) -> None:
        name, ok = QInputDialog.getText(self, "Save preset", "Preset name:",
                                        text=self.preset_combo.currentText().strip("—"))
        if ok and name.strip():
            self.save_preset(name.strip())

    def _ask_import_preset(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open preset", str(self.presets_dir), "Presets (*.json)")
        if path:
            self.load_preset(path)

    # ------------------------------------------------------------ model

    def _recent_models(self) -> list[str]:
        return [self.model_combo.itemData(i) for i in range(self.model_combo.count())
                if self.model_combo.itemData(i) not in engine_names()]

    def _select_model_item(self, model: str) -> None:
        if self.model_combo.count() == 0:
            for name in engine_names():
                self.model_combo.addItem(name, name)
            for recent in self.store.value("models/recent", []) or []:
                if Path(recent).is_file():
                    self.model_combo.addItem(Path(recent).name, recent)
        index = self.model_combo.findData(model)
        if index < 0:
            self.model_combo.addItem(Path(model).name, model)
            index = self.model_combo.count() - 1
        self.model_combo.setCurrentIndex(index)

    def load_model(self, model: str) -> None:
        """Play `model` (a shipped name or an .onnx path); loaded and warmed off the GUI thread."""
        self._select_model_item(str(model))
        self.model_info.setText("loading…")
        self.session.load_model(str(model))

    def _model_chosen(self, index: int) -> None:
        self.load_model(self.model_combo.itemData(index))

    def _ask_load_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load model", "", "ONNX models (*.onnx)")
        if path:
            self.load_model(path)

    def _engine_changed(self, engine) -> None:
        meta = engine.model.metadata
        lowest, highest = engine.min_pitch, engine.min_pitch + engine.num_pitches - 1
        lines = [f"{engine.name} · engine {meta.get('engine', '?')}",
                 f"pitches {note_name(lowest)}–{note_name(highest)}"]
        # the measured figures (floats) the export stored, whatever the engine calls them
        figures = [(k, v) for k, v in engine.model.figures().items() if isinstance(v, float)]
        if figures:
            lines.append("  ".join(f"{k.replace('_', ' ')} {v:.3f}" for k, v in figures[:2]))
        self.model_info.setText("\n".join(_short(line, 44) for line in lines))
        self.model_info.setToolTip("\n".join(f"{k}: {v}" for k, v in sorted(meta.items()) if len(str(v)) < 200))
        # the knobs the engine does not read stay as set, disabled, and say so
        for knob in self.knobs:
            if knob.part == "settings":
                used = knob.field in engine.knobs
                for widget in knob.widgets:
                    widget.setEnabled(used)
        self.schedule_plot.setEnabled("steps" in engine.knobs)
        self._select_model_item(self.session.model)
        self.statusBar().showMessage(f"model {engine.name} loaded", 4000)

    # ------------------------------------------------------------ ports and the bridge

    def _ports_seen(self, seen: PortsSeen) -> None:
        had_none = self.no_midi_system()
        self._ports_seen_last = seen
        self.no_midi_hint.setVisible(self.no_midi_system())
        if self.no_midi_system():
            self._look_for_midi.start()
        else:
            self._look_for_midi.stop()
            if had_none and self._live_wanted and self.session.bridge is None and not self.session.starting:
                self.statusBar().showMessage(f"MIDI system found ({seen.auto}): going live", 5000)
                self.start_bridge()
        self._show_bridge_state()
        wanted = self.session.ports
        self.api_combo.blockSignals(True)
        self.api_combo.clear()
        self.api_combo.addItem(f"auto ({seen.auto or 'none found'})", None)
        self.api_combo.setItemData(0, seen.auto_reason, Qt.ItemDataRole.ToolTipRole)
        for api, (usable, why) in seen.apis.items():
            self.api_combo.addItem(api if usable else f"{api} (unavailable)", api)
            self.api_combo.setItemData(self.api_combo.count() - 1, why, Qt.ItemDataRole.ToolTipRole)
        self.api_combo.setCurrentIndex(max(0, self.api_combo.findData(wanted.api)))
        self.api_combo.blockSignals(False)
        self._fill_port_combos()

    def no_midi_system(self) -> bool:
        """No MIDI system runs here (as last seen): no ports can open."""
        return self._ports_seen_last is not None and self._ports_seen_last.auto is None

    def _api_chosen(self, _index: int) -> None:
        self._fill_port_combos()

    def _fill_port_combos(self) -> None:
        seen = self._ports_seen_last
        api = self.api_combo.currentData() or (seen.auto if seen else None)
        found = seen.ports.get(api, {"inputs": [], "outputs": []}) if seen else {"inputs": [], "outputs": []}
        wanted = self.session.ports
        for combo, virtual, names, current in (
                (self.in_combo, wanted.in_name, found["inputs"], wanted.connect_in),
                (self.out_combo, wanted.out_name, found["outputs"], wanted.connect_out)):
            combo.clear()
            combo.addItem(f"new virtual port '{virtual}'", None)
            for name in names:
                if not name.split(":", 1)[0].startswith("bachbridge"):  # not our own ports
                    combo.addItem(name, name)
            if current and combo.findData(current) < 0:
                combo.addItem(current, current)
            combo.setCurrentIndex(max(0, combo.findData(current)))

    def chosen_ports(self) -> PortChoice:
        wanted = self.session.ports
        return PortChoice(api=self.api_combo.currentData(), in_name=wanted.in_name, out_name=wanted.out_name,
                          connect_in=self.in_combo.currentData(), connect_out=self.out_combo.currentData())

    def start_bridge(self) -> None:
        self._live_wanted = True
        ports = self.chosen_ports() if self._ports_seen_last is not None else None
        self.roll.release_all()
        self.session.start(ports)
        self._show_bridge_state()

    def _bridge_changed(self, bridge) -> None:
        self._port_problem = None
        if bridge is None:
            self.roll.release_all()
        else:
            self.statusBar().showMessage(f"live: ports up in {bridge.ports_up_s * 1e3:.0f} ms", 5000)
        self._show_bridge_state()

    def _show_bridge_state(self) -> None:
        bridge = self.session.bridge
        if bridge is not None and bridge.input is not None and self._port_problem:
            light, text = theme.WARN, f"Live, but {self._port_problem}"
        elif bridge is not None and bridge.input is not None:
            light, text = theme.OK, f"Live  ·  {self.session.ports.describe(bridge.input.api)}"
        elif self.session.starting:
            light, text = theme.WARN, f"starting  ·  {self.session.ports.describe()}"
        elif self.session.stopped_why:
            light, text = theme.DANGER, "not live: the bridge's process ended (Connect, Ctrl+R, starts it again)"
        elif self.no_midi_system():
            light, text = theme.DANGER, "not live: no MIDI system running (see Ports): offline work still runs"
        else:
            light, text = theme.DANGER, "not live (no ports open): offline work still runs"
        self.status_light.set_colour(light)
        self.status_label.setText(text)
        self.status_label.setToolTip(self.session.stopped_why or STATUS_TIP)
        self.play_button.setEnabled(bool(self.last_outputs) and bridge is not None)

    def panic(self) -> None:
        self.session.panic()
        self.roll.release_all()
        if self.player is not None:
            self.player.stop()
        self.statusBar().showMessage("Panic: all notes off", 3000)

    # ------------------------------------------------------------ the timer: roll and meters

    def _tick(self) -> None:
        bridge = self.session.bridge
        if bridge is not None:
            monitor = bridge.monitor
            events = []
            pop = monitor.popleft
            for _ in range(MONITOR_BATCH):
                try:
                    events.append(pop())
                except IndexError:
                    break
            self.roll.feed(events)
            self._follow_turned_knobs(bridge)
            self.learn_panel.take(bridge.stats.snapshot())
        self._ticks += 1
        if self._ticks % STATS_EVERY == 0:
            self._show_meters(bridge)
        self.roll.update()

    def _show_meters(self, bridge) -> None:
        if bridge is None:
            return
        s = bridge.stats.snapshot()
        self.latency_meter.show_value(_ms(s.last_latency_ms), f"p99 {_ms(s.p99_latency_ms)}",
                                      theme.DANGER if (s.p99_latency_ms or 0) > 10 else None)
        if s.speculation_lookups:
            self.speculation_meter.show_value(f"{100 * s.speculation_hits / s.speculation_lookups:.0f}%",
                                              f"{s.speculation_hits} of {s.speculation_lookups}")
        else:
            self.speculation_meter.show_value("—", "no lookups yet")
        self.errors_meter.show_value(str(s.engine_errors), _short(s.last_engine_error or ""),
                                     theme.DANGER if s.engine_errors else None)
        self.errors_meter.setToolTip(s.last_engine_error or "Notes the engine failed on (played through unharmonized)")
        self.notes_meter.show_value(f"{s.notes_in}", f"{s.harmony_notes_out} harmony out")
        running = "running" if s.clock_running else "stopped"
        self.tempo_meter.show_value(f"{s.bpm:.1f}", f"{s.clock_source} · {running}")
        self.position_meter.show_value(position_text(s.position_steps), "bar.beat.16th")
        # position_steps is the step of the last melody onset: anchor the bar lines at that onset's
        # time (once per onset), not at 'now', or they would slide along while a note is held
        # (again when either changes: the stats and the monitor may show a new onset a tick apart)
        onset_ns = self.roll.last_onset_ns()
        if s.position_steps is not None and onset_ns is not None and (s.position_steps, onset_ns) != self._anchored_at:
            self._anchored_at = (s.position_steps, onset_ns)
            self.roll.set_tempo(s.bpm, s.position_steps, at_ns=onset_ns)
        else:
            self.roll.set_tempo(s.bpm)
        if s.port_problem != self._port_problem:   # a connected port went away, or came back
            self._port_problem = s.port_problem
            self._show_bridge_state()

    # ------------------------------------------------------------ offline

    def harmonize_file(self, source: Path, target: Path) -> OfflineJob:
        return self._start_offline(OfflineJob(source, target, self.session.model, self.session.settings,
                                              folder=False), f"harmonizing {Path(source).name}…")

    def convert_folder(self, source: Path, target: Path, overwrite: bool = False) -> OfflineJob:
        return self._start_offline(OfflineJob(source, target, self.session.model, self.session.settings,
                                              folder=True, overwrite=overwrite), f"converting {source}…")

    def _start_offline(self, job: OfflineJob, what: str) -> OfflineJob | None:
        if self.offline_job is not None and self.offline_job.running():
            self.show_problem("a conversion is running: cancel it first (Ctrl+.)")
            return None
        self.offline_job = job
        job.progress.connect(self._offline_progress)
        job.finished.connect(self._offline_finished)
        job.failed.connect(self._offline_failed)
        self.progress.setRange(0, 0)  # busy until the first progress report
        self.progress.setFormat("%v / %m")
        self.cancel_button.setEnabled(True)
        self.harmonize_button.setEnabled(False)
        self.convert_button.setEnabled(False)
        self.offline_label.setText(what)
        job.start()
        return job

    def _offline_progress(self, done: int, total: int) -> None:
        if total > 0:
            self.progress.setRange(0, total)
            self.progress.setValue(done)

    def _offline_ended(self, text: str) -> None:
        self.cancel_button.setEnabled(False)
        self.harmonize_button.setEnabled(True)
        self.convert_button.setEnabled(True)
        self.offline_label.setText(text)
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 1)

    def _offline_finished(self, result) -> None:
        if result.outputs:
            self.last_outputs = result.outputs
            if len(result.outputs) == 1:   # one file harmonized: its passages can be drawn again
                self.passage.open(result.outputs[0])
        self._offline_ended("\n".join(result.lines))
        self.reveal_button.setEnabled(bool(self.last_outputs))
        self.play_button.setEnabled(bool(self.last_outputs) and self.session.bridge is not None)
        self.statusBar().showMessage(result.lines[0] if result.lines else "done", 6000)

    def _offline_failed(self, message: str) -> None:
        self._offline_ended(f"failed: {message}")
        self.show_problem(message)

    def cancel_offline(self) -> None:
        if self.offline_job is not None and self.offline_job.running():
            self.offline_job.cancel()
            self.offline_label.setText("cancelling after the current file…")

    def _ask_harmonize_file(self) -> None:
        source, _ = QFileDialog.getOpenFileName(self, "Harmonize a MIDI file", "", "MIDI files (*.mid *.midi)")
        if not source:
            return
        suggested = str(Path(source).with_name(Path(source).stem + "_chorale.mid"))
        target, _ = QFileDialog.getSaveFileName(self, "Write the chorale to", suggested, "MIDI files (*.mid)")
        if target:
            self.harmonize_file(Path(source), Path(target))

    def _ask_convert_folder(self) -> None:
        source = QFileDialog.getExistingDirectory(self, "Folder of MIDI files to harmonize")
        if not source:
            return
        target = QFileDialog.getExistingDirectory(self, "Folder to write the chorales to")
        if target:
            self.convert_folder(Path(source), Path(target))

    def reveal_result(self) -> None:
        if self.last_outputs:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.last_outputs[0].parent)))

    def toggle_play(self) -> None:
        if self.player is not None and self.player.playing():
            self.player.stop()
            return
        bridge = self.session.bridge
        if bridge is None or not self.last_outputs:
            self.show_problem("nothing to play, or no output port open")
            return
        self.player = FilePlayer(self.last_outputs[0], bridge)
        self.player.finished.connect(self._play_finished)
        self.player.start()
        self.play_button.setText("Stop")

    def _play_finished(self, why: str) -> None:
        self.play_button.setText("Play")
        self.statusBar().showMessage(why, 4000)

    # ------------------------------------------------------------ messages and closing

    def show_problem(self, message: str) -> None:
        """One line in the status bar, in red for as long as it shows."""
        self.statusBar().setStyleSheet(f"color: {theme.DANGER.name()};")
        self.statusBar().showMessage(message, PROBLEM_SHOWN_MS)
        self._problem_timer.start(PROBLEM_SHOWN_MS)

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop everything cleanly: the roll's timer, a file playing, a conversion (cancelled), the
        bridge (every note released, ports closed); then the state is saved."""
        if self._closed:
            return
        self._closed = True
        self.timer.stop()
        if self.player is not None:
            self.player.stop()
        if self.offline_job is not None and self.offline_job.running():
            self.offline_job.cancel()
            self.offline_job.wait(60)
        if self.passage.job is not None:
            self.passage.job.wait(60)
        self.passage.close_folder()
        self.save_state()
        self.session.close()


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} ms"


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _shown(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def position_text(steps) -> str:
    if steps is None:
        return "—"
    steps = int(steps)
    bar, rest = divmod(steps, 16)
    beat, sixteenth = divmod(rest, 4)
    return f"{bar + 1}.{beat + 1}.{sixteenth + 1}"
