"""Respond mode (call and response): the player on its own in simulated time, then through a real
JACK server with stock programs listening, with real (tiny, freshly trained) phrase nets."""
from __future__ import annotations

import time

import pytest

from bridge.engines import load_engine
from bridge.errors import BadInput
from bridge.live import LIVE_SETTINGS, Bridge, LiveConfig, LiveStats, Outlet, Snapshot
from bridge.live.config import checked_snapshot
from bridge.live.respond_mode import RespondMode
from bridge.sounding import Sounding
from test_live import ECHO_CHANNEL, HARMONY_CHANNELS, NOTE_OFF, NOTE_ON, connect, is_note_on, settle, unreleased
from test_live_modes import BPM, STEP_NS, Recorder, melody_events, run_until
from test_ports import wait_for

BEAT_NS = 4 * STEP_NS                                   # 500 ms at 120 bpm
SETTINGS = LIVE_SETTINGS.replace(harmonizer="chords", temperature=1.0, seed=5)
CALL = [67, 69, 71, 72, 74, 72, 71, 69]                 # eight 8ths: one bar


@pytest.fixture(scope="module")
def engine(tiny_phrase):
    return load_engine(tiny_phrase, threads=1)


def respond_player(engine, settings=SETTINGS, **config):
    recorder = Recorder()
    player = RespondMode(Outlet(Sounding(recorder)), LiveStats())
    player.apply(Snapshot(LiveConfig(mode="respond", clock="internal", bpm=BPM, **config), settings, engine), 0)
    return player, recorder


def answer_notes(recorder, after_ns=0):
    """(t, channel, pitch) of every note-on sent after `after_ns`, in order."""
    return [(t, m[0] & 0x0F, m[1]) for t, m in recorder.sent if t > after_ns and is_note_on(m)]


def test_silence_after_a_phrase_gets_an_answer_on_the_beat(engine):
    player, recorder = respond_player(engine)
    call = melody_events(CALL, start_ns=0)                 # onsets on the grid from 0; last off at 3.625 s
    last_off = max(t for t, m in call if m[0] == NOTE_OFF)
    run_until(player, recorder, last_off + BEAT_NS + 3 * 2 * 4 * BEAT_NS, call)
    answer = answer_notes(recorder, last_off)
    assert answer, "no answer"
    trigger = last_off + BEAT_NS                            # a beat of silence
    first = answer[0][0]
    assert trigger <= first <= trigger + BEAT_NS + 1_000_000      # within a beat of the trigger ...
    assert abs(first - round(first / BEAT_NS) * BEAT_NS) <= 1_000_000   # ... on a beat of the grid
    channels = {c for _, c, _ in answer}
    assert ECHO_CHANNEL in channels and set(HARMONY_CHANNELS) <= channels   # melody and voices under it
    assert answer[-1][0] < first + 2 * 4 * BEAT_NS                  # two bars long
    assert unreleased(recorder.messages()) == {}
    assert player.stats.answers == 1 and player.stats.engine_errors == 0
    # one answer per phrase: more silence brings no second one
    count = len(recorder.sent)
    run_until(player, recorder, recorder.now + 4 * BEAT_NS)
    assert len(recorder.sent) == count


def test_the_players_next_note_stops_the_answer_at_once(engine):
    player, recorder = respond_player(engine)
    call = melody_events(CALL, start_ns=0)
    last_off = max(t for t, m in call if m[0] == NOTE_OFF)
    run_until(player, recorder, last_off + 3 * BEAT_NS, call)
    first_answer = answer_notes(recorder, last_off)[0][0]
    interrupt = first_answer + BEAT_NS + 3_000_000
    run_until(player, recorder, interrupt + 4 * BEAT_NS,
              [(interrupt, bytes([NOTE_ON, 60, 90])), (interrupt + STEP_NS, bytes([NOTE_OFF, 60, 0]))])
    before = [m for t, m in recorder.sent if t < interrupt]
    assert unreleased(before), "the answer was not sounding when the player came back"
    at_interrupt = [m for t, m in recorder.sent if t == interrupt]
    # every answer note ended, then the player's note echoed, all at the moment it came
    assert unreleased(before + at_interrupt) == {(ECHO_CHANNEL, 60): 1}
    # nothing more of the answer; the new phrase (one note) gets its own answer after its silence
    new_trigger = interrupt + STEP_NS + BEAT_NS
    assert [m for t, m in recorder.sent if interrupt < t < new_trigger and is_note_on(m)] == []
    assert [m for t, m in recorder.sent if t > new_trigger and is_note_on(m)]
    assert player.stats.answers_stopped == 1 and player.stats.answers == 2


def test_the_footswitch_answers_at_once_and_other_controllers_are_ignored(engine):
    player, recorder = respond_player(engine, respond_cc=64, respond_after_beats=8.0)
    call = melody_events(CALL[:4], start_ns=0)
    last_off = max(t for t, m in call if m[0] == NOTE_OFF)
    press = last_off + STEP_NS
    events = call + [(press - 1000, bytes([0xB0, 1, 127])),        # the mod wheel: not the footswitch
                     (press, bytes([0xB0, 64, 127]))]
    run_until(player, recorder, press + 2 * BEAT_NS, events)
    answer = answer_notes(recorder, last_off)
    assert answer and answer[0][0] - press <= BEAT_NS + 1_000_000
    assert player.stats.ignored == 1


def test_an_answer_from_a_failing_engine_is_counted_and_the_bridge_goes_on(engine):
    class Failing(type(engine)):
        def generate(self, *args, **kwargs):
            raise RuntimeError("no answer today")

    player, recorder = respond_player(Failing(engine.model))
    call = melody_events(CALL[:4], start_ns=0)
    run_until(player, recorder, 4 * BEAT_NS + 2 * BEAT_NS, call)
    assert answer_notes(recorder, 2 * BEAT_NS) == []
    assert player.stats.engine_errors == 1 and "no answer today" in player.stats.last_engine_error
    assert unreleased(recorder.messages()) == {}


def test_any_engine_answers_and_the_phrase_engine_cannot_harmonize_live(engine, tiny_model):
    coconet = load_engine(tiny_model, threads=1)
    player, recorder = respond_player(coconet, settings=LIVE_SETTINGS.replace(steps=2, seed=1))
    call = melody_events(CALL, start_ns=0)
    run_until(player, recorder, 10 * BEAT_NS, call)
    assert answer_notes(recorder, 4 * BEAT_NS)
    with pytest.raises(BadInput, match="cannot fill"):
        checked_snapshot(engine, LiveConfig(mode="note"), LIVE_SETTINGS)
    checked_snapshot(engine, LiveConfig(mode="respond"), LIVE_SETTINGS)


# ------------------------------------------------------------- through JACK

def test_respond_mode_through_jack_answers_on_the_beat_and_stops_for_the_player(jack_server, engine, outside, capsys):
    config = LiveConfig(mode="respond", clock="internal", bpm=240.0, respond_after_beats=1.0, answer_bars=1)
    beat_s = 0.25
    with Bridge(engine, config, SETTINGS, api="jack") as bridge:
        sender = connect(outside)
        times = []
        for call in range(3):
            start = len(outside.received)
            for pitch in CALL[:4]:
                sender.send_message([NOTE_ON, pitch, 80])
                time.sleep(beat_s / 2 - 0.01)
                sender.send_message([NOTE_OFF, pitch, 0])
                silent_from = time.perf_counter_ns()
                time.sleep(0.01)

            def answer_ons():   # the last answer may still be ending as the call begins: only what came after it
                return [t for m, t in outside.received[start:]
                        if t > silent_from and is_note_on(m) and m[0] & 0x0F != ECHO_CHANNEL]
            assert wait_for(answer_ons, timeout=3), "no answer"
            first = answer_ons()[0]
            times.append((first - silent_from) / 1e6)
            if call < 2:
                time.sleep(beat_s)          # the answer is sounding: play over it
        settle(outside, quiet_s=0.3, timeout=5)
        assert unreleased(outside.messages()) == {}
        stats = bridge.stats.snapshot()
        assert stats.answers == 3 and stats.answers_stopped == 2 and stats.engine_errors == 0
        # a beat of silence, then the beat it reaches: one to two beats from the last note-off
        # (less the note-off's own way through JACK)
        assert all(beat_s * 1e3 - 5 <= t <= 2 * beat_s * 1e3 + 20 for t in times), times
        with capsys.disabled():
            print(f"\n  respond mode: trigger -> first answer note p50 {stats.p50_answer_ms:.1f} ms, "
                  f"late after its beat p99 {stats.p99_answer_lateness_ms:.1f} ms")


def test_a_pause_shorter_than_the_silence_asked_for_keeps_the_phrase_going(engine):
    """The engine is asked a little before the answer's beat; a note between that and the end of
    the silence cancels the answer, and the phrase goes on with all its notes."""
    player, recorder = respond_player(engine)
    call = [(0, bytes([NOTE_ON, 67, 80])), (1_990_000_000, bytes([NOTE_OFF, 67, 0]))]   # silence due at 2.49 s
    run_until(player, recorder, 2_450_000_000, call)
    assert player.asking or player.schedule, "the engine was not asked ahead of the beat"
    run_until(player, recorder, 2_600_000_000, [(2_455_000_000, bytes([NOTE_ON, 69, 80]))])
    assert len(player.notes) == 2 and not player.answered
    assert answer_notes(recorder, 2_000_000_000) == [(2_455_000_000, ECHO_CHANNEL, 69)]   # its echo only
    run_until(player, recorder, 2_600_000_000 + 14 * BEAT_NS, [(2_700_000_000, bytes([NOTE_OFF, 69, 0]))])
    assert player.stats.answers == 1 and unreleased(recorder.messages()) == {}


def test_stock_programs_call_the_bridge_answers_on_jack_midi_clocks_beat(realtime_jack, tmp_path):
    """jack_midi_clock is the DAW's clock (120 bpm), jack_midiseq plays a bar of 8ths and rests two,
    over and over; `bachbridge live --mode respond` answers each call with 4 bars, so each answer
    is cut short by the next call; jack_midi_dump hears the calls (channel 1) and the answers (the
    answer's melody on channel 16, its voices on 2 to 4)."""
    from jackrig import MidiClock, MidiDump, MidiSeq, harmony_hanging, missing_programs

    missing = missing_programs(["jack_midiseq", "jack_midi_dump", "jack_midi_clock"])
    if missing:
        pytest.skip(f"stock JACK programs missing: {', '.join(missing)} (`make test` installs them)")
    from test_live_stock import start_live, stop_live

    server = realtime_jack       # asynchronous
    eighth, beat, bar = 12_000, 24_000, 96_000             # frames at 48 kHz, 120 bpm
    live = start_live("--mode", "respond", "--clock", "midi", "--answer-bars", "4", "--harmonizer", "chords",
                      "--no-echo", "--echo-channel", "16", "--seed", "1")
    clock = dump = seq = None
    try:
        clock = MidiClock(server, bpm=120)
        dump = MidiDump(server, "dump")
        server.connect("jack_midi_clock:mclk_out", "bachbridge in")
        server.connect("bachbridge out", "dump:input")
        server.graph().transport(True, 0)
        time.sleep(1.0)                                      # the bridge learns the tempo
        notes = [(k * eighth, pitch, eighth * 3 // 4) for k, pitch in enumerate(CALL)]
        seq = MidiSeq(server, "seq", notes, loop_frames=3 * bar)
        server.connect("seq:out", "bachbridge in")
        server.connect("seq:out", "dump:input")
        # three whole calls 6 s apart and their answers (a fourth, begun, is not looked at: the
        # first may have begun before the sequencer was connected)
        time.sleep(3 * 6.0 + 4.0)
        seq.close()
        time.sleep(0.5)
        server.graph().transport(False)                      # the DAW stops: whatever sounds ends
        time.sleep(0.5)
    finally:
        stop_live(live)
        for program in (seq, dump, clock):
            if program is not None:
                program.close()
    events = [(f, m) for f, m in dump.events() if m[0] & 0xF0 in (NOTE_ON, NOTE_OFF)]
    (tmp_path / "jack_midi_dump.txt").write_text("".join(f"{f} {m.hex(' ')}\n" for f, m in events))
    calls = [f for f, m in events if m[0] == NOTE_ON and m[1] == CALL[0] and m[2] > 0]
    answer_ons = [f for f, m in events if m[0] & 0x0F != 0 and m[0] & 0xF0 == NOTE_ON and m[2] > 0]
    assert len(calls) >= 3 and answer_ons, (calls, answer_ons[:5])
    for k, start in enumerate(calls[:3]):
        silence = start + 7 * eighth + eighth * 3 // 4           # the call's last note-off
        mine = [f for f in answer_ons if silence < f < start + 3 * bar]
        assert mine, f"call {k} at frame {start}: no answer (answers at {answer_ons}; calls at {calls})"
        # a beat of silence, then the beat it reaches: within a beat of the trigger
        assert beat - 3_000 <= mine[0] - silence <= 2 * beat + 3_000, (k, mine[0] - silence)
        # cut short by the next call: nothing of it after the next call's first note (but what was
        # due in the very cycle that note came in)
        if k + 1 < len(calls):
            assert not [f for f in answer_ons if calls[k + 1] + 256 < f < calls[k + 1] + 7 * eighth]
    # (what came in a cycle the listener missed is JACK's to lose: the sequencer's 8ths and their
    # offs lie on 3,000 frames)
    assert harmony_hanging(events, grid=3_000) == {}, tmp_path / "jack_midi_dump.txt"
