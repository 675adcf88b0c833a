"""The left column: which model plays (Model), how it draws (Sampling), and what harmony it may
write (Harmony)."""
from __future__ import annotations

from pathlib import Path

from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtWidgets import QComboBox, QFileDialog, QGridLayout, QHBoxLayout, QLabel, QPushButton, QSlider, QWidget

from bridge.engines import engine_names
from bridge.live import LIVE_SETTINGS
from bridge.live.learn import KEYS
from bridge.settings import Settings
from gui import theme
from gui.panels.form import FormGroup, double_box, int_box
from gui.pianoroll import note_name
from gui.scheduleplot import SchedulePlot
from gui.widgets import NoteSpinBox, short, tip

VOICE_RANGE_NAMES = ("Soprano", "Alto", "Tenor", "Bass")


class ModelPanel(FormGroup):
    """The shipped models, the .onnx files loaded lately, and what the one playing is."""
    chosen = pyqtSignal(str)   # a shipped model's name or an .onnx path

    def __init__(self, recent: list[str]):
        """`recent`: .onnx files loaded before (those still there are offered)."""
        super().__init__("Model")
        self.model_combo = QComboBox()
        self.model_combo.activated.connect(lambda index: self.chosen.emit(self.model_combo.itemData(index)))
        self.row("&Model", self.model_combo, "The engine and model that writes the harmony")
        self.load_model_button = QPushButton("Load .onnx…")
        tip(self.load_model_button, "Load any exported model (.onnx); its metadata says what it is", "Ctrl+M")
        self.load_model_button.clicked.connect(self.ask_load_model)
        self.form.addRow("", self.load_model_button)
        self.model_info = QLabel("")
        self.model_info.setProperty("role", "caption")
        # short lines, no word wrap: a wrapping label in a form in a scroll area gets too little height
        self.model_info.setMinimumHeight(3 * self.model_info.fontMetrics().lineSpacing() + 4)
        self.form.addRow(self.model_info)
        for name in engine_names():
            self.model_combo.addItem(name, name)
        for path in recent:
            if Path(path).is_file():
                self.model_combo.addItem(Path(path).name, path)

    def ask_load_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window(), "Load model", "", "ONNX models (*.onnx)")
        if path:
            self.chosen.emit(path)

    def select(self, model: str) -> None:
        """Show `model` as the one chosen (added to the list if it is not there)."""
        index = self.model_combo.findData(model)
        if index < 0:
            self.model_combo.addItem(Path(model).name, model)
            index = self.model_combo.count() - 1
        self.model_combo.setCurrentIndex(index)

    def recent(self) -> list[str]:
        """The .onnx files in the list, to offer again next time."""
        return [self.model_combo.itemData(i) for i in range(self.model_combo.count())
                if self.model_combo.itemData(i) not in engine_names()]

    def show_loading(self) -> None:
        self.model_info.setText("loading…")

    def show_engine(self, engine) -> None:
        """What the engine now playing is: its name, its pitches, the figures its export measured."""
        meta = engine.model.metadata
        lowest, highest = engine.min_pitch, engine.min_pitch + engine.num_pitches - 1
        lines = [f"{engine.name} · engine {meta.get('engine', '?')}",
                 f"pitches {note_name(lowest)}–{note_name(highest)}"]
        # the measured figures (floats) the export stored, whatever the engine calls them
        figures = [(k, v) for k, v in engine.model.figures().items() if isinstance(v, float)]
        if figures:
            lines.append("  ".join(f"{k.replace('_', ' ')} {v:.3f}" for k, v in figures[:2]))
        own = engine.model.sampling_defaults()   # the knobs stay the user's: shown, not set
        if own:
            lines.append("plays best at " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in own.items()))
        self.model_info.setText("\n".join(short(line, 44) for line in lines))
        self.model_info.setToolTip("\n".join(f"{k}: {v}" for k, v in sorted(meta.items()) if len(str(v)) < 200))


class SamplingPanel(FormGroup):
    """The draw: temperature, the Gibbs schedule (with its plot), candidates, the parallels penalty."""

    def __init__(self):
        super().__init__("Sampling")
        temperature_row = QHBoxLayout()
        self.temperature_slider = QSlider(Qt.Orientation.Horizontal)
        self.temperature_slider.setRange(0, 200)
        self.temperature = double_box(0.0, 5.0, 0.05)
        self.temperature_slider.valueChanged.connect(lambda v: self.temperature.setValue(v / 100))
        self.temperature.valueChanged.connect(self._slide_to)
        tip(self.temperature_slider, "Temperature: 0 = always the likeliest pitch, higher = bolder choices", "Alt+T")
        temperature_row.addWidget(self.temperature_slider, 1)
        temperature_row.addWidget(self.temperature)
        holder = QWidget()
        holder.setLayout(temperature_row)
        temperature_row.setContentsMargins(0, 0, 0, 0)
        self.row("&Temperature", self.temperature, "Softmax temperature of every draw: 0 = always the likeliest pitch",
                 shown=holder)
        self.bind_box("settings", "temperature", self.temperature)

        self.steps = int_box(1, 64)
        self.row("&Steps", self.steps, "Gibbs steps: network calls per answer (live: few; offline: 12 or more)")
        self.bind_box("settings", "steps", self.steps)
        self.pmax = double_box(0.0, 1.0, 0.05)
        self.row("pma&x", self.pmax, "Share of free notes resampled at the first Gibbs step")
        self.bind_box("settings", "pmax", self.pmax)
        self.pmin = double_box(0.0, 1.0, 0.01)
        self.row("pmi&n", self.pmin, "Share resampled at the end of the annealing (must be <= pmax)")
        self.bind_box("settings", "pmin", self.pmin)
        self.alpha = double_box(0.0, 4.0, 0.05)
        self.row("a&lpha", self.alpha, "Fraction of the steps over which the share falls from pmax to pmin (> 0)")
        self.bind_box("settings", "alpha", self.alpha)
        self.schedule_plot = SchedulePlot(LIVE_SETTINGS)
        self.form.addRow(self.schedule_plot)
        self.candidates = int_box(1, 64)
        self.row("Can&didates", self.candidates, "Chains sampled side by side; the likeliest under the model wins")
        self.bind_box("settings", "candidates", self.candidates)
        self.parallel_penalty = double_box(0.0, 50.0, 0.5, 1)
        self.row("Parallels penalt&y", self.parallel_penalty,
                 "Nats taken off a pitch for each consecutive perfect fifth or octave it would make (0 = off)")
        self.bind_box("settings", "parallel_penalty", self.parallel_penalty)

    def _slide_to(self, temperature: float) -> None:
        self.temperature_slider.blockSignals(True)
        self.temperature_slider.setValue(round(temperature * 100))
        self.temperature_slider.blockSignals(False)

    def show_settings(self, settings: Settings) -> None:
        """What the knobs' own `show` leaves out: the slider (its spin box's signals were held) and the plot."""
        self._slide_to(settings.temperature)
        self.schedule_plot.set_settings(settings)


class HarmonyPanel(FormGroup):
    """Where the lower voices may go: a key to keep to, and each voice's range."""

    def __init__(self):
        super().__init__("Harmony")
        self.key = QComboBox()
        self.key.setEditable(True)
        self.key.addItems(KEYS)
        self.key.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.row("&Key", self.key, "Keep the lower voices in a key: off, auto (from the melody), "
                                   "or a key such as Bb, F#m, D minor")
        self.bind("settings", "key", [self.key], lambda: self.key.currentText().strip(), self.key.setCurrentText)

        grid = QGridLayout()
        grid.setHorizontalSpacing(6)
        grid.setVerticalSpacing(4)
        grid.addWidget(QLabel("low"), 0, 1, Qt.AlignmentFlag.AlignHCenter)
        grid.addWidget(QLabel("high"), 0, 2, Qt.AlignmentFlag.AlignHCenter)
        self.voice_range_boxes: list[tuple[NoteSpinBox, NoteSpinBox]] = []
        for voice, name in enumerate(VOICE_RANGE_NAMES):
            caption = QLabel(name)   # no Alt letter: each letter of these names is another control's
            caption.setStyleSheet(f"color: {theme.VOICE_COLOURS[voice].name()};")
            low, high = NoteSpinBox(), NoteSpinBox()
            for box, end in ((low, "lowest"), (high, "highest")):
                box.setKeyboardTracking(False)
                tip(box, f"{name}: the {end} pitch it may sing (ranges must span an octave or more)")
            grid.addWidget(caption, voice + 1, 0)
            grid.addWidget(low, voice + 1, 1)
            grid.addWidget(high, voice + 1, 2)
            self.voice_range_boxes.append((low, high))
        holder = QWidget()
        holder.setLayout(grid)
        grid.setContentsMargins(0, 0, 0, 0)
        self.form.addRow(QLabel("Voice ranges"))
        self.form.addRow(holder)
        self.bind("settings", "voice_ranges", [box for pair in self.voice_range_boxes for box in pair],
                  self._read_ranges, self._show_ranges)

    def _read_ranges(self) -> tuple:
        return tuple((low.value(), high.value()) for low, high in self.voice_range_boxes)

    def _show_ranges(self, ranges) -> None:
        for (low, high), (lo, hi) in zip(self.voice_range_boxes, ranges):
            low.setValue(lo)
            high.setValue(hi)
