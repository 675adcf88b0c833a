"""The soak's record and its accounting (bench/bench_soak.py): what jack_midi_dump heard in each
life of the JACK server, read back into answered, lost and excused onsets, latencies, hanging
notes and the releases after the DAW's kills. Pure functions of the record (and of what the
soak sent), so that a run's saved record can be counted again (`bench_soak.py --reaccount`).
How answers are counted is in bench_soak's docstring.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import jackrig  # tests/jackrig.py (bench_soak puts tests/ on the path)

RATE, PERIOD = jackrig.RATE, jackrig.PERIOD
BPM = 160.0
LOOKAHEAD_BEATS = 2.0
DELAY_FRAMES = round(LOOKAHEAD_BEATS * 60.0 / BPM * RATE)   # phrase mode's lookahead, 36,000 frames
# phrase mode: an onset's echo and harmony are looked for this close to its due time, the onset +
# the lookahead (in frames: a JACK cycle that ran late shifts what the bridge, timing by the
# system clock, sends after it)
PHRASE_WINDOW_FRAMES = 150 * RATE // 1000
SLACK_FRAMES = 2 * PERIOD              # a message may land a period or two after another one
MELODY_CHANNEL, HARMONY_CHANNELS, ECHO_CHANNEL, MARK_CHANNEL = 0, (1, 2, 3), 4, 15
BRIDGE_CHANNELS = (*HARMONY_CHANNELS, ECHO_CHANNEL)
# the marks (controllers on MARK_CHANNEL): the value is the knobs' state (see State.code)
MARK_STATE, MARK_BEGIN, MARK_DONE, MARK_KILL = 0x70, 0x71, 0x72, 0x73
NOTE_ON, NOTE_OFF, CC = 0x90, 0x80, 0xB0
STOP, START, CONTINUE, TIMING_CLOCK = 0xFC, 0xFA, 0xFB, 0xF8
CLOCK_FRAMES = round(60.0 / BPM / 24 * RATE)   # 750: jack_midi_clock's clocks are exactly this far apart
KILL_CHECK_S = 1.5                     # after a kill of the DAW, nothing of the bridge's may sound by then ...
KILL_LOOKBACK_S = 1.0                  # ... of what began this long before the kill (phrase mode's lookahead and more)
KILL_AFTER_ONSET_S = 0.015              # the DAW's kill mark follows its note-on (and note mode's answer) by this


# ---------------------------------------------------------------- the knobs

@dataclass
class State:
    """What the marks say about the knobs."""
    mode: str = "note"
    engine: int = 0

    def code(self) -> int:
        return (self.mode == "phrase") | (self.engine << 1)

    @staticmethod
    def from_code(code: int) -> "State":
        return State("phrase" if code & 1 else "note", code >> 1)


# ---------------------------------------------------------------- the record and its accounting

@dataclass
class Life:
    """One life of the JACK server, as jack_midi_dump heard it."""
    start_s: float                        # run time of frame 0 (when the listener started)
    events: list[tuple[int, bytes]]
    ended_by_kill: bool                   # the server was killed (the rest of the record was cut)
    marks_sent: list[tuple[int, int, float]] = field(default_factory=list)   # (controller, value, monotonic)
    index: int = 0
    xruns: list[int] = field(default_factory=list)   # frames (the listener's count) of the server's xruns

    def mark_pairs(self) -> tuple[list[tuple[int, float]], list[tuple[int, int, float]]]:
        """([(frame, monotonic)] of the marks sent and heard, [(controller, value, monotonic)] of
        those sent and not heard: the listener missed the JACK cycle that carried them)."""
        heard = [(f, mark_of(m)) for f, m in self.events if mark_of(m)]
        pairs, missed, j = [], [], 0
        for controller, value, t in self.marks_sent:
            if j < len(heard) and heard[j][1] == (controller, value):
                pairs.append((heard[j][0], t))
                j += 1
            else:
                missed.append((controller, value, t))
        return pairs, missed

    def monotonic_at(self, frame: int) -> float | None:
        """time.monotonic() at `frame`, from the nearest mark (the DAW's ack of each mark is
        within a JACK cycle of its frame): the bridge's monitor stamps on the same clock."""
        pairs = self.mark_pairs()[0]
        if not pairs:
            return None
        mark_frame, mark_time = min(pairs, key=lambda pair: abs(pair[0] - frame))
        return mark_time + (frame - mark_frame) / RATE

    def events_with_all_marks(self) -> list[tuple[int, bytes]]:
        """The record, with the marks the listener missed put back where they were sent (placed
        from the nearest mark it heard)."""
        pairs, missed = self.mark_pairs()
        if not missed or not pairs:
            return self.events
        put_back = []
        for controller, value, t in missed:
            mark_frame, mark_time = min(pairs, key=lambda pair: abs(pair[1] - t))
            put_back.append((mark_frame + round((t - mark_time) * RATE), bytes((CC | MARK_CHANNEL, controller, value))))
        return sorted(self.events + put_back, key=lambda event: event[0])


@dataclass
class Accounting:
    onsets: int = 0
    answered: int = 0
    lost: list[dict] = field(default_factory=list)
    unechoed: list[dict] = field(default_factory=list)   # unanswered and never echoed: see reconcile()
    excused: dict = field(default_factory=dict)
    blind_spots: int = 0                                  # stretches in which the listener missed cycles
    held_over: int = 0                                    # answered by harmony held on from the onset before
    sent: int = 0                                         # onsets the DAW sent (while connected)
    not_taken_in: int = 0                                 # ... that the bridge's notes_in did not count
    by_mode: dict = field(default_factory=lambda: {"note": 0, "phrase": 0, "changing": 0})
    latencies: list[tuple[float, float]] = field(default_factory=list)      # (run time s, ms), note mode
    echo_errors: list[tuple[float, float]] = field(default_factory=list)     # (run time s, ms), phrase mode ...
    harmony_errors: list[tuple[float, float]] = field(default_factory=list)  # ... its echo's and harmony's, from due
    hanging_end: dict = field(default_factory=dict)
    hanging_unverifiable: dict = field(default_factory=dict)


def _is_on(m: bytes) -> bool:
    return len(m) == 3 and m[0] & 0xF0 == NOTE_ON and m[2] > 0


def _is_off(m: bytes) -> bool:
    return len(m) == 3 and (m[0] & 0xF0 == NOTE_OFF or (m[0] & 0xF0 == NOTE_ON and m[2] == 0))


def _channel(m: bytes) -> int:
    return m[0] & 0x0F


def mark_of(m: bytes) -> tuple[int, int] | None:
    """(controller, value) of one of the soak's marks; None for any other message."""
    if len(m) == 3 and m[0] == CC | MARK_CHANNEL:
        return m[1], m[2]
    return None


class Timeline:
    """The knobs' state at any frame of one life, from its marks, and the release-worthy events."""

    def __init__(self, events: list[tuple[int, bytes]]):
        self.frames, self.states, self.changing = [], [], []   # from frame on: state, in a change
        self.releases: list[int] = []   # frames of release-worthy events: mode/engine change, Stop, Start
        state = State()
        last_clock = None
        for frame, m in events:
            mark = mark_of(m)
            if mark is not None:
                kind, value = mark
                if kind == MARK_STATE or kind == MARK_DONE:
                    state = State.from_code(value)
                    self._add(frame + (SLACK_FRAMES if kind == MARK_DONE else 0), state, False)
                    if kind == MARK_DONE:   # the worker takes the new knobs by then, releasing
                        self.releases.append(frame + SLACK_FRAMES)
                elif kind == MARK_BEGIN:
                    self._add(frame - SLACK_FRAMES, state, True)
            elif m and m[0] in (STOP, START):
                self.releases.append(frame)
            elif m and m[0] == CONTINUE:
                if last_clock is not None:
                    # a Continue follows a Stop, which came after the last clock: jack_midi_clock
                    # sends its own Stop with each Continue, so the one that stopped the
                    # transport may be one the listener missed
                    self.releases.append(last_clock + CLOCK_FRAMES)
            elif m and m[0] == TIMING_CLOCK:
                last_clock = frame
        self.releases.sort()

    def _add(self, frame: int, state: State, changing: bool) -> None:
        self.frames.append(frame)
        self.states.append(state)
        self.changing.append(changing)

    def at(self, frame: int) -> tuple[State, bool]:
        k = bisect.bisect_right(self.frames, frame) - 1
        return (State(), False) if k < 0 else (self.states[k], self.changing[k])

    def release_between(self, lo: int, hi: int) -> bool:
        return self.next_release(lo) <= hi

    def next_release(self, frame: int) -> int | float:
        """The frame of the first release-worthy event at or after `frame` (inf: none)."""
        k = bisect.bisect_left(self.releases, frame)
        return self.releases[k] if k < len(self.releases) else float("inf")


def _harmony_sounding(events: list[tuple[int, bytes]]):
    """A function of a frame: does any harmony note sound then (every event up to it applied)?"""
    frames, counts = [], []
    on: dict[tuple[int, int], int] = {}
    total = 0
    for frame, m in events:
        if len(m) != 3 or _channel(m) not in HARMONY_CHANNELS or m[0] & 0xE0 != NOTE_OFF:
            continue
        key = (_channel(m), m[1])
        if _is_on(m):
            on[key] = on.get(key, 0) + 1
            total += 1
        elif on.get(key, 0) > 0:
            on[key] -= 1
            total -= 1
        if frames and frames[-1] == frame:
            counts[-1] = total
        else:
            frames.append(frame)
            counts.append(total)

    def at(frame: int) -> bool:
        k = bisect.bisect_right(frames, frame) - 1
        return k >= 0 and counts[k] > 0
    return at


def blind_spots(events: list[tuple[int, bytes]]) -> list[tuple[int, int]]:
    """Where the listener (jack_midi_dump) missed JACK cycles: its frame count advances only by the
    cycles it ran, and jack_midi_clock's clocks are exactly CLOCK_FRAMES apart while the transport
    rolls, so two clocks closer or further apart than that (with no Start, Stop or Continue
    between) have a cycle the listener missed between them (or one the clock missed). [(from, to)]."""
    spots, previous = [], None
    for frame, m in events:
        if not m or m[0] in (START, STOP, CONTINUE):
            previous = None
        elif m[0] == TIMING_CLOCK:
            if previous is not None and frame - previous != CLOCK_FRAMES:
                spots.append((previous, frame))
            previous = frame
    return spots


def account_life(life: Life, acc: Accounting) -> None:
    """Add one life's onsets to `acc` (see the module docstring for the rules)."""
    events = life.events
    timeline = Timeline(life.events_with_all_marks())
    spots = blind_spots(events)
    acc.blind_spots += len(spots)
    spot_starts = [a for a, _ in spots]

    def blind(lo: int, hi: int) -> bool:
        k = bisect.bisect_right(spot_starts, hi) - 1
        return k >= 0 and spots[k][1] >= lo
    onsets = [k for k, (_, m) in enumerate(events) if _is_on(m) and _channel(m) == MELODY_CHANNEL]
    harmony_ons = [k for k, (_, m) in enumerate(events) if _is_on(m) and _channel(m) in HARMONY_CHANNELS]
    # phrase mode's answers are told apart by velocity (the bridge plays the echo and the harmony
    # with the melody note's; the DAW's velocities go round 5 values, so the next onset with the
    # same one is 5 16ths away), the echo by its pitch too
    echoes: dict[tuple[int, int], list[int]] = {}
    strikes: dict[int, list[int]] = {}   # velocity -> frames of harmony strikes (a chord's note-ons)
    for k in harmony_ons:
        frame, m = events[k]
        chords = strikes.setdefault(m[2], [])
        if not chords or frame - chords[-1] > SLACK_FRAMES:
            chords.append(frame)
    for frame, m in events:
        if _is_on(m) and _channel(m) == ECHO_CHANNEL:
            echoes.setdefault((m[1], m[2]), []).append(frame)
    last_frame = events[-1][0] if events else 0

    sounding = _harmony_sounding(events)

    def note_answer(n: int) -> int | None:
        """Frame of the first harmony note-on after onset n, before the next onset. A DAW that
        stalled sends a burst of onsets at once: then the i-th of the burst is answered by the
        i-th harmony strike (note-ons a cycle or two apart are one chord) before the onset after it."""
        first = last = n
        while first > 0 and events[onsets[n]][0] - events[onsets[first - 1]][0] <= SLACK_FRAMES:
            first -= 1
        while last + 1 < len(onsets) and events[onsets[last + 1]][0] - events[onsets[n]][0] <= SLACK_FRAMES:
            last += 1
        k = onsets[first]
        end = onsets[last + 1] if last + 1 < len(onsets) else len(events)
        j = bisect.bisect_right(harmony_ons, k)
        chords = []
        while j < len(harmony_ons) and harmony_ons[j] < end and len(chords) <= n - first:
            frame = events[harmony_ons[j]][0]
            if not chords or frame - chords[-1] > SLACK_FRAMES:
                chords.append(frame)
            j += 1
        return chords[n - first] if len(chords) > n - first else None

    def near(frames: list[int], lo: int, hi: int, target: int) -> int | None:
        j = bisect.bisect_left(frames, lo)
        found = [f for f in frames[j:j + 3] if f <= hi]
        return min(found, key=lambda f: abs(f - target)) if found else None

    def echoed(frame: int, pitch: int, velocity: int, mode: str) -> bool:
        """Did the bridge echo the onset at all (so it took it in)?"""
        lo, hi = ((frame, frame + RATE // 20) if mode == "note" else
                  (frame + DELAY_FRAMES - PHRASE_WINDOW_FRAMES, frame + DELAY_FRAMES + PHRASE_WINDOW_FRAMES))
        return near(echoes.get((pitch, velocity), []), lo, hi, lo) is not None

    def phrase_answer(frame: int, pitch: int, velocity: int) -> tuple[int, int] | None:
        """(echo, harmony strike) frames - due for the onset at `frame`, or None when either is
        missing: the echo (its pitch and velocity) and the strike (its velocity) nearest to its
        due time, within PHRASE_WINDOW_FRAMES of it (in frames, a JACK cycle that ran late
        shifts what the bridge, timing by the system clock, sends after it) and before the next
        release-worthy event (what that dropped never came: what comes after it belongs to the
        knobs after it)."""
        due = frame + DELAY_FRAMES
        lo = due - PHRASE_WINDOW_FRAMES
        hi = min(due + PHRASE_WINDOW_FRAMES, timeline.next_release(frame - SLACK_FRAMES))
        echo = near(echoes.get((pitch, velocity), []), lo, hi, due)
        if echo is None:
            return None
        strike = near(strikes.get(velocity, []), lo, hi, due)
        if strike is None:
            # a voice that keeps its pitch is held, not struck again: when the melody's note-off
            # between two notes is missed, the harmony under the first sounds on under the second
            if not sounding(echo + SLACK_FRAMES):
                return None
            acc.held_over += 1
            return echo - due, echo - due
        return echo - due, strike - due

    for n, k in enumerate(onsets):
        frame, m = events[k]
        run_s = life.start_s + frame / RATE
        state, changing = timeline.at(frame)
        acc.onsets += 1
        acc.by_mode["changing" if changing else state.mode] += 1
        # during a change, the echo says which mode took the onset
        mode = ("note" if echoed(frame, m[1], m[2], "note") else "phrase") if changing else state.mode
        now = note_answer(n) if mode == "note" else None
        later = phrase_answer(frame, m[1], m[2]) if mode == "phrase" else None
        if now is not None:
            acc.answered += 1
            acc.latencies.append((run_s, (now - frame) * 1000 / RATE))
            continue
        if mode == "note" and sounding(frame + SLACK_FRAMES):
            acc.answered += 1   # held over (see phrase_answer), no latency to take
            acc.held_over += 1
            continue
        if later is not None:
            acc.answered += 1
            acc.echo_errors.append((run_s, later[0] * 1000 / RATE))
            acc.harmony_errors.append((run_s, later[1] * 1000 / RATE))
            continue
        next_onset = events[onsets[n + 1]][0] if n + 1 < len(onsets) else last_frame
        due_end = frame + DELAY_FRAMES + PHRASE_WINDOW_FRAMES if mode != "note" else next_onset
        if mode != "note" and timeline.release_between(frame - SLACK_FRAMES, due_end):
            reason = "dropped by a knob change or Stop in phrase mode (by design)"
        elif life.ended_by_kill and due_end >= last_frame - RATE // 20:
            reason = "cut off by the server's death"
        elif blind(frame - SLACK_FRAMES, due_end):
            reason = "unverifiable: the listener missed a JACK cycle meanwhile"
        else:
            lost = {"run_s": round(run_s, 3), "frame": frame, "pitch": m[1], "mode": mode, "engine": state.engine,
                    "life": life.index, "echoed": echoed(frame, m[1], m[2], mode), "due_end": due_end}
            (acc.lost if lost["echoed"] else acc.unechoed).append(lost)
            continue
        acc.excused[reason] = acc.excused.get(reason, 0) + 1


def reconcile(acc: Accounting, sent: int, taken_in: int) -> None:
    """The unanswered onsets the bridge never echoed either: as many as the DAW sent and the
    bridge's notes_in did not count never reached it (its input client missed that JACK cycle:
    the machine's doing, reported apart); any beyond that are LOST."""
    acc.sent, acc.not_taken_in = sent, max(0, sent - taken_in)
    explained = min(acc.not_taken_in, len(acc.unechoed))
    if explained:
        acc.excused["never reached the bridge (its input missed a JACK cycle)"] = explained
    for lost in acc.unechoed[explained:]:   # which of them is moot: the count is what matters
        lost["why"] = "neither echo nor harmony, beyond what the bridge's input missed"
        acc.lost.append(lost)


def why_lost(life: Life, lost: dict, bare: list[tuple[float, int]]) -> str:
    """'bare': the bridge itself played that onset with no harmony (its monitor says so, within
    80 ms of when it would have sounded); else 'lost on the way out'."""
    at = life.monotonic_at(lost["frame"])
    if at is None:
        return "unknown (no marks to place it)"
    if lost["mode"] == "phrase":
        at += DELAY_FRAMES / RATE
    if any(pitch == lost["pitch"] and abs(t - at) <= 0.08 for t, pitch in bare):
        return "bare: the bridge itself sent no harmony for it (its monitor shows none)"
    return "lost on the way out"


def excuse_at_xruns(lives: list[Life], acc: Accounting) -> None:
    """Of the lost onsets, those the bridge did not play bare with an xrun reported between the
    onset and when its answer was due: a client late for its cycle loses what it had to send
    then (the bridge's output, or its input: then neither echo nor harmony comes), JACK's doing
    (jackd's log names the late clients); they are excused, counted apart."""
    kept = []
    for lost in acc.lost:
        if not lost["why"].startswith("bare") and jackrig.xrun_between(lives[lost["life"]].xruns, lost["frame"],
                                                                       lost["due_end"]):
            reason = "lost in a span JACK reported an xrun in (a late client's events are JACK's to lose)"
            acc.excused[reason] = acc.excused.get(reason, 0) + 1
        else:
            kept.append(lost)
    acc.lost[:] = kept


def bridge_view(monitor: list, killed_at: float) -> dict:
    """A kill of the DAW as the bridge itself saw it, from its monitor's notes [(t_ns, voice,
    pitch, velocity)] since a while before the kill (`killed_at`, time.monotonic() seconds): what
    it sounded then, when it had ended all of it, and what it still sounded KILL_CHECK_S later."""
    kill_ns, check_ns = killed_at * 1e9, (killed_at + KILL_CHECK_S) * 1e9
    sounding: dict[tuple[int, int], int] = {}
    at_kill, ended_ns = None, None
    for t_ns, voice, pitch, velocity in sorted(monitor):
        if t_ns > check_ns:
            break
        if at_kill is None and t_ns >= kill_ns:
            at_kill = sum(sounding.values())
        key = (voice, pitch)
        if velocity:
            sounding[key] = sounding.get(key, 0) + 1
        elif sounding.get(key):
            sounding[key] -= 1
            if t_ns >= kill_ns and not any(sounding.values()):
                ended_ns = t_ns
    still = sorted(f"{'SATB'[voice]}:{pitch}" for (voice, pitch), n in sounding.items() if n)
    return {"sounding_at_kill": at_kill if at_kill is not None else sum(sounding.values()),
            "all_ended_s": None if ended_ns is None or still else round(ended_ns / 1e9 - killed_at, 3),
            "still_sounding": still}


def hanging_at_end(events: list[tuple[int, bytes]]) -> tuple[dict, dict]:
    """(hanging, unverifiable): note-ons with no note-off in the record; a note of the DAW's (it
    ends every note) or one with a cycle the listener missed between it and the key's next
    note-on (or the end) may have had its note-off missed by the listener: those are
    unverifiable. An All Notes Off (CC 123) or All Sound Off (CC 120) ends its channel's notes."""
    spots = blind_spots(events)

    def missed_between(first: int, last: int) -> bool:
        return any(first <= b and a <= last for a, b in spots)

    sounding: dict = {}      # key -> frames of its note-ons not ended yet, oldest first
    unverifiable: dict = {}
    for frame, m in events:
        if len(m) == 3 and m[0] & 0xF0 == 0xB0 and m[1] in (120, 123):
            sounding = {key: ons for key, ons in sounding.items() if key[0] != m[0] & 0x0F}
        elif _is_on(m):
            key = (_channel(m), m[1])
            ons = sounding.setdefault(key, [])
            if ons and missed_between(ons[-1], frame):    # the earlier note's end may be in the gap
                unverifiable[key] = unverifiable.get(key, 0) + 1
                ons.pop()
            ons.append(frame)
        elif _is_off(m) and sounding.get((_channel(m), m[1])):
            sounding[(_channel(m), m[1])].pop(0)
    end = events[-1][0] if events else 0
    hanging = {}
    for key, ons in sounding.items():
        for frame in ons:
            if key[0] == MELODY_CHANNEL or missed_between(frame, end):
                unverifiable[key] = unverifiable.get(key, 0) + 1
            else:
                hanging[key] = hanging.get(key, 0) + 1
    return hanging, unverifiable


def bridge_hanging(events, channels=BRIDGE_CHANNELS) -> dict:
    """{(channel, pitch): count} of the bridge's note-ons with no note-off in `events`."""
    return {key: n for key, n in jackrig.hanging([m for _, m in events]).items() if key[0] in channels}


def kill_check(events: list[tuple[int, bytes]], since: int = 0) -> dict:
    """After the DAW's kill (its last MARK_KILL in `events`): was its note held, what of the
    bridge's sounded then, when did the last of it end, and what still sounds at the end. Only
    notes begun from KILL_LOOKBACK_S before the kill count (and none before frame `since`: what
    an earlier kill left sounding was reported then): what sounds for the note held at the kill,
    or for the notes before it whose answers phrase mode still had to play."""
    kill_frame = max((f for f, m in events if f >= since and mark_of(m) and mark_of(m)[0] == MARK_KILL), default=None)
    estimated = kill_frame is None
    if estimated:   # the mark was lost (a cycle the listener or the dying DAW missed): the DAW's
        # last onset, which the kill follows by KILL_AFTER_ONSET_S
        onsets = [f for f, m in events if f >= since and _is_on(m) and _channel(m) == MELODY_CHANNEL]
        if not onsets:
            return {"error": "neither the kill's mark nor the DAW's last onset is in the record"}
        kill_frame = onsets[-1] + round(KILL_AFTER_ONSET_S * RATE)
    since = max(since, kill_frame - round(KILL_LOOKBACK_S * RATE))
    events = [(f, m) for f, m in events if f >= since]
    kill_at = next((k for k, (f, _) in enumerate(events) if f >= kill_frame), len(events))
    before = [m for _, m in events[:kill_at]]
    melody_held = {key: n for key, n in jackrig.hanging(before).items() if key[0] == MELODY_CHANNEL}
    sounding_then = bridge_hanging(events[:kill_at])
    offs = [f for f, m in events[kill_at:] if _is_off(m) and _channel(m) in BRIDGE_CHANNELS]
    # JACK may drop a cycle while it removes the dead DAW: a note-off in it the listener missed
    # too (a gap in the clock says so) is unverifiable here, and the bridge's own view decides
    hanging, unverifiable = hanging_at_end(events)

    def named(found: dict) -> dict:
        return {f"{c + 1}:{p}": n for (c, p), n in found.items() if c in BRIDGE_CHANNELS}
    return {"kill_frame": kill_frame, "kill_frame_estimated": estimated,
            "melody_note_held": bool(melody_held),
            "bridge_notes_sounding_at_kill": sum(sounding_then.values()),
            "release_s": round((max(offs) - kill_frame) / RATE, 3) if offs else None,
            "hanging_after": named(hanging), "unverifiable_after": named(unverifiable)}
