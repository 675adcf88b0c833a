"""`bachbridge regenerate` (chosen bars and voices of a four-voice file drawn again, every other
note exactly as it was) and `--variants` (several draws, the likeliest first)."""
from __future__ import annotations

from pathlib import Path

import mido
import numpy as np
import pytest

from bridge.convert import redrawn_cells
from bridge.engines import RANK, load_engine
from bridge.midifile import STEPS_PER_BEAT, read_melody, read_voices
from bridge.score import Score
from bridge.settings import Settings
from conftest import EXAMPLE_MELODY, run_cli

BAR = 16


def notes_of(path: Path) -> list[list[tuple[int, int, int, int, int]]]:
    """Per track, (start, end, channel, pitch, velocity) of each note, in ticks."""
    tracks = []
    for track in mido.MidiFile(path).tracks:
        tick, sounding, notes = 0, {}, []
        for msg in track:
            tick += msg.time
            if msg.type == "note_on" and msg.velocity > 0:
                sounding.setdefault((msg.channel, msg.note), []).append((tick, msg.velocity))
            elif msg.type in ("note_on", "note_off"):
                start, velocity = sounding[msg.channel, msg.note].pop(0)
                notes.append((start, tick, msg.channel, msg.note, velocity))
        assert not any(sounding.values()), "a note never ends"
        tracks.append(sorted(notes))
    return tracks


def others_of(path: Path) -> list[list[tuple[int, str]]]:
    """Per track, everything but notes and the end of the track: (tick, message)."""
    tracks = []
    for track in mido.MidiFile(path).tracks:
        tick, others = 0, []
        for msg in track:
            tick += msg.time
            if msg.type not in ("note_on", "note_off", "end_of_track"):
                others.append((tick, str(msg.copy(time=0))))
        tracks.append(others)
    return tracks


@pytest.fixture(scope="module")
def played_chorale(tmp_path_factory) -> Path:
    """A four-voice file as a musician leaves it: the example harmonized, then every note's
    start and end moved off the grid, early or late, by up to a third of a 16th (each note still
    on its own 16th; a note may now begin before the one before it ends), and its velocity
    changed."""
    folder = tmp_path_factory.mktemp("regenerate")
    plain = folder / "plain.mid"
    assert run_cli("harmonize", EXAMPLE_MELODY, "-o", plain, "--seed", 2).returncode == 0
    midi = mido.MidiFile(plain)
    nudge = midi.ticks_per_beat // STEPS_PER_BEAT // 3
    rng = np.random.default_rng(7)
    for track in midi.tracks:
        events, tick = [], 0
        for msg in track:
            tick += msg.time
            events.append([tick, msg])
        for event in events:
            msg = event[1]
            if msg.type in ("note_on", "note_off"):
                event[0] = max(0, event[0] + int(rng.integers(-nudge, nudge + 1)))
            if msg.type == "note_on" and msg.velocity > 0:
                event[1] = msg.copy(velocity=int(rng.integers(40, 110)))
        events.sort(key=lambda e: e[0])
        track.clear()
        now = 0
        for tick, msg in events:
            track.append(msg.copy(time=tick - now))
            now = tick
    played = folder / "played.mid"
    midi.save(played)
    return played


def test_regenerate_keeps_every_note_outside_the_passage_exactly(played_chorale, tmp_path):
    out = tmp_path / "again.mid"
    result = run_cli("regenerate", played_chorale, "--bars", "2-3", "--voices", "ATB", "-o", out,
                     "--variants", 3, "--seed", 1)
    assert result.returncode == 0, result.stderr
    outputs = [tmp_path / f"again-{k}.mid" for k in (1, 2, 3)]
    assert result.stdout.split() == [str(p) for p in outputs]

    step = mido.MidiFile(played_chorale).ticks_per_beat / STEPS_PER_BEAT
    source = read_voices(played_chorale)
    length = len(source)
    runs = [run for voice in (1, 2, 3) for run in source.note_runs(voice)]
    assert any(first < BAR < stop for _, first, stop in runs), "no note held into the passage: a case untried"
    assert any(first < 3 * BAR < stop for _, first, stop in runs), "no note reaching past it: a case untried"

    def outside(notes, voice):
        """The notes that do not begin in bars 2-3 (on the 16th nearest their start)."""
        return [n for n in notes if not BAR <= int(n[0] / step + 0.5) < 3 * BAR]

    source_notes, source_others = notes_of(played_chorale), others_of(played_chorale)
    inside_differs = False
    for path in outputs:
        notes = notes_of(path)
        assert others_of(path) == source_others
        assert notes[0] == source_notes[0]                      # the melody, note for note
        for voice in (1, 2, 3):
            kept = outside(notes[voice], voice)
            assert kept == outside(source_notes[voice], voice)   # ticks, pitches, velocities
            new = [n for n in notes[voice] if n not in kept]
            assert new, f"voice {voice} has nothing in the passage"
            for start, end, *_ in new:
                assert BAR * step <= start < end <= length * step
            inside_differs |= new != [n for n in source_notes[voice] if n not in kept]
            # each new note fits between the kept ones, whatever their real ticks
            for before, after in zip(notes[voice], notes[voice][1:]):
                if before in new or after in new:
                    assert before[1] <= after[0], (before, after)
    assert inside_differs, "three draws all gave back the source's own notes"


def test_variants_are_named_in_the_engines_order_of_preference(played_chorale, tmp_path):
    engine = load_engine("coconet")
    assert RANK in engine.capabilities
    out = tmp_path / "v.mid"
    result = run_cli("regenerate", played_chorale, "--bars", "1-4", "-o", out, "--variants", 4, "--seed", 2)
    assert result.returncode == 0, result.stderr
    source = read_voices(played_chorale)
    redrawn = redrawn_cells(source, 0, 4 * BAR, (1, 2, 3))
    fillings = [read_voices(tmp_path / f"v-{k}.mid") for k in (1, 2, 3, 4)]
    fillings = [Score.of(f.pitches[:len(source)], f.onsets[:len(source)]) for f in fillings]
    likelihoods = engine.rank(fillings, ~redrawn, Settings())
    assert len(set(likelihoods)) == 4
    assert likelihoods == sorted(likelihoods, reverse=True)


def test_harmonize_variants_keep_the_melody_and_come_likeliest_first(tmp_path):
    out = tmp_path / "h.mid"
    result = run_cli("harmonize", EXAMPLE_MELODY, "-o", out, "--variants", 3, "--seed", 4)
    assert result.returncode == 0, result.stderr
    paths = [tmp_path / f"h-{k}.mid" for k in (1, 2, 3)]
    assert result.stdout.split() == [str(p) for p in paths] and not out.exists()
    melody = [(n.start, n.end, n.pitch) for n in read_melody(EXAMPLE_MELODY).notes]
    scores = []
    for path in paths:
        assert [(n.start, n.end, n.pitch) for n in read_melody(path, track=0).notes] == melody
        scores.append(read_voices(path))
    assert len({s.pitches.tobytes() for s in scores}) == 3
    known = np.zeros(scores[0].pitches.shape, dtype=bool)
    known[:, 0] = True
    likelihoods = load_engine("coconet").rank(scores, known, Settings())
    assert likelihoods == sorted(likelihoods, reverse=True)


@pytest.mark.parametrize("args, says", [
    (["--bars", "x"], "--bars takes a bar or a range"),
    (["--bars", "4-2"], "first <= last"),
    (["--bars", "40-41"], "the file has 9 bars"),
    (["--bars", "2", "--voices", "AXB"], "--voices takes letters of SATB"),
    (["--bars", "2", "--variants", "0"], "--variants must be >= 1"),
    (["--bars", "2", "--engine", "phrase"], "phrase"),
])
def test_regenerate_refuses_bad_requests_in_one_line(played_chorale, tmp_path, args, says):
    out = tmp_path / "x.mid"
    result = run_cli("regenerate", played_chorale, "-o", out, *args)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and says in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_regenerate_asks_for_four_voices(tmp_path):
    result = run_cli("regenerate", EXAMPLE_MELODY, "--bars", "2", "-o", tmp_path / "x.mid")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "expected 4 voices" in result.stderr and EXAMPLE_MELODY.name in result.stderr
