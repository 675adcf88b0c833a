"""Which MIDI system and ports the bridge opens (Ports), and what to do when there is no MIDI
system at all."""
from __future__ import annotations

from typing import Callable

from PyQt6.QtCore import Qt, QTimer, pyqtSignal
from PyQt6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton

from gui import theme
from gui.panels.form import FormGroup
from gui.session import PortChoice, PortsSeen
from gui.widgets import tip

NO_MIDI_HINT = ("No MIDI system is running. Start a JACK server (qjackctl, or PipeWire's JACK) or ALSA's "
                "sequencer (sudo modprobe snd-seq): the bridge goes live when one appears. Offline work "
                "runs meanwhile.")
LOOK_FOR_MIDI_MS = 2000


class PortsPanel(FormGroup):
    refresh_wanted = pyqtSignal()             # look again for MIDI systems and their ports
    connect_wanted = pyqtSignal()             # (re)start the bridge on the ports chosen
    midi_system_found = pyqtSignal(str)       # one appeared where none ran: what auto picks now

    def __init__(self, wanted: Callable[[], PortChoice]):
        """`wanted()`: the ports the session means to open (our virtual ports' names, and the
        existing ports to connect), shown as chosen whenever the lists are filled again."""
        super().__init__("Ports")
        self._wanted = wanted
        self.seen: PortsSeen | None = None   # what the MIDI systems offered when last asked
        self.api_combo = QComboBox()
        self.row("API", self.api_combo, "The MIDI system: auto picks JACK when a server runs, "
                                        "else ALSA (Linux), CoreMIDI (macOS), WinMM (Windows)")
        self.api_combo.currentIndexChanged.connect(lambda _: self._fill_port_combos())
        self.in_combo = QComboBox()
        self.row("In", self.in_combo, "Where the melody comes from: our own virtual port, or an existing one")
        self.out_combo = QComboBox()
        self.row("Out", self.out_combo, "Where the harmony goes: our own virtual port, or an existing one")
        buttons = QHBoxLayout()
        self.refresh_ports_button = QPushButton("Refresh")
        tip(self.refresh_ports_button, "Look again for MIDI systems and ports", "F5")
        self.refresh_ports_button.clicked.connect(lambda: self.refresh_wanted.emit())
        self.connect_button = QPushButton("Connect")
        tip(self.connect_button, "(Re)start the bridge on the ports chosen (every sounding note is released)",
            "Ctrl+R")
        self.connect_button.clicked.connect(lambda: self.connect_wanted.emit())
        buttons.addWidget(self.refresh_ports_button)
        buttons.addWidget(self.connect_button)
        self.form.addRow(buttons)
        self.no_midi_hint = QLabel(NO_MIDI_HINT)
        self.no_midi_hint.setWordWrap(True)
        self.no_midi_hint.setStyleSheet(f"color: {theme.WARN.name()};")
        self.no_midi_hint.hide()
        self.form.addRow(self.no_midi_hint)
        # with no MIDI system, look again now and then: the window goes live once one is started
        self._look_for_midi = QTimer(self)
        self._look_for_midi.setInterval(LOOK_FOR_MIDI_MS)
        self._look_for_midi.timeout.connect(lambda: self.refresh_wanted.emit())

    def no_midi_system(self) -> bool:
        """No MIDI system runs here (as last seen): no ports can open."""
        return self.seen is not None and self.seen.auto is None

    def show_ports(self, seen: PortsSeen) -> None:
        had_none = self.no_midi_system()
        self.seen = seen
        self.no_midi_hint.setVisible(self.no_midi_system())
        if self.no_midi_system():
            self._look_for_midi.start()
        else:
            self._look_for_midi.stop()
            if had_none:
                self.midi_system_found.emit(seen.auto)
        wanted = self._wanted()
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

    def _fill_port_combos(self) -> None:
        seen = self.seen
        api = self.api_combo.currentData() or (seen.auto if seen else None)
        found = seen.ports.get(api, {"inputs": [], "outputs": []}) if seen else {"inputs": [], "outputs": []}
        wanted = self._wanted()
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

    def chosen(self) -> PortChoice:
        """The ports as chosen in the lists (our virtual ports keep the names wanted)."""
        wanted = self._wanted()
        return PortChoice(api=self.api_combo.currentData(), in_name=wanted.in_name, out_name=wanted.out_name,
                          connect_in=self.in_combo.currentData(), connect_out=self.out_combo.currentData())
