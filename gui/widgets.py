"""Small widgets the window is built from: a note-name spin box, a labelled readout tile, a status
light, the helper that gives every control its tooltip (with its shortcut in it), and the one that
cuts a text to fit a narrow label."""
from __future__ import annotations

from PyQt6.QtCore import Qt
from PyQt6.QtGui import QColor, QPainter
from PyQt6.QtWidgets import QFrame, QLabel, QSpinBox, QVBoxLayout, QWidget

from gui import theme
from gui.pianoroll import NOTE_NAMES, note_name


def tip(widget: QWidget, text: str, shortcut: str | None = None) -> QWidget:
    """Set `widget`'s tooltip, naming its keyboard shortcut when it has one."""
    widget.setToolTip(f"{text}  [{shortcut}]" if shortcut else text)
    return widget


def short(text: str, limit: int = 40) -> str:
    """`text`, cut to `limit` characters with an ellipsis when longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def mark_invalid(widget: QWidget, invalid: bool) -> None:
    """A red border on a control whose value was refused (the stylesheet's [invalid="true"])."""
    if bool(widget.property("invalid")) == invalid:
        return
    widget.setProperty("invalid", invalid)
    widget.style().unpolish(widget)
    widget.style().polish(widget)


class NoteSpinBox(QSpinBox):
    """A MIDI pitch shown as a note name ('C4 60'); typing 'C4', 'f#3' or '60' all work."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setRange(0, 127)
        self.setAlignment(Qt.AlignmentFlag.AlignRight)

    def textFromValue(self, value: int) -> str:
        return f"{note_name(value)} {value}"

    def valueFromText(self, text: str) -> int:
        parsed = parse_note(text)
        return self.value() if parsed is None else parsed

    def validate(self, text, pos):
        from PyQt6.QtGui import QValidator

        state = QValidator.State.Acceptable if parse_note(text) is not None else QValidator.State.Intermediate
        return state, text, pos


def parse_note(text: str) -> int | None:
    """'C4' -> 60, 'F#3' -> 54, 'Bb2' -> 46, '60' -> 60, 'C4 60' -> 60; None when not a note."""
    parts = text.strip().split()
    if not parts:
        return None
    if parts[-1].isdigit():
        value = int(parts[-1])
        return value if 0 <= value <= 127 else None
    name = parts[0]
    letter = name[:1].upper()
    if letter not in "CDEFGAB" or not letter:
        return None
    rest = name[1:]
    pc = NOTE_NAMES.index(letter)
    if rest[:1] in ("#", "b") and len(rest) > 1:
        pc += 1 if rest[0] == "#" else -1
        rest = rest[1:]
    try:
        octave = int(rest)
    except ValueError:
        return None
    value = (octave + 1) * 12 + pc
    return value if 0 <= value <= 127 else None


class Readout(QFrame):
    """A caption over a big value, for the meters under the roll."""

    def __init__(self, caption: str, tooltip: str, parent=None):
        super().__init__(parent)
        self.setObjectName("readout")
        self.setStyleSheet("QFrame#readout { background: #23262e; border: 1px solid #30343e; border-radius: 6px; }"
                           "QFrame#readout QLabel { background: transparent; }")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 4, 10, 6)
        layout.setSpacing(0)
        self.caption = QLabel(caption.upper())
        self.caption.setProperty("role", "caption")
        self.value = QLabel("—")
        self.value.setProperty("role", "big")
        self.detail = QLabel("")
        self.detail.setProperty("role", "caption")
        for label in (self.caption, self.value, self.detail):
            layout.addWidget(label)
        self.setToolTip(tooltip)

    def show_value(self, value: str, detail: str = "", colour: QColor | None = None) -> None:
        self.value.setText(value)
        self.detail.setText(detail)
        self.value.setStyleSheet(f"color: {colour.name()};" if colour is not None else "")


class StatusLight(QWidget):
    """A round light: green (live), amber (starting), red (off)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.colour = theme.DANGER
        self.setFixedSize(14, 14)

    def set_colour(self, colour: QColor) -> None:
        self.colour = colour
        self.update()

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(self.colour)
        p.drawEllipse(2, 2, 10, 10)
        p.end()
