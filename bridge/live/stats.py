"""What the live bridge reports: counters and latencies (`LiveStats`, read as a consistent
`StatsSnapshot`), and the notes as they sound (`MonitorEvent`, what a window draws)."""
from __future__ import annotations

import collections
import threading
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

# latencies (and phrase timing errors) kept for the percentiles
LATENCY_WINDOW = 512
# what the window is sent, at most this many notes behind
MONITOR_SIZE = 4096


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
    answers: int
    answers_stopped: int
    p50_answer_ms: float | None
    p99_answer_ms: float | None
    p99_answer_lateness_ms: float | None
    bpm: float
    clock_running: bool
    clock_source: str
    position_steps: int | None
    port_problem: str | None
    ports_reopened: int
    controls_in: int
    last_control: int | str | None
    knob_turns: int

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
    answers: int = 0                # respond mode: answers begun ...
    answers_stopped: int = 0        # ... and stopped by the player's next note before their end
    bpm: float = 0.0
    clock_running: bool = False
    clock_source: str = "internal"  # what places the notes: 'midi', 'internal' or 'free'
    position_steps: int | None = None  # the step of the last onset
    port_problem: str | None = None    # a port that went away, while it is away
    ports_reopened: int = 0            # times the ports were opened again (the JACK server came back)
    controls_in: int = 0               # control and program changes received (what MIDI learn waits for) ...
    last_control: int | str | None = None   # ... the last one's controller, or bridge.live.learn.PROGRAM
    knob_turns: int = 0                # knobs moved by a bound controller
    _latencies: collections.deque = field(default_factory=lambda: collections.deque(maxlen=LATENCY_WINDOW))
    _timing: collections.deque = field(default_factory=lambda: collections.deque(maxlen=LATENCY_WINDOW))
    _answer_times: collections.deque = field(default_factory=lambda: collections.deque(maxlen=LATENCY_WINDOW))
    _answer_lateness: collections.deque = field(default_factory=lambda: collections.deque(maxlen=LATENCY_WINDOW))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add_latency(self, ns: int) -> None:
        with self._lock:
            self.last_latency_ns = ns
            self._latencies.append(ns)

    def add_timing_error(self, ns: int) -> None:
        with self._lock:
            self._timing.append(ns)

    def add_answer(self, from_trigger_ns: int, after_beat_ns: int) -> None:
        with self._lock:
            self.answers += 1
            self._answer_times.append(from_trigger_ns)
            self._answer_lateness.append(after_beat_ns)

    def answer_times_ms(self) -> tuple[list[float], list[float]]:
        """(trigger -> first answer note, first answer note - its beat), ms, the recent answers."""
        with self._lock:
            return [ns / 1e6 for ns in self._answer_times], [ns / 1e6 for ns in self._answer_lateness]

    def latencies_ms(self) -> list[float]:
        with self._lock:
            return [ns / 1e6 for ns in self._latencies]

    def timing_errors_ms(self) -> list[float]:
        with self._lock:
            return [ns / 1e6 for ns in self._timing]

    def snapshot(self) -> StatsSnapshot:
        recent = sorted(self.latencies_ms())
        answer_times, answer_lateness = (sorted(values) for values in self.answer_times_ms())
        return StatsSnapshot(
            notes_in=self.notes_in, harmony_notes_out=self.harmony_notes_out,
            engine_errors=self.engine_errors, last_engine_error=self.last_engine_error,
            event_errors=self.event_errors, last_event_error=self.last_event_error, ignored=self.ignored,
            last_latency_ms=None if self.last_latency_ns is None else self.last_latency_ns / 1e6,
            p50_latency_ms=_percentile(recent, 50), p99_latency_ms=_percentile(recent, 99),
            latencies=len(recent), speculation_lookups=self.speculation_lookups,
            speculation_hits=self.speculation_hits, speculation_errors=self.speculation_errors,
            p99_phrase_timing_ms=_percentile(sorted(self.timing_errors_ms()), 99),
            answers=self.answers, answers_stopped=self.answers_stopped,
            p50_answer_ms=_percentile(answer_times, 50), p99_answer_ms=_percentile(answer_times, 99),
            p99_answer_lateness_ms=_percentile(answer_lateness, 99),
            bpm=self.bpm, clock_running=self.clock_running, clock_source=self.clock_source,
            position_steps=self.position_steps, port_problem=self.port_problem,
            ports_reopened=self.ports_reopened, controls_in=self.controls_in, last_control=self.last_control,
            knob_turns=self.knob_turns)


def _percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return None
    rank = max(1, int(np.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
