"""MIDI learn: the knobs a DAW may move, each with the controller bound to it.

Press a knob's Learn button, move a controller (or send a program change, for a knob with
choices) into the bridge's input: it is bound, and from then on moves that knob while the music
plays (bridge.live.learn). Press the button again while it waits to stop waiting; × unbinds.
The panel only proposes bindings (`bindings_changed`); the window applies them as part of the
LiveConfig, so they are checked there and saved in presets with the rest.
"""
from __future__ import annotations

from typing import Callable

from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import QFormLayout, QGroupBox, QHBoxLayout, QLabel, QPushButton, QWidget

from bridge.live.learn import KNOBS, PROGRAM
from bridge.live.stats import StatsSnapshot
from gui.widgets import tip

KNOB_LABELS = {"temperature": "Temperature", "pmax": "pmax", "pmin": "pmin", "alpha": "alpha", "steps": "Steps",
               "candidates": "Candidates", "parallel_penalty": "Parallels penalty", "top_p": "Top p",
               "repeat_limit": "Repeat limit", "key": "Key", "mode": "Mode", "lookahead": "Lookahead",
               "speculate": "Speculate", "engine": "Model"}
LEARN_TEXT, WAITING_TEXT = "Learn", "Move a control…"


def control_text(control) -> str:
    return "Program" if control == PROGRAM else f"CC {control}"


class LearnPanel(QGroupBox):
    bindings_changed = pyqtSignal(object)   # the whole new tuple of (knob, controller or PROGRAM)
    problem = pyqtSignal(str)

    def __init__(self, controls_in: Callable[[], int | None]):
        """`controls_in()`: the control and program changes the bridge has received so far, or
        None when no bridge runs (nothing can be learnt then)."""
        super().__init__("MIDI learn")
        self._controls_in = controls_in
        self._bindings: tuple = ()
        self.waiting: str | None = None           # the knob waiting for a controller
        self._waiting_since: int | None = None    # controls_in when it began to wait
        form = QFormLayout(self)
        form.setHorizontalSpacing(8)
        form.setVerticalSpacing(4)
        self.learn_buttons: dict[str, QPushButton] = {}
        self.clear_buttons: dict[str, QPushButton] = {}
        for knob, label in KNOB_LABELS.items():
            learn, clear = QPushButton(LEARN_TEXT), QPushButton("×")
            choices = " or send a program change (it picks choice N)" if KNOBS[knob].choices else ""
            tip(learn, f"Bind {label.lower()} to a MIDI controller: press, then move one{choices}")
            tip(clear, f"Unbind {label.lower()}")
            clear.setFixedWidth(clear.fontMetrics().horizontalAdvance("×") + 18)
            learn.clicked.connect(lambda _, k=knob: self.toggle_waiting(k))
            clear.clicked.connect(lambda _, k=knob: self.unbind(k))
            row = QHBoxLayout()
            row.setContentsMargins(0, 0, 0, 0)
            row.addWidget(learn, 1)
            row.addWidget(clear)
            holder = QWidget()
            holder.setLayout(row)
            form.addRow(QLabel(label), holder)
            self.learn_buttons[knob], self.clear_buttons[knob] = learn, clear
        self.show_bindings(())

    def show_bindings(self, bindings: tuple) -> None:
        self._bindings = tuple(bindings)
        bound = dict(self._bindings)
        for knob, button in self.learn_buttons.items():
            button.setText(WAITING_TEXT if knob == self.waiting else
                           control_text(bound[knob]) if knob in bound else LEARN_TEXT)
            self.clear_buttons[knob].setEnabled(knob in bound)

    def toggle_waiting(self, knob: str) -> None:
        if self.waiting == knob:
            self.waiting = None
        else:
            seen = self._controls_in()
            if seen is None:
                self.problem.emit("MIDI learn listens to the live bridge's input: connect it first")
                return
            self.waiting, self._waiting_since = knob, seen
        self.show_bindings(self._bindings)

    def unbind(self, knob: str) -> None:
        self.bindings_changed.emit(tuple(b for b in self._bindings if b[0] != knob))

    def take(self, stats: StatsSnapshot) -> None:
        """The bridge's latest stats: a control that came since Learn was pressed binds."""
        if self.waiting is None or self._waiting_since is None or stats.controls_in <= self._waiting_since:
            return
        knob, control = self.waiting, stats.last_control
        self.waiting = None
        if control == PROGRAM and not KNOBS[knob].choices:
            self.problem.emit(f"a program change picks among choices; {KNOB_LABELS[knob].lower()} has a range: "
                              "move a controller")
            self.show_bindings(self._bindings)
            return
        # one knob per controller, one controller per knob
        kept = tuple(b for b in self._bindings if b[0] != knob and b[1] != control)
        self.bindings_changed.emit(kept + ((knob, control),))
        self.show_bindings(self._bindings)
