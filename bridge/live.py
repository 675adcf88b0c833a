"""The live bridge, `note` mode: each melody onset is answered at once with alto, tenor and bass.

Data flows one way: port -> events -> grid -> engine -> grid -> events -> port.

- `Bridge` owns the ports, the engine and one worker thread. The worker polls `MidiInput` every
  ~0.5 ms (sleeping when nothing came: never a busy spin), hands each (bytes, t_ns) to `NoteMode`,
  and is the only thread that sends notes while it runs, so the note bookkeeping needs no lock.
- Knobs: `(LiveConfig, Settings, Engine)` is one immutable `Snapshot` in one attribute, replaced
  whole by `Bridge.update()` from any thread (an attribute store is atomic); the worker reads it
  once per event and, when it changed, applies it between two events. A change of engine, mode
  or output channels first releases every sounding note.
- `NoteMode` (no threads, no ports: it sends through a function it is given) keeps the recent past
  on the 16th grid (`Context`), asks the engine for the present step's alto, tenor and bass given
  that past and the new soprano, and sends note-offs for the voices that change and note-ons for
  the new ones. Every note-on it sends is remembered until its note-off went out: on the melody's
  note-off, on Stop/Start, on a release-worthy change, and on close. Harmony is kept as distinct
  (channel, pitch) keys, so voices in unison on one channel sound once and are released once.
- Nothing from outside stops it: SysEx, unknown or malformed messages and clock floods are counted
  and ignored; an engine error makes that note pass-through (echo only), counted, last text kept;
  any other error while handling one event is counted and the loop goes on.
"""
from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field, replace

import numpy as np

from bridge.clock import CLOCK_STATUSES, MODES as CLOCK_MODES, START, STOP, Clock, MAX_BPM, MIN_BPM
from bridge.engines import (REST, SHORTEST_HARMONY_REST, SOPRANO, Engine, fold_into_range,
                            octave_shift_into_range)
from bridge.errors import BadInput
from bridge.ports import DEFAULT_IN, DEFAULT_OUT, MidiInput, MidiOutput
from bridge.settings import Settings

MODES = ("note",)
VOICES = 4
NOTE_OFF, NOTE_ON = 0x80, 0x90
# the worker's sleep when a poll found nothing: a note waits at most this long to be seen
IDLE_SLEEP_S = 0.0005
# latencies kept for the percentiles
LATENCY_WINDOW = 512
# few Gibbs steps: live, only the present step's three voices are free
LIVE_SETTINGS = Settings(steps=2)
# a melody note for warm-up calls (inside every soprano range)
_WARM_PITCH = 72


@dataclass(frozen=True)
class LiveConfig:
    """How the bridge plays (not the sampling knobs: those are `Settings`). Channels are 0-based."""
    mode: str = "note"
    context_steps: int = 32                      # 16ths of past shown to the engine (two bars)
    clock: str = "auto"                          # auto, midi, internal, free: see bridge.clock
    bpm: float = 100.0                           # the internal tempo
    channels: tuple[int, int, int] = (1, 2, 3)   # alto, tenor, bass: MIDI channels 2, 3, 4
    echo: bool = True                            # the melody is sent on too ...
    echo_channel: int = 0                        # ... on MIDI channel 1
    in_channel: int | None = None                # melody note-ons from this channel only; None = any

    def __post_init__(self):
        problems = []
        if self.mode not in MODES:
            problems.append(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if not (isinstance(self.context_steps, int) and 0 <= self.context_steps <= 256):
            problems.append(f"context_steps must be 0..256, not {self.context_steps}")
        if self.clock not in CLOCK_MODES:
            problems.append(f"clock must be one of {', '.join(CLOCK_MODES)}, not {self.clock!r}")
        if not MIN_BPM <= self.bpm <= MAX_BPM:
            problems.append(f"bpm must be {MIN_BPM:.0f}..{MAX_BPM:.0f}, not {self.bpm}")
        channels = tuple(self.channels)
        if len(channels) != VOICES - 1 or not all(_is_channel(c) for c in channels):
            problems.append(f"channels must be three MIDI channels 0..15 (alto, tenor, bass), not {self.channels}")
        if not _is_channel(self.echo_channel):
            problems.append(f"echo_channel must be 0..15, not {self.echo_channel}")
        if self.in_channel is not None and not _is_channel(self.in_channel):
            problems.append(f"in_channel must be 0..15 or None, not {self.in_channel}")
        if problems:
            raise BadInput("; ".join(problems))
        object.__setattr__(self, "channels", channels)

    def replace(self, **changes) -> "LiveConfig":
        return replace(self, **changes)

    def output_channels(self) -> list[int]:
        """Every channel the bridge may sound notes on."""
        return sorted({*self.channels, self.echo_channel})


def _is_channel(c) -> bool:
    return isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 15


@dataclass(frozen=True)
class Snapshot:
    """What the worker plays by, swapped whole."""
    config: LiveConfig
    settings: Settings
    engine: Engine


def past_steps_for(snapshot: Snapshot) -> int:
    """Past steps worth showing the engine: the configured context, but no more than the network
    can see from the present step (its receptive radius, when the engine has one): cells beyond
    it cannot change the answer, they only cost time. Not with key 'auto', which estimates the
    key from all the melody it is shown."""
    context = snapshot.config.context_steps
    radius = snapshot.engine.receptive_radius
    if radius is None or snapshot.settings.key == "auto":
        return context
    return min(context, int(radius))


def warm_up(engine: Engine, config: LiveConfig, settings: Settings) -> None:
    """Compile and touch everything the first note will use: the engine's own warm-up, then
    inpaint calls of the live shapes (the full window, and the short ones of a first phrase)."""
    engine.warm_up()
    past = past_steps_for(Snapshot(config, settings, engine))
    for steps in sorted({1, 2, past // 2 + 1, past + 1}):
        roll = np.full((steps, VOICES), REST, dtype=np.int16)
        roll[:, SOPRANO] = _WARM_PITCH
        roll[:-1, 1:] = (67, 64, 48)
        known = np.ones(roll.shape, dtype=bool)
        known[-1, 1:] = False
        engine.inpaint(roll, known, settings)


# ---------------------------------------------------------------- the grid of the recent past

class Context:
    """The recent past on the 16th grid and the present step, as the engine is shown it.

    `rows` is (past + 1, 4): S A T B pitches as they sounded (-1 = silent), the present step last.
    Past rows before the first onset (or before a silence that fills the whole window) are not
    history: `window()` crops them, so the engine sees what a chorale crop would show it.
    """

    def __init__(self, past: int):
        self.past = past
        self.rows = np.full((past + 1, VOICES), REST, dtype=np.int16)
        self.known = np.ones((past + 1, VOICES), dtype=bool)
        self.known[-1, 1:] = False      # the present's alto, tenor, bass: to be filled in
        self.filled = 0                 # past rows that are history (the last `filled` of them)
        self.step = None                # the present row's step; None before the first onset
        self.released_at = None         # step the present melody note ended; None while it sounds
        self._present = np.empty(VOICES, dtype=np.int16)

    def reset(self) -> None:
        self.rows.fill(REST)
        self.filled = 0
        self.step = None
        self.released_at = None

    def resized(self, past: int) -> "Context":
        """A context of another length with the same recent history."""
        other = Context(past)
        keep = min(past, self.past) + 1
        other.rows[-keep:] = self.rows[-keep:]
        other.filled = min(self.filled, past)
        other.step, other.released_at = self.step, self.released_at
        return other

    def onset(self, step: int, pitch: int) -> None:
        """A melody note starts at `step`: move the grid on, and make it the present row."""
        if self.step is not None:
            gap = step - self.step
            if gap < 0:
                gap = 1  # the song position jumped back: what was just played is still the past
            if gap > 0:
                self._advance(gap)
        self.step = step
        self.released_at = None
        row = self.rows[-1]
        row[SOPRANO] = pitch
        row[1:] = REST

    def set_harmony(self, alto: int, tenor: int, bass: int) -> None:
        row = self.rows[-1]
        row[1], row[2], row[3] = alto, tenor, bass

    def release(self, step: int) -> None:
        """The present melody note (and its harmony) ended at `step`."""
        if self.step is not None and self.released_at is None:
            self.released_at = max(step, self.step)

    def _advance(self, gap: int) -> None:
        past, rows = self.past, self.rows
        self._present[:] = rows[-1]
        released = self.released_at
        # melody rests shorter than a beat (detached playing) are held through for the engine,
        # as Engine.harmonize does offline: the chorales it learnt from have no such gaps
        if released is not None and self.step + gap - released < SHORTEST_HARMONY_REST:
            released = None
        stay = past + 1 - gap  # rows still in sight, the old present the last of them
        if stay > 0:
            rows[:stay] = rows[gap:]  # numpy copies overlapping slices correctly
        # rows between the old present and the new one: the old present held, or silence
        for i in range(max(stay, 0), past):
            step = self.step + i - (past - gap)
            if released is None or step < released:
                rows[i] = self._present
            else:
                rows[i] = REST
        if released is not None and self.step + gap - released >= past:
            self.filled = 0  # nothing but silence in sight: no history worth showing
        else:
            self.filled = min(past, self.filled + gap)

    def window(self) -> tuple[np.ndarray, np.ndarray]:
        """(roll, known) views: the history in sight and the present step, oldest first."""
        start = self.past - self.filled
        return self.rows[start:], self.known[start:]


def model_view(roll: np.ndarray, settings: Settings, lowest: int, highest: int) -> tuple[np.ndarray, int]:
    """The roll as the engine must get it, and the octave shift applied: a melody outside the
    soprano range moved by whole octaves (as Engine.harmonize does), the harmony moved with it,
    and any given note still outside the soprano range (melody) or the model's pitches [lowest,
    highest] (harmony) folded into them. Folding happens before the shift, where every sounding
    pitch is >= 0 (fold_into_range takes negative numbers for rests)."""
    low, high = settings.voice_ranges[SOPRANO]
    shift = octave_shift_into_range(roll[:, SOPRANO], low, high)
    view = np.empty_like(roll)
    view[:, SOPRANO] = fold_into_range(roll[:, SOPRANO], low - shift, high - shift)
    view[:, 1:] = fold_into_range(roll[:, 1:], lowest - shift, highest - shift)
    return np.where(view >= 0, view + shift, REST).astype(np.int16), shift


# ---------------------------------------------------------------- statistics

@dataclass(frozen=True)
class StatsSnapshot:
    notes_in: int
    harmony_notes_out: int
    engine_errors: int
    last_engine_error: str | None
    event_errors: int
    last_event_error: str | None
    ignored: int
    last_latency_ms: float | None
    p50_latency_ms: float | None
    p99_latency_ms: float | None
    latencies: int
    bpm: float
    clock_running: bool


@dataclass
class LiveStats:
    """Counters the worker writes and anyone may read (`snapshot()` for a consistent copy).

    Latency: from the melody note-on's arrival stamp (MidiInput's perf_counter_ns) to the first
    harmony note-on handed to the output port, in ns."""
    notes_in: int = 0
    harmony_notes_out: int = 0
    engine_errors: int = 0
    last_engine_error: str | None = None
    event_errors: int = 0           # unexpected errors while handling one event (the loop goes on)
    last_event_error: str | None = None
    ignored: int = 0                # SysEx, unknown, malformed, clock floods, other channels
    last_latency_ns: int | None = None
    bpm: float = 0.0
    clock_running: bool = False
    _latencies: collections.deque = field(default_factory=lambda: collections.deque(maxlen=LATENCY_WINDOW))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add_latency(self, ns: int) -> None:
        with self._lock:
            self.last_latency_ns = ns
            self._latencies.append(ns)

    def latencies_ms(self) -> list[float]:
        with self._lock:
            return [ns / 1e6 for ns in self._latencies]

    def snapshot(self) -> StatsSnapshot:
        recent = sorted(self.latencies_ms())
        return StatsSnapshot(
            notes_in=self.notes_in, harmony_notes_out=self.harmony_notes_out,
            engine_errors=self.engine_errors, last_engine_error=self.last_engine_error,
            event_errors=self.event_errors, last_event_error=self.last_event_error, ignored=self.ignored,
            last_latency_ms=None if self.last_latency_ns is None else self.last_latency_ns / 1e6,
            p50_latency_ms=_percentile(recent, 50), p99_latency_ms=_percentile(recent, 99),
            latencies=len(recent), bpm=self.bpm, clock_running=self.clock_running)


def _percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return None
    rank = max(1, int(np.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


# ---------------------------------------------------------------- note mode

class NoteMode:
    """Melody events in, melody echo and harmony out through `send(bytes)`. One thread only."""

    def __init__(self, send, stats: LiveStats):
        self.send = send
        self.stats = stats
        self.snapshot: Snapshot | None = None
        self.clock = Clock()
        self.context = Context(0)
        self.melody = None          # (in channel, pitch) of the note the harmony belongs to
        self.harmony: list[tuple[int, int]] = []    # sounding harmony keys (channel, pitch), no repeats
        self.echoed: dict[tuple[int, int], tuple[int, int]] = {}  # melody key in -> echo key out

    # ---- knobs

    def apply(self, new: Snapshot, t_ns: int) -> None:
        """Play by `new` from now on. A new engine, mode or set of channels releases everything
        first: what sounds belongs to the old one."""
        old = self.snapshot
        # taken even if what follows fails, so that a bad snapshot is not retried on every event
        self.snapshot = new
        self.clock.configure(new.config.clock, new.config.bpm)
        self.stats.bpm = self.clock.bpm
        if old is not None and (new.engine is not old.engine or new.config.mode != old.config.mode
                                or new.config.channels != old.config.channels
                                or new.config.echo_channel != old.config.echo_channel):
            self.release_all(t_ns)
        past = past_steps_for(new)
        if past != self.context.past:
            self.context = self.context.resized(past)

    # ---- events

    def handle(self, data: bytes, t_ns: int) -> None:
        """One incoming message. Anything that is not a note or a clock message is ignored."""
        if not data:
            self.stats.ignored += 1
            return
        status = data[0]
        if status in CLOCK_STATUSES:
            self._clock_message(data, t_ns)
            return
        kind = status & 0xF0
        if (kind != NOTE_ON and kind != NOTE_OFF) or len(data) != 3 or data[1] > 127 or data[2] > 127:
            self.stats.ignored += 1  # other channel messages, SysEx, junk
            return
        channel, pitch, velocity = status & 0x0F, data[1], data[2]
        if kind == NOTE_ON and velocity > 0:
            in_channel = self.snapshot.config.in_channel
            if in_channel is not None and channel != in_channel:
                self.stats.ignored += 1
                return
            self._note_on(channel, pitch, velocity, t_ns)
        else:
            # never filtered: a note-off always releases what its note-on started
            self._note_off(channel, pitch, t_ns)

    def _clock_message(self, data: bytes, t_ns: int) -> None:
        clock = self.clock
        what = clock.feed(data, t_ns)
        if what is None:
            self.stats.ignored += 1
        elif what == STOP:
            self.release_all(t_ns)
        elif what == START:
            # a new take from the top: nothing sounds on, no history carries over
            self.release_all(t_ns)
            self.context.reset()
            clock.reset_onsets()
        self.stats.bpm = clock.bpm
        self.stats.clock_running = clock.running

    def _note_on(self, channel: int, pitch: int, velocity: int, t_ns: int) -> None:
        snapshot = self.snapshot
        config = snapshot.config
        self.stats.notes_in += 1
        if config.echo:
            self._echo_on(channel, pitch, velocity, config.echo_channel)
        # monophonic: a note-on while another is held replaces it (legato)
        self.melody = (channel, pitch)
        self.context.onset(self.clock.onset(t_ns), pitch)
        harmony = self._ask_engine(snapshot)
        self._sound(harmony, velocity, config.channels, t_ns)

    def _note_off(self, channel: int, pitch: int, t_ns: int) -> None:
        key = (channel, pitch)
        echo = self.echoed.pop(key, None)
        if echo is not None:
            self.send(bytes((NOTE_OFF | echo[0], echo[1], 0)))
        if key == self.melody:
            self._release_harmony()
            self.context.release(self.clock.step_at(t_ns))
            self.melody = None

    def _echo_on(self, channel: int, pitch: int, velocity: int, echo_channel: int) -> None:
        key = (channel, pitch)
        previous = self.echoed.get(key)
        if previous is not None:  # the same key again without a note-off: end the first one
            self.send(bytes((NOTE_OFF | previous[0], previous[1], 0)))
        self.send(bytes((NOTE_ON | echo_channel, pitch, velocity)))
        self.echoed[key] = (echo_channel, pitch)

    def _ask_engine(self, snapshot: Snapshot) -> np.ndarray | None:
        """The present step's alto, tenor, bass (MIDI pitches, -1 = silent), or None when the
        engine failed (this note is then pass-through)."""
        engine = snapshot.engine
        roll, known = self.context.window()
        try:
            lowest = engine.min_pitch
            model_roll, shift = model_view(roll, snapshot.settings, lowest, lowest + engine.num_pitches - 1)
            result = engine.inpaint(model_roll, known, snapshot.settings)
            harmony = result[-1, 1:].astype(np.int16)
        except Exception as error:  # any engine failure: pass-through for this note, and go on
            self.stats.engine_errors += 1
            self.stats.last_engine_error = describe(error)
            return None
        harmony = np.where(harmony >= 0, harmony - shift, REST).astype(np.int16)
        return fold_into_range(harmony, 0, 127)

    def _sound(self, harmony: np.ndarray | None, velocity: int, channels: tuple[int, ...], t_ns: int) -> None:
        """Make `harmony` the sounding one: note-offs for keys that go, note-ons for keys that come
        (a voice that keeps its pitch is held, not struck again)."""
        wanted = []
        if harmony is not None:
            echoing = self.echoed.values()
            for channel, pitch in zip(channels, harmony.tolist()):
                key = (channel, pitch)
                # a voice in unison with another on its channel, or with the melody's echo, is
                # already sounding: striking it again would let one note-off silence both
                if pitch >= 0 and key not in wanted and key not in echoing:
                    wanted.append(key)
            self.context.set_harmony(*harmony.tolist())
        send = self.send
        for channel, pitch in self.harmony:
            if (channel, pitch) not in wanted:
                send(bytes((NOTE_OFF | channel, pitch, 0)))
        first_on = True
        for key in wanted:
            if key not in self.harmony:
                send(bytes((NOTE_ON | key[0], key[1], velocity)))
                if first_on:
                    self.stats.add_latency(time.perf_counter_ns() - t_ns)
                    first_on = False
                self.stats.harmony_notes_out += 1
        self.harmony = wanted

    def _release_harmony(self) -> None:
        for channel, pitch in self.harmony:
            self.send(bytes((NOTE_OFF | channel, pitch, 0)))
        self.harmony = []

    def release_all(self, t_ns: int) -> None:
        """Note-offs for every note sounding: the harmony and the melody's echo."""
        self._release_harmony()
        for channel, pitch in self.echoed.values():
            self.send(bytes((NOTE_OFF | channel, pitch, 0)))
        self.echoed.clear()
        if self.melody is not None:
            self.context.release(self.clock.step_at(t_ns))
            self.melody = None


# ---------------------------------------------------------------- the bridge

class Bridge:
    """Ports, engine and worker thread of the live bridge.

        with Bridge(engine, LiveConfig(), LIVE_SETTINGS, api="jack") as bridge:  # start()
            ...   # playing; bridge.update(settings=...) from any thread; bridge.stats.snapshot()
        # closed on leaving the block (or by close()): every note released

    `start()` warms the engine up before the ports open, so the first note is answered as fast
    as the rest; `ports_up_s` is the time from `t0` (default: the call) until both ports are up.
    """

    def __init__(self, engine: Engine, config: LiveConfig = LiveConfig(), settings: Settings = LIVE_SETTINGS,
                 *, api: str | None = None, in_name: str = DEFAULT_IN, out_name: str = DEFAULT_OUT,
                 connect_in: str | None = None, connect_out: str | None = None):
        self._snapshot = _checked_snapshot(engine, config, settings)
        self._port_options = dict(api=api, in_name=in_name, out_name=out_name,
                                  connect_in=connect_in, connect_out=connect_out)
        self._update_lock = threading.Lock()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self.stats = LiveStats()
        self._player: NoteMode | None = None
        self.input: MidiInput | None = None
        self.output: MidiOutput | None = None
        self.warm_up_s: float | None = None
        self.ports_up_s: float | None = None
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
            warm_up(snapshot.engine, snapshot.config, snapshot.settings)
        except Exception as error:
            self.stats.engine_errors += 1
            self.stats.last_engine_error = f"warm-up: {describe(error)}"
        self.warm_up_s = time.perf_counter() - started
        options = self._port_options
        self.input = MidiInput(options["in_name"], api=options["api"], connect=options["connect_in"])
        try:
            self.output = MidiOutput(options["out_name"], api=self.input.api, connect=options["connect_out"])
        except BaseException:
            self.input.close()
            raise
        self.ports_up_s = time.perf_counter() - t0
        self._player = NoteMode(self.output.send, self.stats)
        self._player.apply(snapshot, time.perf_counter_ns())
        self._worker = threading.Thread(target=self._run, name="bachbridge-live", daemon=True)
        self._worker.start()
        return self

    def close(self) -> None:
        """Stop the worker, release every note (note-offs, then CC 123 on every channel the bridge
        plays on), close the ports. Safe to call twice, and after a failed start."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        worker = self._worker
        if worker is not None:
            worker.join(timeout=5.0)
        try:
            # the worker is gone, so its bookkeeping is ours now (if it hangs in the engine, the
            # output's own bookkeeping below still releases everything)
            if self._player is not None and (worker is None or not worker.is_alive()):
                self._player.release_all(time.perf_counter_ns())
        finally:
            try:
                if self.output is not None:
                    self.output.close(self._channels_in_use())  # note-offs, CC 123 once a channel
            finally:
                if self.input is not None:
                    self.input.close()

    def _channels_in_use(self) -> list[int]:
        """The channels of the current knobs and of those the worker last played by."""
        channels = set(self._snapshot.config.output_channels())
        if self._player is not None and self._player.snapshot is not None:
            channels.update(self._player.snapshot.config.output_channels())
        return sorted(channels)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
        return False

    # ---- knobs

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def update(self, config: LiveConfig | None = None, settings: Settings | None = None,
               engine: Engine | None = None, warm: bool = True) -> None:
        """Swap the knobs, from any thread; the worker plays by them from its next event. A new
        engine is warmed up here first (in the caller's thread), so the worker never waits on it."""
        with self._update_lock:
            old = self._snapshot
            new = _checked_snapshot(old.engine if engine is None else engine,
                                    old.config if config is None else config,
                                    old.settings if settings is None else settings)
            if new.engine is not old.engine and warm:
                warm_up(new.engine, new.config, new.settings)
            self._snapshot = new

    # ---- the worker

    def _run(self) -> None:
        poll = self.input.poll
        player = self._player
        stop = self._stop
        while not stop.is_set():
            try:
                events = poll()
            except Exception as error:  # the port went away under us: report, and keep trying
                self._count_error(error)
                time.sleep(IDLE_SLEEP_S)
                continue
            if not events:
                # knobs turned while nothing plays: a new engine's release must not wait for a note
                self._follow_knobs(player, time.perf_counter_ns())
                time.sleep(IDLE_SLEEP_S)
                continue
            for data, t_ns in events:
                self._follow_knobs(player, t_ns)
                try:
                    player.handle(data, t_ns)
                except Exception as error:
                    self._count_error(error)

    def _follow_knobs(self, player: NoteMode, t_ns: int) -> None:
        snapshot = self._snapshot  # read once: update() may replace it at any moment
        if snapshot is not player.snapshot:
            try:
                player.apply(snapshot, t_ns)
            except Exception as error:
                self._count_error(error)

    def _count_error(self, error: Exception) -> None:
        self.stats.event_errors += 1
        self.stats.last_event_error = describe(error)


def _checked_snapshot(engine, config, settings) -> Snapshot:
    if not isinstance(engine, Engine):
        raise TypeError(f"engine must be an Engine, not {type(engine).__name__}")
    if not isinstance(config, LiveConfig):
        raise TypeError(f"config must be a LiveConfig, not {type(config).__name__}")
    if not isinstance(settings, Settings):
        raise TypeError(f"settings must be a Settings, not {type(settings).__name__}")
    return Snapshot(config, settings, engine)
