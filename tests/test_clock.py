"""bridge.clock: MIDI clock, transport and the internal and free grids (pure logic, no ports)."""
from __future__ import annotations

import numpy as np
import pytest

from bridge.clock import (CLOCK_TIMEOUT_NS, CONTINUE, MAX_BPM, MIN_BPM, SONG_POSITION, START, STOP,
                          TIMING_CLOCK, Clock, step_ns)

MS = 1_000_000
CLOCK, START_B, STOP_B, CONTINUE_B = b"\xf8", b"\xfa", b"\xfc", b"\xfb"


def clock_interval_ns(bpm: float) -> float:
    return 60e9 / (bpm * 24)


def send_clocks(clock: Clock, count: int, bpm: float, t0: float, jitter_ms: float = 0.0, seed: int = 0) -> float:
    """`count` clocks at `bpm` from t0, each arrival late or early by up to jitter_ms; returns the
    time the next clock is due."""
    rng = np.random.default_rng(seed)
    interval = clock_interval_ns(bpm)
    for k in range(count):
        t = t0 + k * interval + rng.uniform(-jitter_ms, jitter_ms) * MS
        clock.feed(CLOCK, int(t))
    return t0 + count * interval


def spp(steps: int) -> bytes:
    return bytes((0xF2, steps & 0x7F, steps >> 7))


def test_120_bpm_clock_followed_within_one_percent_and_tempo_changes_followed():
    clock = Clock("midi")
    assert clock.midi_bpm is None and clock.bpm == 100.0  # nothing measured: the internal tempo
    t = send_clocks(clock, 24 * 8, 120.0, 1e9, jitter_ms=1.0)  # 8 quarters, +-1 ms arrival jitter
    assert clock.bpm == pytest.approx(120.0, rel=0.01)
    send_clocks(clock, 24 * 2, 90.0, t, jitter_ms=1.0, seed=1)  # slower: within a quarter or two
    assert clock.bpm == pytest.approx(90.0, rel=0.01)


def test_one_clock_stamped_late_barely_moves_the_tempo():
    """A clock stamped 8 ms late (a busy sender, a poll that came late) at the newest end of the
    window: the span between the oldest and newest clocks would read 118.0 bpm for 120."""
    clock = Clock("midi")
    t = send_clocks(clock, 48, 120.0, 1e9)
    clock.feed(CLOCK, int(t + 8 * MS))
    assert clock.bpm == pytest.approx(120.0, rel=0.005)
    clock.feed(CLOCK, int(t + clock_interval_ns(120.0)))   # the next on time: back within 0.5%
    assert clock.bpm == pytest.approx(120.0, rel=0.005)


@pytest.mark.parametrize("bpm", [40.0, 100.0, 133.0, 240.0])
def test_steady_clock_gives_its_tempo(bpm):
    clock = Clock("midi")
    send_clocks(clock, 48, bpm, 5e9)
    assert clock.bpm == pytest.approx(bpm, rel=1e-6)


def test_start_stop_continue_and_song_position_move_the_position():
    clock = Clock("midi")
    t = 1e9
    assert clock.feed(START_B, int(t)) == START
    assert clock.running and clock.position_steps == 0
    t = send_clocks(clock, 6, 120.0, t)   # clocks 0..5: still the first 16th
    assert clock.position_steps == 0
    t = send_clocks(clock, 7, 120.0, t)   # clocks 6..12
    assert clock.position_steps == 2
    assert clock.feed(STOP_B, int(t)) == STOP
    assert not clock.running
    t = send_clocks(clock, 24, 120.0, t)  # a DAW may keep sending clocks while stopped
    assert clock.position_steps == 2
    assert clock.feed(CONTINUE_B, int(t)) == CONTINUE
    assert clock.running
    t = send_clocks(clock, 6, 120.0, t)   # clocks 13..18
    assert clock.position_steps == 3
    assert clock.feed(STOP_B, int(t)) == STOP
    assert clock.feed(spp(16), int(t)) == SONG_POSITION  # bar 2
    assert clock.position_steps == 16
    clock.feed(CONTINUE_B, int(t))
    t = send_clocks(clock, 1, 120.0, t)   # the first clock after SPP is at that position
    assert clock.position_steps == 16
    t = send_clocks(clock, 6, 120.0, t)
    assert clock.position_steps == 17
    assert clock.feed(spp(300), int(t)) == SONG_POSITION  # two data bytes: 300 = 44 + 2 * 128
    assert clock.position_steps == 300
    clock.feed(START_B, int(t))
    assert clock.position_steps == 0


def test_onsets_follow_the_song_position_while_the_transport_runs():
    clock = Clock("midi")
    interval = clock_interval_ns(120.0)
    t0 = 1e9
    clock.feed(START_B, int(t0))
    assert clock.step_at(int(t0)) == 0  # before the first clock: where it will be
    t = send_clocks(clock, 13, 120.0, t0)  # clocks 0..12: the last one starts step 2
    last = t - interval
    assert clock.step_at(int(last + 0.2 * interval)) == 2
    # a note played a little before the next 16th (2.5 clocks early) counts toward it
    t = send_clocks(clock, 3, 120.0, t)  # clocks 13..15
    assert clock.step_at(int(t - interval + 0.6 * interval)) == 3
    assert clock.onset(int(t - interval + 0.6 * interval)) == 3
    # a SPP jump back moves the steps back too
    clock.feed(spp(4), int(t))
    assert clock.onset(int(t)) == 4


def test_clock_flood_is_ignored_and_tempo_stays_sane():
    clock = Clock("auto")
    clock.feed(START_B, 0)
    t = send_clocks(clock, 48, 120.0, 1e9)
    position = clock.position_steps
    last = t - clock_interval_ns(120.0)
    for k in range(1, 1001):  # 1000 clocks within 1 ms of the last real one
        assert clock.feed(CLOCK, int(last + k * 1000)) is None
    assert MIN_BPM <= clock.bpm <= MAX_BPM
    assert clock.bpm == pytest.approx(120.0, rel=1e-6)
    assert clock.position_steps == position
    # the clock goes on afterwards as if nothing happened
    send_clocks(clock, 24, 120.0, t)
    assert clock.bpm == pytest.approx(120.0, rel=0.01)
    assert clock.position_steps == position + 4


def test_clocks_bunched_after_a_stall_still_move_the_position():
    """A sender (or a JACK cycle) that stalls delivers the clocks it owes together: they count."""
    clock = Clock("midi")
    clock.feed(START_B, 0)
    t = send_clocks(clock, 25, 120.0, 1e9)                # clocks 0..24: a quarter note
    interval = clock_interval_ns(120.0)
    late = t + 2 * interval                               # clocks 25, 26, 27 stalled, then together
    for k in range(3):
        assert clock.feed(CLOCK, int(late + k * 10_000)) == TIMING_CLOCK
    assert clock.feed(CLOCK, int(late + 40_000)) is None  # one more would be a flood
    send_clocks(clock, 3, 120.0, t + 3 * interval)        # 28..30 on time again
    assert clock.position_steps == 30 // 6
    assert clock.bpm == pytest.approx(120.0, rel=0.05)
    late = t + 3 * interval + 0.2e9                       # a pause, then clocks owed in one instant:
    for k in range(4):                                    # no tempo to tell from them, nor a crash
        assert clock.feed(CLOCK, int(late)) == TIMING_CLOCK
    assert MIN_BPM <= clock.bpm <= MAX_BPM


def test_after_a_pause_the_tempo_known_stands_until_a_quarter_note_came():
    clock = Clock("midi")
    clock.feed(START_B, 0)
    t = send_clocks(clock, 25, 120.0, 1e9)
    clock.feed(bytes([STOP]), int(t))
    resume = t + 1e9                                     # Continue a second later: the first clocks
    clock.feed(bytes([CONTINUE]), int(resume))           # come together, then on time
    for k in range(3):
        clock.feed(CLOCK, int(resume + k * 7e6))
        assert clock.bpm == pytest.approx(120.0, rel=1e-6)
    send_clocks(clock, 30, 90.0, resume + 3 * 7e6 + 10e6)    # a new tempo takes over within a quarter
    assert clock.bpm == pytest.approx(90.0, rel=0.02)


def test_clocks_bunched_after_a_pause_do_not_read_as_a_faster_tempo():
    """After a pause the first clocks may come bunched (delivered together by a stalled sender
    or JACK cycle), then on time: the tempo stays the DAW's at every clock, never the bunch's.
    (Phrase mode's delay follows it: a tempo read 60% fast played a note 290 ms early.)"""
    clock = Clock("midi")
    clock.feed(START_B, 0)
    t = send_clocks(clock, 100, 160.0, 1e9)
    clock.feed(STOP_B, int(t))
    resume = t + 0.4e9
    clock.feed(CONTINUE_B, int(resume))
    interval = clock_interval_ns(160.0)
    bunch_at = resume + 9 * interval                   # clocks 0..8 owed, delivered at once
    seen = []
    for k in range(9):
        clock.feed(CLOCK, int(bunch_at + k * 0.2 * MS))
        seen.append(clock.bpm)
    for k in range(9, 80):                             # then on time, with arrival jitter
        clock.feed(CLOCK, int(resume + k * interval + ((k * 7919) % 11 - 5) * 0.1 * MS))
        seen.append(clock.bpm)
    assert all(b == pytest.approx(160.0, rel=0.02) for b in seen), [round(b, 1) for b in seen]


def test_absurd_clock_tempi_are_clamped_or_forgotten():
    clock = Clock("midi")
    send_clocks(clock, 10, 500.0, 1e9)  # faster than 400 bpm: every other clock is refused
    assert MIN_BPM <= clock.bpm <= MAX_BPM
    slow = Clock("midi")
    send_clocks(slow, 10, 10.0, 1e9)    # slower than 20 bpm: each gap looks like a pause
    assert slow.midi_bpm is None and slow.bpm == 100.0


def test_junk_system_messages_are_ignored():
    clock = Clock()
    for junk in (b"", b"\xf2", b"\xf2\x01", b"\xf2\x80\x00", b"\xf4", b"\xfe", b"\xf0\x7e\xf7", b"\x90\x3c\x40"):
        assert clock.feed(junk, 0) is None
    assert not clock.running and clock.position_steps == 0


def test_internal_grid_counts_from_the_first_onset():
    clock = Clock("internal", bpm=120.0)  # a 16th is 125 ms
    sixteenth = step_ns(120.0)
    t0 = 3e9
    assert clock.onset(int(t0)) == 0
    assert clock.onset(int(t0 + sixteenth)) == 1
    assert clock.onset(int(t0 + 3.04 * sixteenth)) == 3
    assert clock.step_at(int(t0 + 4.45 * sixteenth)) == 4
    assert clock.onset(int(t0 + 7.6 * sixteenth)) == 8  # rounded to the nearest
    # the grid is anchored at the first onset: early and late notes do not shift it
    assert clock.onset(int(t0 + 12.3 * sixteenth)) == 12
    assert clock.onset(int(t0 + 13.0 * sixteenth)) == 13
    # a new tempo re-anchors at the next onset and goes on from the last step
    clock.configure("internal", 60.0)
    t1 = t0 + 13.0 * sixteenth + 2 * step_ns(60.0)
    assert clock.onset(int(t1)) == 15
    assert clock.onset(int(t1 + step_ns(60.0))) == 16
    clock.reset_onsets()
    assert clock.onset(int(t1 + 10e9)) == 0


def test_free_mode_each_onset_is_the_next_step():
    clock = Clock("free")
    clock.feed(START_B, 0)
    send_clocks(clock, 48, 120.0, 1e9)  # ignored for placing notes
    assert clock.step_at(0) == 0
    assert clock.step_at(10**12) == 0  # asking does not advance
    steps = [clock.onset(int(t)) for t in (1e9, 1.001e9, 5e9, 5.5e9)]
    assert steps == [0, 1, 2, 3]


def test_auto_follows_the_daw_clock_when_it_runs_and_its_tempo_when_stopped():
    clock = Clock("auto", bpm=100.0)
    t0 = 2e9
    assert clock.onset(int(t0)) == 0                        # no clock: internal grid at 100 bpm
    assert clock.onset(int(t0 + step_ns(100.0))) == 1
    clock.feed(START_B, int(t0 + 1e9))
    t = send_clocks(clock, 25, 120.0, t0 + 1e9)             # clocks 0..24: into step 4
    assert clock.following_midi(int(t - clock_interval_ns(120.0)))
    assert clock.onset(int(t - clock_interval_ns(120.0))) == 4
    clock.feed(STOP_B, int(t))
    # stopped: the internal grid, at the DAW's tempo (a 16th = 125 ms), going on from step 4
    assert not clock.following_midi(int(t))
    assert clock.bpm == pytest.approx(120.0)
    onset = t + 2 * step_ns(120.0)
    assert clock.onset(int(onset)) == 6
    assert clock.onset(int(onset + step_ns(120.0))) == 7
    # running, but the clock stopped coming (the DAW went away): not followed
    clock.feed(CONTINUE_B, int(t))
    assert not clock.following_midi(int(t + CLOCK_TIMEOUT_NS + 1))


def test_midi_mode_without_a_running_clock_takes_each_onset_as_the_next_step():
    clock = Clock("midi")
    assert [clock.onset(int(t)) for t in (1e9, 3e9, 3.01e9)] == [0, 1, 2]


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError):
        Clock("sometimes")
    with pytest.raises(ValueError):
        Clock("internal", bpm=1000)
    assert TIMING_CLOCK == 0xF8
