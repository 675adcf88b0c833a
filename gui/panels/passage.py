"""Regenerate a passage of a four-voice file in the window: the whole score drawn bar by bar; drag
across it to choose bars, toggle the voices, Regenerate; step through the alternatives (the
likeliest first), Keep one, Undo; Export the result, or drag it out into a DAW as a file.

Every version is a MIDI file in a folder of the session's own (the file opened, then each kept
alternative): regeneration works file to file (bridge.convert.regenerate_file), so every note
outside the chosen bars and voices stays exactly as it was, ticks and velocities included.
"""
from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np
from PyQt6.QtCore import QMimeData, QObject, QPointF, QRectF, Qt, QUrl, pyqtSignal
from PyQt6.QtGui import QColor, QDrag, QPainter, QPen
from PyQt6.QtWidgets import (QFileDialog, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QSpinBox, QVBoxLayout,
                             QWidget)

from bridge.convert import regenerate_file
from bridge.engines import load_engine
from bridge.errors import BadInput
from bridge.midifile import meter_at_start, read_melody, read_voices
from bridge.score import Score
from bridge.settings import Settings
from gui import theme
from gui.widgets import tip

VOICE_LETTERS = "SATB"
HEADER_H = 16
MAX_VARIANTS = 8


class ScoreView(QWidget):
    """A four-voice score, all of it, bars across; a drag chooses whole bars (`selection`)."""
    selection_changed = pyqtSignal(object)   # (first bar, last bar), counted from 1, or None

    def __init__(self, parent=None):
        super().__init__(parent)
        self.score: Score | None = None
        self.bar = 16
        self.selection: tuple[int, int] | None = None
        self.chosen_voices: tuple[int, ...] = (1, 2, 3)
        self._dragging_from: int | None = None
        self.setMinimumSize(320, 160)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setToolTip("The whole score; drag across it to choose the bars to draw again")

    def set_score(self, score: Score | None, bar: int = 16) -> None:
        self.score, self.bar = score, bar
        if self.selection is not None and (score is None or self.selection[0] > self.bars):
            self.select(None)
        self.update()

    @property
    def bars(self) -> int:
        return 0 if self.score is None else max(1, -(-len(self.score) // self.bar))

    def select(self, bars: tuple[int, int] | None) -> None:
        if bars is not None:
            first, last = sorted(bars)
            bars = (max(1, first), min(self.bars, last))
        if bars != self.selection:
            self.selection = bars
            self.selection_changed.emit(bars)
        self.update()

    def _area(self) -> QRectF:
        return QRectF(2, HEADER_H, max(1, self.width() - 4), max(1, self.height() - HEADER_H - 2))

    def bar_at(self, x: float) -> int:
        area = self._area()
        return int(np.clip((x - area.left()) / area.width() * self.bars, 0, self.bars - 1)) + 1

    def mousePressEvent(self, event) -> None:
        if self.score is not None and event.button() == Qt.MouseButton.LeftButton:
            self._dragging_from = self.bar_at(event.position().x())
            self.select((self._dragging_from, self._dragging_from))

    def mouseMoveEvent(self, event) -> None:
        if self._dragging_from is not None:
            self.select((self._dragging_from, self.bar_at(event.position().x())))

    def mouseReleaseEvent(self, event) -> None:
        self._dragging_from = None

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        try:
            self._paint(p)
        finally:
            p.end()

    def _paint(self, p: QPainter) -> None:
        p.fillRect(0, 0, self.width(), self.height(), theme.SUNKEN)
        area = self._area()
        if self.score is None:
            p.setPen(theme.TEXT_DIM)
            p.drawText(area, Qt.AlignmentFlag.AlignCenter,
                       "Open a four-voice MIDI file (or harmonize one): its whole score shows here")
            return
        pitches = self.score.pitches
        sounding = pitches[pitches >= 0]
        low, high = (int(sounding.min()) - 2, int(sounding.max()) + 2) if sounding.size else (48, 79)
        steps = self.bars * self.bar
        step_w, row_h = area.width() / steps, area.height() / (high - low + 1)
        if self.selection is not None:
            first, last = self.selection
            shade = QColor(theme.ACCENT)
            shade.setAlphaF(0.18)
            p.fillRect(QRectF(area.left() + (first - 1) * self.bar * step_w, area.top(),
                              (last - first + 1) * self.bar * step_w, area.height()), shade)
        for bar in range(self.bars + 1):
            x = area.left() + bar * self.bar * step_w
            p.setPen(QPen(theme.GRID_STRONG, 1))
            p.drawLine(QPointF(x, area.top() - 4), QPointF(x, area.bottom()))
            if bar < self.bars:
                p.setPen(theme.TEXT_DIM)
                p.drawText(QPointF(x + 3, area.top() - 4), str(bar + 1))
        for voice in range(pitches.shape[1]):
            colour = QColor(theme.VOICE_COLOURS[voice % 4])
            chosen = self.selection is not None and voice in self.chosen_voices
            for pitch, first, stop in self.score.note_runs(voice):
                in_passage = chosen and (self.selection[0] - 1) * self.bar <= first < self.selection[1] * self.bar
                colour.setAlphaF(1.0 if in_passage or self.selection is None else 0.55)
                p.setBrush(colour)
                p.setPen(QPen(QColor("white"), 1.2) if in_passage else Qt.PenStyle.NoPen)
                p.drawRoundedRect(QRectF(area.left() + first * step_w, area.top() + (high - pitch) * row_h + 1,
                                         max(2.0, (stop - first) * step_w - 1), max(2.0, row_h - 2)), 2, 2)


class RegenerateJob(QObject):
    """One regeneration, off the GUI thread: K files written into `folder`, likeliest first."""
    finished = pyqtSignal(object)   # [Path], the variants
    failed = pyqtSignal(str)

    def __init__(self, source: Path, folder: Path, model: str, settings: Settings, bars: tuple[int, int],
                 voices: tuple[int, ...], variants: int, name: str):
        super().__init__()
        self.args = (source, folder / f"{name}.mid", model, settings, bars, voices, variants)
        self._thread = threading.Thread(target=self._run, name="bachbridge-regenerate", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        source, target, model, settings, bars, voices, variants = self.args
        try:
            engine = load_engine(model, threads=1)   # one thread: the live bridge keeps a core
            self.finished.emit(regenerate_file(source, target, engine, settings, bars, voices, variants))
        except BadInput as error:
            self.failed.emit(str(error))
        except Exception as error:  # a bug: said in the window rather than lost with the thread
            self.failed.emit(f"{type(error).__name__}: {error}")


class DragHandle(QLabel):
    """Drag it out of the window (into a DAW's track, a file manager): the current version's file."""

    def __init__(self, current):
        super().__init__("⇲ Drag the MIDI out")
        self._current = current
        self.setProperty("role", "caption")
        self.setCursor(Qt.CursorShape.OpenHandCursor)
        tip(self, "Drag this into a DAW's track (or a folder): the score as it is now, as a MIDI file")

    def mime_data(self) -> QMimeData | None:
        path = self._current()
        if path is None:
            return None
        mime = QMimeData()
        mime.setUrls([QUrl.fromLocalFile(str(path))])
        return mime

    def mousePressEvent(self, event) -> None:
        mime = self.mime_data()
        if mime is not None and event.button() == Qt.MouseButton.LeftButton:
            drag = QDrag(self)
            drag.setMimeData(mime)
            drag.exec(Qt.DropAction.CopyAction)


class PassagePanel(QWidget):
    """The score, and what to do with a passage of it."""
    problem = pyqtSignal(str)
    message = pyqtSignal(str)

    def __init__(self, model, settings, parent=None):
        """`model()`, `settings()`: the window's current model and knobs, read at each regeneration."""
        super().__init__(parent)
        self._model, self._settings = model, settings
        self._folder = Path(tempfile.mkdtemp(prefix="bachbridge-passage-"))
        self.history: list[Path] = []          # the file opened, then each kept alternative
        self.alternatives: list[Path] = []     # the last regeneration's files, likeliest first
        self.shown = 0                         # which alternative is shown
        self.job: RegenerateJob | None = None
        self._regenerations = 0

        self.view = ScoreView()
        self.view.selection_changed.connect(lambda _: self._enable())
        self.open_button = self._button("Open…", "Open a four-voice MIDI file", self.ask_open)
        self.voice_buttons = []
        for voice, letter in enumerate(VOICE_LETTERS):
            button = QPushButton(letter)
            button.setCheckable(True)
            button.setChecked(voice > 0)
            button.setFixedWidth(button.fontMetrics().horizontalAdvance("M") + 22)
            button.setStyleSheet(f"QPushButton:checked {{ color: {theme.VOICE_COLOURS[voice].name()}; }}")
            tip(button, f"Draw the {('soprano', 'alto', 'tenor', 'bass')[voice]} again in the chosen bars")
            button.toggled.connect(self._voices_toggled)
            self.voice_buttons.append(button)
        self.variants = QSpinBox()
        self.variants.setRange(1, MAX_VARIANTS)
        self.variants.setValue(3)
        self.variants.setPrefix("× ")
        tip(self.variants, "How many alternatives to draw (each its own draw; the likeliest first)")
        self.regenerate_button = self._button("Regenerate", "Draw the chosen voices of the chosen bars again, "
                                              "given everything around them", self.regenerate)
        self.previous_button = self._button("◀", "The previous alternative", lambda: self.show_alternative(-1))
        self.next_button = self._button("▶", "The next alternative (the likeliest is first)",
                                        lambda: self.show_alternative(+1))
        self.alternative_label = QLabel("")
        self.alternative_label.setProperty("role", "caption")
        self.keep_button = self._button("Keep", "Keep the alternative shown", self.keep)
        self.undo_button = self._button("Undo", "Back to the version before the last kept one", self.undo)
        self.export_button = self._button("Export…", "Write the score as it is now to a MIDI file",
                                          self.ask_export)
        self.drag_handle = DragHandle(lambda: self.current_path)

        row = QHBoxLayout()
        row.setSpacing(6)
        row.addWidget(self.open_button)
        row.addSpacing(8)
        for button in self.voice_buttons:
            row.addWidget(button)
        row.addWidget(self.variants)
        row.addWidget(self.regenerate_button)
        row.addSpacing(8)
        for widget in (self.previous_button, self.alternative_label, self.next_button, self.keep_button,
                       self.undo_button):
            row.addWidget(widget)
        row.addStretch(1)
        row.addWidget(self.export_button)
        row.addWidget(self.drag_handle)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(row)
        layout.addWidget(self.view, 1)
        self._voices_toggled()

    def _button(self, text: str, tooltip: str, slot) -> QPushButton:
        button = QPushButton(text)
        tip(button, tooltip)
        button.clicked.connect(slot)
        return button

    # ---- what is shown

    @property
    def current_path(self) -> Path | None:
        """The file of what the view shows: the alternative on screen, or the last kept version."""
        if self.alternatives:
            return self.alternatives[self.shown]
        return self.history[-1] if self.history else None

    def open(self, path: Path) -> bool:
        """Start over from a four-voice file (copied: the original is never written)."""
        path = Path(path)
        try:
            score = read_voices(path)
            bar = meter_at_start(read_melody(path))[0]
        except BadInput as error:
            self.problem.emit(str(error))
            return False
        copy = self._folder / f"opened-{len(self.history)}-{path.name}"
        shutil.copyfile(path, copy)
        self.history, self.alternatives, self.shown = [copy], [], 0
        self.view.set_score(score, bar)
        self._enable()
        self.message.emit(f"{path.name}: {self.view.bars} bars; drag across the score to choose some")
        return True

    def _show(self, path: Path) -> None:
        self.view.set_score(read_voices(path), self.view.bar)   # every version keeps the file's meter
        self._enable()

    def _voices_toggled(self, *_) -> None:
        self.view.chosen_voices = tuple(v for v, b in enumerate(self.voice_buttons) if b.isChecked())
        self.view.update()
        self._enable()

    def _enable(self) -> None:
        busy = self.job is not None
        has_score = bool(self.history)
        self.regenerate_button.setEnabled(has_score and not busy and self.view.selection is not None
                                          and bool(self.view.chosen_voices))
        self.previous_button.setEnabled(len(self.alternatives) > 1)
        self.next_button.setEnabled(len(self.alternatives) > 1)
        self.keep_button.setEnabled(bool(self.alternatives) and not busy)
        self.undo_button.setEnabled(len(self.history) > 1 and not busy)
        self.export_button.setEnabled(has_score)
        self.alternative_label.setText(f"{self.shown + 1} of {len(self.alternatives)}" if self.alternatives else "")

    # ---- the work

    def regenerate(self) -> RegenerateJob | None:
        if not self.history or self.view.selection is None or self.job is not None:
            return None
        self._regenerations += 1
        job = RegenerateJob(self.history[-1], self._folder, self._model(), self._settings(), self.view.selection,
                            self.view.chosen_voices, self.variants.value(), f"regenerated-{self._regenerations}")
        job.finished.connect(self._regenerated)
        job.failed.connect(self._failed)
        self.job = job
        self._enable()
        first, last = self.view.selection
        self.message.emit(f"drawing bars {first}-{last} again…")
        job.start()
        return job

    def _regenerated(self, paths: list) -> None:
        self.job = None
        self.alternatives, self.shown = list(paths), 0
        self._show(self.current_path)
        self.message.emit(f"{len(paths)} alternative{'s' if len(paths) > 1 else ''}, the likeliest first: "
                          "step through them, Keep one")

    def _failed(self, message: str) -> None:
        self.job = None
        self._enable()
        self.problem.emit(message)

    def show_alternative(self, delta: int) -> None:
        if self.alternatives:
            self.shown = (self.shown + delta) % len(self.alternatives)
            self._show(self.current_path)

    def keep(self) -> None:
        if self.alternatives:
            self.history.append(self.alternatives[self.shown])
            self.alternatives, self.shown = [], 0
            self._show(self.history[-1])

    def undo(self) -> None:
        """Back one kept version (an alternative on screen is dropped first)."""
        if self.alternatives:
            self.alternatives, self.shown = [], 0
        elif len(self.history) > 1:
            self.history.pop()
        self._show(self.history[-1])

    def export(self, target: Path) -> Path:
        shutil.copyfile(self.current_path, target)
        self.message.emit(f"written {target}")
        return Path(target)

    def ask_open(self) -> None:
        source, _ = QFileDialog.getOpenFileName(self, "Open a four-voice MIDI file", "", "MIDI files (*.mid *.midi)")
        if source:
            self.open(Path(source))

    def ask_export(self) -> None:
        target, _ = QFileDialog.getSaveFileName(self, "Export the score", "chorale.mid", "MIDI files (*.mid)")
        if target:
            self.export(Path(target))

    def close_folder(self) -> None:
        shutil.rmtree(self._folder, ignore_errors=True)
