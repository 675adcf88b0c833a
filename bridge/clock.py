"""Where on the 16th-note grid a melody onset falls: the DAW's MIDI clock, an internal tempo, or none.

Pure logic, no ports: the live loop feeds it the system messages it receives, with their arrival
times (perf_counter_ns), and asks which 16th step a note-on belongs to.

- MIDI clock: 24 clocks per quarter note, so 6 per 16th step. The tempo is the clock interval
  over the last quarter note: the slope of the least-squares line through the last 25 clocks'
  arrivals (every arrival weighs in, so one clock stamped late, a busy sender or a late poll,
  moves it a quarter as much as it would the span between the oldest and newest), clamped to
  20..400 bpm. A clock that comes sooner
  than 400 bpm allows after the one before (a flood, a duplicate) is ignored altogether: it moves
  neither the tempo nor the song position; except the clocks a late one owes: a clock that came
  k intervals after the one before (a sender or a JACK cycle that stalled) may be followed at once
  by k - 1 more, which count. A gap longer than 20 bpm allows (the clock paused) starts the tempo
  estimate afresh; the tempo known before it stands until a quarter note of clocks has come.
- Start (0xFA): song position 0, running; the first clock after it is clock 0. Stop (0xFC):
  stopped, position kept. Continue (0xFB): running from the position kept. Song Position Pointer
  (0xF2 lsb msb): the position in 16ths (MIDI's "MIDI beats", 6 clocks each).
- Modes:
  'midi'     the song position while the transport runs and the clock comes; otherwise (stopped,
             no clock) each onset is the next step, as in 'free': with no grid to go by, no guess.
  'auto'     like 'midi' while the transport runs; otherwise the internal grid, at the tempo the
             DAW's clock last showed (if it ever came) or the configured bpm.
  'internal' a grid at the configured bpm, anchored at the first onset: step = time since then /
             the 16th's duration, rounded (re-anchored when the tempo or the time source changes).
  'free'     every onset is the next step.

Steps may jump back (Start, a Song Position Pointer): a step is a position in the song, not a count.
"""
from __future__ import annotations

import math
from collections import deque

CLOCKS_PER_QUARTER = 24
STEPS_PER_QUARTER = 4
CLOCKS_PER_STEP = CLOCKS_PER_QUARTER // STEPS_PER_QUARTER  # 6
MIN_BPM, MAX_BPM = 20.0, 400.0
NS_PER_MINUTE = 60_000_000_000
# clock intervals outside these bounds are no tempo we follow (see the module docstring)
MIN_CLOCK_INTERVAL_NS = NS_PER_MINUTE / (MAX_BPM * CLOCKS_PER_QUARTER)  # 6.25 ms
MAX_CLOCK_INTERVAL_NS = NS_PER_MINUTE / (MIN_BPM * CLOCKS_PER_QUARTER)  # 125 ms
# clocks in the tempo window: one quarter note's worth of intervals
TEMPO_WINDOW = CLOCKS_PER_QUARTER + 1
# the DAW's clock counts as present while its last clock is at most this old
CLOCK_TIMEOUT_NS = 2 * int(MAX_CLOCK_INTERVAL_NS)

TIMING_CLOCK, START, CONTINUE, STOP, SONG_POSITION = 0xF8, 0xFA, 0xFB, 0xFC, 0xF2
CLOCK_STATUSES = frozenset((TIMING_CLOCK, START, CONTINUE, STOP, SONG_POSITION))
MODES = ("auto", "midi", "internal", "free")


def clamp_bpm(bpm: float) -> float:
    return min(MAX_BPM, max(MIN_BPM, float(bpm)))


def _nearest(x: float) -> int:
    """x rounded half up (round() would round halves to even: 0.5 -> 0 but 1.5 -> 2)."""
    return math.floor(x + 0.5)


def _fitted_interval(arrivals) -> float:
    """The slope, in ns per clock, of the least-squares line through consecutive clocks' arrivals."""
    n = len(arrivals)
    first = arrivals[0]
    middle = (n - 1) / 2
    spread = n * (n * n - 1) / 12   # sum of (k - middle)^2 over k = 0..n-1
    return sum((k - middle) * (t - first) for k, t in enumerate(arrivals)) / spread


def step_ns(bpm: float) -> float:
    """Duration of one 16th note at `bpm`, in ns."""
    return NS_PER_MINUTE / (bpm * STEPS_PER_QUARTER)


class Clock:
    """The live loop's sense of time. Not thread-safe: one thread (the worker) feeds and asks."""

    def __init__(self, mode: str = "auto", bpm: float = 100.0):
        self.configure(mode, bpm)
        self.running = False             # the DAW's transport (Start/Continue .. Stop)
        self._next_clock = 0             # song position, in clocks, of the next clock to come
        self._last_clock_index = None    # song position of the last clock; None: none since Start/SPP
        self._last_clock_ns = None       # arrival of the last clock accepted
        self._tempo_window = deque(maxlen=TEMPO_WINDOW)  # arrival times of the recent clocks
        self._last_interval_ns = None    # between the last two clocks
        self._owed_clocks = 0  # clocks that may still come at once after a late one (see _tick)
        self._midi_interval_ns = None    # the DAW's clock interval, once measured
        self._last_onset = None          # (t_ns, step, source, bpm) of the last onset
        self._anchor = None              # internal grid: (t_ns, step) it is anchored at

    def configure(self, mode: str, bpm: float) -> None:
        """Change mode and internal tempo (the song position and the DAW's tempo are kept)."""
        if mode not in MODES:
            raise ValueError(f"clock mode must be one of {', '.join(MODES)}, not {mode!r}")
        if not MIN_BPM <= bpm <= MAX_BPM:
            raise ValueError(f"bpm must be {MIN_BPM:.0f}..{MAX_BPM:.0f}, not {bpm}")
        self.mode = mode
        self.internal_bpm = float(bpm)

    # ---- what the DAW sends ---------------------------------------------------------------

    def feed(self, message: bytes, t_ns: int) -> int | None:
        """Take one system message; return its status byte when it was a clock message acted on
        (TIMING_CLOCK, START, STOP, CONTINUE, SONG_POSITION), None when it was ignored."""
        if not message:
            return None
        status = message[0]
        if status == TIMING_CLOCK:
            return TIMING_CLOCK if self._tick(t_ns) else None
        if status == START:
            self._move_to(0)
            self.running = True
            return START
        if status == STOP:
            self.running = False
            return STOP
        if status == CONTINUE:
            self.running = True
            return CONTINUE
        if status == SONG_POSITION and len(message) == 3 and message[1] < 0x80 and message[2] < 0x80:
            self._move_to((message[1] | (message[2] << 7)) * CLOCKS_PER_STEP)
            return SONG_POSITION
        return None

    def _tick(self, t_ns: int) -> bool:
        last = self._last_clock_ns
        if last is not None:
            interval = t_ns - last
            if interval < MIN_CLOCK_INTERVAL_NS:
                if self._owed_clocks <= 0:
                    return False  # a flood or a duplicate: neither tempo nor position
                self._owed_clocks -= 1  # the clocks a stalled sender delivers together
            else:
                expected = self._midi_interval_ns
                self._owed_clocks = max(0, round(interval / expected) - 1) if expected else 0
            previous, self._last_interval_ns = self._last_interval_ns, interval
            if (interval > MAX_CLOCK_INTERVAL_NS or interval < MIN_CLOCK_INTERVAL_NS
                    or (previous and not previous / 2 <= interval <= 2 * previous)):
                # the clock paused, came bunched (a stalled sender or JACK cycle delivering what
                # it owed), or jumped: arrival times across it say nothing of one tempo, and in
                # the window a bunch would read as a faster one for a quarter note; measure
                # afresh from here (the tempo known stands until the window is full again)
                self._tempo_window.clear()
        self._last_clock_ns = t_ns
        window = self._tempo_window
        window.append(t_ns)
        # after a pause the tempo known before stands until a quarter note of clocks came: the
        # first few after a Continue may come bunched (owed), and would read as any tempo
        settled = self._midi_interval_ns is None or len(window) == TEMPO_WINDOW
        if settled and len(window) >= 2 and window[-1] > window[0]:
            interval = _fitted_interval(window)
            if interval > 0:
                self._midi_interval_ns = interval
        if self.running:
            self._last_clock_index = self._next_clock
            self._next_clock += 1
        return True

    def _move_to(self, clocks: int) -> None:
        """The next clock is at song position `clocks` (Start, Song Position Pointer)."""
        self._next_clock = clocks
        self._last_clock_index = None

    # ---- what the loop asks ---------------------------------------------------------------

    @property
    def midi_bpm(self) -> float | None:
        """The DAW's tempo from its clock (20..400), or None before two clocks came."""
        if self._midi_interval_ns is None:
            return None
        return clamp_bpm(NS_PER_MINUTE / (self._midi_interval_ns * CLOCKS_PER_QUARTER))

    @property
    def bpm(self) -> float:
        """The tempo in use: the DAW's in 'midi' and 'auto' when its clock came, else the internal one."""
        if self.mode in ("midi", "auto") and self.midi_bpm is not None:
            return self.midi_bpm
        return self.internal_bpm

    @property
    def position_steps(self) -> int:
        """The DAW's song position in 16ths (from Start, Song Position Pointer and clocks): the
        16th of the last clock, or where the next clock will be when none came since Start/SPP."""
        return self._position_clocks() // CLOCKS_PER_STEP

    def _position_clocks(self) -> int:
        last = self._last_clock_index
        return self._next_clock if last is None else last

    def following_midi(self, t_ns: int) -> bool:
        """True when onsets at t_ns are placed by the DAW's song position."""
        return (self.mode in ("midi", "auto") and self.running and self._last_clock_ns is not None
                and t_ns - self._last_clock_ns <= CLOCK_TIMEOUT_NS)

    def step_at(self, t_ns: int) -> int:
        """The 16th step a note-on at t_ns belongs to (rounded to the nearest), without recording it."""
        return self._place(t_ns)[0]

    @property
    def last_onset_source(self) -> str | None:
        """What placed the last onset: 'midi' (the DAW's song position), 'internal' or 'free'."""
        return None if self._last_onset is None else self._last_onset[2]

    def onset(self, t_ns: int) -> int:
        """The step of a melody onset at t_ns, recorded (the free and internal grids count from it)."""
        step, source, bpm = self._place(t_ns)
        if source == "internal" and self._internal_anchor(bpm) is None:
            self._anchor = (t_ns, step)
        self._last_onset = (t_ns, step, source, bpm)
        return step

    def _place(self, t_ns: int) -> tuple[int, str, float]:
        """(step, time source, bpm) for an onset at t_ns."""
        bpm = self.bpm
        if self.following_midi(t_ns):
            return self._midi_step(t_ns), "midi", bpm
        if self.mode in ("free", "midi"):
            last = self._last_onset
            return (0 if last is None else last[1] + 1), "free", bpm
        return self._internal_step(t_ns, bpm), "internal", bpm

    def _midi_step(self, t_ns: int) -> int:
        if self._last_clock_index is None:
            # no clock since Start/SPP yet: the note belongs where the next clock will be
            return self._next_clock // CLOCKS_PER_STEP
        # the time since the last clock, in clocks at the measured tempo (at most one: a later
        # clock would have come already), so a note just before a clock counts toward it
        interval = self._midi_interval_ns or step_ns(self.bpm) / CLOCKS_PER_STEP
        since = min(max((t_ns - self._last_clock_ns) / interval, 0.0), 1.0)
        return _nearest((self._last_clock_index + since) / CLOCKS_PER_STEP)

    def _internal_anchor(self, bpm: float) -> tuple[int, int] | None:
        """The internal grid's anchor, unless the last onset came from another time source or at
        another tempo (1% apart: the DAW's measured tempo wobbles a little from clock to clock)."""
        last = self._last_onset
        if self._anchor is None or last is None or last[2] != "internal" or abs(last[3] - bpm) > 0.01 * bpm:
            return None
        return self._anchor

    def _internal_step(self, t_ns: int, bpm: float) -> int:
        anchor = self._internal_anchor(bpm)
        if anchor is not None:
            anchor_t, anchor_step = anchor
            return anchor_step + _nearest((t_ns - anchor_t) / step_ns(bpm))
        last = self._last_onset
        if last is None:
            return 0
        # a new anchor: carry on from the last onset (at least one step on), at this tempo
        return last[1] + max(1, _nearest((t_ns - last[0]) / step_ns(bpm)))

    def time_of(self, step: int, t_ns: int) -> int:
        """When song step `step` begins (perf_counter_ns), as the grid stands at t_ns: by the DAW's
        clock while it is followed (the line through the recent clocks' arrivals, so one clock
        that came late does not move every beat after it), else by the internal grid through the
        last onset (with no onset yet, step 0 is t_ns), at the tempo in use."""
        bpm = self.bpm
        if self.following_midi(t_ns) and self._last_clock_index is not None:
            interval = self._midi_interval_ns or step_ns(bpm) / CLOCKS_PER_STEP
            window = self._tempo_window   # consecutive clocks, the last one at _last_clock_index
            mean_ns = sum(window) / len(window)
            mean_index = self._last_clock_index - (len(window) - 1) / 2
            return int(mean_ns + (step * CLOCKS_PER_STEP - mean_index) * interval)
        anchor = self._internal_anchor(bpm)
        if anchor is None:
            anchor = (t_ns, 0) if self._last_onset is None else self._last_onset[:2]
        return int(anchor[0] + (step - anchor[1]) * step_ns(bpm))

    def reset_onsets(self) -> None:
        """Forget the onsets (a new take): the internal and free grids start again at step 0."""
        self._last_onset = None
        self._anchor = None
