"""The control window: knobs on the sides, the piano roll and the meters in the middle.

The panels (gui.panels) own their controls; the window puts them together and wires them to the
`LiveSession`. It holds no knob state of its own: what the controls show is turned into a
`Settings` and a `LiveConfig` (through `.replace`, so their own checks apply) and handed to the
session, which pushes them into the bridge. A value they refuse is shown in the status bar and
marked on the control; the bridge keeps playing by the last good one.

The bridge plays in a process of its own (see gui.session): the GUI thread reads what it last
reported (stats, the monitor queue for the roll) on a timer and never waits for it.
"""
from __future__ import annotations

from pathlib import Path

from PyQt6.QtCore import QSettings, Qt, QTimer
from PyQt6.QtGui import QAction, QKeySequence
from PyQt6.QtWidgets import (QHBoxLayout, QMainWindow, QScrollArea, QSizePolicy, QTabWidget, QVBoxLayout,
                             QWidget)

from bridge.errors import BadInput
from bridge.live import LiveConfig
from bridge.scheduling import cpus_idle_warning
from bridge.settings import Settings
from gui import presets, state, theme
from gui.panels.learn import LearnPanel
from gui.offline import OfflineJob
from gui.panels.channels import ChannelsPanel
from gui.panels.engine import HarmonyPanel, ModelPanel, SamplingPanel
from gui.panels.form import Knob
from gui.panels.header import HeaderBar
from gui.panels.meters import Meters
from gui.panels.offline import OfflinePanel
from gui.panels.playing import PlayingPanel, RespondPanel
from gui.panels.ports import PortsPanel
from gui.panels.passage import PassagePanel
from gui.pianoroll import PianoRoll
from gui.session import LiveSession, PortChoice, PortsSeen
from gui.widgets import mark_invalid

TICK_MS = 33            # the roll's frame rate (~30/s)
STATS_EVERY = 3         # ticks between meter updates (~10/s)
PROBLEM_SHOWN_MS = 10_000
MONITOR_BATCH = 4096    # most monitor events taken per tick (the queue is bounded anyway)


class MainWindow(QMainWindow):
    def __init__(self, store: QSettings, *, model: str | None = None, ports: PortChoice | None = None,
                 presets_dir: Path | None = None, start_bridge: bool = True):
        super().__init__()
        self.store = store
        self.presets_dir = Path(presets_dir) if presets_dir else state.default_presets_dir()
        self._ticks = 0
        self._closed = False
        self._port_problem: str | None = None
        self._anchored_at: tuple[int | None, int | None] = (None, None)   # (position, onset time)
        self._knob_turns_seen = 0
        self._problem_timer = QTimer(self)   # the status bar's red ends with the message
        self._problem_timer.setSingleShot(True)
        self._problem_timer.timeout.connect(self._problem_shown)

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
        self._build()
        self._show_state(restored.config, restored.settings)
        self.model_panel.select(self.session.model)
        self.header.list_presets()
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
        session = self.session
        self.header = HeaderBar(self.presets_dir)
        self.header.preset_chosen.connect(self.load_preset)
        self.header.save_wanted.connect(self.save_preset)
        self.header.panic_pressed.connect(self.panic)
        self.model_panel = ModelPanel(self.store.value("models/recent", []) or [])
        self.model_panel.chosen.connect(self.load_model)
        self.sampling, self.harmony = SamplingPanel(), HarmonyPanel()
        self.playing, self.respond, self.channels = PlayingPanel(), RespondPanel(), ChannelsPanel()
        self.ports = PortsPanel(lambda: session.ports)
        self.ports.refresh_wanted.connect(session.refresh_ports)
        self.ports.connect_wanted.connect(self.start_bridge)
        self.ports.midi_system_found.connect(self._midi_system_found)
        self.offline = OfflinePanel(lambda: session.model, lambda: session.settings, lambda: session.bridge)
        self.offline.problem.connect(self.show_problem)
        self.offline.message.connect(self._say)

        def controls_in():
            bridge = session.bridge
            return None if bridge is None else bridge.stats.snapshot().controls_in

        self.learn_panel = LearnPanel(controls_in)
        self.learn_panel.bindings_changed.connect(self._bindings_chosen)
        self.learn_panel.problem.connect(self.show_problem)
        knob_panels = (self.sampling, self.harmony, self.playing, self.respond, self.channels)
        self.knobs: list[Knob] = [knob for panel in knob_panels for knob in panel.knobs]
        for knob in self.knobs:
            for changed in knob.changed_signals():
                changed.connect(lambda *_, k=knob: self._knob_changed(k))

        central = QWidget()
        outer = QVBoxLayout(central)
        outer.setContentsMargins(10, 8, 10, 4)
        outer.setSpacing(8)
        outer.addWidget(self.header)
        body = QHBoxLayout()
        body.setSpacing(10)
        body.addWidget(_scrolling(self.model_panel, self.sampling, self.harmony), 0)
        body.addLayout(self._build_centre(), 1)
        body.addWidget(_scrolling(self.playing, self.respond, self.channels, self.ports, self.offline,
                                  self.learn_panel), 0)
        outer.addLayout(body, 1)
        self.setCentralWidget(central)
        self._build_actions()
        self.statusBar().showMessage("Ready")

    def _build_centre(self) -> QVBoxLayout:
        column = QVBoxLayout()
        column.setSpacing(8)
        self.roll = PianoRoll()
        self.passage = PassagePanel(lambda: self.session.model, lambda: self.session.settings)
        self.passage.problem.connect(self.show_problem)
        self.passage.message.connect(self._say)
        self.offline.harmonized.connect(self.passage.open)
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
        self.meters = Meters()
        column.addWidget(self.meters)
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
            "save preset": action("Save preset…", "Ctrl+S", self.header.ask_save_preset),
            "open preset": action("Open preset file…", "Ctrl+O", self.header.ask_import_preset),
            "presets": action("Presets", "Ctrl+L", self.header.open_preset_list),
            "load model": action("Load model…", "Ctrl+M", self.model_panel.ask_load_model),
            "harmonize": action("Harmonize file…", "Ctrl+H", self.offline.ask_harmonize_file),
            "convert": action("Convert folder…", "Ctrl+B", self.offline.ask_convert_folder),
            "cancel": action("Cancel conversion", "Ctrl+.", self.offline.cancel),
            "reveal": action("Reveal result", "Ctrl+E", self.offline.reveal_result),
            "play": action("Play result", "Ctrl+P", self.offline.toggle_play),
            "connect": action("Connect", "Ctrl+R", self.start_bridge),
            "refresh ports": action("Refresh ports", "F5", self.session.refresh_ports),
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
        self.sampling.show_settings(settings)
        self._enable_mode_knobs(config.mode)
        self.learn_panel.show_bindings(config.knob_controls)

    def _enable_mode_knobs(self, mode: str) -> None:
        self.playing.enable_for_mode(mode)
        self.respond.enable_for_mode(mode)

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
            self.sampling.schedule_plot.set_settings(changed)
        self.statusBar().showMessage(f"{knob.field.replace('_', ' ')}: {_shown(knob.read())}", 3000)

    def current_preset(self, name: str = state.STATE_NAME) -> presets.Preset:
        return presets.Preset(name=name, model=self.session.model, config=self.session.config,
                              settings=self.session.settings)

    def apply_preset(self, preset: presets.Preset) -> None:
        self._show_state(preset.config, preset.settings)
        self.session.set_config(preset.config)
        self.session.set_settings(preset.settings)
        if preset.model != self.session.model:
            self.model_panel.select(preset.model)
            self.session.load_model(preset.model)

    def save_state(self) -> None:
        state.save(self.store, self.current_preset(), self.session.ports, self.model_panel.recent(),
                   self.saveGeometry())

    # ------------------------------------------------------------ presets

    def save_preset(self, name: str) -> Path | None:
        try:
            path = presets.save(self.presets_dir, self.current_preset(name))
        except (BadInput, OSError) as error:
            self.show_problem(f"preset not saved: {error}")
            return None
        self.header.list_presets(selected=name)
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

    # ------------------------------------------------------------ model

    def load_model(self, model: str) -> None:
        """Play `model` (a shipped name or an .onnx path); loaded and warmed off the GUI thread."""
        self.model_panel.select(str(model))
        self.model_panel.show_loading()
        self.session.load_model(str(model))

    def _engine_changed(self, engine) -> None:
        self.model_panel.show_engine(engine)
        # the knobs the engine does not read stay as set, disabled, and say so
        for knob in self.knobs:
            if knob.part == "settings":
                used = knob.field in engine.knobs
                for widget in knob.widgets:
                    widget.setEnabled(used)
        self.sampling.schedule_plot.setEnabled("steps" in engine.knobs)
        self.model_panel.select(self.session.model)
        self.statusBar().showMessage(f"model {engine.name} loaded", 4000)

    # ------------------------------------------------------------ MIDI learn

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
        if bridge.snapshot.model != self.session.model:   # a controller picked another model
            self.load_model(bridge.snapshot.model)         # the bridge has it already: shown here

    # ------------------------------------------------------------ ports and the bridge

    def _ports_seen(self, seen: PortsSeen) -> None:
        self.ports.show_ports(seen)
        self._show_bridge_state()

    def _midi_system_found(self, api: str) -> None:
        if self._live_wanted and self.session.bridge is None and not self.session.starting:
            self.statusBar().showMessage(f"MIDI system found ({api}): going live", 5000)
            self.start_bridge()

    def no_midi_system(self) -> bool:
        """No MIDI system runs here (as last seen): no ports can open."""
        return self.ports.no_midi_system()

    def chosen_ports(self) -> PortChoice:
        return self.ports.chosen()

    def start_bridge(self) -> None:
        self._live_wanted = True
        ports = self.chosen_ports() if self.ports.seen is not None else None
        self.roll.release_all()
        self.session.start(ports)
        self._show_bridge_state()

    def _bridge_changed(self, bridge) -> None:
        self._port_problem = None
        if bridge is None:
            self.roll.release_all()
        else:
            warning = cpus_idle_warning(bridge.cpus_awake)
            self.statusBar().showMessage(f"live: ports up in {bridge.ports_up_s * 1e3:.0f} ms"
                                         + (f"  ·  {warning}" if warning else ""), 10000 if warning else 5000)
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
        self.header.show_status(light, text, self.session.stopped_why)
        self.offline.show_live(bridge is not None)

    def panic(self) -> None:
        self.session.panic()
        self.roll.release_all()
        self.offline.stop_playing()
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
        self.meters.show_stats(s)
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

    def harmonize_file(self, source: Path, target: Path) -> OfflineJob | None:
        return self.offline.harmonize_file(source, target)

    def convert_folder(self, source: Path, target: Path, overwrite: bool = False) -> OfflineJob | None:
        return self.offline.convert_folder(source, target, overwrite)

    def toggle_play(self) -> None:
        self.offline.toggle_play()

    # ------------------------------------------------------------ messages and closing

    def show_problem(self, message: str) -> None:
        """One line in the status bar, in red for as long as it shows."""
        self.statusBar().setStyleSheet(f"color: {theme.DANGER.name()};")
        self.statusBar().showMessage(message, PROBLEM_SHOWN_MS)
        self._problem_timer.start(PROBLEM_SHOWN_MS)

    # Slots of the window's own, not lambdas: Qt drops a connection to a method of the window
    # when the window is destroyed, never one to a lambda, which a message arriving late (a
    # conversion's worker finishing after the window closed) would then call on a deleted window.
    def _problem_shown(self) -> None:
        self.statusBar().setStyleSheet("")

    def _say(self, text: str, ms: int = 6000) -> None:
        self.statusBar().showMessage(text, ms)

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
        self.offline.stop()
        if self.passage.job is not None:
            self.passage.job.wait(60)
        self.passage.close_folder()
        self.save_state()
        self.session.close()


def _scrolling(*panels: QWidget) -> QScrollArea:
    """A column of panels that scrolls when the window is too short for it."""
    column = QWidget()
    layout = QVBoxLayout(column)
    layout.setContentsMargins(0, 0, 4, 0)
    layout.setSpacing(8)
    for panel in panels:
        layout.addWidget(panel)
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


def _shown(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
