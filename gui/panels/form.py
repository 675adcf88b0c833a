"""What the panels are built from: a titled group of labelled rows, the spin boxes its knobs use,
and the `Knob` record that binds controls to one field of the live state."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from PyQt6.QtCore import Qt, pyqtBoundSignal
from PyQt6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QLabel, QSpinBox,
                             QWidget)

from gui.widgets import tip


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

    def changed_signals(self) -> list[pyqtBoundSignal]:
        """The signal each of its widgets sends when the user changes it."""
        return [widget.valueChanged if isinstance(widget, (QSpinBox, QDoubleSpinBox))
                else widget.toggled if isinstance(widget, QCheckBox)
                else widget.currentIndexChanged if isinstance(widget, QComboBox) and not widget.isEditable()
                else widget.currentTextChanged
                for widget in self.widgets]


class FormGroup(QGroupBox):
    """A titled group of labelled rows; `knobs`: the bindings its controls declare, for the window
    to show the state in and to apply what they are turned to."""

    def __init__(self, title: str):
        super().__init__(title)
        self.knobs: list[Knob] = []
        self.form = QFormLayout(self)
        self.form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.form.setHorizontalSpacing(8)
        self.form.setVerticalSpacing(5)

    def row(self, label: str, widget: QWidget, tooltip: str, shown: QWidget | None = None) -> QWidget:
        """A labelled row whose label's mnemonic (&X) focuses `widget`: Alt+X. `shown`: what the
        row holds when that is more than the control itself (a slider beside a spin box)."""
        caption = QLabel(label)
        caption.setBuddy(widget)
        shortcut = None
        if "&" in label:
            shortcut = "Alt+" + label[label.index("&") + 1].upper()
        tip(widget, tooltip, shortcut)
        caption.setToolTip(widget.toolTip())
        self.form.addRow(caption, shown or widget)
        return widget

    def bind(self, part: str, field: str, widgets: list[QWidget], read: Callable[[], Any],
             show: Callable[[Any], None]) -> None:
        self.knobs.append(Knob(part, field, widgets, read, show))

    def bind_box(self, part: str, field: str, box: QSpinBox | QDoubleSpinBox) -> None:
        """A spin box that shows the field's value as it is."""
        self.bind(part, field, [box], box.value, box.setValue)

    def bind_choice(self, part: str, field: str, combo: QComboBox) -> None:
        """A list whose items carry the field's values as their data."""
        self.bind(part, field, [combo], combo.currentData,
                  lambda value: combo.setCurrentIndex(max(0, combo.findData(value))))


def double_box(low: float, high: float, step: float, decimals: int = 2) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(low, high)
    box.setSingleStep(step)
    box.setDecimals(decimals)
    box.setKeyboardTracking(False)  # typed values apply on Enter/leaving, not per keystroke
    return box


def int_box(low: int, high: int) -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    box.setKeyboardTracking(False)
    return box
