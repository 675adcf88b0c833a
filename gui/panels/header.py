"""The window's top line: its name, whether the bridge is live (a light and a line), the presets,
and PANIC."""
from __future__ import annotations

from pathlib import Path

from PyQt6.QtCore import pyqtSignal
from PyQt6.QtGui import QColor
from PyQt6.QtWidgets import (QComboBox, QFileDialog, QHBoxLayout, QInputDialog, QLabel, QPushButton, QSizePolicy,
                             QWidget)

from gui import presets
from gui.widgets import StatusLight, tip

STATUS_TIP = "The live bridge: its MIDI system and ports"


class HeaderBar(QWidget):
    preset_chosen = pyqtSignal(str)   # a preset file to load (from the list or opened)
    save_wanted = pyqtSignal(str)     # the name to save the knobs and model under
    panic_pressed = pyqtSignal()

    def __init__(self, presets_dir: Path):
        super().__init__()
        self.presets_dir = presets_dir
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(8)
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
        self.preset_combo.activated.connect(self._listed_preset_chosen)
        row.addWidget(self.preset_combo)
        self.save_preset_button = QPushButton("Save…")
        tip(self.save_preset_button, "Save the knobs and model as a named preset", "Ctrl+S")
        self.save_preset_button.clicked.connect(self.ask_save_preset)
        row.addWidget(self.save_preset_button)
        self.import_preset_button = QPushButton("Open file…")
        tip(self.import_preset_button, "Load a preset from a JSON file (older preset versions load too)", "Ctrl+O")
        self.import_preset_button.clicked.connect(self.ask_import_preset)
        row.addWidget(self.import_preset_button)
        row.addSpacing(12)
        self.panic_button = QPushButton("PANIC")
        self.panic_button.setObjectName("panic")
        tip(self.panic_button, "All notes off, now (note-offs, then CC 123 on every channel)", "Esc")
        self.panic_button.clicked.connect(lambda: self.panic_pressed.emit())
        row.addWidget(self.panic_button)

    def show_status(self, light: QColor, text: str, why: str | None = None) -> None:
        """The bridge's state: the light's colour, the line, and `why` it stopped (the line's tooltip)."""
        self.status_light.set_colour(light)
        self.status_label.setText(text)
        self.status_label.setToolTip(why or STATUS_TIP)

    def list_presets(self, selected: str | None = None) -> None:
        """Fill the list from the presets folder; `selected`: the name to show as chosen."""
        self.preset_combo.blockSignals(True)
        self.preset_combo.clear()
        self.preset_combo.addItem("—", None)
        for name, path in presets.list_named(self.presets_dir).items():
            self.preset_combo.addItem(name, str(path))
        self.preset_combo.blockSignals(False)
        if selected is not None:
            self.preset_combo.setCurrentIndex(max(0, self.preset_combo.findText(selected)))

    def open_preset_list(self) -> None:
        self.preset_combo.setFocus()
        self.preset_combo.showPopup()

    def _listed_preset_chosen(self, index: int) -> None:
        path = self.preset_combo.itemData(index)
        if path:
            self.preset_chosen.emit(path)

    def ask_save_preset(self) -> None:
        name, ok = QInputDialog.getText(self.window(), "Save preset", "Preset name:",
                                        text=self.preset_combo.currentText().strip("—"))
        if ok and name.strip():
            self.save_wanted.emit(name.strip())

    def ask_import_preset(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window(), "Open preset", str(self.presets_dir), "Presets (*.json)")
        if path:
            self.preset_chosen.emit(path)
