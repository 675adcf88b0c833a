"""The window's side of the live bridge: the knobs it wants, the bridge that plays them, and one
worker thread ("the lane") for everything slow, so the GUI thread never waits on the bridge.

The bridge runs in a process of its own (bridge.live.remote.RemoteBridge): its worker needs the
GIL for every note it answers, and in the window's process anything may hold the GIL for long
(a Qt call that keeps it, drawing, an offline harmonization in a thread of the window).

Threading:
- The GUI thread owns the wanted knobs (`config`, `settings`, `ports`) and only ever replaces
  them whole. The lane alone writes `model`, `engine` and `bridge` (once loaded or started), so
  work queued on it sees what the work before it did. The GUI thread reads `bridge` (stats,
  monitor: what the bridge's process last reported) and never blocks on it; panic and a file to
  play are messages to it that never wait.
- The lane runs, one at a time and in order: loading an engine (the window's own, for the
  model's metadata, the offline work and the screenshot), starting and stopping the bridge,
  listing ports, and `bridge.update()` (which returns once the bridge's process plays by the new
  knobs, after loading and warming up a new model: the GUI thread must not wait for that). A
  knob change queues one "sync" task that pushes the latest wanted state whenever it runs, so a
  slider dragged across fifty values costs one or two updates, not fifty.
- The first start launches the bridge's process at once, from the GUI thread (a spawn: a few
  ms), so that it loads and opens its ports while the window builds, or takes over the one
  `prelaunch()` launched before the window was made; a restart closes the old one first, on
  the lane.
- Results come back to the GUI thread through a queued Qt signal; so does the news that the
  bridge's process ended without being asked (`stopped_why`).
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from PyQt6.QtCore import QObject, pyqtSignal

from bridge.engines import Engine, load_engine
from bridge.errors import BadInput
from bridge.live import LiveConfig
from bridge.live.remote import RemoteBridge, RemoteError
from bridge.ports import DEFAULT_IN, DEFAULT_OUT, PortError, api_status, list_apis, list_ports, pick_api
from bridge.settings import Settings

@dataclass(frozen=True)
class PortChoice:
    """Which MIDI system and ports the bridge opens. `connect_*` None = a new virtual port."""
    api: str | None = None           # None = auto (see bridge.ports.pick_api)
    in_name: str = DEFAULT_IN
    out_name: str = DEFAULT_OUT
    connect_in: str | None = None
    connect_out: str | None = None

    def describe(self, api: str | None = None) -> str:
        source = f"from {self.connect_in!r}" if self.connect_in else f"{self.in_name!r}"
        target = f"to {self.connect_out!r}" if self.connect_out else f"{self.out_name!r}"
        return f"{api or self.api or 'auto'}: {source} -> {target}"


@dataclass(frozen=True)
class PortsSeen:
    """What the MIDI systems on this machine offer: for the port pickers."""
    apis: dict[str, tuple[bool, str]]     # api -> (usable, why)
    auto: str | None                        # what auto picks
    auto_reason: str
    ports: dict[str, dict[str, list[str]]]  # usable api -> {'inputs': [...], 'outputs': [...]}


def see_ports() -> PortsSeen:
    """Probe every compiled-in API (cheap, starts nothing) and list the ports of the usable ones."""
    apis, ports = {}, {}
    for api in list_apis():
        usable, why = api_status(api)
        apis[api] = (usable, why)
        if usable:
            try:
                ports[api] = list_ports(api)
            except PortError as error:
                apis[api] = (False, str(error))
    choice = pick_api()
    return PortsSeen(apis, choice.api, choice.reason, ports)


# a bridge launched before the window was built: (what it was launched with, the RemoteBridge)
_prelaunched: list[tuple[tuple, RemoteBridge]] = []


def prelaunch(model: str, config: LiveConfig, settings: Settings, ports: PortChoice) -> None:
    """Launch the bridge's process now, before the window is built, which takes about as long as
    the process needs to load its model and open its ports. The first LiveSession.start() with
    the same model, knobs and ports takes it over; another start() closes it first."""
    _prelaunched.append(((model, config, settings, ports), _launch(model, config, settings, ports)))


def _take_prelaunched(wanted: tuple) -> tuple[RemoteBridge | None, RemoteBridge | None]:
    """(the prelaunched bridge if it was launched as `wanted`, else None; the one to close first)."""
    if not _prelaunched:
        return None, None
    launched_as, bridge = _prelaunched.pop()
    return (bridge, None) if launched_as == wanted else (None, bridge)


def _launch(model: str, config: LiveConfig, settings: Settings, ports: PortChoice) -> RemoteBridge:
    return RemoteBridge(model, config, settings, api=ports.api, in_name=ports.in_name, out_name=ports.out_name,
                        connect_in=ports.connect_in, connect_out=ports.connect_out).launch()


class LiveSession(QObject):
    bridge_changed = pyqtSignal(object)    # the running RemoteBridge, or None
    engine_changed = pyqtSignal(object)    # the Engine now wanted (and played, when a bridge runs)
    ports_seen = pyqtSignal(object)        # PortsSeen
    problem = pyqtSignal(str)              # one line for the status bar
    _done = pyqtSignal(object, object, object)  # (on_done, result, error): lane -> GUI thread
    _ended = pyqtSignal(object, str)       # (bridge, why): its process ended unasked

    def __init__(self, model: str, config: LiveConfig, settings: Settings, ports: PortChoice = PortChoice(),
                 parent=None):
        super().__init__(parent)
        self.model = model
        self.engine: Engine | None = None
        self.config = config
        self.settings = settings
        self.ports = ports
        self.bridge: RemoteBridge | None = None
        self.starting = False
        self.stopped_why: str | None = None   # why the bridge's process ended unasked, until the next start
        self._starts_queued = 0
        self._lane = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bachbridge-gui-lane")
        self._sync_queued = threading.Event()
        self._closed = False
        self._done.connect(self._deliver)
        self._ended.connect(self._bridge_ended)

    # ---- the lane

    def _run(self, task, on_done=None, what: str = "") -> None:
        """Run `task()` on the lane; `on_done(result)` afterwards in the GUI thread. A BadInput (or
        any error) becomes one status-bar line, never an exception in the event loop."""
        if self._closed:
            return

        def job():
            try:
                result = task()
            except BadInput as error:
                self._done.emit(None, None, f"{what}{error}")
                return
            except Exception as error:  # a bug or a MIDI system failing: say it, keep the window
                self._done.emit(None, None, f"{what}{type(error).__name__}: {error}")
                return
            self._done.emit(on_done, result, None)

        self._lane.submit(job)

    def _deliver(self, on_done, result, error) -> None:
        if error is not None:
            self.problem.emit(error)
        elif on_done is not None:
            on_done(result)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until the lane has done everything queued so far (tests, closing)."""
        if self._closed:
            return True
        return self._lane.submit(lambda: None).exception(timeout) is None

    # ---- knobs

    def set_settings(self, settings: Settings) -> None:
        self.settings = settings
        self._sync()

    def set_config(self, config: LiveConfig) -> None:
        self.config = config
        self._sync()

    def adopt(self, config: LiveConfig, settings: Settings) -> None:
        """Knobs the bridge already plays by (moved by a controller bound to them): taken as the
        session's own, not pushed back."""
        self.config, self.settings = config, settings

    def _sync(self) -> None:
        if self.bridge is None or self._sync_queued.is_set():
            return
        self._sync_queued.set()

        def push():
            self._sync_queued.clear()  # before reading: a change from here on queues another push
            bridge = self.bridge
            if bridge is not None:
                bridge.update(config=self.config, settings=self.settings)

        self._run(push, what="could not apply the settings: ")

    def load_model(self, model: str) -> None:
        """Load `model` (a shipped name or an .onnx path) and play it from now on."""
        def load():
            engine = load_engine(model, threads=1)  # one thread: the cores are shared with the DAW
            bridge = self.bridge
            if bridge is not None:  # its process loads and warms up its own
                bridge.update(model=model, config=self.config, settings=self.settings)
            # set here, on the lane, so that a start() queued behind this load uses this engine
            self.model, self.engine = model, engine
            return engine

        def loaded(engine):
            self.engine_changed.emit(engine)

        self._run(load, loaded, what=f"could not load the model {model}: ")

    # ---- the bridge

    def start(self, ports: PortChoice | None = None) -> None:
        """(Re)start the bridge on `ports` (default: the current choice)."""
        if self._closed:
            return
        if ports is not None:
            self.ports = ports
        self.starting = True
        self.stopped_why = None
        choice = self.ports
        nothing_to_close = self.bridge is None and self._starts_queued == 0
        launched, stale = _take_prelaunched((self.model, self.config, self.settings, choice))
        if launched is not None and not nothing_to_close:
            launched, stale = None, launched
        if launched is None and stale is None and nothing_to_close:
            # the process loads and opens its ports while the lane works
            try:
                launched = _launch(self.model, self.config, self.settings, choice)
            except Exception:  # the lane tries again, and says why if it fails there too
                launched = None
        if launched is not None:
            self._watch(launched)
        self._starts_queued += 1

        def start():
            if stale is not None:
                stale.close()
            self._stop_bridge()
            bridge = launched or self._watch(_launch(self.model, self.config, self.settings, choice))
            bridge.wait_started()
            if bridge.ended:   # it ended before it was watched
                raise RemoteError(bridge.ended)
            # the lane alone writes `bridge`, so a second start() queued behind this one stops it
            self.bridge = bridge
            # knobs turned, or a model loaded, while it started
            bridge.update(config=self.config, settings=self.settings, model=self.model)
            return bridge

        def started(bridge):
            self._starts_queued -= 1
            self.starting = self._starts_queued > 0
            self.bridge_changed.emit(bridge)

        def failed_start(message):
            self._starts_queued -= 1
            self.starting = self._starts_queued > 0
            self.bridge_changed.emit(None)
            self.problem.emit(message)

        self._run_start(start, started, failed_start)

    def _watch(self, bridge: RemoteBridge) -> RemoteBridge:
        """Be told (in the GUI thread) when the bridge's process ends unasked."""
        bridge.on_end = lambda why: self._ended.emit(bridge, why)   # called from its receiver thread
        return bridge

    def _run_start(self, task, on_done, on_failure) -> None:
        """Like _run, but a failure also resets the 'starting' state (through on_failure)."""
        def job():
            try:
                result = task()
            except Exception as error:
                text = str(error) if isinstance(error, BadInput) else f"{type(error).__name__}: {error}"
                self._done.emit(on_failure, f"the bridge did not start: {text}", None)
                return
            self._done.emit(on_done, result, None)

        if not self._closed:
            self._lane.submit(job)

    def stop(self) -> None:
        """Stop the bridge (every note released, ports closed)."""
        def stopped(_):
            self.bridge_changed.emit(None)

        self._run(self._stop_bridge, stopped)

    def _stop_bridge(self) -> None:  # on the lane
        bridge = self.bridge
        if bridge is not None:
            bridge.close()      # its ports are closed before `bridge` says there is none
            self.bridge = None

    def _bridge_ended(self, bridge: RemoteBridge, why: str) -> None:
        """The bridge's process ended unasked (killed, or stopped by someone else): say so."""
        def forget():
            if self.bridge is bridge:
                self._stop_bridge()
                return True
            return False

        def forgotten(was_current):
            if was_current:
                self.stopped_why = why
                self.bridge_changed.emit(None)
                self.problem.emit(f"{why}; Connect (Ctrl+R) starts it again")

        self._run(forget, forgotten)

    def panic(self) -> None:
        """All notes off, now (from the GUI thread: the bridge allows it from any thread)."""
        bridge = self.bridge
        if bridge is not None:
            bridge.panic()

    def refresh_ports(self) -> None:
        self._run(see_ports, self.ports_seen.emit, what="could not list the MIDI ports: ")

    def close(self, timeout: float = 30.0) -> None:
        """Finish the lane's work, then stop the bridge: every note released, ports closed."""
        if self._closed:
            return
        self._closed = True
        self._lane.shutdown(wait=True)
        self._stop_bridge()
