"""The live bridge: ports, engine, the worker (the output's one writer) and the port watcher.
The realtime contract it keeps is stated in bridge/live/__init__.py."""
from __future__ import annotations

import collections
import os
import queue
import threading
import time
from collections.abc import Callable

from bridge.clock import Clock
from bridge.engines import Engine
from bridge.live.config import LIVE_SETTINGS, LiveConfig, Snapshot, checked_snapshot
from bridge.live.context import warm_up
from bridge.live.modes import PLAYERS
from bridge.live.decider import ThreadDecider
from bridge.live.learn import KNOBS, control_of, knob_change, turned
from bridge.live.note_mode import NoteMode
from bridge.live.phrase_mode import PhraseMode
from bridge.live.respond_mode import RespondMode
from bridge.live.playback import FILE_SOURCE, FilePlayback
from bridge.live.portwatch import DeadInput, DeadOutput, PortLister
from bridge.live.player import LIVE_SOURCE, Outlet, Player
from bridge.live.speculation import Speculator
from bridge.live.stats import MONITOR_SIZE, LiveStats, describe
from bridge.ports import (DEFAULT_IN, DEFAULT_OUT, MidiInput, MidiOutput, PortError, _quiet_stderr,
                          jack_running)
from bridge.scheduling import (freeze_new_objects, keep_cpus_awake, long_slice, realtime, tune_for_live,
                               untune_for_live)
from bridge.settings import Settings

# the worker's sleep when a poll found nothing: a note waits at most this long to be seen
IDLE_SLEEP_S = 0.0005
# how often the watcher looks at the ports: a source gone, a connected port gone or back, the
# JACK server gone or back
PORT_CHECK_S = 0.1
# the GIL switch interval while a bridge runs (see scheduling.tune_for_live)
LIVE_SWITCH_INTERVAL_S = 0.0002
# the worker's realtime priority when JACK runs realtime: the lowest, under JACK's own threads and
# above every thread that is not realtime (a loaded machine's other work)
WORKER_REALTIME_PRIORITY = 1
# a source's notes released when it went away are released once more this much later (see _follow_sources)
SOURCE_GONE_REPEAT_S = 0.15
# a port of ours that the watcher leaves out of the input's sources (see bridge.ports.SYSEX_GUARD_S)
_GUARD_PORT = ":sysex guard"


class Bridge:
    """Ports, engine, worker and watcher of the live bridge.

        with Bridge(engine, LiveConfig(), LIVE_SETTINGS, api="jack") as bridge:  # start()
            ...   # playing; bridge.update(settings=...) from any thread; bridge.stats.snapshot()
        # closed on leaving the block (or by close()): every note released

    `start()` warms the engine up before the ports open, so the first note is answered as fast
    as the rest; `ports_up_s` is the time from `t0` (default: the call) until both ports are up.
    The watcher reports a port connected to an existing one (`connect_in`, `connect_out`) that
    went away and connects again when it is back; on JACK it also opens the ports again after
    the server went away and came back (`stats.ports_reopened`), and ends the melody notes held
    by a source that disconnected or died (a DAW that crashed mid-note leaves nothing droning).
    With `cpus_awake` (the default) it keeps the CPUs out of their deep idle states while it runs,
    where the OS lets it (`bridge.cpus_awake` says whether it does; bridge.scheduling).
    """

    def __init__(self, engine: Engine, config: LiveConfig = LiveConfig(), settings: Settings = LIVE_SETTINGS,
                 *, api: str | None = None, in_name: str = DEFAULT_IN, out_name: str = DEFAULT_OUT,
                 connect_in: str | None = None, connect_out: str | None = None, cpus_awake: bool = True):
        self._snapshot = checked_snapshot(engine, config, settings)
        self._want_cpus_awake = cpus_awake
        self._port_options = dict(api=api, in_name=in_name, out_name=out_name,
                                  connect_in=connect_in, connect_out=connect_out)
        self._update_lock = threading.Lock()
        self._knob_changes: dict = {}     # knobs moved by bound controllers, not yet in the snapshot
        self._engines_wanted: queue.SimpleQueue = queue.SimpleQueue()   # models a controller picked
        self._engine_loader: threading.Thread | None = None
        self._stop = threading.Event()
        self._running = threading.Event()
        self._requests: collections.deque = collections.deque()   # callables the worker runs
        self._worker: threading.Thread | None = None
        self._watcher: threading.Thread | None = None
        self.stats = LiveStats()
        self.monitor: collections.deque = collections.deque(maxlen=MONITOR_SIZE)
        self._players: dict[str, Player] = {}
        self._player: Player | None = None
        self._live_out: Outlet | None = None
        self._file_out: Outlet | None = None
        self._playback: FilePlayback | None = None
        self.speculator: Speculator | None = None
        self.input: MidiInput | None = None
        self.output: MidiOutput | None = None
        self.warm_up_s: float | None = None
        self.ports_up_s: float | None = None
        self._tuned = False            # this bridge's tune_for_live() is held (see _tune_process)
        self._worker_id: int | None = None
        self.worker_realtime = False   # the worker got realtime scheduling (see _go_realtime)
        self._cpus_awake_fd: int | None = None   # the CPU latency request held (see keep_cpus_awake)
        self._closed = False

    # ---- life cycle

    def start(self, t0: float | None = None) -> "Bridge":
        """Warm up, open the ports, start the worker. `t0`: a time.perf_counter() to count from.
        An engine that fails its warm-up is reported (stats) and the bridge runs pass-through."""
        if self._worker is not None:
            return self
        t0 = time.perf_counter() if t0 is None else t0
        snapshot = self._snapshot
        started = time.perf_counter()
        try:
            warm_up(snapshot)
        except Exception as error:
            self.stats.engine_errors += 1
            self.stats.last_engine_error = f"warm-up: {describe(error)}"
        self.warm_up_s = time.perf_counter() - started
        self.input, self.output = self._open_ports()
        self.ports_up_s = time.perf_counter() - t0
        clock = Clock()
        self._live_out = Outlet(self.output)
        self._file_out = Outlet(self.output, FILE_SOURCE)
        self.speculator = Speculator(self.stats)
        self._players = {mode: cls(self._live_out, self.stats, clock, self.monitor)
                         for mode, cls in PLAYERS.items()}
        self._players[NoteMode.mode].speculator = self.speculator
        self._players[PhraseMode.mode].decider = ThreadDecider("bachbridge-phrases")
        self._players[RespondMode.mode].decider = ThreadDecider("bachbridge-answers")
        self._player = self._players[snapshot.config.mode]
        self._player.apply(snapshot, time.perf_counter_ns())
        self._tune_process()
        self._worker = threading.Thread(target=self._run, name="bachbridge-live", daemon=True)
        self._worker.start()
        self._running.wait(1.0)
        try:
            lister = PortLister(self.input.api)
        except PortError as error:  # no watching (a server that went away would not be followed)
            self._count_error(error)
        else:
            self._go_realtime(lister)
            self._watcher = threading.Thread(target=self._watch, args=(lister,), name="bachbridge-ports",
                                             daemon=True)
            self._watcher.start()
        if snapshot.config.mode == NoteMode.mode and snapshot.speculating:
            self.speculator.start()  # else when first asked to speculate
        self._engine_loader = threading.Thread(target=self._load_engines, name="bachbridge-engines", daemon=True)
        self._engine_loader.start()
        return self

    def _open_ports(self) -> tuple[MidiInput, MidiOutput]:
        inp = self._open_port("input")
        try:
            return inp, self._open_port("output", inp.api)
        except BaseException:
            inp.close()
            raise

    def _open_port(self, what: str, api: str | None = None) -> MidiInput | MidiOutput:
        options = self._port_options
        api = api or (self.input.api if self.input is not None else options["api"])
        if what == "input":
            return MidiInput(options["in_name"], api=api, connect=options["connect_in"])
        return MidiOutput(options["out_name"], api=api, connect=options["connect_out"])

    def close(self) -> None:
        """Stop the worker, release every note (note-offs, then CC 123 on every channel the bridge
        plays on), close the ports. Safe to call twice, and after a failed start."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._engines_wanted.put(None)
        worker = self._worker
        if worker is not None:
            worker.join(timeout=5.0)
        if self._engine_loader is not None:
            self._engine_loader.join(timeout=5.0)
        if self._watcher is not None and self._watcher.is_alive():
            self._watcher.join(timeout=5.0)
        try:
            # the worker is gone, so its bookkeeping is ours now (if it hangs in the engine, the
            # output's own record below still releases everything)
            if self._player is not None and (worker is None or not worker.is_alive()):
                self._player.release_all(time.perf_counter_ns())
        finally:
            try:
                if self.output is not None:
                    self.output.close(self._channels_in_use())  # note-offs, CC 123 once a channel
            finally:
                try:
                    if self.input is not None:
                        self.input.close()
                finally:
                    for player in self._players.values():
                        player.close()
                    self._untune_process()

    def _tune_process(self) -> None:
        """What the whole process does differently while the bridge plays (the realtime contract,
        bridge.live): the GIL switch interval and the heap frozen (scheduling.tune_for_live,
        counted, so that a second bridge in the process keeps them when the first closes), the
        CPUs kept awake (this bridge's own request)."""
        tune_for_live(LIVE_SWITCH_INTERVAL_S)
        self._tuned = True
        if self._want_cpus_awake:
            self._cpus_awake_fd = keep_cpus_awake()

    def _untune_process(self) -> None:
        """Give back what `_tune_process` changed, each part only if it was changed."""
        if self._tuned:
            untune_for_live()
            self._tuned = False
        if self._cpus_awake_fd is not None:
            os.close(self._cpus_awake_fd)
            self._cpus_awake_fd = None

    @property
    def cpus_awake(self) -> bool:
        """The CPUs are kept out of their deep idle states while the bridge runs (asked for, and
        granted: see bridge.scheduling.keep_cpus_awake)."""
        return self._cpus_awake_fd is not None

    def _channels_in_use(self) -> list[int]:
        """The channels of the current knobs and of those the players last played by."""
        channels = set(self._snapshot.config.output_channels())
        for player in self._players.values():
            if player.snapshot is not None:
                channels.update(player.snapshot.config.output_channels())
        return sorted(channels)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
        return False

    # ---- from any thread

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def update(self, config: LiveConfig | None = None, settings: Settings | None = None,
               engine: Engine | None = None, warm: bool = True) -> None:
        """Swap the knobs; the worker plays by them from its next event. A new engine is warmed
        up here first (in the caller's thread), so the worker never waits on it."""
        with self._update_lock:
            old = self._snapshot
            new = checked_snapshot(old.engine if engine is None else engine,
                                   old.config if config is None else config,
                                   old.settings if settings is None else settings)
            if new.engine is not old.engine and warm:
                warm_up(new)
                freeze_new_objects()   # the new engine too, while the heap is frozen (see _tune_process)
            self._snapshot = new

    def panic(self) -> None:
        """All notes off: the worker releases everything it plays and sends note-offs for
        anything else still on, then CC 123 (done here when no worker runs)."""
        if self._worker is None or not self._worker.is_alive():
            if self.output is not None and not self.output.closed:
                self.output.all_notes_off(self._channels_in_use())
            return
        self._post(self._panic)

    def play(self, events: list[tuple[int, bytes]]) -> None:
        """Play [(ns from now, bytes)] (see playback.file_events) out of the output, beside the
        live harmony, replacing what was playing."""
        start = time.perf_counter_ns()
        self._post(lambda: self._play(events, start))

    def stop_playing(self) -> None:
        self._post(self._stop_playing)

    @property
    def playing(self) -> bool:
        playback = self._playback
        return playback is not None and not playback.done

    def _post(self, request: Callable[[], None]) -> None:
        self._requests.append(request)

    # ---- the worker: the only thread that touches the players and writes to the output

    def _run(self) -> None:
        self._worker_id = threading.get_native_id()
        long_slice()   # its engine calls must not keep a woken port client waiting
        self._running.set()
        stop = self._stop
        requests = self._requests
        while not stop.is_set():
            while requests:
                try:
                    requests.popleft()()
                except Exception as error:
                    self._count_error(error)
            player = self._player
            try:
                events = self.input.poll()
            except Exception as error:  # the port went away under us: report, and keep trying
                self._count_error(error)
                events = ()
            now = time.perf_counter_ns()
            if self._knob_changes:
                self._turn_knobs()
            if not events:
                # knobs turned while nothing plays: a new engine's release must not wait for a note
                player = self._follow_knobs(now)
            for data, t_ns in events:
                if self._moves_a_knob(data):    # a knob's controller: never played
                    continue
                player = self._follow_knobs(t_ns)
                try:
                    player.handle(data, t_ns)
                except Exception as error:
                    self._count_error(error)
            try:
                now = time.perf_counter_ns()
                player.tick(now)
                if self._playback is not None:
                    self._playback.tick(now)
            except Exception as error:
                self._count_error(error)
            if not events and not requests:
                due = player.next_due_ns()
                if self._playback is not None and not self._playback.done:
                    file_due = self._playback.next_due_ns()
                    due = file_due if due is None else min(due, file_due)
                wait_s = IDLE_SLEEP_S
                if due is not None:
                    wait_s = min(wait_s, max(0.0, (due - time.perf_counter_ns()) / 1e9))
                time.sleep(wait_s)

    def _moves_a_knob(self, data: bytes) -> bool:
        """Count a control or program change (what a window's MIDI learn waits for); True when it
        is bound to a knob, which it then moves (a model: asked of the engine loader)."""
        control = control_of(data)
        if control is None:
            return False
        self.stats.last_control = control
        self.stats.controls_in += 1
        config = self._snapshot.config
        change = knob_change(data, config.knob_controls, config.in_channel, control)
        if change is None:
            return False
        knob, value = change
        if KNOBS[knob].loads:
            self._engines_wanted.put(value)
        else:
            self._knob_changes[knob] = value
            self._turn_knobs()
        return True

    def _turn_knobs(self) -> None:
        """The knobs bound controllers moved, into the snapshot, unless an update() holds the lock
        (it may be warming an engine up, and the worker never waits): then on a later pass."""
        if not self._update_lock.acquire(blocking=False):
            return
        try:
            old, changes = self._snapshot, self._knob_changes
            self._knob_changes = {}
            self._snapshot = checked_snapshot(old.engine, *turned(old.config, old.settings, changes))
            self.stats.knob_turns += len(changes)
        except Exception as error:      # e.g. a mode the engine cannot play: counted, the knobs stay
            self._count_error(error)
        finally:
            self._update_lock.release()

    def _load_engines(self) -> None:
        """The models bound controllers pick, loaded and warmed up here (seconds of work, never on
        the worker); only the last one asked for while another loaded. None ends it."""
        from bridge.engines import load_engine

        long_slice()
        while True:
            name = self._engines_wanted.get()
            while name is not None and not self._engines_wanted.empty():
                name = self._engines_wanted.get_nowait()
            if name is None:
                return
            if name == self._snapshot.engine.name:
                continue
            try:
                self.update(engine=load_engine(name, threads=1))   # warmed up here, in update()
                self._post(self._count_engine_turn)                # the stats' one writer counts it
            except Exception as error:   # e.g. an engine the mode cannot play: counted, the old one plays on
                self._count_error(error)

    def _count_engine_turn(self) -> None:
        self.stats.knob_turns += 1

    def _follow_knobs(self, t_ns: int) -> Player:
        """The player of the current knobs, brought up to date with them."""
        snapshot = self._snapshot  # read once: update() may replace it at any moment
        player = self._player
        if snapshot is player.snapshot:
            return player
        try:
            if snapshot.config.mode != player.mode:
                player.release_all(t_ns)  # what sounds belongs to the old mode
                player = self._player = self._players[snapshot.config.mode]
            player.apply(snapshot, t_ns)
        except Exception as error:
            self._count_error(error)
        return player

    def _panic(self) -> None:
        self._player.release_all(time.perf_counter_ns())
        self._stop_playing()
        self.output.all_notes_off(self._channels_in_use())

    def _play(self, events, start_ns: int) -> None:
        self._stop_playing()
        self._playback = FilePlayback(self._file_out, events, start_ns)

    def _stop_playing(self) -> None:
        if self._playback is not None:
            self._playback.stop()
            self._playback = None

    def _swap_ports(self, inp: MidiInput, out: MidiOutput) -> None:
        """Play through new ports from now on (what sounded on the old ones is let go)."""
        now = time.perf_counter_ns()
        self._player.release_all(now)
        self._stop_playing()
        self.input, self.output = inp, out
        self._live_out.record = self._file_out.record = out

    def _count_error(self, error: Exception) -> None:
        self.stats.event_errors += 1
        self.stats.last_event_error = describe(error)

    # ---- the watcher: everything slow about the ports, off the worker

    def _watch(self, lister: PortLister) -> None:
        """Every PORT_CHECK_S: is what our ports are connected to still there, is the JACK server?"""
        sources: set = set()
        down = False                       # JACK: the server went away, our ports are stand-ins
        away = {"input": False, "output": False}
        options = self._port_options
        try:
            while not self._stop.wait(PORT_CHECK_S):
                try:
                    if down:
                        if jack_running():
                            lister.reopen()
                            if self._replace_ports(self._open_ports()):
                                down, sources = False, set()
                                self.stats.ports_reopened += 1
                                self.stats.port_problem = None
                    elif lister.jack and not lister.server_alive():
                        down = True
                        self.stats.port_problem = "the JACK server went away: opening the ports again when it is back"
                        self._replace_ports(None)
                    else:
                        sources = self._follow_sources(lister, sources)
                        self._follow_connected(lister, options, away)
                except Exception as error:  # the MIDI system itself is in trouble: say so, try again
                    self._count_error(error)
        finally:
            lister.close()

    def _go_realtime(self, lister: PortLister) -> None:
        """Realtime scheduling for the worker (SCHED_FIFO, WORKER_REALTIME_PRIORITY), only when
        the ports are a JACK server's that runs its clients realtime at a higher priority: under
        one that does not, a realtime worker would take the CPU from the port clients while the
        engine works (the very starvation the realtime contract forbids). Where the OS refuses
        (no rtprio limit, e.g. not in the audio group), the worker stays as it is."""
        priority = lister.realtime_priority()
        if priority is None or priority <= WORKER_REALTIME_PRIORITY or self._worker_id is None:
            return
        self.worker_realtime = realtime(self._worker_id, WORKER_REALTIME_PRIORITY)

    def _follow_sources(self, lister: PortLister, before: set) -> set:
        """The ports sending into our input (by name and JACK's id, so that a program that died
        and came back between two looks is seen to have gone); when one went away, the melody
        notes it held end, and their note-offs go out once more a moment later: while JACK
        removes a client that died, it may drop the cycle that carried them."""
        name = getattr(self.input, "full_name", None)
        if not lister.jack or name is None:
            return before
        now = {port for port in lister.connected_ports(name) if not port[0].endswith(_GUARD_PORT)}
        if before - now:
            released: dict = {}

            def release():
                released.update(self.output.sounding(LIVE_SOURCE))
                self._player.source_gone(time.perf_counter_ns())
            self._run_in_worker(release)
            if released and not self._stop.wait(SOURCE_GONE_REPEAT_S):
                self._run_in_worker(lambda: self.output.silence(released))
        return now

    def _follow_connected(self, lister: PortLister, options: dict, away: dict) -> None:
        """Report a port we connect to that went away; connect again when it is back."""
        for what, port, target in (("input", self.input, options["connect_in"]),
                                   ("output", self.output, options["connect_out"])):
            if target is None or port is None:
                continue
            present = lister.has(what, target)
            if present and away[what]:
                new = self._open_port(what)
                self._replace_ports((new, self.output) if what == "input" else (self.input, new))
            away[what] = not present
        gone = [f"{what} {getattr(self, what).connected_to!r}" for what in away if away[what]]
        self.stats.port_problem = f"gone: {', '.join(gone)} (connecting again when it is back)" if gone else None

    def _replace_ports(self, new: tuple[MidiInput, MidiOutput] | None) -> bool:
        """Hand the worker new ports (None: stand-ins, the server is gone), then close the old
        ones; True when the worker took them (not when the bridge is closing)."""
        old = (self.input, self.output)
        if new is None:
            new = (DeadInput(self.input), DeadOutput(self.output))
        taken = self._run_in_worker(lambda: self._swap_ports(*new))
        self._retire(*[port for port in (old if taken else new) if port not in (self.input, self.output)])
        return taken

    def _run_in_worker(self, request: Callable[[], None]) -> bool:
        """Run `request` in the worker and wait until it has; False if the bridge closed first."""
        done = threading.Event()

        def run():
            try:
                request()
            finally:
                done.set()
        self._post(run)
        while not done.wait(0.05):
            if self._stop.is_set():
                return done.is_set()
        return True

    @staticmethod
    def _retire(*ports) -> None:
        """Close ports the worker no longer uses (a dead server's take ~1 s each: here, not there)."""
        with _quiet_stderr():
            for port in ports:
                try:
                    port.close()
                except Exception:
                    pass
