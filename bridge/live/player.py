"""What both live modes share: melody events in, the echo and the harmony out.

A player has no thread and no port. The worker hands it each incoming (bytes, t_ns) and calls
`tick(now)` between messages; it plays into an `Outlet`: its source's view of the output's one
record of what sounds (bridge.sounding), so that unisons sound once and `release()` ends exactly
what the live bridge holds.
"""
from __future__ import annotations

import collections
import heapq
import time
from collections.abc import Sequence

from bridge.clock import CLOCK_STATUSES, START, STOP, Clock
from bridge.engines import SOPRANO
from bridge.live.config import Snapshot
from bridge.live.stats import MONITOR_SIZE, LiveStats, MonitorEvent

NOTE_OFF, NOTE_ON, CONTROL_CHANGE = 0x80, 0x90, 0xB0
LIVE_SOURCE = "live"


class Outlet:
    """One source's way into an output's record: `send(bytes) -> bool` (did bytes go out) and
    `release()`. `record` is anything with `send(data, source)` and `release(source)`: the
    bridge's MidiOutput (swapped when the ports are opened again), or a plain Sounding."""

    def __init__(self, record, source: str = LIVE_SOURCE):
        self.record = record
        self.source = source

    def send(self, data: bytes) -> bool:
        return self.record.send(data, self.source)

    def release(self) -> int:
        return self.record.release(self.source)


class Player:
    """Melody events in, melody echo and harmony out through `out`. One thread only.

    The base does what both modes share: the knobs, the clock, filtering the input, the
    statistics and the monitor; a mode says what happens on a melody note-on and note-off, what
    is due when (`tick`, `next_due_ns`), and how to silence everything (`release_all`)."""

    mode = ""

    def __init__(self, out: Outlet, stats: LiveStats, clock: Clock | None = None,
                 monitor: collections.deque | None = None):
        self.out = out
        self.stats = stats
        self.clock = clock or Clock()
        self.monitor = monitor if monitor is not None else collections.deque(maxlen=MONITOR_SIZE)
        self.snapshot: Snapshot | None = None
        # melody key in -> echo key out (channel None: not echoed), for every melody note held
        # (the modes that echo at once: note, respond)
        self.echoed: dict[tuple[int, int], tuple[int | None, int]] = {}
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
        if kind == CONTROL_CHANGE and len(data) == 3 and data[1] < 128 and data[2] < 128:
            if not self.control_change(status & 0x0F, data[1], data[2], t_ns):
                self.stats.ignored += 1
            return
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

    def control_change(self, channel: int, number: int, value: int, t_ns: int) -> bool:
        """A control change on the input; True when the mode acted on it (else it is ignored)."""
        return False

    def _echo_on(self, channel: int, pitch: int, velocity: int, echo_channel: int | None) -> None:
        """The melody note sent on at once (echo_channel None: not sent, only remembered as held)."""
        key = (channel, pitch)
        previous = self.echoed.get(key)
        if previous is not None and previous[0] is not None:  # the same key again, no note-off between
            self.out.send(bytes((NOTE_OFF | previous[0], previous[1], 0)))
        if echo_channel is not None:
            self.out.send(bytes((NOTE_ON | echo_channel, pitch, velocity)))
        self.echoed[key] = (echo_channel, pitch)

    def _echo_off(self, channel: int, pitch: int) -> None:
        """The echo of a melody note ended with it."""
        echo = self.echoed.pop((channel, pitch), None)
        if echo is not None and echo[0] is not None:
            self.out.send(bytes((NOTE_OFF | echo[0], echo[1], 0)))

    def note_off(self, channel: int, pitch: int, t_ns: int) -> None:
        raise NotImplementedError

    def held_notes(self) -> list[tuple[int, int]]:
        """(in channel, pitch) of the melody notes held now (their note-off not yet come)."""
        raise NotImplementedError

    def source_gone(self, t_ns: int) -> None:
        """What sent the melody went away: its held notes will get no note-off, so end them."""
        for channel, pitch in self.held_notes():
            self.note_off(channel, pitch, t_ns)

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
        """Let go of helpers."""

    def _show(self, voice: int, pitch: int, velocity: int) -> None:
        self.monitor.append(MonitorEvent(self.now_ns(), voice, pitch, velocity))


class ScheduledPlayer(Player):
    """A player that sends later what it decides now (phrase mode, respond mode): note messages
    on a heap by due time, sent by `_send_due` from `tick`, each shown in the monitor when sent."""

    def __init__(self, out: Outlet, stats: LiveStats, clock: Clock | None = None,
                 monitor: collections.deque | None = None):
        super().__init__(out, stats, clock, monitor)
        self.schedule: list = []        # heap of (due_ns, seq, status, channel, pitch, velocity, voice)
        self._seq = 0
        # voice -> (pitch, its note-ons not yet ended), as shown in the monitor: one pitch a voice
        self.showing: dict[int, tuple[int, int]] = {}

    def _at(self, due: int, status: int, channel: int | None, pitch: int, velocity: int, voice: int) -> None:
        """Schedule one note message (channel None: shown in the monitor, not sent)."""
        self._seq += 1
        heapq.heappush(self.schedule, (due, self._seq, status, channel, pitch, velocity, voice))

    def _send_due(self, now_ns: int) -> Sequence[tuple[int, int, int]]:
        """Send every message due by now, on time as far as the worker is; -> (due, sent,
        status) of each, sent as perf_counter_ns."""
        schedule = self.schedule
        if not schedule or schedule[0][0] > now_ns:   # the worker asks every tick: nothing made then
            return ()
        sent = []
        while schedule and schedule[0][0] <= now_ns:
            due, _, status, channel, pitch, velocity, voice = heapq.heappop(schedule)
            self._send_now(status, channel, pitch, velocity, voice)
            at = time.perf_counter_ns()
            self.stats.add_timing_error(at - due)
            sent.append((due, at, status))
        return sent

    def _send_now(self, status: int, channel: int | None, pitch: int, velocity: int, voice: int) -> None:
        # Each note keeps the lookahead it began with, so after the tempo rose a note may be due
        # before the one before it in its voice ends: the monitor shows the new one as ending the
        # old (a window draws one pitch a voice), and ends a pitch when its last note-on has ended
        shown = self.showing.get(voice)
        if status == NOTE_ON:
            if shown is not None:
                self._show(voice, shown[0], 0)
            held = shown[1] if shown is not None and shown[0] == pitch else 0
            self.showing[voice] = (pitch, held + 1)
            self._show(voice, pitch, velocity)
        elif shown is not None and shown[0] == pitch:
            if shown[1] > 1:
                self.showing[voice] = (pitch, shown[1] - 1)
            else:
                del self.showing[voice]
                self._show(voice, pitch, 0)
        if channel is None:
            return
        wrote = self.out.send(bytes((status | channel, pitch, velocity)))
        if wrote and status == NOTE_ON and voice != SOPRANO:
            self.stats.harmony_notes_out += 1

    def _release_scheduled(self) -> None:
        """Drop every message not yet sent and end every note this player sounds."""
        self.schedule.clear()
        self.out.release()
        for voice, (pitch, _) in sorted(self.showing.items()):
            self._show(voice, pitch, 0)
        self.showing.clear()
