"""MIDI file I/O: top-line extraction, the 16th grid, the four-voice output, bad files."""
from pathlib import Path

import mido
import numpy as np
import pytest

from bridge.errors import BadInput
from bridge.score import Score
from bridge.midifile import (
    REST, VOICE_NAMES, Melody, Note, quantize, read_melody, read_voices, write_chorale,
    write_melody,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "bridge" / "examples" / "chorale_melody.mid"


# ---------------------------------------------------------------------------- helpers

def on(tick, pitch, velocity=90, channel=0):
    return tick, mido.Message("note_on", note=pitch, velocity=velocity, channel=channel)


def off(tick, pitch, channel=0):
    return tick, mido.Message("note_off", note=pitch, channel=channel)


def note(start, end, pitch, velocity=90, channel=0):
    return [on(start, pitch, velocity, channel), off(end, pitch, channel)]


def tempo(tick, bpm):
    return tick, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm))


def save_midi(path, tracks, ticks_per_beat=480, file_type=1):
    """Write tracks given as lists of (absolute tick, message); returns the path."""
    midi = mido.MidiFile(type=file_type, ticks_per_beat=ticks_per_beat)
    for events in tracks:
        track = mido.MidiTrack()
        now = 0
        # Stable sort: at equal ticks the caller's order (e.g. off before on) is kept.
        for tick, msg in sorted(events, key=lambda event: event[0]):
            track.append(msg.copy(time=tick - now))
            now = tick
        midi.tracks.append(track)
    midi.save(path)
    return path


def line(melody):
    return [(n.pitch, n.start, n.end) for n in melody.notes]


def track_notes(track):
    """(channel, pitch, start, end) of each note, and whether two were ever on at once."""
    notes, sounding, tick, overlapped = [], {}, 0, False
    for msg in track:
        tick += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            overlapped |= bool(sounding)
            sounding[msg.note] = (msg.channel, tick)
        elif msg.type in ("note_on", "note_off"):
            channel, start = sounding.pop(msg.note)
            notes.append((channel, msg.note, start, tick))
    return notes, overlapped


# ---------------------------------------------------------------------------- the top line

def test_top_line_takes_the_highest_note_of_chords_across_tracks(tmp_path):
    path = save_midi(tmp_path / "chords.mid", [
        note(0, 960, 60) + note(0, 960, 64) + note(960, 1920, 65) + note(960, 1920, 69),
        note(0, 480, 67) + note(960, 1920, 72),
    ])
    # G4 on top until it ends, then E4 of the held chord takes over, then the top of the next.
    assert line(read_melody(path)) == [(67, 0, 480), (64, 480, 960), (72, 960, 1920)]


def test_short_tail_of_a_released_chord_is_dropped(tmp_path):
    # E4 outlasts G4 by 20 ticks before the next note: slop, not a melody note (a 32nd is 60).
    path = save_midi(tmp_path / "slop.mid", [note(0, 460, 67) + note(0, 480, 64) + note(480, 960, 65)])
    assert line(read_melody(path)) == [(67, 0, 460), (65, 480, 960)]


def test_drum_track_is_ignored(tmp_path):
    path = save_midi(tmp_path / "drums.mid", [
        note(0, 480, 62) + note(480, 960, 64),
        note(0, 120, 81, channel=9) + note(480, 600, 81, channel=9),
    ])
    assert line(read_melody(path)) == [(62, 0, 480), (64, 480, 960)]


def test_track_option_reads_only_that_track(tmp_path):
    path = save_midi(tmp_path / "two.mid", [
        [tempo(0, 90)], note(0, 480, 72), note(0, 480, 60) + note(480, 960, 62),
    ])
    assert line(read_melody(path, track=2)) == [(60, 0, 480), (62, 480, 960)]
    assert line(read_melody(path)) == [(72, 0, 480), (62, 480, 960)]


def test_note_on_with_velocity_zero_ends_the_note(tmp_path):
    path = save_midi(tmp_path / "running.mid", [
        [on(0, 60, 100), on(240, 60, 0), on(480, 62, 70), on(900, 62, 0)],
    ])
    melody = read_melody(path)
    assert line(melody) == [(60, 0, 240), (62, 480, 900)]
    assert [n.velocity for n in melody.notes] == [100, 70]


def test_overlapping_notes_of_one_pitch_are_separate_attacks(tmp_path):
    path = save_midi(tmp_path / "overlap.mid", [[on(0, 60), on(480, 60), off(600, 60), off(960, 60)]])
    assert line(read_melody(path)) == [(60, 0, 480), (60, 480, 960)]


def test_type0_file_with_two_channels(tmp_path):
    path = save_midi(tmp_path / "type0.mid", [
        [tempo(0, 120)] + note(0, 480, 55, channel=1) + note(0, 240, 67) + note(240, 480, 69)
        + note(480, 960, 71) + note(480, 960, 59, channel=1),
    ], file_type=0)
    melody = read_melody(path)
    assert line(melody) == [(67, 0, 240), (69, 240, 480), (71, 480, 960)]
    assert [(tick, msg.tempo) for tick, msg in melody.meta] == [(0, mido.bpm2tempo(120))]


# ---------------------------------------------------------------------------- the grid

def grid(melody):
    """quantize's soprano as a (T,) array, and its step ticks."""
    score, step_ticks = quantize(melody)
    return score.pitches[:, 0], step_ticks


def test_off_grid_note_snaps_but_its_step_starts_at_the_real_tick(tmp_path):
    # At 480 ticks per beat a 16th is 120 ticks; the second note comes 7 ticks late.
    path = save_midi(tmp_path / "late.mid", [note(0, 480, 60) + note(487, 960, 62)])
    soprano, step_ticks = grid(read_melody(path))
    assert soprano.tolist() == [60] * 4 + [62] * 4
    assert step_ticks.tolist() == [0, 120, 240, 360, 487, 600, 720, 840, 960]


@pytest.mark.parametrize("ticks_per_beat", [96, 480, 960])
def test_quarter_eighth_and_sixteenth_notes_at_any_resolution(tmp_path, ticks_per_beat):
    q = ticks_per_beat
    path = save_midi(tmp_path / "res.mid", [
        note(0, q, 60) + note(q, q + q // 2, 62) + note(q + q // 2, q + 3 * q // 4, 64)
        + note(2 * q, 3 * q, 65),
    ], ticks_per_beat=ticks_per_beat)
    soprano, step_ticks = grid(read_melody(path))
    assert soprano.dtype == np.int16
    assert soprano.tolist() == [60] * 4 + [62] * 2 + [64] + [REST] + [65] * 4
    assert step_ticks.tolist() == [t * q // 4 for t in range(13)]


def test_note_shorter_than_a_step_keeps_one_step_unless_the_next_onset_takes_it():
    melody = Melody(
        notes=(Note(60, 0, 30, 80), Note(62, 480, 500, 80), Note(64, 530, 600, 80)),
        ticks_per_beat=480, meta=(), length_ticks=600, source="x.mid",
    )
    soprano, step_ticks = grid(melody)
    # 62 (480-500) rounds onto step 4, as does 64 (530): the later onset wins the step.
    assert soprano.tolist() == [60, REST, REST, REST, 64]
    assert step_ticks.tolist() == [0, 120, 240, 360, 530, 600]
    assert np.all(np.diff(step_ticks) > 0)


def test_ticks_per_beat_below_four_is_scaled_so_steps_keep_distinct_ticks(tmp_path):
    path = save_midi(tmp_path / "coarse.mid", [note(0, 1, 60) + note(1, 3, 62)], ticks_per_beat=1)
    melody = read_melody(path)
    soprano, step_ticks = grid(melody)
    assert melody.ticks_per_beat == 4 and line(melody) == [(60, 0, 4), (62, 4, 12)]
    assert soprano.tolist() == [60] * 4 + [62] * 8
    assert np.all(np.diff(step_ticks) > 0)


# ---------------------------------------------------------------------------- the chorale

@pytest.fixture
def played_melody(tmp_path):
    """A melody with off-grid timing and velocities, a tempo change and a meter change."""
    conductor = [
        tempo(0, 96), (0, mido.MetaMessage("time_signature", numerator=4, denominator=4)),
        tempo(1920, 72), (1930, mido.MetaMessage("time_signature", numerator=3, denominator=4)),
        tempo(2880, 60),
    ]
    notes = (note(3, 470, 67, 100) + note(485, 950, 69, 64) + note(960, 1915, 71, 90)
             + note(1925, 2400, 72, 50) + note(2400, 2881, 72, 110))
    return read_melody(save_midi(tmp_path / "played.mid", [conductor, notes]))


def harmony_for(soprano):
    """A roll under `soprano` with repeated pitches and rests in the lower voices."""
    roll = np.full((len(soprano), 4), REST, dtype=np.int16)
    roll[:, 0] = soprano
    roll[:, 1] = 64
    roll[8:, 1] = 65
    roll[:, 2] = 59
    roll[4:6, 2] = REST
    roll[:, 3] = np.repeat([43, 45, 47, 48, 36, 40], 4)[: len(soprano)]
    return roll


def test_chorale_has_four_named_tracks_on_channels_one_to_four(tmp_path, played_melody):
    soprano, step_ticks = grid(played_melody)
    out = tmp_path / "out.mid"
    write_chorale(out, Score.of(harmony_for(soprano)), played_melody, step_ticks)

    midi = mido.MidiFile(out)
    assert midi.type == 1 and midi.ticks_per_beat == 480
    assert [track.name for track in midi.tracks] == list(VOICE_NAMES)
    for channel, track in enumerate(midi.tracks):
        notes, overlapped = track_notes(track)
        assert notes and {n[0] for n in notes} == {channel}
        assert not overlapped, f"{track.name} has two notes on at once"
        assert track[-1].type == "end_of_track"


def test_chorale_keeps_the_tempo_map_and_the_melody_as_played(tmp_path, played_melody):
    soprano, step_ticks = grid(played_melody)
    out = tmp_path / "out.mid"
    write_chorale(out, Score.of(harmony_for(soprano)), played_melody, step_ticks)

    tick, tempo_map = 0, []
    for msg in mido.MidiFile(out).tracks[0]:
        tick += msg.time
        if msg.type == "set_tempo":
            tempo_map.append((tick, round(mido.tempo2bpm(msg.tempo))))
    assert tempo_map == [(0, 96), (1920, 72), (2880, 60)]
    assert read_melody(out, track=0).notes == played_melody.notes


def test_harmony_moves_with_the_melody_and_takes_its_velocity(tmp_path, played_melody):
    soprano, step_ticks = grid(played_melody)
    out = tmp_path / "out.mid"
    write_chorale(out, Score.of(harmony_for(soprano)), played_melody, step_ticks)

    alto = read_melody(out, track=1)
    # The alto changes pitch at step 8, where the melody's third note starts at tick 960.
    assert [(n.pitch, n.start, n.velocity) for n in alto.notes] == [(64, 3, 100), (65, 960, 90)]
    assert alto.notes[-1].end == played_melody.notes[-1].end
    tenor = read_melody(out, track=2)
    # Silent on steps 4-5: the rest starts with the second melody note, at its real tick.
    assert [(n.start, n.end) for n in tenor.notes] == [(3, 485), (720, 2881)]


def test_read_voices_gives_the_roll_back(tmp_path, played_melody):
    soprano, step_ticks = grid(played_melody)
    roll = harmony_for(soprano)
    out = tmp_path / "out.mid"
    write_chorale(out, Score.of(roll), played_melody, step_ticks)
    np.testing.assert_array_equal(read_voices(out).pitches, roll)


def test_a_repeated_note_is_struck_again_from_file_to_score_to_file(tmp_path, played_melody):
    # the melody repeats a pitch (two notes, no gap): quantize gives two onsets at that pitch;
    # an inner voice's repeated strikes in the score come out as separate notes, and back
    path = save_midi(tmp_path / "repeat.mid", [note(0, 480, 67) + note(480, 960, 67) + note(960, 1440, 69)])
    melody, step_ticks = quantize(read_melody(path))
    assert melody.pitches[:, 0].tolist() == [67] * 8 + [69] * 4
    assert np.flatnonzero(melody.onsets[:, 0]).tolist() == [0, 4, 8]
    pitches = np.full((12, 4), REST, dtype=np.int16)
    pitches[:, 0] = melody.pitches[:, 0]
    pitches[:, 1], pitches[:, 2], pitches[:, 3] = 64, 60, 48
    onsets = np.zeros(pitches.shape, dtype=bool)
    onsets[:, 0] = melody.onsets[:, 0]
    onsets[[0, 4, 8], 1] = True        # the alto strikes its E with every melody note
    score = Score.of(pitches, onsets)
    out = tmp_path / "out.mid"
    write_chorale(out, score, read_melody(path), step_ticks)
    assert line(read_melody(out, track=1)) == [(64, 0, 480), (64, 480, 960), (64, 960, 1440)]
    assert line(read_melody(out, track=2)) == [(60, 0, 1440)]
    back = read_voices(out)
    np.testing.assert_array_equal(back.pitches, score.pitches)
    np.testing.assert_array_equal(back.onsets, score.onsets)


def test_read_voices_from_one_track_on_four_channels(tmp_path):
    events = []
    for channel, pitch in enumerate([72, 67, 64, 48]):
        events += note(0, 480, pitch, channel=channel) + note(480, 960, pitch - 2, channel=channel)
    roll = read_voices(save_midi(tmp_path / "satb.mid", [events], file_type=0)).pitches
    assert roll.tolist() == [[72, 67, 64, 48]] * 4 + [[70, 65, 62, 46]] * 4


def test_write_melody_round_trip(tmp_path):
    pitches = np.array([60, 60, 62, REST, 64, 64, 64, 64], dtype=np.int16)
    path = tmp_path / "m.mid"
    write_melody(path, pitches, ticks_per_beat=96, bpm=120.0)
    melody = read_melody(path)
    assert line(melody) == [(60, 0, 48), (62, 48, 72), (64, 96, 192)]
    assert grid(melody)[0].tolist() == pitches.tolist()


def test_bundled_example_is_a_singable_melody():
    melody = read_melody(EXAMPLE)
    pitches = [n.pitch for n in melody.notes]
    assert len(pitches) >= 16 and 60 <= min(pitches) and max(pitches) <= 81
    assert 6 <= melody.length_ticks / (4 * melody.ticks_per_beat) <= 12  # bars of 4/4


# ---------------------------------------------------------------------------- bad files

def assert_bad(path, match, **kwargs):
    with pytest.raises(BadInput, match=match) as caught:
        read_melody(path, **kwargs)
    assert Path(path).name in str(caught.value)
    assert "\n" not in str(caught.value)


def test_random_bytes_are_bad_input(tmp_path):
    path = tmp_path / "noise.mid"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes())
    assert_bad(path, "not a readable MIDI file")


def test_truncated_file_is_bad_input(tmp_path):
    path = save_midi(tmp_path / "cut.mid", [note(0, 480, 60) + note(480, 960, 62)])
    path.write_bytes(path.read_bytes()[:-7])
    assert_bad(path, "not a readable MIDI file")


def test_empty_and_missing_files_are_bad_input(tmp_path):
    (tmp_path / "empty.mid").write_bytes(b"")
    assert_bad(tmp_path / "empty.mid", "empty file")
    assert_bad(tmp_path / "missing.mid", "cannot read")


def test_drums_only_is_bad_input(tmp_path):
    path = save_midi(tmp_path / "beat.mid", [note(0, 120, 36, channel=9) + note(240, 360, 38, channel=9)])
    assert_bad(path, "only drum notes")


def test_no_notes_is_bad_input(tmp_path):
    assert_bad(save_midi(tmp_path / "silent.mid", [[tempo(0, 100)]]), "no notes")


def test_missing_or_empty_track_is_bad_input(tmp_path):
    path = save_midi(tmp_path / "tracks.mid", [[tempo(0, 100)], note(0, 480, 60)])
    assert_bad(path, "no track 2: the file has 2 tracks", track=2)
    assert_bad(path, "no track -1", track=-1)
    assert_bad(path, "track 0 has no notes", track=0)
    assert line(read_melody(path, track=1)) == [(60, 0, 480)]


def test_read_voices_needs_four_voices(tmp_path):
    path = save_midi(tmp_path / "trio.mid", [note(0, 480, 72), note(0, 480, 64), note(0, 480, 48)])
    with pytest.raises(BadInput, match="expected 4 voices.*found 3") as caught:
        read_voices(path)
    assert "trio.mid" in str(caught.value)
