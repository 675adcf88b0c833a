"""A scrolling piano roll of the last bars: the melody as it came in and the three voices as they
went out, each in its colour, drawn as they sound (a note grows until its note-off).

Fed with (t_ns, voice, pitch, velocity) events (the bridge's monitor: voice 0 = melody, 1-3 =
alto, tenor, bass; velocity 0 = note-off; t_ns on time.perf_counter_ns's clock). Time runs right
to left: the right edge is now. Bar and beat lines follow the bridge's tempo and, when it has one,
its song position; otherwise the grid is anchored at the first note.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from PyQt6.QtCore import QPointF, QRectF, QSize, Qt
from PyQt6.QtGui import QColor, QFont, QPainter, QPen
from PyQt6.QtWidgets import QSizePolicy, QWidget

from gui import theme

STEPS_PER_BAR = 16
STEPS_PER_BEAT = 4
NS_PER_MINUTE = 60_000_000_000
KEYBOARD_W = 34   # the pitch axis: a little keyboard
HEADER_H = 18     # bar numbers and the legend
LOWEST, HIGHEST = 21, 108   # the piano's keys: the roll never shows beyond them
DEFAULT_RANGE = (48, 79)    # shown before any note, and always included (a stable picture)
MARGIN = 2                  # semitones shown above and below the notes
_BLACK = {1, 3, 6, 8, 10}
# spelled as a musician reads them most often
NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


def note_name(pitch: int) -> str:
    """MIDI 60 -> 'C4'."""
    return f"{NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


@dataclass
class RollNote:
    voice: int
    pitch: int
    velocity: int
    start_ns: int
    end_ns: int | None = None   # None while it sounds


@dataclass(frozen=True)
class Frame:
    area: QRectF      # where the notes go (right of the keyboard, under the header)
    low: int          # lowest and highest pitch shown
    high: int
    row_h: float      # pixels per semitone
    left_ns: float    # the time at the left edge; the right edge is `now`
    span: float
    now: int

    def x_of(self, t_ns: float) -> float:
        return self.area.left() + (t_ns - self.left_ns) / self.span * self.area.width()

    def y_of(self, pitch: int) -> float:
        """The top of the pitch's row."""
        return self.area.top() + (self.high - pitch) * self.row_h


class PianoRoll(QWidget):
    def __init__(self, parent=None, bars: int = 4):
        super().__init__(parent)
        self.bars = bars
        self.notes: list[RollNote] = []
        self._sounding: dict[tuple[int, int], RollNote] = {}
        self.bpm = 100.0
        self._anchor_ns: int | None = None   # a time at which a bar began
        self._frozen_ns: int | None = None   # a fixed 'now' (the screenshot), else the real clock
        self.setMinimumSize(320, 160)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setToolTip("The last bars: the melody as it comes in and alto, tenor and bass as they go out, "
                        "each in its colour; bar lines follow the tempo and the DAW's song position")

    # ---- time

    def now_ns(self) -> int:
        return self._frozen_ns if self._frozen_ns is not None else time.perf_counter_ns()

    def freeze(self, at_ns: int | None) -> None:
        """Draw as of `at_ns` from now on (None: follow the clock again)."""
        self._frozen_ns = at_ns

    def step_ns(self) -> float:
        return NS_PER_MINUTE / (self.bpm * STEPS_PER_BEAT)

    def span_ns(self) -> float:
        return self.bars * STEPS_PER_BAR * self.step_ns()

    def set_tempo(self, bpm: float, position_steps: float | None = None, at_ns: int | None = None) -> None:
        """The tempo to draw the grid by and, when known, the song position (16ths) at `at_ns`."""
        if bpm and bpm > 0:
            self.bpm = float(bpm)
        if position_steps is not None:
            at_ns = self.now_ns() if at_ns is None else at_ns
            self._anchor_ns = int(at_ns - position_steps * self.step_ns())

    # ---- notes

    def feed(self, events) -> int:
        """Take monitor events (t_ns, voice, pitch, velocity); returns how many."""
        count = 0
        for t_ns, voice, pitch, velocity in events:
            count += 1
            key = (voice, pitch)
            old = self._sounding.pop(key, None)
            if old is not None:
                old.end_ns = t_ns   # a note-off, or the same key struck again
            if velocity > 0:
                note = RollNote(voice, pitch, velocity, t_ns)
                self.notes.append(note)
                self._sounding[key] = note
                if self._anchor_ns is None:
                    self._anchor_ns = t_ns
        if count:
            self._forget_old()
        return count

    def last_onset_ns(self) -> int | None:
        """When the latest melody note began (None before any)."""
        for note in reversed(self.notes):
            if note.voice == 0:
                return note.start_ns
        return None

    def release_all(self, at_ns: int | None = None) -> None:
        """End every sounding note (the bridge stopped, or Panic)."""
        at_ns = self.now_ns() if at_ns is None else at_ns
        for note in self._sounding.values():
            note.end_ns = at_ns
        self._sounding.clear()

    def clear(self) -> None:
        self.notes.clear()
        self._sounding.clear()
        self._anchor_ns = None

    def sounding(self) -> list[RollNote]:
        return list(self._sounding.values())

    def visible_notes(self) -> list[RollNote]:
        left = self.now_ns() - self.span_ns()
        return [n for n in self.notes if n.end_ns is None or n.end_ns >= left]

    def _forget_old(self) -> None:
        # keep a second window's worth, so a tempo change that widens the view still has notes
        left = self.now_ns() - 2 * self.span_ns()
        if self.notes and self.notes[0].end_ns is not None and self.notes[0].end_ns < left:
            self.notes = [n for n in self.notes if n.end_ns is None or n.end_ns >= left]

    def pitch_range(self) -> tuple[int, int]:
        low, high = DEFAULT_RANGE
        for note in self.visible_notes():
            low, high = min(low, note.pitch - MARGIN), max(high, note.pitch + MARGIN)
        return max(LOWEST, low), min(HIGHEST, high)

    # ---- drawing

    def sizeHint(self) -> QSize:
        return QSize(720, 300)

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        try:
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            self._paint(painter)
        finally:
            painter.end()

    def frame(self) -> "Frame":
        """Where things go in the widget as it is now: the note area, pitches and times shown."""
        low, high = self.pitch_range()
        area = QRectF(KEYBOARD_W, HEADER_H, max(1, self.width() - KEYBOARD_W - 1),
                      max(1, self.height() - HEADER_H - 1))
        now, span = self.now_ns(), self.span_ns()
        return Frame(area, low, high, area.height() / (high - low + 1), now - span, span, now)

    def note_rect(self, note: RollNote, frame: "Frame | None" = None) -> QRectF:
        f = frame or self.frame()
        x0 = max(f.x_of(note.start_ns), f.area.left() - 4)
        x1 = f.x_of(note.end_ns if note.end_ns is not None else f.now)
        return QRectF(x0, f.y_of(note.pitch) + 1, max(2.0, x1 - x0), max(2.0, f.row_h - 2))

    def _paint(self, p: QPainter) -> None:
        p.fillRect(0, 0, self.width(), self.height(), theme.SUNKEN)
        f = self.frame()
        area, low, high, row_h, now = f.area, f.low, f.high, f.row_h, f.now
        x_of, y_of = f.x_of, f.y_of

        # rows: black keys darker, a line under every C
        for pitch in range(low, high + 1):
            y = y_of(pitch)
            if pitch % 12 in _BLACK:
                p.fillRect(QRectF(area.left(), y, area.width(), row_h), QColor("#121418"))
            if pitch % 12 == 0:
                p.setPen(QPen(theme.GRID, 1))
                p.drawLine(QPointF(area.left(), y + row_h), QPointF(area.right(), y + row_h))

        self._paint_grid(p, area, x_of, f.left_ns, now)
        self._paint_keyboard(p, area, low, high, y_of, row_h)

        # notes: older first, so what sounds now is on top
        p.setClipRect(area)
        radius = min(3.0, row_h / 3)
        for note in self.visible_notes():
            colour = QColor(theme.VOICE_COLOURS[note.voice % 4])
            colour.setAlphaF(0.45 + 0.55 * min(1.0, note.velocity / 110))
            rect = self.note_rect(note, f)
            p.setBrush(colour)
            p.setPen(QPen(colour.lighter(150), 1.2) if note.end_ns is None else Qt.PenStyle.NoPen)
            p.drawRoundedRect(rect, radius, radius)
        p.setClipping(False)

        # now: the playhead at the right edge
        p.setPen(QPen(theme.ACCENT, 2))
        p.drawLine(QPointF(area.right(), area.top()), QPointF(area.right(), area.bottom()))
        self._paint_legend(p, area)

    def _paint_grid(self, p: QPainter, area: QRectF, x_of, left_ns: float, now: int) -> None:
        step = self.step_ns()
        anchor = self._anchor_ns if self._anchor_ns is not None else now
        first_beat = int((left_ns - anchor) // (STEPS_PER_BEAT * step))
        last_beat = int((now - anchor) // (STEPS_PER_BEAT * step)) + 1
        small = QFont(self.font())
        small.setPointSizeF(max(7.0, small.pointSizeF() - 1.5))
        p.setFont(small)
        for beat in range(first_beat, last_beat + 1):
            t = anchor + beat * STEPS_PER_BEAT * step
            x = x_of(t)
            if x < area.left() or x > area.right():
                continue
            on_bar = beat % (STEPS_PER_BAR // STEPS_PER_BEAT) == 0
            p.setPen(QPen(theme.GRID_STRONG if on_bar else theme.GRID, 1.2 if on_bar else 1))
            p.drawLine(QPointF(x, area.top() - (6 if on_bar else 0)), QPointF(x, area.bottom()))
            if on_bar:
                p.setPen(theme.TEXT_DIM)
                bar = beat // (STEPS_PER_BAR // STEPS_PER_BEAT) + 1
                p.drawText(QPointF(x + 3, area.top() - 5), str(bar))

    def _paint_keyboard(self, p: QPainter, area: QRectF, low: int, high: int, y_of, row_h: float) -> None:
        p.fillRect(QRectF(0, area.top(), KEYBOARD_W, area.height()), QColor("#d9dce2"))
        small = QFont(self.font())
        small.setPointSizeF(max(6.5, min(8.0, row_h * 0.9)))
        p.setFont(small)
        for pitch in range(low, high + 1):
            y = y_of(pitch)
            if pitch % 12 in _BLACK:
                p.fillRect(QRectF(0, y, KEYBOARD_W * 0.6, row_h), QColor("#23262e"))
            elif pitch % 12 in (0, 5):  # a line between the two white keys with no black key between
                p.setPen(QPen(QColor("#9aa0aa"), 1))
                p.drawLine(QPointF(0, y + row_h), QPointF(KEYBOARD_W, y + row_h))
            if pitch % 12 == 0 and row_h >= 4:
                p.setPen(QColor("#3a3f4b"))
                p.drawText(QRectF(0, y - 6, KEYBOARD_W - 2, row_h + 12),
                           Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, note_name(pitch))
        for note in self._sounding.values():  # the keys that sound light up in their voice's colour
            if low <= note.pitch <= high:
                colour = QColor(theme.VOICE_COLOURS[note.voice % 4])
                p.fillRect(QRectF(KEYBOARD_W - 8, y_of(note.pitch), 8, row_h), colour)
        p.setPen(QPen(theme.GRID_STRONG, 1))
        p.drawLine(QPointF(KEYBOARD_W, area.top()), QPointF(KEYBOARD_W, area.bottom()))

    def _paint_legend(self, p: QPainter, area: QRectF) -> None:
        font = QFont(self.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() - 1))
        p.setFont(font)
        metrics = p.fontMetrics()
        names_width = sum(metrics.horizontalAdvance(name) for name in theme.VOICE_NAMES) + 4 * 26
        backdrop = QColor(theme.SUNKEN)
        backdrop.setAlphaF(0.85)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(backdrop)
        p.drawRoundedRect(QRectF(area.right() - names_width - 6, 1, names_width + 4, HEADER_H - 2), 3, 3)
        x = area.right() - 8
        for voice in reversed(range(4)):
            name = theme.VOICE_NAMES[voice]
            width = metrics.horizontalAdvance(name)
            x -= width
            p.setPen(theme.TEXT)
            p.drawText(QPointF(x, HEADER_H - 5), name)
            x -= 14
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(theme.VOICE_COLOURS[voice])
            p.drawRoundedRect(QRectF(x, HEADER_H - 14, 10, 10), 2, 2)
            x -= 12
