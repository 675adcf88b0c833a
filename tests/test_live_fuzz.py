"""Fuzzing the live input (hypothesis): whatever bytes come in, as a port hands them over (one
message at a time, each as it came: random bytes, truncated messages, running status without
its status byte, SysEx pieces, every channel message type, clock floods, notes among them),
the players never raise, never take long over one message, and once every key that was pressed
is released (or the take is stopped) nothing is left sounding."""
from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from bridge.clock import NS_PER_MINUTE
from bridge.engines import load_engine
from bridge.live import LIVE_SETTINGS, LiveConfig, LiveStats, NoteMode, Outlet, PhraseMode, Snapshot
from bridge.sounding import Sounding

NOTE_OFF, NOTE_ON = 0x80, 0x90
STEP_NS = NS_PER_MINUTE // (4 * 120)
# one message may take this long at most (an engine call of the tiny model is a few ms)
SLOWEST_MESSAGE_S = 0.5


@pytest.fixture(scope="module")
def engine(tiny_model):
    return load_engine(tiny_model, threads=1)


data_byte = st.integers(0, 0x7F)
channel = st.integers(0, 15)
pitch = st.integers(21, 108)
velocity = st.integers(0, 127)

note = st.builds(lambda on, c, p, v: bytes([(NOTE_ON if on else NOTE_OFF) | c, p, v]),
                 st.booleans(), channel, pitch, velocity)
channel_message = st.one_of(   # every channel message type, well formed
    st.builds(lambda c, a, b: bytes([0xA0 | c, a, b]), channel, data_byte, data_byte),   # aftertouch
    st.builds(lambda c, a, b: bytes([0xB0 | c, a, b]), channel, data_byte, data_byte),   # control change
    st.builds(lambda c, a: bytes([0xC0 | c, a]), channel, data_byte),                     # program change
    st.builds(lambda c, a: bytes([0xD0 | c, a]), channel, data_byte),                     # channel pressure
    st.builds(lambda c, a, b: bytes([0xE0 | c, a, b]), channel, data_byte, data_byte))   # pitch bend
running_status = st.lists(data_byte, min_size=1, max_size=4).map(bytes)   # data bytes, the status left out
truncated = st.one_of(note, channel_message).flatmap(lambda m: st.integers(0, len(m) - 1).map(lambda n: m[:n]))
sysex = st.lists(st.integers(0, 255), max_size=12).map(lambda body: bytes([0xF0, *body]))   # maybe unended
system = st.sampled_from([b"\xf8"] * 6 + [b"\xfa", b"\xfb", b"\xfc", b"\xfe", b"\xff", b"\xf1\x10",
                                          b"\xf2\x00\x01", b"\xf3\x02", b"\xf6", b"\xf4", b"\xf7"])
noise = st.binary(min_size=0, max_size=6)
message = st.one_of(note, note, note, channel_message, running_status, truncated, sysex, system, noise)
stream = st.lists(st.tuples(message, st.integers(0, 3 * STEP_NS)), min_size=1, max_size=120)


def pressed(messages) -> set[tuple[int, int]]:
    return {(m[0] & 0x0F, m[1]) for m in messages if len(m) == 3 and m[0] & 0xF0 == NOTE_ON and m[2] > 0
            and m[1] < 0x80}


def play(player, events, now: list[int]) -> None:
    for data, gap in events:
        now[0] += gap
        player.tick(now[0])
        started = time.perf_counter()
        player.handle(data, now[0])
        assert time.perf_counter() - started < SLOWEST_MESSAGE_S, data.hex()


@pytest.mark.parametrize("mode", ["note", "phrase"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=stream, stop_instead=st.booleans())
def test_any_input_never_raises_blocks_or_leaves_a_note_on(engine, mode, events, stop_instead):
    wire: list[bytes] = []
    out = Sounding(wire.append)
    player = {"note": NoteMode, "phrase": PhraseMode}[mode](Outlet(out), LiveStats())
    config = LiveConfig(mode=mode, clock="auto", bpm=120.0, lookahead_beats=0.5, speculate=False)
    player.apply(Snapshot(config, LIVE_SETTINGS.replace(steps=2), engine), 0)
    now = [0]
    play(player, events, now)
    if stop_instead:
        play(player, [(b"\xfc", STEP_NS)], now)   # the DAW stops
    else:
        keys = pressed(data for data, _ in events)
        play(player, [(bytes([NOTE_OFF | c, p, 0]), 1000) for c, p in sorted(keys)], now)
    for _ in range(3):   # phrase mode: what is still scheduled goes out a lookahead later
        now[0] += NS_PER_MINUTE // 120
        player.tick(now[0])
    assert out.sounding() == {}, (out.sounding(), [m.hex() for m in wire[-12:]])
