"""Phrase mode, speculation, switching modes and re-connecting ports: first the players on their
own (simulated time, no ports), then through real ports on a real JACK server (dummy driver),
with a real (tiny, freshly trained) Coconet as the engine."""
from __future__ import annotations

import time

import numpy as np
import pytest

from bridge.clock import NS_PER_MINUTE
from bridge.engines import REST, SOPRANO, load_engine
from bridge.engines.coconet import CoconetEngine
from bridge.live import LIVE_SETTINGS, Bridge, LiveConfig, LiveStats, NoteMode, Outlet, PhraseMode, Snapshot
from bridge.live.speculation import Speculator
from bridge.score import COMMON_TIME
from bridge.sounding import Sounding
from test_live import (ECHO_CHANNEL, HARMONY_CHANNELS, MELODY, NOTE_OFF, NOTE_ON, STOP, Broken, connect,
                       harmony_ons, is_note_on, settle, unreleased)
from test_ports import wait_for

BPM = 120.0
STEP_NS = NS_PER_MINUTE // (4 * int(BPM))          # a 16th at 120 bpm: 125 ms
PHRASE_SETTINGS = LIVE_SETTINGS.replace(steps=4)   # the tiny model needs no more to be tested


@pytest.fixture(scope="module")
def engine(tiny_model):
    return load_engine(tiny_model, threads=1)


# ------------------------------------------------------------- phrase mode, simulated time

class Recorder:
    """A send() that stamps each message with the simulated time it went out."""

    def __init__(self):
        self.now = 0
        self.sent: list[tuple[int, bytes]] = []

    def __call__(self, data: bytes) -> None:
        self.sent.append((self.now, data))

    def messages(self):
        return [m for _, m in self.sent]


def phrase_player(engine, lookahead=1.0, clock="internal", settings=PHRASE_SETTINGS, **config):
    recorder = Recorder()
    player = PhraseMode(Outlet(Sounding(recorder)), LiveStats())
    player.apply(Snapshot(LiveConfig(mode="phrase", lookahead_beats=lookahead, clock=clock, bpm=BPM, **config),
                          settings, engine), 0)
    return player, recorder


def run_until(player, recorder, end_ns, events=(), tick_ns=1_000_000):
    """Feed (t_ns, bytes) events at their times and tick every millisecond until end_ns."""
    pending = sorted(events)
    t = recorder.now
    while t <= end_ns:
        while pending and pending[0][0] <= t:
            at, data = pending.pop(0)
            recorder.now = at
            player.handle(data, at)
        recorder.now = t
        player.tick(t)
        t += tick_ns


def melody_events(pitches, start_ns=STEP_NS, steps_each=2, legato=False):
    """8th notes (at 120 bpm) from start_ns, each released a 16th later (or at the next onset)."""
    events = []
    for k, pitch in enumerate(pitches):
        on = start_ns + k * steps_each * STEP_NS
        off = on + (steps_each * STEP_NS - 1 if legato else STEP_NS)
        events += [(on, bytes([NOTE_ON, pitch, 80])), (off, bytes([NOTE_OFF, pitch, 0]))]
    return events


def test_phrase_mode_plays_everything_exactly_one_lookahead_later(engine):
    player, recorder = phrase_player(engine, lookahead=1.0)   # a beat: 500 ms at 120 bpm
    delay = NS_PER_MINUTE // int(BPM)
    events = melody_events(MELODY)
    run_until(player, recorder, events[-1][0] + 2 * delay, events)
    echoes = [(t, m) for t, m in recorder.sent if m[0] & 0x0F == ECHO_CHANNEL]
    assert [m for _, m in echoes] == [m for _, m in events]   # channel 1 in, echoed on channel 1
    for (t_out, _), (t_in, _) in zip(echoes, events):
        assert t_out - t_in == delay  # ticks every ms, and the events fall on whole ms
    harmony = [(t, m) for t, m in recorder.sent if is_note_on(m) and m[0] & 0x0F != ECHO_CHANNEL]
    assert harmony and {m[0] & 0x0F for _, m in harmony} == set(HARMONY_CHANNELS)
    # on the grid, one delay late, and only while the melody sounds (as heard: the echo)
    sounding = [(on + delay, off + delay) for (on, _), (off, _) in zip(events[::2], events[1::2])]
    for t, _ in harmony:
        assert (t - delay) % STEP_NS == 0
        assert any(on <= t < off for on, off in sounding), t
    assert unreleased(recorder.messages()) == {}
    assert player.stats.engine_errors == 0


def test_phrase_mode_decides_phrases_with_the_full_schedule_given_what_it_decided_before(engine):
    calls = []

    class Counting(type(engine)):
        def inpaint(self, roll, known, settings, open_end=False, meter=COMMON_TIME):
            calls.append((roll.copy(), known.copy(), settings.steps, meter))
            return super().inpaint(roll, known, settings, open_end, meter)

    counting = Counting(engine.model)
    player, recorder = phrase_player(counting, lookahead=2.0)
    events = melody_events(MELODY)
    run_until(player, recorder, events[-1][0] + 3 * NS_PER_MINUTE // int(BPM), events)
    assert all(steps == PHRASE_SETTINGS.steps for _, _, steps, _ in calls)
    # a phrase is several onsets long (2 beats of 8ths, less the decision margin), and later
    # phrases are given the harmony already decided
    free_rows = [int((~known[:, 1:]).any(axis=1).sum()) for _, known, _, _ in calls]
    assert max(free_rows) >= 4 and len(calls) < len(MELODY)
    for roll, known, _, _ in calls[1:]:
        past = known[:, 1:].all(axis=1) & (roll[:, SOPRANO] >= 0)
        assert past.any() and (roll[past, 1:] != REST).any()
    # each window's meter places the song's bars (the engine draws whole 8ths from them): the
    # melody's 8th notes, from song step 0, begin on even steps of it, in windows that begin on
    # odd steps too
    starts = set()
    for roll, _, _, (bar, downbeat) in calls:
        changes = np.flatnonzero(np.diff(roll[:, SOPRANO]) != 0) + 1
        assert bar == 16 and len(changes) and np.all((changes - downbeat) % 2 == 0), (changes, downbeat)
        starts.add(-downbeat % 2)
    assert starts == {0, 1}


def test_what_sounds_under_a_held_note_is_what_was_decided(engine):
    """The harmony may move under a long melody note; each grid step the note sounded through,
    even one the note-off arrives after, sounds as decided (it once fell silent to the sampler's
    eyes and lost its changes, and parallels crept in between what sounded)."""
    player, recorder = phrase_player(engine, lookahead=4.0)   # the notes end before their deadlines
    player.now_ns = lambda: recorder.now
    delay = 4 * NS_PER_MINUTE // int(BPM)
    events = melody_events(MELODY[:8], steps_each=8, legato=True)   # half notes, released at the next onset
    run_until(player, recorder, events[-1][0] + 2 * delay, events)
    sounding = {}
    heard = []
    for event in player.monitor:
        if event.voice > 0:
            if event.velocity:
                sounding[event.voice] = event.pitch
            elif sounding.get(event.voice) == event.pitch:
                del sounding[event.voice]
        heard.append((event.t_ns, [sounding.get(v, REST) for v in (1, 2, 3)]))
    checked = 0
    for row in range(player.rows):
        if not player.sounding[row]:
            continue
        due = int(player.start_ns[row]) + delay
        now = [voices for t, voices in heard if t <= due]
        assert now and now[-1] == player.harmony_rows[row].tolist(), row
        checked += 1
    assert checked >= 8 * 7   # every step of the notes, not just their onsets


def test_a_held_note_is_decided_in_time_and_stop_releases_everything(engine):
    player, recorder = phrase_player(engine, lookahead=1.0)
    delay = NS_PER_MINUTE // int(BPM)
    held_from = STEP_NS
    events = [(held_from, bytes([NOTE_ON, 72, 90]))]     # held for 8 beats, far beyond the lookahead
    run_until(player, recorder, held_from + 8 * delay, events)
    ons = harmony_ons(recorder.messages())
    first_on = next(t for t, m in recorder.sent if m in ons)
    assert first_on == held_from + delay
    assert unreleased(recorder.messages())                # still sounding
    recorder.now += 1
    player.handle(bytes([STOP]), recorder.now)
    assert unreleased(recorder.messages()) == {}
    assert player.schedule == []


def test_a_tempo_that_jumps_mid_note_keeps_every_note_off_after_its_note_on(engine):
    """Each note keeps the delay it began with: the DAW's tempo may jump (a Continue, a tempo
    change) between a note-on and its note-off, and nothing may end before it starts."""
    player, recorder = phrase_player(engine, lookahead=1.0, clock="midi")
    clock_ns = NS_PER_MINUTE // (int(BPM) * 24)
    events = [(0, bytes([0xFA]))] + [(k * clock_ns, bytes([0xF8])) for k in range(30)]   # 120 bpm
    at = 30 * clock_ns
    events += [(at, bytes([NOTE_ON, 72, 80])), (at + clock_ns, bytes([NOTE_ON, 74, 80]))]
    fast = clock_ns * 120 // 300                                  # then 300 bpm, mid-note: the delay
    events += [(at + 2 * clock_ns + k * fast, bytes([0xF8])) for k in range(28)]   # 500 -> 200 ms
    end = at + 2 * clock_ns + 28 * fast                           # the notes end ~270 ms after they began
    events += [(end, bytes([NOTE_OFF, 72, 0])), (end + 1000, bytes([NOTE_OFF, 74, 0]))]
    run_until(player, recorder, end + 2 * NS_PER_MINUTE // int(BPM), events)
    assert player.clock.bpm > 250                                 # the tempo did jump
    assert harmony_ons(recorder.messages())
    assert unreleased(recorder.messages()) == {}
    started: dict = {}
    for t, m in recorder.sent:                                    # and in that order, note by note
        key = (m[0] & 0x0F, m[1])
        if is_note_on(m):
            started[key] = t
        elif m[0] & 0xF0 == NOTE_OFF:
            assert key in started and started[key] <= t, (m.hex(), t)


def strikes_at(recorder: Recorder, velocity: int, due_ns: int, within_ns: int = 2_000_000) -> bool:
    """Did harmony note-ons of `velocity` go out within `within_ns` of `due_ns`?"""
    return any(abs(t - due_ns) <= within_ns and is_note_on(m) and m[0] & 0x0F != ECHO_CHANNEL and m[2] == velocity
               for t, m in recorder.sent)


def play_events(player, recorder, events, until_ns):
    """Feed (t_ns, bytes) events at their times, ticking the player exactly when it has
    something due (as the live worker does) until `until_ns`."""
    for at, data in sorted(events, key=lambda event: event[0]) + [(until_ns, b"")]:   # stable: Start first
        while (due := player.next_due_ns()) is not None and due <= at:
            recorder.now = max(recorder.now, due)
            player.tick(recorder.now)
        recorder.now = max(recorder.now, at)
        if data:
            player.handle(data, at)
        player.tick(recorder.now)


@pytest.mark.parametrize("drift", [2e-4, -2e-4])
def test_a_player_half_a_16th_off_the_daws_clock_gets_every_onset_harmonized(engine, drift):
    """16ths played on the player's own time (160 bpm, drifting a little against the DAW's
    clock, with a millisecond or so of jitter), about half a 16th off the DAW's grid: the clock
    rounds some onsets into the step of the one before. Each must still get its own harmony,
    struck one delay after it (told apart by velocity)."""
    player, recorder = phrase_player(engine, lookahead=2.0, clock="midi")
    clock_ns = NS_PER_MINUTE / (160 * 24)
    sixteenth = 6 * clock_ns
    rng = np.random.default_rng(2)
    events = [(0, bytes([0xFA]))] + [(int(k * clock_ns), bytes([0xF8])) for k in range(24 * 4 * 40)]   # 40 bars
    onsets = []
    for k in range(600):
        at = int((k + 0.49) * sixteenth * (1 + drift) + rng.normal(0, 700_000))
        pitch, velocity = MELODY[k % len(MELODY)], 70 + 8 * (k % 5)
        events += [(at, bytes([NOTE_ON, pitch, velocity])), (int(at + 0.75 * sixteenth), bytes([NOTE_OFF, pitch, 0]))]
        onsets.append((at, velocity))
    delay = round(2 * 4 * sixteenth)
    play_events(player, recorder, events, onsets[-1][0] + 2 * delay)
    bare = [(at, velocity) for at, velocity in onsets[1:] if not strikes_at(recorder, velocity, at + delay)]
    assert bare == [], f"{len(bare)} of {len(onsets)} onsets had no harmony of their own: {bare[:5]}"
    assert unreleased(recorder.messages()) == {}


def test_an_answer_due_before_the_one_before_it_ends_leaves_the_monitor_and_the_wire_balanced(engine):
    """The DAW speeds up note by note (160 -> 240 bpm), so each note's lookahead is shorter than
    the one before's by more than the gap between the two (the notes are detached): its answer is
    due before the previous one's ends, on the same keys. On the wire each key still ends as
    often as it is struck; the monitor (what a window draws) shows one pitch a voice and ends
    every note it shows."""
    player, recorder = phrase_player(engine, lookahead=2.0, clock="midi")
    events, t, bpm = [(0, bytes([0xFA]))], 0, 160.0
    onsets = []
    while bpm < 240:
        clock_ns = NS_PER_MINUTE / (bpm * 24)
        for k in range(6):
            events.append((int(t + k * clock_ns), bytes([0xF8])))
        if len(events) > 24 * 4:   # a bar of clocks first: the tempo is known
            onsets.append(int(t))
            events += [(int(t), bytes([NOTE_ON, 72, 80])), (int(t + 4.5 * clock_ns), bytes([NOTE_OFF, 72, 0]))]
            bpm += 8.0
        t += 6 * clock_ns
    play_events(player, recorder, events, int(t) + 2 * NS_PER_MINUTE // 100)
    assert len(onsets) == 10 and harmony_ons(recorder.messages())
    assert unreleased(recorder.messages()) == {}
    showing: dict = {}
    overlaps = 0
    for event in player.monitor:
        if event.velocity:
            overlaps += event.voice in showing
            showing[event.voice] = event.pitch
        else:
            assert showing.get(event.voice) == event.pitch, event   # an end of what the voice shows
            del showing[event.voice]
    assert showing == {} and overlaps == 0


def test_a_row_due_before_the_first_pending_one_is_decided_in_time(engine):
    """The first note after Start takes the internal tempo's delay (the DAW's clock has not yet
    said its tempo); the notes after it, the DAW's shorter one: they are due before the first
    note's answer, and their harmony must be decided in time for them, not after."""
    player, recorder = phrase_player(engine, lookahead=2.0, clock="midi")   # internal 120 bpm: 1 s
    fast = NS_PER_MINUTE // (180 * 24)                                      # the DAW plays 180 bpm
    events = [(0, bytes([0xFA]))] + [(k * fast, bytes([0xF8])) for k in range(24 * 8)]
    sixteenth = 6 * fast
    onsets = [(k * 2 * sixteenth + 1_000_000, 70 + 8 * k) for k in range(6)]
    for at, velocity in onsets:
        events += [(at, bytes([NOTE_ON, 72, velocity])), (at + sixteenth, bytes([NOTE_OFF, 72, 0]))]
    play_events(player, recorder, events, 3 * NS_PER_MINUTE // 60)
    fast_delay = 2 * NS_PER_MINUTE // 180                                   # 667 ms
    late = [(at, velocity) for at, velocity in onsets[1:] if not strikes_at(recorder, velocity, at + fast_delay)]
    assert late == [], late


def test_engine_error_in_phrase_mode_is_pass_through(engine):
    player, recorder = phrase_player(Broken(engine.model), lookahead=0.5)
    events = melody_events(MELODY[:6])
    run_until(player, recorder, events[-1][0] + NS_PER_MINUTE // int(BPM), events)
    assert harmony_ons(recorder.messages()) == []
    assert len([m for m in recorder.messages() if is_note_on(m)]) == 6  # the echo went on
    assert player.stats.engine_errors >= 1 and unreleased(recorder.messages()) == {}


# ------------------------------------------------------------- speculation, no ports

def test_a_foreseen_onset_is_answered_by_the_speculators_lookup(engine):
    sent: list[bytes] = []
    stats = LiveStats()
    speculator = Speculator(stats)
    mode = NoteMode(Outlet(Sounding(sent.append)), stats, speculator=speculator)
    snapshot = Snapshot(LiveConfig(clock="free"), LIVE_SETTINGS, engine)
    mode.apply(snapshot, 0)
    try:
        mode.handle(bytes([NOTE_ON, 72, 80]), 1)
        mode.handle(bytes([NOTE_OFF, 72, 0]), 2)
        assert speculator.wait_idle(60)
        # what the speculator was asked to foresee: the engine's likeliest next pitch, one step on
        roll, known = mode.context.resized(mode.context.past).window()
        upcoming = mode.context.resized(mode.context.past)
        upcoming.onset(upcoming.step + 1, 72)
        roll, known = upcoming.window()
        known = known.copy()
        known[-1, SOPRANO] = False
        likeliest = engine.melody_candidates(roll, known, LIVE_SETTINGS, 1)[0]
        assert mode.rhythm_guesses()[0] in (1, 2)
        hits = stats.speculation_hits
        mode.handle(bytes([NOTE_ON, likeliest, 80]), 3)      # free clock: the next step, gap 1
        assert stats.speculation_hits == hits + 1 and stats.speculation_lookups == 2
        assert len(harmony_ons(sent)) >= 1
        mode.handle(bytes([NOTE_OFF, likeliest, 0]), 4)
        assert speculator.wait_idle(60)
        unlikely = 127 if likeliest != 127 else 0            # never a candidate: outside the soprano range
        mode.handle(bytes([NOTE_ON, unlikely, 80]), 5)
        assert stats.speculation_hits == hits + 1 and stats.speculation_lookups == 3
        mode.release_all(6)
        assert unreleased(sent) == {}
    finally:
        speculator.close()


def test_the_speculator_works_out_the_likeliest_pitches_of_every_rhythm_guess_before_the_rest(engine):
    import multiprocessing

    from bridge.live.context import SPECULATED_PITCHES, Context, window_key
    from bridge.live.speculation import FIRST_PITCHES, _work

    snapshot = Snapshot(LiveConfig(clock="free"), LIVE_SETTINGS, engine)
    context = Context(16)
    for k, pitch in enumerate(MELODY[:6]):
        context.onset(2 * k, pitch)
        context.set_harmony(pitch - 5, pitch - 12, pitch - 24)
        context.release(2 * k + 1)
    guesses = {}   # window key -> (guess, rank of its melody note among that guess's pitches)
    for guess, gap in enumerate((2, 4)):
        upcoming = context.resized(16)
        upcoming.onset(context.step + gap, int(context.rows[-1, 0]))
        roll, known = upcoming.window()
        known = known.copy()
        known[-1, SOPRANO] = False
        pitches = engine.melody_candidates(roll, known, LIVE_SETTINGS, SPECULATED_PITCHES)
        assert len(pitches) > FIRST_PITCHES   # the order below is tested on more than the first tier
        for rank, pitch in enumerate(pitches):
            roll[-1, SOPRANO] = pitch
            guesses[window_key(roll)] = (guess, rank)
    jobs_in, jobs_out = multiprocessing.Pipe(duplex=False)
    answers_in, answers_out = multiprocessing.Pipe(duplex=False)
    state = (16, context.rows.copy(), context.filled, context.step, context.released_at)
    assert _work(jobs_in, answers_out, snapshot, 1, 1, state, [2, 4]) is None
    order = []
    while answers_in.poll(0):
        kind, generation, told_id, key, harmony = answers_in.recv()
        order.append(guesses[key])
    assert len(order) == len(guesses)   # every pitch of every guess answered once
    tiers = [[(g, r) for g, r in order if g == guess and (r < FIRST_PITCHES) == first]
             for first in (True, False) for guess in (0, 1)]
    assert order == [cell for tier in tiers for cell in tier]
    assert all(tier for tier in tiers)


def test_speculation_off_never_looks_up_nor_starts_work(engine):
    for speculate in (True, False):
        stats = LiveStats()
        speculator = Speculator(stats)
        mode = NoteMode(Outlet(Sounding(lambda data: None)), stats, speculator=speculator)
        mode.apply(Snapshot(LiveConfig(clock="free", speculate=speculate), LIVE_SETTINGS, engine), 0)
        try:
            for k, pitch in enumerate(MELODY[:5]):
                mode.handle(bytes([NOTE_ON, pitch, 80]), 2 * k)
                mode.handle(bytes([NOTE_OFF, pitch, 0]), 2 * k + 1)
            started = speculator.pid is not None
        finally:
            speculator.close()
        if speculate:  # the same notes with it on: every onset looked up, work started after each
            assert stats.speculation_lookups == 5 and speculator.jobs_posted == 5 and started
        else:
            assert stats.speculation_lookups == 0 and speculator.jobs_posted == 0 and not started


def test_the_speculator_runs_at_nice_19_in_a_process_of_its_own(engine):
    """It must leave the cores to other work that wants them, and never take the GIL from the
    worker (its slice: tests/test_scheduling.py)."""
    import os

    speculator = Speculator(LiveStats())
    try:
        speculator.start()
        assert speculator.pid not in (None, os.getpid())
        assert os.getpriority(os.PRIO_PROCESS, speculator.pid) == 19
    finally:
        speculator.close()


# ------------------------------------------------------------- through JACK

def echo_delays(sender, outside, pitches, held_s: float, rest_s: float) -> list[float]:
    """Play each pitch (its echo waited for, then held `held_s` more, then a rest): ms from each
    note-on sent to its echo received."""
    delays = []
    for pitch in pitches:
        n = len(outside.received)
        sent_ns = time.perf_counter_ns()
        sender.send_message([NOTE_ON, pitch, 80])
        assert wait_for(lambda: any(m[0] == NOTE_ON | ECHO_CHANNEL and m[1] == pitch
                                    for m, _ in outside.received[n:]), timeout=3)
        echo_ns = next(t for m, t in outside.received[n:] if m[0] == NOTE_ON | ECHO_CHANNEL and m[1] == pitch)
        delays.append((echo_ns - sent_ns) / 1e6)
        time.sleep(held_s)
        sender.send_message([NOTE_OFF, pitch, 0])
        time.sleep(rest_s)
    return delays


def test_phrase_mode_through_jack_comes_out_one_lookahead_later(jack_server, engine, outside):
    config = LiveConfig(mode="phrase", lookahead_beats=0.5, clock="internal", bpm=240.0)  # 125 ms
    with Bridge(engine, config, PHRASE_SETTINGS, api="jack") as bridge:
        delays = echo_delays(connect(outside), outside, MELODY[:8], held_s=0.06, rest_s=0.06)
        settle(outside, quiet_s=0.3, timeout=5)
        messages = outside.messages()
        assert harmony_ons(messages), "no harmony in phrase mode"
        assert unreleased(messages) == {}
        # 125 ms, give or take a JACK period or two and a loaded machine's scheduling
        assert 120 <= float(np.median(delays)) <= 145, delays
        assert bridge.stats.snapshot().p99_phrase_timing_ms is not None


class Slow(CoconetEngine):
    """A real engine that takes 150 ms a phrase, as a big model on a loaded machine might."""

    def inpaint(self, roll, known, settings, open_end=False, meter=COMMON_TIME):
        time.sleep(0.15)
        return super().inpaint(roll, known, settings, open_end, meter)


def test_a_slow_phrase_decision_does_not_hold_up_what_is_due_meanwhile(jack_server, engine, outside):
    """The sampler runs off the worker: the echo of each note keeps its time while it works."""
    config = LiveConfig(mode="phrase", lookahead_beats=1.0, clock="internal", bpm=240.0)  # 250 ms
    with Bridge(Slow(engine.model), config, PHRASE_SETTINGS, api="jack"):
        late = [delay - 250 for delay in echo_delays(connect(outside), outside, MELODY[:10], held_s=0, rest_s=0.05)]
        settle(outside, quiet_s=0.5, timeout=5)
        assert harmony_ons(outside.messages()) and unreleased(outside.messages()) == {}
        # a worker that waited for the sampler is ~270 ms late on every note; a loaded machine may
        # keep this process (the bridge and the listener both) off the CPU for one note's time
        assert sum(delay >= 20 for delay in late) <= 1, late


def test_switching_modes_while_notes_flow_leaves_no_note_on(jack_server, engine, outside):
    with Bridge(engine, LiveConfig(clock="internal", bpm=240.0, lookahead_beats=0.5), PHRASE_SETTINGS,
                api="jack") as bridge:
        sender = connect(outside)
        for k, pitch in enumerate(MELODY * 2):
            sender.send_message([NOTE_ON, pitch, 80])
            time.sleep(0.03)
            if k % 4 == 3:
                mode = "phrase" if bridge.snapshot.config.mode == "note" else "note"
                bridge.update(config=bridge.snapshot.config.replace(mode=mode))
            time.sleep(0.03)
            sender.send_message([NOTE_OFF, pitch, 0])
        settle(outside, quiet_s=0.3, timeout=5)
        assert harmony_ons(outside.messages())
        assert unreleased(outside.messages()) == {}
        assert bridge.stats.event_errors == 0


def test_panic_releases_everything_from_another_thread(jack_server, engine, outside):
    with Bridge(engine, LiveConfig(clock="free"), LIVE_SETTINGS, api="jack") as bridge:
        sender = connect(outside)
        sender.send_message([NOTE_ON, 72, 80])
        assert wait_for(lambda: harmony_ons(outside.messages()))
        bridge.panic()
        assert wait_for(lambda: unreleased(outside.messages()) == {})
        events = list(bridge.monitor)
        assert {e.voice for e in events} == {0, 1, 2, 3}
        assert all(e.velocity == 0 for e in events[-4:])   # the monitor saw them end too


def test_a_connected_port_that_goes_away_is_reported_and_connected_again(jack_server, engine, outside):
    source = outside.sender(virtual="keyboard")
    with Bridge(engine, LiveConfig(clock="free"), LIVE_SETTINGS, api="jack", connect_in="keyboard") as bridge:
        outside.receiver("bachbridge out")
        source.send_message([NOTE_ON, 72, 80])
        assert wait_for(lambda: harmony_ons(outside.messages()))
        source.send_message([NOTE_OFF, 72, 0])
        time.sleep(0.02)
        source.close_port()                                   # the keyboard's program quits
        assert wait_for(lambda: bridge.stats.port_problem is not None, timeout=3)
        assert "keyboard" in bridge.stats.port_problem
        source = outside.sender(virtual="keyboard")          # ... and comes back
        assert wait_for(lambda: bridge.stats.port_problem is None, timeout=3)
        time.sleep(0.05)
        n = len(outside.received)
        source.send_message([NOTE_ON, 74, 80])
        assert wait_for(lambda: harmony_ons(outside.messages()[n:])), "no harmony after re-connecting"
        source.send_message([NOTE_OFF, 74, 0])
        settle(outside)
        assert unreleased(outside.messages()) == {}


@pytest.mark.parametrize("mode", ["note", "phrase"])
def test_render_plays_the_melody_and_harmonizes_it_as_the_bridge_would(engine, mode):
    """bridge.live.render (what bench_music --live measures): the melody kept, three voices under it."""
    from bridge.live import render
    from conftest import hymn_steps

    soprano = hymn_steps()
    roll = render(engine, soprano, LiveConfig(mode=mode, lookahead_beats=1.0), LIVE_SETTINGS.replace(seed=0))
    assert roll.shape == (len(soprano), 4)
    assert np.array_equal(roll[:, SOPRANO], soprano)
    harmonized = (roll[:, 1:] != REST).all(axis=1)
    assert harmonized.mean() > 0.8, harmonized.mean()
