"""Respond mode (call and response): the player plays a phrase and stops; the bridge answers with
a phrase of its own that continues it, on the beat, until the player plays again."""
from __future__ import annotations

import collections
import functools
import math

import numpy as np

from bridge.clock import Clock, step_ns
from bridge.engines import REST, SOPRANO, hold_through_short_rests
from bridge.live.config import BAR_STEPS, BEAT_STEPS, VOICES
from bridge.live.decider import Decider
from bridge.live.player import NOTE_OFF, NOTE_ON, Outlet, ScheduledPlayer
from bridge.live.stats import LiveStats, describe
from bridge.score import Score

# the player's phrase the engine is given: at most this many 16ths before the answer (4 bars)
PRIME_STEPS = 64
# the engine is asked for an answer at least this long before its beat: room for it to work (or
# half again the longest of the last few answers, so that a slow engine still starts on its beat)
FIRST_LEAD_NS = 250_000_000
RECENT_ANSWERS = 8


class RespondMode(ScheduledPlayer):
    """Listens to the player's phrase (its notes on the 16th grid, echoed at once as note mode
    echoes them). When the player has been silent for `respond_after_beats` (every note released),
    or the `respond_cc` controller is pressed (value >= 64), the engine continues the phrase by
    `answer_bars` bars (`Engine.generate`, in the decider's thread): the answer's melody goes out
    on the echo channel and its lower voices on the harmony channels, from the first beat the
    engine can make, at the tempo of the clock. The player's next note stops the answer (its
    notes released at once) and begins a new phrase; one answer per phrase.

    Times are the clock's: the DAW's song position and tempo while it runs, else the internal
    grid through the player's notes. Stats: each answer's time from the trigger to its first note,
    and how late that note was after its beat."""

    mode = "respond"

    def __init__(self, out: Outlet, stats: LiveStats, clock: Clock | None = None,
                 monitor: collections.deque | None = None, decider: Decider | None = None):
        super().__init__(out, stats, clock, monitor)
        self.decider = decider or Decider()
        self.notes: collections.deque = collections.deque()  # [pitch, first step, end step or None, velocity]
        self.sounding: dict[tuple[int, int], list] = {}      # held key -> its entry in notes
        self.silent_since_ns: int | None = None   # every note released since then (None: one is held)
        self.asking = None          # (token, trigger ns, asked ns, start step) of the answer being worked out
        self.answer = None          # (trigger_ns, first note's due ns) of the answer playing, till its first note
        self.answered = False       # this phrase has had its answer (asked for, at least) ...
        self.trigger_ns = 0         # ... once its silence lasted to then (or the footswitch came)
        self._tokens = 0
        self.lead_ns = FIRST_LEAD_NS
        self.answer_times: collections.deque = collections.deque(maxlen=RECENT_ANSWERS)   # asked -> taken, ns

    # ---- the player

    def held_notes(self) -> list[tuple[int, int]]:
        return list(self.echoed)

    def note_on(self, channel: int, pitch: int, velocity: int, step: int, t_ns: int) -> None:
        if self.answered and t_ns < self.trigger_ns:
            # asked ahead of a silence that did not last: no answer yet, and the phrase goes on
            self.asking = self.answer = None
            self.schedule.clear()
            self.answered = False
        elif self.answered:
            self._stop_answer()
            self.notes.clear()
            self.answered = False
        config = self.snapshot.config
        self._echo_on(channel, pitch, velocity, config.echo_channel if config.echo else None)
        self._show(SOPRANO, pitch, velocity)
        for entry in self.sounding.values():   # monophonic: a new note ends the one before (legato)
            if entry[2] is None:
                entry[2] = max(step, entry[1] + 1)
        entry = [pitch, step, None, velocity]
        self.notes.append(entry)
        self.sounding[(channel, pitch)] = entry
        self.silent_since_ns = None
        while len(self.notes) > 1 and self.notes[0][2] is not None and self.notes[0][2] < step - PRIME_STEPS:
            self.notes.popleft()

    def note_off(self, channel: int, pitch: int, t_ns: int) -> None:
        self._echo_off(channel, pitch)
        entry = self.sounding.pop((channel, pitch), None)
        if entry is None:
            return
        self._show(SOPRANO, pitch, 0)
        if entry[2] is None:
            entry[2] = max(self.clock.step_at(t_ns), entry[1] + 1)
        if not self.sounding:
            self.silent_since_ns = t_ns

    def control_change(self, channel: int, number: int, value: int, t_ns: int) -> bool:
        config = self.snapshot.config
        if config.respond_cc is None or number != config.respond_cc:
            return False
        if value >= 64:
            self._trigger(t_ns)
        return True

    # ---- the answer

    def tick(self, now_ns: int) -> None:
        self._take_answer(now_ns)
        due = self._silence_answer()
        if due is not None and now_ns >= due[1]:
            self._ask(due[0], self.silent_since_ns + self._respond_after_ns(), now_ns)
        for _, sent, status in self._send_due(now_ns):
            if status == NOTE_ON and self.answer is not None:
                trigger_ns, first_due = self.answer
                self.stats.add_answer(sent - trigger_ns, sent - first_due)
                self.answer = None

    def next_due_ns(self) -> int | None:
        due = [self.schedule[0][0]] if self.schedule else []
        silence = self._silence_answer()
        if silence is not None:
            due.append(silence[1])
        return min(due) if due else None

    def _respond_after_ns(self) -> int:
        return int(self.snapshot.config.respond_after_beats * BEAT_STEPS * step_ns(self.clock.bpm))

    def _silence_answer(self) -> tuple[int, int] | None:
        """While the player is silent and unanswered: (the step of the answer's beat, when to ask
        the engine for it). The beat is the first once the silence is long enough; the engine is
        asked `lead_ns` before it (the player's next note in between cancels it), so that the
        answer starts on the beat the silence reached."""
        since = self.silent_since_ns
        if since is None or self.answered or not self.notes:
            return None
        beat = self._first_beat_from(since + self._respond_after_ns(), since)
        return beat, self.clock.time_of(beat, since) - self.lead_ns

    def _first_beat_from(self, t_ns: int, now_ns: int) -> int:
        """The song step of the first beat at or after t_ns, on the grid as it stands at now_ns."""
        clock = self.clock
        beat = math.floor(clock.step_at(now_ns) / BEAT_STEPS) * BEAT_STEPS
        while clock.time_of(beat, now_ns) < t_ns:
            beat += BEAT_STEPS
        return beat

    def _trigger(self, t_ns: int) -> None:
        """The footswitch: the answer on the first beat the engine can make."""
        if self.answered or not self.notes:
            return
        self._ask(self._first_beat_from(t_ns + self.lead_ns, t_ns), t_ns, t_ns)

    def _ask(self, start: int, trigger_ns: int, now_ns: int) -> None:
        """Ask the engine for the answer to the phrase so far, to start at song step `start`."""
        self.silent_since_ns = None
        prime = self._prime(start)
        if prime is None:
            return
        score, known = prime
        config = self.snapshot.config
        self._tokens += 1
        self.asking = (self._tokens, trigger_ns, now_ns, start)
        self.answered = True
        self.trigger_ns = trigger_ns
        engine, settings = self.snapshot.engine, self.snapshot.settings
        self.decider.submit(self._tokens, functools.partial(engine.generate, score, known,
                                                            config.answer_bars * BAR_STEPS, settings))

    def _prime(self, start: int) -> tuple[Score, np.ndarray] | None:
        """The player's phrase up to step `start` as the engine's prime: the soprano given, the
        other voices open, every voice silent where the player rested a beat or more. Its meter
        counts bars from the song's start."""
        first = max(self.notes[0][1], start - PRIME_STEPS)
        if first >= start:
            return None
        melody = np.full(start - first, REST, dtype=np.int16)
        onsets = np.zeros(len(melody), dtype=bool)
        for pitch, begin, end, _ in self.notes:
            end = start if end is None else end
            lo, hi = max(begin, first) - first, min(end, start) - first
            if hi > lo:
                melody[lo:hi] = pitch
                onsets[lo] = begin >= first
        pitches = np.full((len(melody), VOICES), REST, dtype=np.int16)
        pitches[:, SOPRANO] = melody
        voice_onsets = np.zeros(pitches.shape, dtype=bool)
        voice_onsets[:, SOPRANO] = onsets
        known = np.zeros(pitches.shape, dtype=bool)
        known[:, SOPRANO] = True
        known[hold_through_short_rests(melody) < 0] = True
        return Score.of(pitches, voice_onsets, held_in=True, meter=(BAR_STEPS, -first)), known

    def _take_answer(self, now_ns: int) -> None:
        """Schedule the answer once the engine has it: each voice's notes on the song's grid."""
        if not self.asking:
            return
        token, trigger_ns, asked_ns, start = self.asking
        result = self.decider.take(token)
        if result is None:
            return
        self.asking = None
        if isinstance(result, Exception):
            self.stats.engine_errors += 1
            self.stats.last_engine_error = describe(result)
            return
        answer = result.steps(len(result) - self.snapshot.config.answer_bars * BAR_STEPS, len(result))
        sounding = np.flatnonzero((answer.pitches >= 0).any(axis=1))
        if not len(sounding):
            return
        # whole beats of silence at its start are dropped: the answer begins on the first beat
        silent_beats = sounding[0] // BEAT_STEPS
        answer = answer.steps(silent_beats * BEAT_STEPS, len(answer))
        clock = self.clock
        while clock.time_of(start, now_ns) < now_ns:   # came later than its beat: the next one
            start += BEAT_STEPS
        config = self.snapshot.config
        channels = (config.echo_channel, *config.channels)
        velocities = [n[3] for n in self.notes]
        velocity = int(round(sum(velocities) / len(velocities))) if velocities else 80
        first_due = None
        for voice in range(VOICES):
            for pitch, lo, hi in answer.note_runs(voice):
                on, off = clock.time_of(start + lo, now_ns), clock.time_of(start + hi, now_ns)
                self._at(on, NOTE_ON, channels[voice], pitch, velocity, voice)
                self._at(off, NOTE_OFF, channels[voice], pitch, 0, voice)
                first_due = on if first_due is None else min(first_due, on)
        if first_due is not None:
            self.answer = (trigger_ns, first_due)
        self.answer_times.append(now_ns - asked_ns)
        self.lead_ns = max(FIRST_LEAD_NS, max(self.answer_times) * 3 // 2)

    def _stop_answer(self) -> None:
        """The player plays again: the answer's notes end now, what is left of it is dropped."""
        if self.schedule:
            self.stats.answers_stopped += 1
        self.asking = None
        self.answer = None
        self.schedule.clear()
        config = self.snapshot.config
        channels = (config.echo_channel, *config.channels)
        for voice, (pitch, held) in sorted(self.showing.items()):
            for _ in range(held):
                self._send_now(NOTE_OFF, channels[voice], pitch, 0, voice)

    def release_all(self, t_ns: int) -> None:
        self.asking = None
        self.answer = None
        self._release_scheduled()
        self.echoed.clear()
        self.sounding.clear()
        for entry in self.notes:
            if entry[2] is None:
                entry[2] = max(self.clock.step_at(t_ns), entry[1] + 1)
        self.silent_since_ns = None

    def forget_history(self) -> None:
        self.notes.clear()
        self.answered = False

    def close(self) -> None:
        self.decider.close()
