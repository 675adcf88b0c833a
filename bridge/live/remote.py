"""The live bridge in a process of its own, for a host whose own process may hold the GIL for long.

The bridge's worker needs the GIL for every note it answers. In a window's process anything may
hold it: a slow C call on the GUI thread that keeps it, numba code without nogil, an offline
harmonization in one of the window's threads, heavy drawing. `RemoteBridge` runs a real `Bridge`
in a child process, which shares its GIL with nobody but the bridge's own threads, and talks to
it through two pipes.

    with RemoteBridge("coconet-live", LiveConfig(), LIVE_SETTINGS, api="jack") as bridge:  # start()
        bridge.update(settings=...)        # returns once the bridge plays by them (or raises BadInput)
        bridge.update(model="my.onnx")     # the child loads and warms it up; the notes go on meanwhile
        bridge.panic(); bridge.play(events); bridge.stop_playing()    # never wait
        bridge.stats.snapshot(); bridge.monitor; bridge.snapshot; bridge.playing   # as last reported
    # closed: the child released every note (note-offs, then CC 123) and closed its ports

The surface is Bridge's, with a model (a shipped model's name or an .onnx path) where Bridge takes
an engine: an engine cannot cross a process, so the child loads its own.

Who waits on what:
- The host waits on the child only in `start()`, `update()` and `close()`, which return when the
  child has done it (or time out): calls for a worker thread of the host, such as the window's
  lane. `panic()`, `play()` and `stop_playing()` hand a message to a sender thread and return;
  `stats`, `monitor`, `snapshot`, `playing`, `input`, `output` are what a receiver thread last
  took in from the child.
- The child's main thread reads commands and sends reports: the monitor's notes every REPORT_S
  while there are any, the stats when they changed (at most every STATS_S), the ports when they
  were replaced, the knobs when they changed (an update, or a controller bound to a knob). Its
  lane thread runs `update()` (a new model loads and warms up there while the bridge plays on).
  Bridge's worker and watcher run as they always do. A host that stops reading its pipe makes the
  child's reports wait, never a note.
- Times: monitor events carry the child's time.perf_counter_ns(), a system-wide clock (Linux
  CLOCK_MONOTONIC, macOS mach_absolute_time, Windows QueryPerformanceCounter) that the host reads
  too; `start(t0)` counts `ports_up_s` from the host's t0 on it.

Ending: `close()` asks the child to close its Bridge (every note released, then CC 123, ports
closed) and waits up to CLOSE_TIMEOUT_S, then sends SIGTERM, on which the child does the same,
then kills it. The child closes the same way on SIGTERM from anyone and when the host goes away
(its command pipe ends). It ignores SIGINT: a Ctrl-C in a terminal reaches the whole process
group, and the host closes the bridge in order. A child killed outright (SIGKILL) releases
nothing: its ports vanish with it. Either way `ended` then says why, and `on_end(why)` is called
from the receiver thread.
"""
from __future__ import annotations

import atexit
import collections
import multiprocessing
import multiprocessing.util  # noqa: F401  (its exit handler registered before ours: see below)
import queue
import signal
import threading
import time
import weakref
from dataclasses import dataclass

from bridge.errors import BadInput
from bridge.live.config import LIVE_SETTINGS, LiveConfig
from bridge.live.stats import MONITOR_SIZE, LiveStats, StatsSnapshot, describe
from bridge.ports import DEFAULT_IN, DEFAULT_OUT
from bridge.scheduling import long_slice
from bridge.settings import Settings

# the child's cadence: monitor events at most this late, stats at most this often
REPORT_S = 0.01
STATS_S = 0.1
# import, load and warm up a model, open the ports: seconds on an idle machine, more on a loaded one
START_TIMEOUT_S = 120.0
# a new model is loaded and warmed up before update() returns
UPDATE_TIMEOUT_S = 120.0
# the child's Bridge.close() joins its worker and its watcher (up to 5 s each)
CLOSE_TIMEOUT_S = 15.0
# after a play request, the child waits up to this long for the worker to take the file in, so
# that `playing` never reads False between asking and the worker's next turn
PLAY_TAKEN_S = 0.05


class RemoteError(RuntimeError):
    """The child failed in a way that is not the user's input, or is gone."""


@dataclass(frozen=True)
class RemoteSnapshot:
    """What the child's bridge plays by: its knobs, and the model it loaded (as it was named)."""
    config: LiveConfig
    settings: Settings
    model: str


@dataclass(frozen=True)
class RemotePort:
    """One of the child's ports, as Bridge's MidiInput/MidiOutput describe it."""
    api: str
    name: str
    connected_to: str | None
    full_name: str | None = None


class RemoteStats:
    """The child's LiveStats as last reported: `snapshot()` returns them (all zero before any)."""

    def __init__(self):
        self._last = LiveStats().snapshot()

    def snapshot(self) -> StatsSnapshot:
        return self._last


_open_bridges: "weakref.WeakSet[RemoteBridge]" = weakref.WeakSet()


@atexit.register
def _close_open_bridges() -> None:
    # before multiprocessing's own exit handler (atexit runs last-registered first), which would
    # otherwise wait for a child that is waiting for us
    for bridge in list(_open_bridges):
        bridge.close()


class RemoteBridge:
    """A Bridge in a child process (see the module docstring). Not restartable: make a new one."""

    def __init__(self, model: str, config: LiveConfig = LiveConfig(), settings: Settings = LIVE_SETTINGS,
                 *, api: str | None = None, in_name: str = DEFAULT_IN, out_name: str = DEFAULT_OUT,
                 connect_in: str | None = None, connect_out: str | None = None, on_end=None):
        self.model = str(model)
        self._wanted = (config, settings)
        self._port_options = dict(api=api, in_name=in_name, out_name=out_name,
                                  connect_in=connect_in, connect_out=connect_out)
        self.on_end = on_end                 # called with `ended` when the child ends unasked
        self.stats = RemoteStats()
        self.monitor: collections.deque = collections.deque(maxlen=MONITOR_SIZE)
        self.snapshot: RemoteSnapshot | None = None
        self.knob_turns = 0                  # knobs moved by bound controllers, as of `snapshot`
        self.input: RemotePort | None = None
        self.output: RemotePort | None = None
        self.ports_up_s: float | None = None
        self.warm_up_s: float | None = None
        self.worker_realtime = False
        self.cpus_awake = False              # the child keeps the CPUs awake (Bridge.cpus_awake)
        self.ended: str | None = None        # why the child ended without being asked to
        self.released = False                # the child's Bridge.close() ran: every note released
        self._stopped_by: str | None = None  # the signal that stopped the child, when one did
        self._process = None
        self._commands = None                # our end of the pipe to the child
        self._reports = None                 # our end of the pipe from it
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._seq = 0
        self._seq_lock = threading.Lock()    # numbers and queues a command in one go: sent in order
        self._reap_lock = threading.Lock()   # one thread at a time waits for the child's exit
        self._exitcode: int | None = None
        self._replies: dict[int, list] = {}  # seq -> [Event, reply]
        self._started = threading.Event()
        self._start_error: Exception | None = None
        self._playing_reported = (False, 0)  # (playing, the last command the child had handled)
        self._playing_asked = (False, 0)     # (what we last asked for, its command's seq)
        self._closing = False
        self._gone = threading.Event()       # the child's pipe ended

    # ---- life cycle

    def launch(self, t0: float | None = None) -> "RemoteBridge":
        """Spawn the child, which loads the model and opens the ports at once; returns at once."""
        if self._process is not None:
            return self
        t0 = time.perf_counter() if t0 is None else t0
        # spawned, not forked: a fork would copy onnxruntime's, numba's and Qt's threads' state
        context = multiprocessing.get_context("spawn")
        commands_in, self._commands = context.Pipe(duplex=False)
        self._reports, reports_out = context.Pipe(duplex=False)
        config, settings = self._wanted
        self._process = context.Process(target=_child_main, name="bachbridge-live-bridge",
                                        args=(commands_in, reports_out, self.model, config, settings,
                                              self._port_options, t0))
        self._process.start()
        commands_in.close()
        reports_out.close()
        _open_bridges.add(self)
        for target, name in ((self._send_loop, "bachbridge-remote-send"),
                             (self._receive_loop, "bachbridge-remote-receive")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def wait_started(self, timeout: float = START_TIMEOUT_S) -> "RemoteBridge":
        """Wait until the child's ports are up; raises BadInput (a bad model or port name) or
        RemoteError (anything else, or no answer in `timeout`), after closing the child."""
        if not self._started.wait(timeout):
            self.close()
            raise RemoteError(f"the live bridge's process did not start in {timeout:.0f} s")
        if self._start_error is not None:
            self.close()
            raise self._start_error
        return self

    def start(self, t0: float | None = None, timeout: float = START_TIMEOUT_S) -> "RemoteBridge":
        """launch(), then wait_started(): the child's ports are up when it returns."""
        return self.launch(t0).wait_started(timeout)

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Ask the child to close its Bridge (every note released, CC 123, ports closed) and wait
        for it to end; SIGTERM after `timeout` (the child then closes the same way), then kill.
        Safe to call twice, and after a failed start."""
        if self._closing:
            return
        self._closing = True
        _open_bridges.discard(self)
        process = self._process
        if process is None:
            return
        self._outbox.put(("close",))
        if self._reap(timeout) is None:
            process.terminate()
            if self._reap(5.0) is None:
                process.kill()
                self._reap(5.0)
        self._gone.wait(2.0)  # the receiver has taken in the child's last reports
        self._outbox.put(None)
        for thread in self._threads:
            thread.join(2.0)
        for end in (self._commands, self._reports):
            end.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
        return False

    @property
    def alive(self) -> bool:
        return self._process is not None and not self._gone.is_set()

    @property
    def closed(self) -> bool:
        """The child has ended (asked to or not): its ports are closed."""
        return self._exitcode is not None

    def _reap(self, timeout: float) -> int | None:
        """Wait up to `timeout` for the child to end; its exit code (None: still running). One
        thread at a time: two waiting for the same process could each miss its exit."""
        with self._reap_lock:
            if self._exitcode is None:
                self._process.join(timeout)
                self._exitcode = self._process.exitcode
            return self._exitcode

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    # ---- from any thread

    def update(self, config: LiveConfig | None = None, settings: Settings | None = None,
               model: str | None = None, timeout: float = UPDATE_TIMEOUT_S) -> None:
        """Swap the knobs, and the model when one is given (the child loads and warms it up first,
        while the bridge plays on). Returns once the child's bridge plays by them; raises
        BadInput when it refuses them (it keeps the last good ones) and RemoteError when it is
        gone or does not answer in `timeout`."""
        self._ask(("update", config, settings, None if model is None else str(model)), timeout)

    def panic(self) -> None:
        """All notes off (the child's worker releases everything, then CC 123). Never waits."""
        self._post(("panic",))

    def play(self, events: list[tuple[int, bytes]]) -> None:
        """Play [(ns from now, bytes)] (see playback.file_events) out of the output, beside the
        live harmony, replacing what was playing. Never waits."""
        seq = self._post(("play", events))
        if seq is not None:
            self._playing_asked = (bool(events), seq)

    def stop_playing(self) -> None:
        seq = self._post(("stop_playing",))
        if seq is not None:
            self._playing_asked = (False, seq)

    @property
    def playing(self) -> bool:
        """A file is playing: what was last asked until the child has handled that, then what it reports."""
        asked, asked_seq = self._playing_asked
        reported, handled_seq = self._playing_reported
        return asked if handled_seq < asked_seq else reported

    # ---- the pipes

    def _post(self, message: tuple) -> int | None:
        """Queue `message` for the sender thread; its sequence number (None: not sent, the child
        is not running)."""
        if self._closing or self._process is None or self._gone.is_set():
            return None
        with self._seq_lock:
            self._seq += 1
            self._outbox.put((self._seq, *message))
            return self._seq

    def _ask(self, message: tuple, timeout: float):
        """Send `message` and wait for the child's reply to it."""
        if self._process is None or self._closing or self._gone.is_set():
            raise RemoteError(self.ended or "the live bridge's process is not running")
        waiter = [threading.Event(), None]
        with self._seq_lock:
            self._seq += 1
            seq = self._seq
            self._replies[seq] = waiter
            self._outbox.put((seq, *message))
        try:
            if self._gone.is_set():   # ended just now: _child_gone may have missed this one
                raise RemoteError(self.ended or "the live bridge's process ended")
            if not waiter[0].wait(timeout):
                raise RemoteError(f"the live bridge's process did not answer in {timeout:.0f} s")
        finally:
            self._replies.pop(seq, None)
        error = waiter[1]
        if error is not None:
            raise error

    def _send_loop(self) -> None:
        while (message := self._outbox.get()) is not None:
            try:
                self._commands.send(message)
            except (OSError, ValueError):  # the child is gone: the receiver says so
                pass
            except Exception as error:     # a message that cannot be pickled: a bug of the caller's
                self._fail_reply(message[0], RemoteError(f"cannot send {message[1]!r}: {describe(error)}"))

    def _receive_loop(self) -> None:
        try:
            while True:
                try:
                    kind, *rest = self._reports.recv()
                except (EOFError, OSError):
                    return
                self._take(kind, rest)
        finally:
            self._child_gone()

    def _take(self, kind: str, rest: list) -> None:
        if kind == "monitor":
            self.monitor.extend(rest[0])
        elif kind == "stats":
            self.stats._last = rest[0]
        elif kind == "ports":
            self.input, self.output = rest
        elif kind == "knobs":
            config, settings, self.knob_turns, model = rest
            if self.snapshot is not None:
                self.snapshot = RemoteSnapshot(config, settings, model)
        elif kind == "playing":
            self._playing_reported = tuple(rest)
        elif kind == "done":
            seq, snapshot, error = rest
            if snapshot is not None:
                self.snapshot = snapshot
            waiter = self._replies.get(seq)
            if waiter is not None:
                waiter[1] = None if error is None else _error_from(error)
                waiter[0].set()
        elif kind == "started":
            info = rest[0]
            self.snapshot, self.stats._last = info["snapshot"], info["stats"]
            self.input, self.output = info["input"], info["output"]
            self.ports_up_s, self.warm_up_s = info["ports_up_s"], info["warm_up_s"]
            self.worker_realtime, self.cpus_awake = info["worker_realtime"], info["cpus_awake"]
            self._started.set()
        elif kind == "failed":
            self._start_error = _error_from(rest[0])
            self._started.set()
        elif kind == "closed":
            self.stats._last, self._stopped_by = rest
            self.released = True

    def _fail_reply(self, seq: int, error: Exception) -> None:
        waiter = self._replies.get(seq)
        if waiter is not None:
            waiter[1] = error
            waiter[0].set()

    def _child_gone(self) -> None:
        """The child's pipe ended: say why, to whoever waits and to on_end."""
        self._gone.set()   # first: an _ask() from here on fails by itself
        how = self._stopped_by or _how_ended(self._reap(1.0))
        started = self._started.is_set()
        if not started:
            self._start_error = RemoteError(f"the live bridge's process ended while starting ({how})")
            self._started.set()
        for seq in list(self._replies):
            self._fail_reply(seq, RemoteError(f"the live bridge's process ended ({how})"))
        if started and not self._closing:
            if self.released:
                self.ended = f"the live bridge stopped ({how}): every note released, ports closed"
            else:
                self.ended = (f"the live bridge's process died ({how}): its ports are gone, and notes it "
                              "was playing may still sound in the instrument")
            if self.on_end is not None:
                self.on_end(self.ended)


def _error_from(error: tuple[str, str]) -> Exception:
    kind, text = error
    return BadInput(text) if kind == "BadInput" else RemoteError(text)


def _how_ended(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit status {exitcode}"


# ---------------------------------------------------------------- the child

class _Reports:
    """The child's end of the report pipe, shared by its main and lane threads. A host that is
    gone (broken pipe) stops the child."""

    def __init__(self, connection, stop: threading.Event):
        self.connection = connection
        self.stop = stop
        self.lock = threading.Lock()

    def send(self, message) -> None:
        with self.lock:
            try:
                self.connection.send(message)
            except (OSError, ValueError):
                self.stop.set()


def _child_main(commands, reports, model: str, config: LiveConfig, settings: Settings, port_options: dict,
                t0: float) -> None:
    """The child process: start a Bridge on `model`, serve the host's commands until it asks to
    close, goes away or SIGTERM comes; then close the Bridge (every note released)."""
    # before anything starts a process of its own: an ignored SIGINT stays ignored in the
    # speculator too, so a Ctrl-C meant for the host leaves the bridge to the host's close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = threading.Event()
    stopped_by = []   # a signal's name, when one asked

    def on_sigterm(*_):
        stopped_by.append("SIGTERM")
        stop.set()

    signal.signal(signal.SIGTERM, on_sigterm)
    out = _Reports(reports, stop)
    bridge = None
    try:
        from bridge.engines import load_engine
        from bridge.live.bridge import Bridge

        engine = load_engine(model, threads=1)   # one thread: the cores are shared with the DAW
        bridge = Bridge(engine, config, settings, **port_options)
        bridge.start(t0)
    except Exception as error:
        out.send(("failed", _error_tuple(error)))
        if bridge is not None:
            bridge.close()
        return
    try:
        out.send(("started", {
            "snapshot": RemoteSnapshot(bridge.snapshot.config, bridge.snapshot.settings, model),
            "stats": bridge.stats.snapshot(), "input": _port(bridge.input), "output": _port(bridge.output),
            "ports_up_s": bridge.ports_up_s, "warm_up_s": bridge.warm_up_s,
            "worker_realtime": bridge.worker_realtime, "cpus_awake": bridge.cpus_awake}))
        _serve(bridge, model, commands, out, stop)
    finally:
        bridge.close()
        out.send(("closed", bridge.stats.snapshot(), stopped_by[0] if stopped_by else None))


def _serve(bridge, model: str, commands, out: _Reports, stop: threading.Event) -> None:
    lane = _Lane(bridge, model, out)
    handled = 0
    reported_stats, stats_due = None, 0.0
    reported_ports = (bridge.input, bridge.output)
    reported_playing = (False, 0)
    reported_knobs = (bridge.snapshot, 0)
    while not stop.is_set():
        try:
            if commands.poll(REPORT_S):
                message = commands.recv()
                if message[0] == "close":
                    return
                handled = max(handled, _handle(bridge, lane, message))
        except (EOFError, OSError):  # the host is gone: close, so nothing is left sounding
            return
        events = _drain(bridge.monitor)
        if events:
            out.send(("monitor", events))
        now = time.monotonic()
        if now >= stats_due:
            stats_due = now + STATS_S
            stats = bridge.stats.snapshot()
            if stats != reported_stats:
                out.send(("stats", stats))
                reported_stats = stats
        ports = (bridge.input, bridge.output)
        if ports[0] is not reported_ports[0] or ports[1] is not reported_ports[1]:
            out.send(("ports", _port(ports[0]), _port(ports[1])))
            reported_ports = ports
        # the host's update, or a knob a bound controller moved (the worker counts the turn just
        # after it swaps the snapshot: a change of either is reported, so the count comes with it)
        knobs = (bridge.snapshot, bridge.stats.knob_turns)
        if knobs[0] is not reported_knobs[0] or knobs[1] != reported_knobs[1]:
            out.send(("knobs", knobs[0].config, knobs[0].settings, knobs[1], lane.model_of(knobs[0].engine)))
            reported_knobs = knobs
        playing = (bridge.playing, handled)
        if playing != reported_playing:
            out.send(("playing", *playing))
            reported_playing = playing


def _handle(bridge, lane: "_Lane", message: tuple) -> int:
    """Run one command from the host; its sequence number (0 for an update: the lane answers it)."""
    seq, kind, *args = message
    if kind == "update":
        lane.put(seq, *args)
        return 0
    if kind == "panic":
        bridge.panic()
    elif kind == "play":
        events = args[0]
        bridge.play(events)
        deadline = time.monotonic() + PLAY_TAKEN_S
        while events and not bridge.playing and time.monotonic() < deadline:
            time.sleep(0.001)
    elif kind == "stop_playing":
        bridge.stop_playing()
    return seq


def _drain(monitor: collections.deque) -> list:
    events = []
    pop = monitor.popleft
    while True:
        try:
            events.append(pop())
        except IndexError:
            return events


class _Lane:
    """The child's thread for update(): a new model is loaded and warmed up here (Bridge.update
    warms it in the caller's thread), so the main thread goes on reading panic and play."""

    def __init__(self, bridge, model: str, out: _Reports):
        self.bridge, self.model, self.out = bridge, model, out
        self.engine = bridge.snapshot.engine   # the engine `model` names
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._run, name="bachbridge-remote-lane", daemon=True).start()

    def model_of(self, engine) -> str:
        """The model's name as the host knows it: as it asked for it, or, for one a bound
        controller picked in the bridge, the shipped name (taken as asked from then on)."""
        if engine is not self.engine:
            self.model, self.engine = engine.name, engine
        return self.model

    def put(self, seq: int, config, settings, model) -> None:
        self.jobs.put((seq, config, settings, model))

    def _run(self) -> None:
        from bridge.engines import load_engine

        long_slice()
        while True:
            seq, config, settings, model = self.jobs.get()
            try:
                engine = None if model is None or model == self.model else load_engine(model, threads=1)
                before = (self.model, self.engine)
                if engine is not None:   # named before it plays, so a report never misnames it
                    self.model, self.engine = model, engine
                try:
                    self.bridge.update(config=config, settings=settings, engine=engine)
                except Exception:
                    self.model, self.engine = before
                    raise
                snapshot = self.bridge.snapshot
                self.out.send(("done", seq, RemoteSnapshot(snapshot.config, snapshot.settings, self.model), None))
            except Exception as error:
                self.out.send(("done", seq, None, _error_tuple(error)))


def _port(port) -> RemotePort | None:
    if port is None:
        return None
    return RemotePort(port.api, port.name, port.connected_to, getattr(port, "full_name", None))


def _error_tuple(error: Exception) -> tuple[str, str]:
    return ("BadInput", str(error)) if isinstance(error, BadInput) else ("other", describe(error))
