"""The live bridge: a melody in, alto, tenor and bass out, while the music plays.

Data flows one way: port -> events -> grid -> engine -> grid -> events -> port.

- `Bridge` owns the ports, the engine and one worker thread. The worker polls `MidiInput` every
  ~0.5 ms (sleeping when nothing came and nothing is due: never a busy spin), hands each
  (bytes, t_ns) to the player of the current mode, lets it send what is due, and is the only
  thread that sends notes while it runs, so the note bookkeeping needs no lock.
- Knobs: `(LiveConfig, Settings, Engine)` is one immutable `Snapshot` in one attribute, replaced
  whole by `Bridge.update()` from any thread (an attribute store is atomic); the worker reads it
  once per event and, when it changed, applies it between two events. A change of engine, mode
  or output channels first releases every sounding note.
- Two players (no threads, no ports: they send through a function they are given), sharing one
  `Clock`:
  - `NoteMode` answers each melody onset at once: the engine fills in the present step's alto,
    tenor and bass given the recent past (`Context`) and the new soprano, with the future
    unknown; they sound until the next onset or the melody's note-off. Between notes a
    `Speculator` thread works out the answers for the likeliest next notes (the engine says
    which), so that most onsets are answered by a lookup.
  - `PhraseMode` plays everything `lookahead_beats` later: the melody waits, the harmony of each
    phrase is decided by the full annealed Gibbs sampler (the harmony already decided given) as
    late as the delay allows, and a schedule sends it on time.
  Every note-on a player sends is remembered until its note-off went out: on the melody's
  note-off, on Stop/Start, on a release-worthy change, on Panic and on close.
- Nothing from outside stops it: SysEx, unknown or malformed messages and clock floods are counted
  and ignored; an engine error makes that note (or phrase) pass-through (echo only), counted,
  last text kept; any other error while handling one event is counted and the loop goes on.
- `Bridge.monitor` is what a window draws: (t_ns, voice, pitch, velocity) as the notes sound.
"""
from __future__ import annotations

import collections
import heapq
import os
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np

from bridge.clock import (CLOCK_STATUSES, MODES as CLOCK_MODES, NS_PER_MINUTE, START, STOP, Clock, MAX_BPM,
                          MIN_BPM, step_ns)
from bridge.engines import (REST, SHORTEST_HARMONY_REST, SOPRANO, Engine, fold_into_range,
                            octave_shift_into_range)
from bridge.errors import BadInput
from bridge.ports import DEFAULT_IN, DEFAULT_OUT, MidiInput, MidiOutput
from bridge.settings import Settings

MODES = ("note", "phrase")
VOICES = 4
NOTE_OFF, NOTE_ON = 0x80, 0x90
# the worker's sleep when a poll found nothing: a note waits at most this long to be seen
IDLE_SLEEP_S = 0.0005
# latencies (and phrase timing errors) kept for the percentiles
LATENCY_WINDOW = 512
# the sampling knobs `bachbridge live` starts with: phrase mode anneals as offline does
LIVE_SETTINGS = Settings()
# the longest lookahead, in beats
MAX_LOOKAHEAD_BEATS = 16.0
# phrase mode decides a phrase this long before its first note is due (at most half the delay):
# the time the sampler may take
DECISION_MARGIN_NS = 80_000_000
# how often a port connected to another program's port checks that it is still there
PORT_CHECK_S = 0.25
# what the window is sent, at most this many notes behind
MONITOR_SIZE = 4096
# speculation: next pitches tried per onset, and the rhythms (gaps to the next onset) tried for each
SPECULATED_PITCHES = 8
SPECULATED_GAPS = 2
# candidate windows filled in per engine call: small batches, so that a newer onset stops the work soon
SPECULATION_BATCH = 2
# the GIL switch interval while a bridge runs: a thread waiting for the GIL (the worker, when the
# speculator holds it) waits up to this long; Python's default is 5 ms
LIVE_SWITCH_INTERVAL_S = 0.0002
# a melody note for warm-up calls (inside every soprano range)
_WARM_PITCH = 72


@dataclass(frozen=True)
class LiveConfig:
    """How the bridge plays (not the sampling knobs: those are `Settings`). Channels are 0-based."""
    mode: str = "note"                           # note: answer each onset; phrase: play it all later
    lookahead_beats: float = 2.0                 # phrase mode: how much later, in beats
    speculate: bool = True                       # note mode: work out likely next answers between notes
    context_steps: int = 16                      # 16ths of past shown to the engine (a bar)
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
        if not 0.25 <= self.lookahead_beats <= MAX_LOOKAHEAD_BEATS:
            problems.append(f"lookahead_beats must be 0.25..{MAX_LOOKAHEAD_BEATS:g}, not {self.lookahead_beats}")
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

    def delay_ns(self, bpm: float) -> int:
        """Phrase mode's delay at `bpm`."""
        return int(self.lookahead_beats * NS_PER_MINUTE / bpm)


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
    inpaint calls of the live shapes (the full window, and the short ones of a first phrase),
    and the speculator's question."""
    engine.warm_up()
    past = past_steps_for(Snapshot(config, settings, engine))
    for steps in sorted({1, 2, past // 2 + 1, past + 1}):
        roll = np.full((steps, VOICES), REST, dtype=np.int16)
        roll[:, SOPRANO] = _WARM_PITCH
        roll[:-1, 1:] = (67, 64, 48)
        known = np.ones(roll.shape, dtype=bool)
        known[-1, 1:] = False
        engine.inpaint(roll, known, settings, open_end=True)
        known[-1, SOPRANO] = False
        engine.melody_candidates(roll, known, settings, SPECULATED_PITCHES)


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


# ---------------------------------------------------------------- statistics and the monitor

class MonitorEvent(NamedTuple):
    """A note as it sounds: voice 0 is the melody (1, 2, 3: alto, tenor, bass); velocity 0 = off."""
    t_ns: int
    voice: int
    pitch: int
    velocity: int


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
    speculation_lookups: int
    speculation_hits: int
    speculation_errors: int
    p99_phrase_timing_ms: float | None
    bpm: float
    clock_running: bool
    clock_source: str
    position_steps: int | None
    port_problem: str | None

    @property
    def speculation_hit_rate(self) -> float | None:
        return self.speculation_hits / self.speculation_lookups if self.speculation_lookups else None


@dataclass
class LiveStats:
    """Counters the worker writes and anyone may read (`snapshot()` for a consistent copy).

    Latency: from the melody note-on's arrival stamp (MidiInput's perf_counter_ns) to the first
    harmony note-on handed to the output port, in ns. Phrase timing: how late a scheduled message
    was handed to the port, in ns."""
    notes_in: int = 0
    harmony_notes_out: int = 0
    engine_errors: int = 0
    last_engine_error: str | None = None
    event_errors: int = 0           # unexpected errors while handling one event (the loop goes on)
    last_event_error: str | None = None
    ignored: int = 0                # SysEx, unknown, malformed, clock floods, other channels
    last_latency_ns: int | None = None
    speculation_lookups: int = 0    # note mode onsets answered while speculating
    speculation_hits: int = 0       # ... of them, answered by a lookup
    speculation_errors: int = 0     # the engine failed while speculating (no note is lost by it)
    last_speculation_error: str | None = None
    bpm: float = 0.0
    clock_running: bool = False
    clock_source: str = "internal"  # what places the notes: 'midi', 'internal' or 'free'
    position_steps: int | None = None  # the step of the last onset
    port_problem: str | None = None    # a port that went away, while it is away
    _latencies: collections.deque = field(default_factory=lambda: collections.deque(maxlen=LATENCY_WINDOW))
    _timing: collections.deque = field(default_factory=lambda: collections.deque(maxlen=LATENCY_WINDOW))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add_latency(self, ns: int) -> None:
        with self._lock:
            self.last_latency_ns = ns
            self._latencies.append(ns)

    def add_timing_error(self, ns: int) -> None:
        with self._lock:
            self._timing.append(ns)

    def latencies_ms(self) -> list[float]:
        with self._lock:
            return [ns / 1e6 for ns in self._latencies]

    def timing_errors_ms(self) -> list[float]:
        with self._lock:
            return [ns / 1e6 for ns in self._timing]

    def snapshot(self) -> StatsSnapshot:
        recent = sorted(self.latencies_ms())
        return StatsSnapshot(
            notes_in=self.notes_in, harmony_notes_out=self.harmony_notes_out,
            engine_errors=self.engine_errors, last_engine_error=self.last_engine_error,
            event_errors=self.event_errors, last_event_error=self.last_event_error, ignored=self.ignored,
            last_latency_ms=None if self.last_latency_ns is None else self.last_latency_ns / 1e6,
            p50_latency_ms=_percentile(recent, 50), p99_latency_ms=_percentile(recent, 99),
            latencies=len(recent), speculation_lookups=self.speculation_lookups,
            speculation_hits=self.speculation_hits, speculation_errors=self.speculation_errors,
            p99_phrase_timing_ms=_percentile(sorted(self.timing_errors_ms()), 99),
            bpm=self.bpm, clock_running=self.clock_running, clock_source=self.clock_source,
            position_steps=self.position_steps, port_problem=self.port_problem)


def _percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return None
    rank = max(1, int(np.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def ask_engine(snapshot: Snapshot, settings: Settings, roll: np.ndarray, known: np.ndarray) -> np.ndarray:
    """The engine's (T, 3) alto, tenor and bass for a MIDI roll (not known cells filled in), in
    the melody's register (see model_view), MIDI pitches, -1 = silent."""
    engine = snapshot.engine
    view, shift = _model_view_for(snapshot, roll)
    return _from_model_view(engine.inpaint(view, known, settings, open_end=True), shift)


def ask_engine_many(snapshot: Snapshot, settings: Settings, rolls: list[np.ndarray],
                    knowns: list[np.ndarray]) -> list[np.ndarray]:
    """`ask_engine` for several rolls, in one batch where the engine can."""
    views = [_model_view_for(snapshot, roll) for roll in rolls]
    results = snapshot.engine.inpaint_many([view for view, _ in views], knowns, settings, open_end=True)
    return [_from_model_view(result, shift) for result, (_, shift) in zip(results, views)]


def _model_view_for(snapshot: Snapshot, roll: np.ndarray) -> tuple[np.ndarray, int]:
    lowest = snapshot.engine.min_pitch
    return model_view(roll, snapshot.settings, lowest, lowest + snapshot.engine.num_pitches - 1)


def _from_model_view(result: np.ndarray, shift: int) -> np.ndarray:
    return fold_into_range(np.where(result[:, 1:] >= 0, result[:, 1:] - shift, REST), 0, 127)


# ---------------------------------------------------------------- what both modes share

class Player:
    """Melody events in, melody echo and harmony out through `send(bytes)`. One thread only.

    The base does what both modes share: the knobs, the clock, filtering the input, the
    statistics and the monitor; a mode says what happens on a melody note-on and note-off, what
    is due when (`tick`, `next_due_ns`), and how to silence everything (`release_all`)."""

    mode = ""

    def __init__(self, send, stats: LiveStats, clock: Clock | None = None, monitor: collections.deque | None = None):
        self.send = send
        self.stats = stats
        self.clock = clock or Clock()
        self.monitor = monitor if monitor is not None else collections.deque(maxlen=MONITOR_SIZE)
        self.snapshot: Snapshot | None = None
        self.now_ns = time.perf_counter_ns  # the time the monitor stamps (render() simulates it)

    def apply(self, new: Snapshot, t_ns: int) -> None:
        """Play by `new` from now on. A new engine or set of channels releases everything first:
        what sounds belongs to the old one."""
        old = self.snapshot
        # taken even if what follows fails, so that a bad snapshot is not retried on every event
        self.snapshot = new
        self.clock.configure(new.config.clock, new.config.bpm)
        self.stats.bpm = self.clock.bpm
        if old is not None and (new.engine is not old.engine or new.config.channels != old.config.channels
                                or new.config.echo_channel != old.config.echo_channel):
            self.release_all(t_ns)

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
            self.stats.notes_in += 1
            step = self.clock.onset(t_ns)
            self.stats.position_steps = step
            self.stats.clock_source = self.clock.last_onset_source
            self.note_on(channel, pitch, velocity, step, t_ns)
        else:
            # never filtered: a note-off always releases what its note-on started
            self.note_off(channel, pitch, t_ns)

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
            self.forget_history()
            clock.reset_onsets()
        self.stats.bpm = clock.bpm
        self.stats.clock_running = clock.running

    def note_on(self, channel: int, pitch: int, velocity: int, step: int, t_ns: int) -> None:
        raise NotImplementedError

    def note_off(self, channel: int, pitch: int, t_ns: int) -> None:
        raise NotImplementedError

    def release_all(self, t_ns: int) -> None:
        """Note-offs for every note sounding, now."""
        raise NotImplementedError

    def forget_history(self) -> None:
        """A new take: the past no longer conditions the harmony."""

    def tick(self, now_ns: int) -> None:
        """Send what is due by now."""

    def next_due_ns(self) -> int | None:
        """When `tick` next has something to do; None: only when a message comes."""
        return None

    def close(self) -> None:
        """Let go of helpers (threads)."""

    def _show(self, voice: int, pitch: int, velocity: int) -> None:
        self.monitor.append(MonitorEvent(self.now_ns(), voice, pitch, velocity))


# ---------------------------------------------------------------- note mode

class NoteMode(Player):
    """Each melody onset answered at once with the present step's alto, tenor and bass."""

    mode = "note"

    def __init__(self, send, stats: LiveStats, clock: Clock | None = None,
                 monitor: collections.deque | None = None, speculator: "Speculator | None" = None):
        super().__init__(send, stats, clock, monitor)
        self.speculator = speculator
        self.context = Context(0)
        self.melody = None          # (in channel, pitch) of the note the harmony belongs to
        self.harmony: list[tuple[int, int]] = []    # sounding harmony keys (channel, pitch), no repeats
        self.voices = [REST] * (VOICES - 1)         # what each harmony voice sounds, for the monitor
        self.echoed: dict[tuple[int, int], tuple[int, int]] = {}  # melody key in -> echo key out
        self.onset_steps: collections.deque = collections.deque(maxlen=9)  # for the rhythm guesses

    def apply(self, new: Snapshot, t_ns: int) -> None:
        super().apply(new, t_ns)
        past = past_steps_for(new)
        if past != self.context.past:
            self.context = self.context.resized(past)

    def forget_history(self) -> None:
        self.context.reset()
        self.onset_steps.clear()

    def note_on(self, channel: int, pitch: int, velocity: int, step: int, t_ns: int) -> None:
        config = self.snapshot.config
        if config.echo:
            self._echo_on(channel, pitch, velocity, config.echo_channel)
        self._show(SOPRANO, pitch, velocity)
        # monophonic: a note-on while another is held replaces it (legato)
        self.melody = (channel, pitch)
        self.context.onset(step, pitch)
        self.onset_steps.append(step)
        harmony = self._answer()
        self._sound(harmony, velocity, config.channels, t_ns)
        if self.speculator is not None and config.speculate:
            self.speculator.speculate(self.snapshot, self.snapshot.settings, self.context, self.rhythm_guesses())

    def note_off(self, channel: int, pitch: int, t_ns: int) -> None:
        key = (channel, pitch)
        echo = self.echoed.pop(key, None)
        if echo is not None:
            self.send(bytes((NOTE_OFF | echo[0], echo[1], 0)))
        if key == self.melody:
            self._show(SOPRANO, pitch, 0)
            self._release_harmony()
            self.context.release(self.clock.step_at(t_ns))
            self.melody = None

    def rhythm_guesses(self) -> list[int]:
        """Gaps (in steps) to the next onset worth speculating on, likeliest first: the last
        gap, then the commonest of the recent ones (with no grid, every onset is the next step)."""
        if self.stats.clock_source == "free":
            return [1]
        steps = list(self.onset_steps)
        gaps = [b - a for a, b in zip(steps, steps[1:]) if b > a]
        if not gaps:
            return [2, 4][:SPECULATED_GAPS]  # nothing to go by yet: an 8th, a quarter
        guesses = [gaps[-1]]
        for gap, _ in collections.Counter(reversed(gaps)).most_common():
            if gap not in guesses:
                guesses.append(gap)
        return guesses[:SPECULATED_GAPS]

    def _echo_on(self, channel: int, pitch: int, velocity: int, echo_channel: int) -> None:
        key = (channel, pitch)
        previous = self.echoed.get(key)
        if previous is not None:  # the same key again without a note-off: end the first one
            self.send(bytes((NOTE_OFF | previous[0], previous[1], 0)))
        self.send(bytes((NOTE_ON | echo_channel, pitch, velocity)))
        self.echoed[key] = (echo_channel, pitch)

    def _answer(self) -> np.ndarray | None:
        """The present step's alto, tenor, bass (MIDI pitches, -1 = silent): the speculator's when
        it worked this window out already, else the engine's; None when the engine failed (this
        note is then pass-through)."""
        roll, known = self.context.window()
        speculator = self.speculator
        if speculator is not None and self.snapshot.config.speculate:
            self.stats.speculation_lookups += 1
            found = speculator.lookup(self.snapshot, roll)
            if found is not None:
                self.stats.speculation_hits += 1
                return found
        try:
            return ask_engine(self.snapshot, self.snapshot.settings, roll, known)[-1]
        except Exception as error:  # any engine failure: pass-through for this note, and go on
            self.stats.engine_errors += 1
            self.stats.last_engine_error = describe(error)
            return None

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
        self._show_voices([REST] * 3 if harmony is None else harmony.tolist(), velocity)

    def _show_voices(self, pitches: list[int], velocity: int) -> None:
        for voice, (old, new) in enumerate(zip(self.voices, pitches), start=1):
            if old != new:
                if old >= 0:
                    self._show(voice, old, 0)
                if new >= 0:
                    self._show(voice, new, velocity)
        self.voices = list(pitches)

    def _release_harmony(self) -> None:
        for channel, pitch in self.harmony:
            self.send(bytes((NOTE_OFF | channel, pitch, 0)))
        self.harmony = []
        self._show_voices([REST] * 3, 0)

    def release_all(self, t_ns: int) -> None:
        """Note-offs for every note sounding: the harmony and the melody's echo."""
        self._release_harmony()
        for channel, pitch in self.echoed.values():
            self.send(bytes((NOTE_OFF | channel, pitch, 0)))
        self.echoed.clear()
        if self.melody is not None:
            self._show(SOPRANO, self.melody[1], 0)
            self.context.release(self.clock.step_at(t_ns))
            self.melody = None
        if self.speculator is not None:
            self.speculator.cancel()

    def close(self) -> None:
        if self.speculator is not None:
            self.speculator.close()


class Speculator:
    """Works out, in its own thread, the answers note mode would give for the likeliest next
    melody notes, so that an onset that was foreseen is answered by a lookup.

    After each onset the worker hands over the context (a copy) with `speculate()`. The thread
    asks the engine which pitches the melody likely takes next (`Engine.melody_candidates`), and
    for each likely rhythm (the gap to the next onset), likeliest first, builds the windows the
    next onset would show the engine for each of those pitches and fills them in as one batch
    (`Engine.inpaint_many`), checking between two rhythms whether a newer onset made the work moot. `lookup()` returns an answer only for a
    window exactly equal to the one it was worked out for, under the same knobs: a hit is an
    answer drawn from the very distribution a fresh call would draw from.

    The thread runs at a lower priority (Linux: nice +10 for this thread) so that the worker,
    which answers the misses, gets a core first.
    """

    def __init__(self, stats: LiveStats):
        self.stats = stats
        self._job = None                       # (generation, snapshot, settings, context, gaps)
        self._generation = 0
        self._answers: tuple[int, Snapshot | None, dict] = (0, None, {})
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="bachbridge-speculator", daemon=True)
        self._thread.start()

    def speculate(self, snapshot: Snapshot, settings: Settings, context: Context, gaps: list[int]) -> None:
        """Start on the answers for the onset after the one `context` ends with (worker thread)."""
        self._generation += 1
        self._idle.clear()
        self._job = (self._generation, snapshot, settings, context.resized(context.past), gaps)
        self._wake.set()

    def cancel(self) -> None:
        self._generation += 1
        self._job = None

    def lookup(self, snapshot: Snapshot, roll: np.ndarray) -> np.ndarray | None:
        """The answer worked out for exactly this window under `snapshot`, if there is one."""
        _, answered_for, answers = self._answers
        if answered_for is not snapshot:
            return None
        return answers.get(_window_key(roll))

    def wait_idle(self, timeout: float) -> bool:
        """Wait until the latest onset's answers are all worked out (or given up); True if so."""
        return self._idle.wait(timeout)

    def close(self) -> None:
        self._closed = True
        self._job = None
        self._wake.set()
        self._thread.join(timeout=2.0)

    def _run(self) -> None:
        if hasattr(os, "setpriority") and sys.platform.startswith("linux"):
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
            except OSError:
                pass
        while not self._closed:
            self._wake.wait()
            self._wake.clear()
            job, self._job = self._job, None
            if job is None:
                self._idle.set()
                continue
            try:
                self._work(*job)
            except Exception as error:  # only a lost head start: the worker answers the onset itself
                self.stats.speculation_errors += 1
                self.stats.last_speculation_error = describe(error)
            if self._job is None:
                self._idle.set()

    def _work(self, generation: int, snapshot: Snapshot, settings: Settings, context: Context,
              gaps: list[int]) -> None:
        answers: dict = {}
        self._answers = (generation, snapshot, answers)
        present = int(context.rows[-1, SOPRANO])
        for gap in gaps:
            # the window the next onset would show, with its melody note unknown: which is likely?
            upcoming = context.resized(context.past)
            upcoming.onset(upcoming.step + gap, present)
            roll, known = upcoming.window()
            known = known.copy()
            known[-1, SOPRANO] = False
            model_roll, shift = _model_view_for(snapshot, roll)
            likely = snapshot.engine.melody_candidates(model_roll, known, settings, SPECULATED_PITCHES)
            pitches = [p - shift for p in likely]
            pitches = [p for p in pitches if 0 <= p <= 127]
            if generation != self._generation or self._closed:
                return
            known[-1, SOPRANO] = True
            for first in range(0, len(pitches), SPECULATION_BATCH):
                if generation != self._generation or self._closed:
                    return  # a newer onset: this work is moot, and the worker may need the core
                rolls = []
                for pitch in pitches[first:first + SPECULATION_BATCH]:
                    roll[-1, SOPRANO] = pitch
                    rolls.append(roll.copy())
                harmonies = ask_engine_many(snapshot, settings, rolls, [known] * len(rolls))
                for candidate, harmony in zip(rolls, harmonies):
                    answers[_window_key(candidate)] = harmony[-1]


def _window_key(roll: np.ndarray) -> tuple:
    return roll.shape, roll.tobytes()


# ---------------------------------------------------------------- phrase mode

class PhraseMode(Player):
    """Everything `lookahead_beats` later: the melody waits, each phrase's harmony is decided by
    the full annealed Gibbs sampler (the harmony already decided given, as `Settings` say), and a
    schedule sends the echo and the harmony exactly one delay after the melody came in.

    The timeline has a row per 16th step, from the oldest step still shown to the engine to the
    newest the melody reached: the melody (held through short rests for the engine, as offline),
    whether the melody really sounds there (the harmony sounds only with it, as in note mode),
    when the step began (the onset's arrival, else the grid's time), the onset's velocity, the
    melody's note-off when one fell in that step, and the harmony once decided. Rows before
    `decided` are decided and their messages scheduled. The pending rows are decided together,
    as one phrase, when the first of them would otherwise be late: at its time + the delay -
    the decision margin. A held note grows new rows on the grid (not with the `free` clock, where
    a step is an onset), so that a long note is decided in time too.

    Sending: per (channel, pitch) a count of note-ons out, so that voices in unison on one
    channel (or with the echo) sound once and end with the last of them.
    """

    mode = "phrase"
    CAPACITY = 1024

    def __init__(self, send, stats: LiveStats, clock: Clock | None = None, monitor: collections.deque | None = None):
        super().__init__(send, stats, clock, monitor)
        n = self.CAPACITY
        self.melody_rows = np.full(n, REST, dtype=np.int16)
        self.harmony_rows = np.full((n, VOICES - 1), REST, dtype=np.int16)
        self.sounding = np.zeros(n, dtype=bool)
        self.start_ns = np.zeros(n, dtype=np.int64)
        self.velocity = np.zeros(n, dtype=np.int16)
        self.release_ns = np.full(n, -1, dtype=np.int64)
        self.rows = 0                   # rows in use
        self.decided = 0                # rows decided and scheduled
        self.last_step = None           # the song step of the newest row
        self.melody = None              # (in channel, pitch, velocity) of the note sounding now
        self.released_row = None        # the row the last melody note ended in, while it rests
        self.planned = [REST] * (VOICES - 1)   # the harmony as of the end of the schedule
        self.echoes: dict[tuple[int, int], tuple[int, int]] = {}  # melody key -> echo key, scheduled
        self.schedule: list = []        # heap of (due_ns, seq, status, channel, pitch, velocity, voice)
        self._seq = 0
        self.out_count: dict[tuple[int, int], int] = {}  # (channel, pitch) -> note-ons out, not yet off
        self.showing: dict[int, int] = {}  # voice -> pitch, as last shown in the monitor

    # ---- the knobs and the clock

    def delay_ns(self) -> int:
        return self.snapshot.config.delay_ns(self.clock.bpm)

    def margin_ns(self) -> int:
        return min(DECISION_MARGIN_NS, self.delay_ns() // 2)

    def forget_history(self) -> None:
        self.rows = self.decided = 0
        self.last_step = None
        self.released_row = None

    # ---- melody in

    def note_on(self, channel: int, pitch: int, velocity: int, step: int, t_ns: int) -> None:
        config = self.snapshot.config
        due = t_ns + self.delay_ns()
        key = (channel, pitch)
        previous = self.echoes.pop(key, None)
        if previous is not None:  # the same key again without a note-off: end the first one
            self._at(due, NOTE_OFF, previous[0], previous[1], 0, SOPRANO)
        echo_channel = config.echo_channel if config.echo else None
        self._at(due, NOTE_ON, echo_channel, pitch, velocity, SOPRANO)
        self.echoes[key] = (echo_channel, pitch)
        self._onset_row(step, pitch, velocity, t_ns)
        self.melody = (channel, pitch, velocity)

    def note_off(self, channel: int, pitch: int, t_ns: int) -> None:
        key = (channel, pitch)
        due = t_ns + self.delay_ns()
        echo = self.echoes.pop(key, None)
        if echo is not None:
            self._at(due, NOTE_OFF, echo[0], echo[1], 0, SOPRANO)
        if self.melody is None or key != self.melody[:2]:
            return  # a note the legato already replaced: its echo was all that sounded
        self._grow_while_held(t_ns - 1)  # the rows the note sounded in (begun before its end)
        self.melody = None
        if self.rows == 0:
            return
        last = self.rows - 1
        self.released_row = last
        if last < self.decided:
            self._plan([REST] * (VOICES - 1), 0, due)  # its harmony is scheduled already
        else:
            self.release_ns[last] = t_ns

    def _onset_row(self, step: int, pitch: int, velocity: int, t_ns: int) -> None:
        """Make the row of `step` the onset of `pitch`, growing the timeline up to it."""
        gap = 0 if self.rows == 0 else step - self.last_step
        if self.rows and self.released_row is not None and gap > past_steps_for(self.snapshot):
            self._decide()  # a rest longer than the engine looks back: what came before is not context
            self.forget_history()
        if self.rows == 0:
            self.rows = 1
            self.harmony_rows[0] = REST
        elif gap != 0 or self.rows == self.decided:
            # steps on (no more than the engine looks back: the rows between are context only);
            # a jump back, or a row already decided, takes the next row. Else two onsets fell in
            # one 16th, and the later one takes the row.
            self._grow(min(max(gap, 1), past_steps_for(self.snapshot) + 1))
        row = self.rows - 1
        self.last_step = step
        self.melody_rows[row] = pitch
        self.sounding[row] = True
        self.start_ns[row] = t_ns
        self.velocity[row] = velocity
        self.release_ns[row] = -1
        self.released_row = None

    def _grow(self, count: int) -> None:
        """`count` more rows on the grid after the newest (there is one): the melody held while it
        sounds, held through (for the engine only) while a rest is shorter than
        SHORTEST_HARMONY_REST, else a rest."""
        if count <= 0 or self.rows == 0:
            return
        if self.rows + count > self.CAPACITY:
            self._trim(count)
        step = step_ns(self.clock.bpm)
        for _ in range(count):
            row = self.rows
            before = row - 1
            released = self.released_row
            held = self.melody is not None or (released is not None and row - released < SHORTEST_HARMONY_REST)
            self.melody_rows[row] = self.melody_rows[before] if held else REST
            self.sounding[row] = self.melody is not None
            self.start_ns[row] = self.start_ns[before] + int(step)
            self.velocity[row] = self.velocity[before]
            self.release_ns[row] = -1
            self.harmony_rows[row] = REST
            self.rows += 1
            self.last_step += 1

    def _grow_while_held(self, now_ns: int) -> None:
        """The rows of the grid steps begun by now under the melody note still held (none with
        the free clock, whose steps are onsets)."""
        if self.melody is not None and self.rows and self.clock.mode != "free":
            newest = int(self.start_ns[self.rows - 1])
            self._grow(max(0, int((now_ns - newest) // step_ns(self.clock.bpm))))

    def _trim(self, room: int) -> None:
        """Drop the oldest decided rows the engine no longer sees, to make `room`."""
        keep_from = max(0, self.decided - past_steps_for(self.snapshot))
        if self.rows - keep_from + room > self.CAPACITY:
            self._decide()
            keep_from = max(0, self.decided - past_steps_for(self.snapshot))
            if self.rows - keep_from + room > self.CAPACITY:
                raise RuntimeError("phrase timeline full")
        kept = self.rows - keep_from
        for array in (self.melody_rows, self.harmony_rows, self.sounding, self.start_ns, self.velocity, self.release_ns):
            array[:kept] = array[keep_from:self.rows]
        self.rows, self.decided = kept, self.decided - keep_from
        if self.released_row is not None:
            self.released_row -= keep_from

    # ---- deciding

    def _deadline_ns(self) -> int | None:
        """When the pending rows (or the next row of a held note) must be decided."""
        if self.snapshot is None or self.rows == 0:
            return None
        if self.decided < self.rows:
            first = int(self.start_ns[self.decided])
        elif self.melody is not None and self.clock.mode != "free":
            first = int(self.start_ns[self.rows - 1] + step_ns(self.clock.bpm))
        else:
            return None
        return first + self.delay_ns() - self.margin_ns()

    def _decide(self) -> None:
        """Run the sampler over the pending rows, given what came before, and schedule them."""
        lo, hi = self.decided, self.rows
        if lo >= hi:
            return
        start = max(0, lo - past_steps_for(self.snapshot))
        roll = np.empty((hi - start, VOICES), dtype=np.int16)
        roll[:, SOPRANO] = self.melody_rows[start:hi]
        roll[:, 1:] = self.harmony_rows[start:hi]
        known = np.ones(roll.shape, dtype=bool)
        known[lo - start:, 1:] = (roll[lo - start:, SOPRANO] < 0)[:, None]
        try:
            self.harmony_rows[lo:hi] = ask_engine(self.snapshot, self.snapshot.settings, roll, known)[lo - start:]
        except Exception as error:  # the engine failed: this phrase is pass-through (echo only)
            self.stats.engine_errors += 1
            self.stats.last_engine_error = describe(error)
            self.harmony_rows[lo:hi] = REST
        delay = self.delay_ns()
        silent = [REST] * (VOICES - 1)
        for row in range(lo, hi):
            due = int(self.start_ns[row]) + delay
            self._plan(self.harmony_rows[row].tolist() if self.sounding[row] else silent, int(self.velocity[row]), due)
            if self.release_ns[row] >= 0:
                self._plan(silent, 0, int(self.release_ns[row]) + delay)
        self.decided = hi

    def _plan(self, pitches: list[int], velocity: int, due: int) -> None:
        """Schedule the harmony to become `pitches` at `due`: voices that change end, then start."""
        channels = self.snapshot.config.channels
        for voice, (old, new) in enumerate(zip(self.planned, pitches)):
            if old != new and old >= 0:
                self._at(due, NOTE_OFF, channels[voice], old, 0, voice + 1)
        for voice, (old, new) in enumerate(zip(self.planned, pitches)):
            if old != new and new >= 0:
                self._at(due, NOTE_ON, channels[voice], new, velocity, voice + 1)
        self.planned = list(pitches)

    # ---- sending on time

    def _at(self, due: int, status: int, channel: int | None, pitch: int, velocity: int, voice: int) -> None:
        """Schedule one note message (channel None: shown in the monitor, not sent)."""
        self._seq += 1
        heapq.heappush(self.schedule, (due, self._seq, status, channel, pitch, velocity, voice))

    def tick(self, now_ns: int) -> None:
        deadline = self._deadline_ns()
        if deadline is not None and now_ns >= deadline:
            self._grow_while_held(now_ns)
            self._decide()
        schedule = self.schedule
        while schedule and schedule[0][0] <= now_ns:
            due, _, status, channel, pitch, velocity, voice = heapq.heappop(schedule)
            self._send_now(status, channel, pitch, velocity, voice)
            self.stats.add_timing_error(time.perf_counter_ns() - due)

    def next_due_ns(self) -> int | None:
        deadline = self._deadline_ns()
        due = self.schedule[0][0] if self.schedule else None
        if deadline is None or (due is not None and due < deadline):
            return due
        return deadline

    def _send_now(self, status: int, channel: int | None, pitch: int, velocity: int, voice: int) -> None:
        if status == NOTE_ON:
            self.showing[voice] = pitch
            self._show(voice, pitch, velocity)
        elif self.showing.get(voice) == pitch:
            del self.showing[voice]
            self._show(voice, pitch, 0)
        if channel is None:
            return
        key = (channel, pitch)
        count = self.out_count.get(key, 0)
        if status == NOTE_ON:
            self.out_count[key] = count + 1
            if count == 0:
                self.send(bytes((NOTE_ON | channel, pitch, velocity)))
                if voice != SOPRANO:
                    self.stats.harmony_notes_out += 1
        elif count > 0:
            if count == 1:
                del self.out_count[key]
                self.send(bytes((NOTE_OFF | channel, pitch, 0)))
            else:
                self.out_count[key] = count - 1

    def release_all(self, t_ns: int) -> None:
        """Drop what is scheduled and pending (the take stopped), and end every note sounding."""
        self.schedule.clear()
        for channel, pitch in sorted(self.out_count):
            self.send(bytes((NOTE_OFF | channel, pitch, 0)))
        self.out_count.clear()
        for voice, pitch in sorted(self.showing.items()):
            self._show(voice, pitch, 0)
        self.showing.clear()
        self.planned = [REST] * (VOICES - 1)
        self.echoes.clear()
        if self.melody is not None:
            self.melody = None
            self.released_row = self.rows - 1 if self.rows else None
        self.decided = self.rows
        self.sounding[:self.rows] = False


# ---------------------------------------------------------------- the bridge, offline

def render(engine: Engine, soprano: np.ndarray, config: LiveConfig, settings: Settings) -> np.ndarray:
    """What the live bridge would play under a melody: the soprano (T,) on the 16th grid (-1 =
    rest) played into a player of `config.mode` on its internal clock, in simulated time, and the
    (T, 4) roll of what it sounds (no ports, no threads, no speculation: speculation changes
    when an answer comes, never what it is). For reading and measuring the live bridge's music."""
    config = config.replace(clock="internal")
    step = int(step_ns(config.bpm))
    player = (PhraseMode if config.mode == "phrase" else NoteMode)(lambda data: None, LiveStats())
    clock = [0]
    player.now_ns = lambda: clock[0]
    player.apply(Snapshot(config, settings, engine), 0)
    from bridge.midifile import note_runs  # offline only: mido stays out of the live start-up

    soprano = np.asarray(soprano)
    events = []
    for pitch, first, stop in note_runs(soprano):
        events.append((first * step, bytes((NOTE_ON, pitch, 80))))
        events.append((stop * step - 1000, bytes((NOTE_OFF, pitch, 0))))  # just before the next
    finish = len(soprano) * step + (player.delay_ns() if config.mode == "phrase" else 0) + step
    for at, data in events + [(finish, b"")]:
        while True:  # the player's own deadlines and schedule up to this event, as the worker ticks
            due = player.next_due_ns()
            if due is None or due > at:
                break
            clock[0] = max(clock[0], due)
            player.tick(clock[0])
        clock[0] = max(clock[0], at)
        if data:
            player.handle(data, at)
        player.tick(clock[0])
    delay = player.delay_ns() if config.mode == "phrase" else 0
    roll = np.full((len(soprano), VOICES), REST, dtype=np.int16)
    roll[:, SOPRANO] = soprano
    sounding = [REST] * VOICES
    last = 0
    for event in list(player.monitor) + [MonitorEvent(finish + delay, -1, 0, 0)]:
        here = min(len(soprano), int(round((event.t_ns - delay) / step)))
        if here > last:
            roll[last:here, 1:] = sounding[1:]
            last = here
        if event.voice > 0:
            if event.velocity:
                sounding[event.voice] = event.pitch
            elif sounding[event.voice] == event.pitch:
                sounding[event.voice] = REST
    return roll


# ---------------------------------------------------------------- the bridge

class Bridge:
    """Ports, engine and worker thread of the live bridge.

        with Bridge(engine, LiveConfig(), LIVE_SETTINGS, api="jack") as bridge:  # start()
            ...   # playing; bridge.update(settings=...) from any thread; bridge.stats.snapshot()
        # closed on leaving the block (or by close()): every note released

    `start()` warms the engine up before the ports open, so the first note is answered as fast
    as the rest; `ports_up_s` is the time from `t0` (default: the call) until both ports are up.
    A port connected to an existing one (`connect_in`, `connect_out`) is watched: when that port
    goes away it is reported (`stats.port_problem`), and when it comes back it is connected again.
    While a bridge runs, the interpreter's GIL switch interval is 0.2 ms (restored on close), so
    the worker never waits long for a thread that holds the GIL.
    """

    def __init__(self, engine: Engine, config: LiveConfig = LiveConfig(), settings: Settings = LIVE_SETTINGS,
                 *, api: str | None = None, in_name: str = DEFAULT_IN, out_name: str = DEFAULT_OUT,
                 connect_in: str | None = None, connect_out: str | None = None):
        self._snapshot = _checked_snapshot(engine, config, settings)
        self._port_options = dict(api=api, in_name=in_name, out_name=out_name,
                                  connect_in=connect_in, connect_out=connect_out)
        self._update_lock = threading.Lock()
        self._stop = threading.Event()
        self._panic = threading.Event()
        self._worker: threading.Thread | None = None
        self._watcher: threading.Thread | None = None
        self.stats = LiveStats()
        self.monitor: collections.deque = collections.deque(maxlen=MONITOR_SIZE)
        self._players: dict[str, Player] = {}
        self._player: Player | None = None
        self.input: MidiInput | None = None
        self.output: MidiOutput | None = None
        self.warm_up_s: float | None = None
        self.ports_up_s: float | None = None
        self._saved_switch_interval: float | None = None
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
        clock = Clock()
        send = self.output.send
        self._players = {
            "note": NoteMode(send, self.stats, clock, self.monitor, Speculator(self.stats)),
            "phrase": PhraseMode(send, self.stats, clock, self.monitor),
        }
        self._player = self._players[snapshot.config.mode]
        self._player.apply(snapshot, time.perf_counter_ns())
        self._saved_switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(LIVE_SWITCH_INTERVAL_S)
        self._worker = threading.Thread(target=self._run, name="bachbridge-live", daemon=True)
        self._worker.start()
        if self.input.connected_to or self.output.connected_to:
            self._watcher = threading.Thread(target=self._watch_ports, name="bachbridge-ports", daemon=True)
            self._watcher.start()
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
        if self._watcher is not None:
            self._watcher.join(timeout=5.0)
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
                try:
                    if self.input is not None:
                        self.input.close()
                finally:
                    for player in self._players.values():
                        player.close()
                    if self._saved_switch_interval is not None:
                        sys.setswitchinterval(self._saved_switch_interval)

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

    def panic(self) -> None:
        """All notes off, from any thread: the worker releases everything it plays and sends
        note-offs for anything else still on, then CC 123."""
        if self._worker is None or not self._worker.is_alive():
            if self.output is not None and not self.output.closed:
                self.output.all_notes_off(self._channels_in_use())
            return
        self._panic.set()

    # ---- the worker

    def _run(self) -> None:
        poll = self.input.poll
        stop = self._stop
        while not stop.is_set():
            player = self._player
            try:
                events = poll()
            except Exception as error:  # the port went away under us: report, and keep trying
                self._count_error(error)
                time.sleep(IDLE_SLEEP_S)
                continue
            now = time.perf_counter_ns()
            if not events:
                # knobs turned while nothing plays: a new engine's release must not wait for a note
                player = self._follow_knobs(now)
            for data, t_ns in events:
                player = self._follow_knobs(t_ns)
                try:
                    player.handle(data, t_ns)
                except Exception as error:
                    self._count_error(error)
            try:
                if self._panic.is_set():
                    self._panic.clear()
                    player.release_all(now)
                    self.output.all_notes_off(self._channels_in_use())
                player.tick(time.perf_counter_ns())
            except Exception as error:
                self._count_error(error)
            if not events:
                due = player.next_due_ns()
                wait_s = IDLE_SLEEP_S
                if due is not None:
                    wait_s = min(wait_s, max(0.0, (due - time.perf_counter_ns()) / 1e9))
                time.sleep(wait_s)

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

    def _count_error(self, error: Exception) -> None:
        self.stats.event_errors += 1
        self.stats.last_event_error = describe(error)

    # ---- ports connected to other programs' ports

    def _watch_ports(self) -> None:
        """Report a connected port that went away; connect again when it comes back."""
        away: dict[str, bool] = {}
        while not self._stop.wait(PORT_CHECK_S):
            for port in (self.input, self.output):
                if port is None or port.connected_to is None:
                    continue
                try:
                    present = port.target_present()
                    if present and away.get(port.what):
                        port.reconnect()
                except Exception as error:  # the MIDI system itself is in trouble: say so, try again
                    present = False
                    self._count_error(error)
                away[port.what] = not present
            gone = [f"{port.what} {port.connected_to!r}" for port in (self.input, self.output)
                    if away.get(port.what)]
            self.stats.port_problem = f"gone: {', '.join(gone)} (connecting again when it is back)" if gone else None


def _checked_snapshot(engine, config, settings) -> Snapshot:
    if not isinstance(engine, Engine):
        raise TypeError(f"engine must be an Engine, not {type(engine).__name__}")
    if not isinstance(config, LiveConfig):
        raise TypeError(f"config must be a LiveConfig, not {type(config).__name__}")
    if not isinstance(settings, Settings):
        raise TypeError(f"settings must be a Settings, not {type(settings).__name__}")
    return Snapshot(config, settings, engine)
