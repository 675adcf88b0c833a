"""bridge.sounding: the one record of what sounds on an output, without a port."""
from __future__ import annotations

import pytest

from bridge.sounding import Sounding

ON, OFF, CC = 0x90, 0x80, 0xB0


def record():
    wire: list[bytes] = []
    return Sounding(wire.append), wire


def test_a_unison_is_struck_again_and_ends_with_its_last_holder():
    notes, wire = record()
    assert notes.send(bytes([ON | 1, 60, 90]), "live")        # alto
    assert notes.send(bytes([ON | 1, 60, 80]), "live")        # tenor joins it: struck again
    assert wire == [bytes([ON | 1, 60, 90]), bytes([OFF | 1, 60, 0]), bytes([ON | 1, 60, 80])]
    assert not notes.send(bytes([OFF | 1, 60, 0]), "live")    # the alto leaves: the tenor still sounds
    assert notes.sounding() == {(1, 60): 1}
    assert notes.send(bytes([ON | 1, 60, 0]), "live")         # velocity 0 is a note-off: the last one
    assert wire[-1] == bytes([ON | 1, 60, 0]) and notes.sounding() == {}


def test_a_source_ends_only_its_own_notes():
    notes, wire = record()
    notes.send(bytes([ON, 64, 100]), "live")
    notes.send(bytes([ON, 64, 100]), "file")
    notes.send(bytes([ON, 67, 100]), "file")
    assert not notes.send(bytes([OFF, 72, 0]), "file")        # not held: dropped, nothing written
    assert notes.release("file") == 1                         # 67 ends; 64 is the live harmony's too
    assert notes.sounding() == {(0, 64): 1} and notes.sounding("file") == {}
    assert not notes.send(bytes([OFF, 64, 0]), "file")        # the file no longer holds it
    assert notes.release("live") == 1
    assert wire[-1] == bytes([OFF, 64, 0]) and notes.sounding() == {}


def test_all_notes_off_ends_every_key_once_lifts_the_pedal_then_cc123():
    notes, wire = record()
    notes.send(bytes([ON | 2, 50, 90]), "a")
    notes.send(bytes([ON | 2, 50, 90]), "b")
    notes.send(bytes([CC | 3, 64, 127]))
    notes.send(bytes([0xF8]))                                 # system messages pass, untracked
    del wire[:]
    with pytest.raises(ValueError):
        notes.all_notes_off([16])
    assert wire == []                                         # a bad channel sends nothing
    assert notes.all_notes_off([5]) == 5
    assert wire == [bytes([OFF | 2, 50, 0]), bytes([CC | 3, 64, 0]),
                    bytes([CC | 2, 123, 0]), bytes([CC | 3, 123, 0]), bytes([CC | 5, 123, 0])]
    assert notes.sounding() == {}


def test_silence_repeats_note_offs_only_for_keys_that_sound_no_more():
    notes, wire = record()
    notes.send(bytes([ON, 60, 90]), "live")
    notes.send(bytes([ON, 64, 90]), "live")
    ended = notes.sounding("live")
    notes.release("live")
    notes.send(bytes([ON, 64, 70]), "live")                   # struck again meanwhile: it must go on
    del wire[:]
    assert notes.silence(ended) == 1
    assert wire == [bytes([OFF, 60, 0])] and notes.sounding() == {(0, 64): 1}
