"""The live bridge in note mode: the grid of the recent past and the note logic on their own, then
the whole bridge through real ports on a real JACK server (dummy driver), an outside rtmidi client
playing the DAW, with a real (tiny, freshly trained) Coconet as the engine."""
from __future__ import annotations

import os
import select
import signal
import statistics
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from bridge.engines import REST, load_engine
from bridge.engines.coconet import CoconetEngine
from bridge.live import LIVE_SETTINGS, Bridge, Context, LiveConfig, LiveStats, NoteMode, Outlet, Snapshot
from bridge.scheduling import CPU_DMA_LATENCY, cpu_latency_limit_us
from bridge.score import COMMON_TIME, Score
from bridge.settings import DEFAULT_VOICE_RANGES
from bridge.sounding import Sounding
from conftest import ROOT
from jackrig import Outside
from test_ports import wait_for

NOTE_ON, NOTE_OFF, CC = 0x90, 0x80, 0xB0
START, STOP, CLOCK = 0xFA, 0xFC, 0xF8
HARMONY_CHANNELS = (1, 2, 3)   # MIDI channels 2, 3, 4
ECHO_CHANNEL = 0
MELODY = [67, 67, 66, 64, 62, 67, 69, 71, 71, 71, 71, 69, 67, 72, 71, 69, 69]  # Old Hundredth


@pytest.fixture(scope="module")
def engine(tiny_model):
    return load_engine(tiny_model, threads=1)


class Broken(CoconetEngine):
    """A real engine whose every harmonization fails."""

    def inpaint(self, roll, known, settings, open_end=False, meter=COMMON_TIME):
        raise RuntimeError("the model fell over")


# ------------------------------------------------------------- helpers

def is_note_on(m: bytes) -> bool:
    return m[0] & 0xF0 == NOTE_ON and m[2] > 0


def is_note_off(m: bytes) -> bool:
    return m[0] & 0xF0 == NOTE_OFF or (m[0] & 0xF0 == NOTE_ON and m[2] == 0)


def unreleased(messages) -> dict:
    """{(channel, pitch): note-ons not followed by a note-off}, in the order the port sent them;
    a note-off for a key never struck is an error too. A note-off once more for a note already
    ended is not: the bridge repeats the note-offs of a source that went away
    (bridge.sounding.Sounding.silence)."""
    count: dict = {}
    for m in messages:
        key = (m[0] & 0x0F, m[1]) if len(m) == 3 else None
        if is_note_on(m):
            count[key] = count.get(key, 0) + 1
        elif is_note_off(m):
            assert key in count, f"note-off {m.hex()} for a note that was not on"
            count[key] = max(count[key] - 1, 0)
    return {key: n for key, n in count.items() if n}


def struck_twice(messages) -> list[bytes]:
    """Note-ons for a key that already sounds (one note-off would then end both)."""
    on, twice = set(), []
    for m in messages:
        key = (m[0] & 0x0F, m[1]) if len(m) == 3 else None
        if is_note_on(m):
            if key in on:
                twice.append(m)
            on.add(key)
        elif is_note_off(m):
            on.discard(key)
    return twice


def harmony_ons(messages) -> list[bytes]:
    return [m for m in messages if is_note_on(m) and m[0] & 0x0F != ECHO_CHANNEL]


def cc123_channels(messages) -> set[int]:
    return {m[0] & 0x0F for m in messages if m[0] & 0xF0 == CC and m[1] == 123}


def connect(outside: Outside, in_port: str = "bachbridge in", out_port: str = "bachbridge out"):
    outside.receiver(out_port)
    return outside.sender(in_port)


def play(sender, outside: Outside, pitch: int, velocity: int = 80, harmony: bool = True) -> float:
    """Note-on, wait for its answer (the echo, and the harmony if asked); the latency from sending
    to the first harmony note-on received, in ms (0 when not asked)."""
    n = len(outside.received)
    sent_ns = time.perf_counter_ns()
    sender.send_message([NOTE_ON, pitch, velocity])
    if not harmony:
        assert wait_for(lambda: any(m[0] == NOTE_ON | ECHO_CHANNEL and m[1] == pitch
                                    for m, _ in outside.received[n:])), "no echo"
        return 0.0
    assert wait_for(lambda: harmony_ons(m for m, _ in outside.received[n:])), f"no harmony for {pitch}"
    first = next(t for m, t in outside.received[n:] if is_note_on(m) and m[0] & 0x0F != ECHO_CHANNEL)
    return (first - sent_ns) / 1e6


def settle(outside: Outside, quiet_s: float = 0.03, timeout: float = 2.0) -> None:
    """Wait until nothing more arrives for quiet_s."""
    deadline = time.monotonic() + timeout
    seen = -1
    while time.monotonic() < deadline:
        if len(outside.received) == seen:
            return
        seen = len(outside.received)
        time.sleep(quiet_s)


# ------------------------------------------------------------- the grid, without ports

def test_context_moves_on_holds_notes_and_crops_what_is_not_history():
    context = Context(8)
    context.onset(0, 72)
    roll, known = context.window()
    assert roll.tolist() == [[72, REST, REST, REST]]       # nothing before the first note
    assert known.tolist() == [[True, False, False, False]]
    context.set_harmony(67, 64, 48)
    context.onset(4, 74)                                     # the first note held for a beat
    roll, known = context.window()
    assert roll.tolist() == [[72, 67, 64, 48]] * 4 + [[74, REST, REST, REST]]
    assert known[:-1].all() and known[-1].tolist() == [True, False, False, False]
    context.set_harmony(65, 62, 50)
    context.release(5)
    context.onset(12, 76)                                    # released after one 16th, a long rest
    roll, _ = context.window()
    assert roll.tolist() == ([[72, 67, 64, 48]] * 3 + [[74, 65, 62, 50]] + [[REST] * 4] * 7
                             + [[76, REST, REST, REST]])[-9:]
    context.set_harmony(67, 60, 48)
    context.release(12)
    context.onset(14, 77)                                    # a short rest is held through
    roll, _ = context.window()
    assert roll[-3:].tolist() == [[76, 67, 60, 48], [76, 67, 60, 48], [77, REST, REST, REST]]
    context.release(14)
    context.onset(100, 79)                                   # silence longer than the window
    roll, _ = context.window()
    assert roll.tolist() == [[79, REST, REST, REST]]
    context.onset(50, 81)                                    # the song position jumped back
    roll, _ = context.window()
    assert roll.tolist() == [[79, REST, REST, REST], [81, REST, REST, REST]]
    assert Context(4).resized(8).window()[0].shape == (1, 4)


def test_the_engines_view_moves_a_high_melody_by_octaves_and_keeps_given_notes_in_the_models_range(engine):
    roll = np.array([[96, 84, 80, 20], [98, REST, REST, REST]], dtype=np.int16)
    known = np.array([[True] * 4, [True] + [False] * 3])
    assert (engine.min_pitch, engine.num_pitches) == (36, 46)
    view, shift, view_settings = engine._model_view(Score.of(roll), known, LIVE_SETTINGS)
    assert shift == -24 and view_settings == LIVE_SETTINGS    # whole octaves: key and ranges as they were
    assert view.pitches[:, 0].tolist() == [72, 74]
    assert view.pitches[0, 1:].tolist() == [60, 56, 44]  # 20 - 24 is below the model: folded up
    assert view.pitches[1, 1:].tolist() == [REST] * 3
    # and the answer comes back in the melody's register, the given cells exactly as given
    answer = engine.inpaint(roll, known, LIVE_SETTINGS.replace(seed=0), open_end=True)
    assert answer[0].tolist() == roll[0].tolist() and answer[1, 0] == 98
    assert all(36 + 24 <= p <= 98 for p in answer[1, 1:]), answer    # the model's pitches, two octaves up


class Unisons(CoconetEngine):
    """A real engine's model with a harmony of unisons: alto doubles the melody, tenor and bass
    an octave below it (for the bookkeeping of unisons, which a small model draws too rarely)."""

    def inpaint(self, roll, known, settings, open_end=False, meter=COMMON_TIME):
        out = roll.copy()
        melody = roll[:, 0]
        for voice, below in ((1, 0), (2, 12), (3, 12)):
            out[:, voice] = np.where(known[:, voice], roll[:, voice], melody - below)
        return out


def note_mode(engine, config=LiveConfig(clock="free"), settings=LIVE_SETTINGS):
    sent: list[bytes] = []
    mode = NoteMode(Outlet(Sounding(sent.append)), LiveStats())
    mode.apply(Snapshot(config, settings, engine), 0)
    return mode, sent


def test_legato_replaces_the_melody_and_releases_only_what_changes(engine):
    mode, sent = note_mode(Unisons(engine.model))       # its harmony moves with the melody
    mode.handle(bytes([NOTE_ON, 72, 90]), 1)
    first = harmony_ons(sent)
    assert len(first) == 3 and {m[0] & 15 for m in first} == set(HARMONY_CHANNELS)
    assert all(m[2] == 90 for m in first)
    mode.handle(bytes([NOTE_ON, 74, 70]), 2)            # legato: 72 still held
    assert mode.melody == (0, 74) and mode.voices == [74, 62, 62]
    mode.handle(bytes([NOTE_OFF, 72, 0]), 3)            # its note-off ends the echo only
    assert mode.melody == (0, 74) and mode.voices == [74, 62, 62]
    later = harmony_ons(sent[len(first) + 1:])
    assert len(later) == 3 and all(m[2] == 70 for m in later)   # struck with the new note's velocity
    mode.handle(bytes([NOTE_ON, 74, 0]), 4)             # velocity 0 is a note-off
    assert mode.voices == [REST] * 3 and unreleased(sent) == {}
    assert mode.stats.notes_in == 2


def test_melody_outside_the_soprano_range_is_harmonized_in_its_own_register(engine):
    for pitch, shift in ((100, 24), (40, -24)):
        mode, sent = note_mode(engine)
        mode.handle(bytes([NOTE_ON, pitch, 90]), 1)
        harmony = [m[1] for m in harmony_ons(sent)]
        assert harmony, f"no harmony for {pitch}"
        for p in harmony:  # the model's alto..bass ranges, moved with the melody
            assert DEFAULT_VOICE_RANGES[3][0] + shift <= p <= DEFAULT_VOICE_RANGES[1][1] + shift
        mode.handle(bytes([NOTE_OFF, pitch, 0]), 2)
        assert unreleased(sent) == {}


def test_all_voices_on_one_channel_sound_unisons_once(engine):
    mode, sent = note_mode(Unisons(engine.model), LiveConfig(clock="free", channels=(5, 5, 5), echo_channel=5))
    for k, pitch in enumerate(MELODY):
        mode.handle(bytes([NOTE_ON, pitch, 80]), 10 * k)
        assert mode.voices == [pitch, pitch - 12, pitch - 12]
        assert struck_twice(sent) == []
        if k % 3:
            mode.handle(bytes([NOTE_OFF, pitch, 0]), 10 * k + 5)
    mode.release_all(10**9)
    assert unreleased(sent) == {}
    assert all(m[0] & 15 == 5 for m in sent)


def test_junk_is_counted_and_ignored_without_a_port(engine):
    mode, sent = note_mode(engine)
    for junk in (b"", b"\x3c", b"\x90\x3c", b"\x90\x3c\x40\x01", b"\xf0\x7e\xf7", b"\xf4", b"\xb0\x07\x64",
                 b"\x90\x80\x40", b"\xe0\x00\x40"):
        mode.handle(junk, 0)
    assert sent == [] and mode.stats.ignored == 9


# ------------------------------------------------------------- the bridge through JACK

@pytest.fixture
def bridge(jack_server, engine):
    with Bridge(engine, LiveConfig(clock="free"), LIVE_SETTINGS, api="jack") as b:
        yield b


def test_melody_note_gets_harmony_on_channels_2_to_4_and_its_echo_on_1(bridge, outside, capsys):
    sender = connect(outside)
    assert bridge.ports_up_s < 2.0
    play(sender, outside, 72, velocity=99)
    assert wait_for(lambda: len(harmony_ons(outside.messages())) == 3)
    settle(outside)
    messages = outside.messages()
    assert messages[0] == bytes([NOTE_ON | ECHO_CHANNEL, 72, 99])  # the echo goes out first
    ons = harmony_ons(messages)
    assert sorted(m[0] & 0x0F for m in ons) == list(HARMONY_CHANNELS)
    assert all(m[2] == 99 for m in ons)
    sender.send_message([NOTE_OFF, 72, 0])
    assert wait_for(lambda: not unreleased(outside.messages()))
    with capsys.disabled():
        print(f"\n  live bridge ports up in {bridge.ports_up_s * 1e3:.0f} ms "
              f"(warm-up {bridge.warm_up_s * 1e3:.0f} ms)")


def test_latency_and_every_note_released_after_its_note_off(bridge, outside, capsys):
    sender = connect(outside)
    latencies = []
    notes = 0
    for k in range(200):
        pitch = MELODY[k % len(MELODY)] + (k // len(MELODY)) % 3 - 1
        latencies.append(play(sender, outside, pitch))
        notes += 1
        if k % 4 == 3:
            # now and then legato: the next note-on before this note-off (its harmony may keep
            # every voice, so only its echo is waited for, and it is not timed)
            next_pitch = pitch + 2
            play(sender, outside, next_pitch, harmony=False)
            notes += 1
            sender.send_message([NOTE_OFF, pitch, 0])
            pitch = next_pitch
            settle(outside, quiet_s=0.005)
        sender.send_message([NOTE_OFF, pitch, 0])
    assert wait_for(lambda: not unreleased(outside.messages()), timeout=2.0), unreleased(outside.messages())
    stats = bridge.stats.snapshot()
    assert stats.engine_errors == 0 and stats.event_errors == 0
    assert stats.notes_in == notes
    q = statistics.quantiles(latencies, n=100)
    with capsys.disabled():
        print(f"\n  note-on -> first harmony note-on through JACK, {len(latencies)} notes, tiny model: "
              f"p50 {q[49]:.2f} ms, p99 {q[98]:.2f} ms, max {max(latencies):.2f} ms "
              f"(inside the bridge: p50 {stats.p50_latency_ms:.2f} ms, p99 {stats.p99_latency_ms:.2f} ms)")


def test_stop_releases_every_sounding_note(bridge, outside):
    sender = connect(outside)
    play(sender, outside, 67)
    assert unreleased(outside.messages())
    sender.send_message([STOP])
    assert wait_for(lambda: not unreleased(outside.messages())), "Stop left notes on"
    n = len(outside.received)
    sender.send_message([NOTE_OFF, 67, 0])  # the DAW's own note-off after Stop: nothing to release
    settle(outside)
    assert outside.messages()[n:] == []
    play(sender, outside, 69)  # and it goes on playing
    sender.send_message([NOTE_OFF, 69, 0])
    assert wait_for(lambda: not unreleased(outside.messages()))


def test_a_source_that_dies_mid_note_leaves_nothing_sounding(bridge, outside, jack_server):
    """A DAW that crashes holding a note sends no note-off: its harmony ends when it goes."""
    import rtmidi

    outside.receiver("bachbridge out")
    keyboard = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="crashing daw")
    keyboard.open_port(Outside._index(keyboard.get_ports(), "bachbridge in"), "out")
    time.sleep(0.05)
    keyboard.send_message([NOTE_ON, 67, 80])
    assert wait_for(lambda: harmony_ons(outside.messages()))
    time.sleep(0.3)
    assert unreleased(outside.messages())          # held: no note-off came
    keyboard.close_port()                          # the program is gone, without a note-off
    keyboard.delete()
    started = time.monotonic()
    assert wait_for(lambda: not unreleased(outside.messages()), timeout=3), unreleased(outside.messages())
    assert time.monotonic() - started < 1.0
    sender = outside.sender("bachbridge in")       # another source plays on
    play(sender, outside, 69)
    sender.send_message([NOTE_OFF, 69, 0])
    assert wait_for(lambda: not unreleased(outside.messages()))


def test_close_while_a_note_is_held_releases_it_then_cc123_everywhere(jack_server, engine, outside):
    bridge = Bridge(engine, LiveConfig(clock="free"), LIVE_SETTINGS, api="jack").start()
    try:
        sender = connect(outside)
        play(sender, outside, 71)
        play(sender, outside, 72, harmony=False)  # legato: two melody notes echoed, one harmony
        settle(outside)
    finally:
        bridge.close()
    bridge.close()  # twice is fine
    assert wait_for(lambda: cc123_channels(outside.messages()) >= {ECHO_CHANNEL, *HARMONY_CHANNELS})
    messages = outside.messages()
    assert unreleased(messages) == {}
    last_note = max(i for i, m in enumerate(messages) if m[0] & 0xF0 in (NOTE_ON, NOTE_OFF))
    first_cc123 = min(i for i, m in enumerate(messages) if m[0] & 0xF0 == CC and m[1] == 123)
    assert last_note < first_cc123  # note-offs first, then CC 123


def test_junk_does_not_stop_it(bridge, outside):
    sender = connect(outside)
    junk = [[0xF0, 0x7E, 0x7F, 0x06, 0x01, 0xF7], [0xF0, 0x43, 0x12, 0x00, 0x01, 0x02, 0xF7],
            [0xF4], [0xF5], [0xFD], [0xF9], [0xF2, 0x7F], [0xF3, 0x01], [0xB0, 0x07, 0x64], [0xE0, 0x00, 0x40],
            [0xC0, 0x05], [0xD0, 0x40], [0xA0, 0x3C, 0x40], [0xFE], [0xFF]]
    rng = np.random.default_rng(3)
    while len(junk) < 115:  # random bytes, some starting with a status byte, most not, but:
        message = rng.integers(0, 256, size=int(rng.integers(1, 4))).tolist()
        if len(message) == 3 and message[0] & 0xE0 == 0x80 and max(message[1:]) < 0x80:
            continue  # a real note-on would rightly be played
        junk.append(message)
    for message in junk:
        try:
            sender.send_message(message)
        except Exception:
            pass  # rtmidi may refuse some of it itself; whatever gets through must do no harm
    time.sleep(0.03)  # an unterminated SysEx costs what comes in the next few ms (ports.SYSEX_GUARD_S)
    sender.send_message([START])
    for _ in range(2000):  # a clock flood
        sender.send_message([CLOCK])
    play(sender, outside, 72)
    sender.send_message([NOTE_OFF, 72, 0])
    assert wait_for(lambda: not unreleased(outside.messages()))
    assert bridge._worker.is_alive()
    stats = bridge.stats.snapshot()
    assert stats.ignored > 0 and stats.event_errors == 0
    assert 20 <= bridge.stats.bpm <= 400


def test_an_engine_that_raises_falls_back_to_echo_and_is_counted(jack_server, engine, outside):
    broken = Broken(engine.model)
    with Bridge(broken, LiveConfig(clock="free"), LIVE_SETTINGS, api="jack") as bridge:
        assert bridge.stats.engine_errors == 1 and "warm-up" in bridge.stats.last_engine_error
        sender = connect(outside)
        for pitch in (72, 74, 76):
            play(sender, outside, pitch, harmony=False)
            sender.send_message([NOTE_OFF, pitch, 0])
        assert wait_for(lambda: bridge.stats.engine_errors == 4)
        assert "the model fell over" in bridge.stats.last_engine_error
        assert harmony_ons(outside.messages()) == []
        bridge.update(engine=engine)  # a working engine again: harmony comes back
        play(sender, outside, 77)
        sender.send_message([NOTE_OFF, 77, 0])
        assert wait_for(lambda: not unreleased(outside.messages()))
        assert bridge._worker.is_alive() and bridge.stats.event_errors == 0


def test_what_the_bridge_holds_is_frozen_out_of_the_collectors_walks_while_it_runs(jack_server, engine, tiny_model):
    """A full collection walks every object not frozen, in the thread that falls on it, the
    worker too: the engines, modules and ports are set aside when the bridge starts, a new
    engine when it is swapped in, and given back on close."""
    import gc

    with Bridge(engine, LiveConfig(clock="free"), LIVE_SETTINGS, api="jack") as bridge:
        frozen = gc.get_freeze_count()
        assert frozen > 10 * len(gc.get_objects()), (frozen, len(gc.get_objects()))
        other = load_engine(tiny_model, threads=1)
        bridge.update(engine=other)
        assert gc.get_freeze_count() > frozen
        assert not any(o is other for o in gc.get_objects())   # the new engine is set aside too
    assert gc.get_freeze_count() == 0


def test_two_bridges_in_one_process_keep_it_tuned_until_the_last_one_closes(jack_server, engine, tiny_model):
    """The switch interval and the frozen heap are the process's: the first bridge to close must
    not give them back under the second, and the last one gives back what was there before."""
    import gc
    import sys

    before = sys.getswitchinterval()
    first = Bridge(engine, LiveConfig(clock="free"), LIVE_SETTINGS, api="jack", in_name="one in",
                   out_name="one out").start()
    try:
        with Bridge(engine, LiveConfig(clock="free"), LIVE_SETTINGS, api="jack", in_name="two in",
                    out_name="two out") as second:
            live_interval = sys.getswitchinterval()
            assert live_interval < before
            first.close()
            assert gc.get_freeze_count() > 0 and sys.getswitchinterval() == live_interval
            other = load_engine(tiny_model, threads=1)
            second.update(engine=other)
            assert not any(o is other for o in gc.get_objects())   # still set aside as it comes
    finally:
        first.close()
    assert gc.get_freeze_count() == 0 and sys.getswitchinterval() == before


def test_the_cpus_are_kept_awake_while_the_bridge_runs_and_let_sleep_after(jack_server, engine):
    """The CPU latency request (0 us) is the bridge's while it runs, gone when it closes, and never
    made when it is asked not to (`cpus_awake=False`, `bachbridge live --let-cpus-sleep`)."""
    if not os.access(CPU_DMA_LATENCY, os.W_OK):
        pytest.skip(f"{CPU_DMA_LATENCY} is not writable here (root's, unless a udev rule gives it to a group)")
    before = cpu_latency_limit_us()
    if before == 0:
        pytest.skip("another process keeps the CPUs awake: the bridge's own request could not be seen")
    with Bridge(engine, LiveConfig(clock="free"), LIVE_SETTINGS, api="jack") as bridge:
        assert bridge.cpus_awake
        assert cpu_latency_limit_us() == 0
    assert not bridge.cpus_awake
    assert cpu_latency_limit_us() == before
    with Bridge(engine, LiveConfig(clock="free"), LIVE_SETTINGS, api="jack", cpus_awake=False) as bridge:
        assert not bridge.cpus_awake
        assert cpu_latency_limit_us() == before


def test_settings_and_engine_change_mid_stream_without_a_hanging_note(bridge, outside, engine, tiny_model):
    sender = connect(outside)
    other_engine = load_engine(tiny_model, threads=1)
    config = bridge.snapshot.config
    changes = [dict(settings=LIVE_SETTINGS.replace(temperature=0.2)),
               dict(config=config.replace(channels=(4, 5, 6))),
               dict(settings=LIVE_SETTINGS.replace(steps=3, key="G")),
               dict(config=config.replace(channels=(4, 5, 6), echo=False, context_steps=8)),
               dict(engine=other_engine),
               dict(config=config.replace(channels=(1, 1, 1), echo_channel=1)),
               dict(engine=engine)]
    released_early = 0
    for k, pitch in enumerate(MELODY[:14]):
        play(sender, outside, pitch)
        if k % 2:
            before = bridge.snapshot
            bridge.update(**changes[k // 2])  # while the note is held
            after = bridge.snapshot
            if (after.engine is not before.engine or after.config.channels != before.config.channels
                    or after.config.echo_channel != before.config.echo_channel):
                # what sounds belongs to the old engine or channels: released now, not at note-off
                assert wait_for(lambda: not unreleased(outside.messages())), unreleased(outside.messages())
                released_early += 1
        sender.send_message([NOTE_OFF, pitch, 0])
        assert wait_for(lambda: not unreleased(outside.messages())), unreleased(outside.messages())
    assert released_early == 4
    assert bridge.snapshot.engine is engine and bridge.stats.event_errors == 0


def test_updates_from_another_thread_while_notes_stream(bridge, outside):
    sender = connect(outside)
    stop = threading.Event()

    def turn_knobs():
        k = 0
        while not stop.is_set():
            k += 1
            bridge.update(settings=LIVE_SETTINGS.replace(temperature=0.1 + (k % 10) / 10),
                          config=bridge.snapshot.config.replace(channels=(1, 2, 3) if k % 2 else (2, 3, 4)))
            time.sleep(0.002)

    knobs = threading.Thread(target=turn_knobs)
    knobs.start()
    try:
        for k in range(40):
            pitch = MELODY[k % len(MELODY)]
            sender.send_message([NOTE_ON, pitch, 80])
            time.sleep(0.006)
            sender.send_message([NOTE_OFF, pitch, 0])
            time.sleep(0.002)
    finally:
        stop.set()
        knobs.join()
    assert wait_for(lambda: not unreleased(outside.messages()), timeout=2.0), unreleased(outside.messages())
    assert bridge.stats.notes_in == 40 and bridge.stats.event_errors == 0


def test_midi_start_and_clock_place_the_notes(bridge, outside):
    bridge.update(config=bridge.snapshot.config.replace(clock="midi"))
    sender = connect(outside)
    sender.send_message([START])
    send_clocks_at(sender, 120.0, 25)   # clocks 0..24: step 4
    play(sender, outside, 72)
    sender.send_message([NOTE_OFF, 72, 0])
    assert wait_for(lambda: not unreleased(outside.messages()))
    assert bridge.stats.clock_running
    assert bridge._player.context.step == 4
    assert bridge.stats.bpm == pytest.approx(120, rel=0.1)  # (the 1% test is below)


def send_clocks_at(sender, bpm: float, count: int) -> None:
    """`count` MIDI clocks on an absolute schedule (no drift), the last ~2 ms of each wait spun;
    with realtime scheduling where the OS allows it, as a DAW's clock runs (else a busy machine
    delays the sender, not the bridge)."""
    interval = 60 / (bpm * 24)
    me = threading.get_native_id()
    policy, param = os.sched_getscheduler(me), os.sched_getparam(me)
    try:
        os.sched_setscheduler(me, os.SCHED_FIFO, os.sched_param(1))
    except OSError:
        pass
    try:
        start = time.perf_counter()
        for k in range(count):
            deadline = start + k * interval
            while (left := deadline - time.perf_counter()) > 0.002:
                time.sleep(left - 0.002)
            while time.perf_counter() < deadline:
                time.sleep(0)   # lets go of the GIL: an in-process bridge polls meanwhile (a spin
                # holding it delayed the bridge's stamps by up to the switch interval, 5 ms: 1%)
            sender.send_message([CLOCK])
    finally:
        os.sched_setscheduler(me, policy, param)


def test_clock_through_jack_followed_within_one_percent_and_song_position_moves(bridge, outside):
    bridge.update(config=bridge.snapshot.config.replace(clock="midi"))
    sender = connect(outside)
    sender.send_message([START])
    send_clocks_at(sender, 120.0, 49)                     # two quarter notes
    assert wait_for(lambda: bridge.stats.clock_running)
    time.sleep(0.01)
    assert bridge.stats.bpm == pytest.approx(120, rel=0.01)
    sender.send_message([STOP])
    sender.send_message([0xF2, 32, 0])                    # Song Position Pointer: 16th 32 (bar 3)
    sender.send_message([0xFB])                           # Continue
    send_clocks_at(sender, 120.0, 7)                      # 16th 32's clocks, and the first of 33
    play(sender, outside, 72)
    sender.send_message([NOTE_OFF, 72, 0])
    assert wait_for(lambda: not unreleased(outside.messages()))
    assert bridge._player.context.step == 33
    assert bridge.stats.position_steps == 33 and bridge.stats.clock_source == "midi"


# ------------------------------------------------------------- the command

def read_line_with(proc, text: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if text in line:
                return line
    proc.kill()
    raise AssertionError(f"no {text!r} from bachbridge live: {''.join(seen)}{proc.stderr.read()}")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_command_stopped_by_a_signal_while_a_note_is_held(jack_server, tiny_model, outside, signum):
    proc = subprocess.Popen([sys.executable, "-m", "bridge", "live", "--api", "jack", "--model", str(tiny_model),
                             "--in", "cli in", "--out", "cli out", "--clock", "internal", "--bpm", "120"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ))
    try:
        line = read_line_with(proc, "ports up in", timeout=60)
        assert "'cli in' -> 'cli out' (jack)" in line
        if os.access(CPU_DMA_LATENCY, os.W_OK):
            assert cpu_latency_limit_us() == 0   # the CPUs kept awake while it plays
        sender = connect(outside, "cli in", "cli out")
        play(sender, outside, 72)
        sender.send_message([NOTE_OFF, 72, 0])
        play(sender, outside, 74)  # held
        # its echo: the bridge took it in (the harmony play() waited for may be 72's, late)
        assert wait_for(lambda: any(m[:2] == bytes([NOTE_ON | ECHO_CHANNEL, 74]) for m in outside.messages()))
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "stopped: 2 notes in" in out, out
    assert wait_for(lambda: cc123_channels(outside.messages()) >= {ECHO_CHANNEL, *HARMONY_CHANNELS})
    assert unreleased(outside.messages()) == {}
