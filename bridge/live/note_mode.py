"""Note mode: each melody onset answered at once with the present step's alto, tenor and bass."""
from __future__ import annotations

import collections
import time

from bridge.clock import Clock
from bridge.engines import REST, SOPRANO
from bridge.live.config import VOICES, Snapshot
from bridge.live.context import Asker, Context, past_steps_for
from bridge.live.player import NOTE_OFF, NOTE_ON, Outlet, Player
from bridge.live.stats import LiveStats, describe

# speculation: the rhythms (gaps to the next onset) tried for each likely pitch
SPECULATED_GAPS = 2
_SILENT = (REST,) * (VOICES - 1)
# how often the speculator's answers are read between notes
COLLECT_EVERY_NS = 2_000_000


class NoteMode(Player):
    """The engine fills in the present step's alto, tenor and bass given the recent past
    (`Context`) and the new soprano, with the future unknown; they sound until the next onset or
    the melody's note-off. A `speculator` (see bridge.live.speculation), when given, works out the
    answers to the likeliest next notes between notes, so that most onsets are a lookup."""

    mode = "note"

    def __init__(self, out: Outlet, stats: LiveStats, clock: Clock | None = None,
                 monitor: collections.deque | None = None, speculator=None):
        super().__init__(out, stats, clock, monitor)
        self.speculator = speculator
        self.context = Context(0)
        self.asker = Asker()                 # the engine, asked note after note
        self.melody = None                   # (in channel, pitch) of the note the harmony belongs to
        self.voices = list(_SILENT)          # the pitch each harmony voice sounds (-1: silent) ...
        self.voice_channels = (0, 0, 0)      # ... on these channels
        self.onset_steps: collections.deque = collections.deque(maxlen=9)  # for the rhythm guesses
        self._collect_due_ns = 0

    def apply(self, new: Snapshot, t_ns: int) -> None:
        super().apply(new, t_ns)
        past = past_steps_for(new)
        if past != self.context.past:
            self.context = self.context.resized(past)

    def forget_history(self) -> None:
        self.context.reset()
        self.asker.reset()
        self.onset_steps.clear()

    def held_notes(self) -> list[tuple[int, int]]:
        return list(self.echoed)

    def note_on(self, channel: int, pitch: int, velocity: int, step: int, t_ns: int) -> None:
        config = self.snapshot.config
        self._echo_on(channel, pitch, velocity, config.echo_channel if config.echo else None)
        self._show(SOPRANO, pitch, velocity)
        # monophonic: a note-on while another is held replaces it (legato)
        self.melody = (channel, pitch)
        self.context.onset(step, pitch)
        self.onset_steps.append(step)
        self._sound(self._answer(), velocity, config.channels, t_ns)
        if self.speculator is not None and self.snapshot.speculating:
            self.speculator.speculate(self.snapshot, self.context, self.rhythm_guesses())

    def note_off(self, channel: int, pitch: int, t_ns: int) -> None:
        key = (channel, pitch)
        self._echo_off(channel, pitch)
        if key == self.melody:
            self._show(SOPRANO, pitch, 0)
            self._sound(None, 0, self.voice_channels, t_ns)
            self.context.release(self.clock.step_at(t_ns))
            self.melody = None

    def tick(self, now_ns: int) -> None:
        if self.speculator is not None and now_ns >= self._collect_due_ns:
            self._collect_due_ns = now_ns + COLLECT_EVERY_NS
            self.speculator.collect()  # between notes: the next lookup then finds it all read

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

    def _answer(self):
        """The present step's alto, tenor, bass (MIDI pitches, -1 = silent): the speculator's when
        it worked this window out already, else the engine's; None when the engine failed (this
        note is then pass-through)."""
        roll, known = self.context.window()
        speculator = self.speculator
        if speculator is not None and self.snapshot.speculating:
            self.stats.speculation_lookups += 1
            found = speculator.lookup(self.snapshot, roll)
            if found is not None:
                self.stats.speculation_hits += 1
                return found
        try:
            return self.asker.present(self.snapshot, roll, known, self.context.step)
        except Exception as error:  # any engine failure: pass-through for this note, and go on
            self.stats.engine_errors += 1
            self.stats.last_engine_error = describe(error)
            return None

    def _sound(self, harmony, velocity: int, channels: tuple[int, ...], t_ns: int) -> None:
        """Make `harmony` (None: silence) what the three voices sound: note-offs for the voices
        that change, then note-ons; a voice that keeps its pitch is held, not struck again."""
        new = _SILENT if harmony is None else tuple(int(p) for p in harmony)
        if harmony is not None:
            self.context.set_harmony(*new)
        old, old_channels = self.voices, self.voice_channels
        send = self.out.send
        for voice in range(VOICES - 1):
            if old[voice] >= 0 and (old[voice] != new[voice] or old_channels[voice] != channels[voice]):
                send(bytes((NOTE_OFF | old_channels[voice], old[voice], 0)))
        first_on = True
        for voice in range(VOICES - 1):
            if new[voice] >= 0 and (old[voice] != new[voice] or old_channels[voice] != channels[voice]):
                if send(bytes((NOTE_ON | channels[voice], new[voice], velocity))) and first_on:
                    self.stats.add_latency(time.perf_counter_ns() - t_ns)
                    first_on = False
                self.stats.harmony_notes_out += 1
        for voice, (before, after) in enumerate(zip(old, new), start=1):
            if before != after:
                if before >= 0:
                    self._show(voice, before, 0)
                if after >= 0:
                    self._show(voice, after, velocity)
        self.voices, self.voice_channels = list(new), tuple(channels)

    def release_all(self, t_ns: int) -> None:
        """Note-offs for every note sounding: the harmony and the melody's echo."""
        self._sound(None, 0, self.voice_channels, t_ns)
        self.echoed.clear()
        self.out.release()
        if self.melody is not None:
            self._show(SOPRANO, self.melody[1], 0)
            self.context.release(self.clock.step_at(t_ns))
            self.melody = None
        if self.speculator is not None:
            self.speculator.cancel()

    def close(self) -> None:
        if self.speculator is not None:
            self.speculator.close()
