"""Knobs moved from the DAW (bridge.live.learn): the mapping on its own, then controllers and
program changes through real JACK ports moving what the engine is asked with."""
from __future__ import annotations

import time

import pytest

from bridge.engines import load_engine
from bridge.engines.coconet import CoconetEngine
from bridge.errors import BadInput
from bridge.live import LIVE_SETTINGS, Bridge, LiveConfig
from bridge.live.learn import KEYS, KNOBS, PROGRAM, knob_change, parse_binding, turned
from bridge.settings import Settings
from test_live import NOTE_OFF, NOTE_ON, connect, harmony_ons, settle, unreleased
from test_ports import wait_for

CC, PC = 0xB0, 0xC0


def test_a_controller_spans_the_knobs_range_and_choices_get_equal_slices():
    assert KNOBS["temperature"].value(0) == 0.0 and KNOBS["temperature"].value(127) == 2.0
    assert KNOBS["steps"].value(0) == 1 and KNOBS["steps"].value(127) == 64
    assert isinstance(KNOBS["steps"].value(50), int)
    assert [KNOBS["mode"].value(v) for v in (0, 42, 43, 85, 86, 127)] == \
        ["note", "note", "phrase", "phrase", "respond", "respond"]
    assert [KNOBS["key"].value(v) for v in (0, 127)] == [KEYS[0], KEYS[-1]]
    assert {KNOBS["speculate"].value(v) for v in range(64)} == {False}
    assert {KNOBS["speculate"].value(v) for v in range(64, 128)} == {True}
    for key in KEYS:                                    # every choice is a key Settings takes
        Settings(key=key)


def test_only_bound_messages_move_knobs():
    bound = (("temperature", 21), ("key", PROGRAM))
    assert knob_change(bytes([CC | 3, 21, 127]), bound, None) == ("temperature", 2.0)
    assert knob_change(bytes([CC, 22, 127]), bound, None) is None
    assert knob_change(bytes([CC | 3, 21, 127]), bound, 0) is None          # not the melody's channel
    assert knob_change(bytes([PC, 2]), bound, None) == ("key", "C")
    assert knob_change(bytes([PC, 100]), bound, None) is None               # no such choice
    assert knob_change(bytes([NOTE_ON, 21, 100]), bound, None) is None
    assert knob_change(bytes([CC, 21, 127]), (), None) is None


def test_pmin_and_pmax_keep_their_order():
    config, settings = LiveConfig(), Settings(pmin=0.1, pmax=0.5)
    assert turned(config, settings, {"pmin": 0.8})[1].pmax == 0.8
    assert turned(config, settings, {"pmax": 0.05})[1].pmin == 0.05
    config, settings = turned(config, settings, {"mode": "phrase", "temperature": 1.5})
    assert config.mode == "phrase" and settings.temperature == 1.5


@pytest.mark.parametrize("bindings, says", [
    ((("temperature", 120),), "0..119"),
    ((("temperature", 21), ("pmin", 21)), "bound to two knobs"),
    ((("temperature", 64),), "respond mode's trigger"),
    ((("temperature", PROGRAM),), "has a range"),
    ((("loudness", 21),), "knob one of"),
])
def test_bad_bindings_are_refused_in_one_line(bindings, says):
    with pytest.raises(BadInput, match=says):
        LiveConfig(knob_controls=bindings, respond_cc=64)


def test_the_command_line_reads_bindings():
    assert parse_binding("temperature=21") == ("temperature", 21)
    assert parse_binding("parallel-penalty=7") == ("parallel_penalty", 7)
    assert parse_binding("mode=program") == ("mode", PROGRAM)
    for bad in ("temperature", "temperature=x", "loudness=3"):
        with pytest.raises(BadInput):
            parse_binding(bad)


class Recording(CoconetEngine):
    """A real engine that notes the temperature it is asked with."""

    def __init__(self, model):
        super().__init__(model)
        self.temperatures: list[float] = []

    def _fill_many(self, scores, knowns, settings, open_end):
        self.temperatures.append(settings.temperature)
        return super()._fill_many(scores, knowns, settings, open_end)


def test_a_controller_sweep_moves_what_the_engine_is_asked_with(jack_server, tiny_model, outside):
    engine = Recording(load_engine(tiny_model, threads=1).model)
    config = LiveConfig(clock="free", speculate=False, knob_controls=(("temperature", 21), ("mode", PROGRAM)))
    with Bridge(engine, config, LIVE_SETTINGS, api="jack") as bridge:
        sender = connect(outside)
        for value in range(0, 128, 16):
            sender.send_message([CC, 21, value])
            assert wait_for(lambda: bridge.snapshot.settings.temperature == KNOBS["temperature"].value(value))
            asked = len(engine.temperatures)
            n = len(outside.received)
            sender.send_message([NOTE_ON, 67, 80])
            assert wait_for(lambda: harmony_ons(m for m, _ in outside.received[n:]))
            sender.send_message([NOTE_OFF, 67, 0])
            assert engine.temperatures[asked:], "the engine was not asked"
            assert set(engine.temperatures[asked:]) == {KNOBS["temperature"].value(value)}
        sender.send_message([PC, 1])
        assert wait_for(lambda: bridge.snapshot.config.mode == "phrase")
        sender.send_message([PC, 0])
        assert wait_for(lambda: bridge.snapshot.config.mode == "note")
        settle(outside)
        time.sleep(0.05)
    messages = outside.messages()
    assert not [m for m in messages if (m[0] & 0xF0 == CC and m[1] == 21) or m[0] & 0xF0 == PC], \
        "a bound message was played"
    assert not unreleased(messages)
    assert bridge.stats.event_errors == 0


def test_a_knob_moved_while_an_update_holds_the_lock_waits_and_the_notes_do_not(jack_server, tiny_model, outside):
    engine = load_engine(tiny_model, threads=1)
    config = LiveConfig(clock="free", speculate=False, knob_controls=(("temperature", 21),))
    with Bridge(engine, config, LIVE_SETTINGS, api="jack") as bridge:
        sender = connect(outside)
        with bridge._update_lock:          # as an update() warming a new engine up holds it
            sender.send_message([CC, 21, 127])
            n = len(outside.received)
            sender.send_message([NOTE_ON, 67, 80])
            assert wait_for(lambda: harmony_ons(m for m, _ in outside.received[n:])), "the worker waited"
            sender.send_message([NOTE_OFF, 67, 0])
            assert bridge.snapshot.settings.temperature == LIVE_SETTINGS.temperature
        assert wait_for(lambda: bridge.snapshot.settings.temperature == 2.0)
        settle(outside)
    assert not unreleased(outside.messages())


def test_live_refuses_a_bad_binding_in_one_line():
    from conftest import run_cli

    for args, says in ((["--cc", "loudness=3"], "--cc takes KNOB=CONTROLLER"),
                       (["--cc", "temperature=64", "--respond-cc", "64"], "respond mode's trigger")):
        result = run_cli("live", *args, timeout=60)
        assert result.returncode == 2 and says in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_program_change_picks_the_engine_loaded_off_the_worker(jack_server, tiny_model, outside):
    engine = load_engine(tiny_model, threads=1)
    config = LiveConfig(clock="free", speculate=False, knob_controls=(("engine", PROGRAM),))
    assert turned(config, LIVE_SETTINGS, {"engine": "coconet"}) == (config, LIVE_SETTINGS)
    with Bridge(engine, config, LIVE_SETTINGS, api="jack") as bridge:
        sender = connect(outside)
        sender.send_message([PC, 0])                       # KNOBS["engine"].choices[0]
        assert wait_for(lambda: bridge.snapshot.engine.name == "coconet-live", timeout=60)
        n = len(outside.received)
        sender.send_message([NOTE_ON, 67, 80])
        assert wait_for(lambda: harmony_ons(m for m, _ in outside.received[n:]))
        sender.send_message([NOTE_OFF, 67, 0])
        errors = bridge.stats.event_errors
        sender.send_message([PC, KNOBS["engine"].choices.index("phrase")])   # cannot fill: note mode refuses it
        assert wait_for(lambda: bridge.stats.event_errors > errors, timeout=60)
        assert bridge.snapshot.engine.name == "coconet-live"
        settle(outside)
    assert not unreleased(outside.messages())
