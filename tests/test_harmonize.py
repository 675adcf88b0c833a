"""Harmonize end to end: engine, command line, bad input and batch conversion, on real ONNX models."""
from __future__ import annotations

import mido
import numpy as np
import pytest

from bridge.engines import REST, load_engine
from bridge.midifile import quantize, read_melody, read_voices, write_melody
from bridge.score import Score
from bridge.settings import DEFAULT_VOICE_RANGES, Settings
from conftest import EXAMPLE_MELODY, hymn_steps, run_cli

# "Old Hundredth" in G: two phrases in quarter and half notes



@pytest.fixture(scope="module")
def engine(tiny_model):
    return load_engine(tiny_model)


def notes_by_track(path):
    """[(track name, channel, [(start, end, pitch, velocity), ...]), ...] of a MIDI file."""
    tracks = []
    for track in mido.MidiFile(path).tracks:
        name = next((m.name for m in track if m.type == "track_name"), "")
        now, sounding, notes, channels = 0, {}, [], set()
        for msg in track:
            now += msg.time
            if msg.type == "note_on" and msg.velocity > 0:
                assert not sounding, f"{name}: a second note starts while one sounds (not monophonic)"
                sounding[msg.note] = (now, msg.velocity)
                channels.add(msg.channel)
            elif msg.type in ("note_off", "note_on"):
                start, velocity = sounding.pop(msg.note)
                notes.append((start, now, msg.note, velocity))
        tracks.append((name, channels, notes))
    return tracks


def test_harmonize_keeps_soprano_and_fills_every_voice(engine):
    soprano = hymn_steps()
    roll = engine.harmonize(soprano, Settings(seed=1)).pitches
    assert roll.shape == (len(soprano), 4)
    assert np.array_equal(roll[:, 0], soprano)
    assert np.all(roll[:, 1:] >= 0)
    for voice, (low, high) in enumerate(DEFAULT_VOICE_RANGES):
        assert roll[:, voice].min() >= low and roll[:, voice].max() <= high


def moves_at(voice: np.ndarray) -> np.ndarray:
    """The steps on which a voice's pitch changes."""
    return np.flatnonzero(np.diff(voice) != 0) + 1


@pytest.mark.parametrize("downbeat", [0, 1])
def test_the_bass_moves_in_whole_8ths_of_the_melodys_meter_the_upper_voices_may_not(engine, downbeat):
    """Gibbs redraws whole 8ths in the bass always, in every voice while it redraws most of the
    piece: the bass never changes pitch on an 8th's second 16th; the alto and tenor may."""
    melody = Score.melody(hymn_steps(), meter=(16, downbeat))
    inner_off_the_8ths = 0
    for seed in range(4):
        result = engine.harmonize(melody, Settings(seed=seed, temperature=1.0))
        assert result.meter == (16, downbeat)
        bass = moves_at(result.pitches[:, 3])
        assert len(bass) > 10 and np.all((bass - downbeat) % 2 == 0), bass
        inner_off_the_8ths += sum(int(np.sum((moves_at(result.pitches[:, v]) - downbeat) % 2)) for v in (1, 2))
    assert inner_off_the_8ths > 0


def test_same_seed_same_result_other_seed_other_result(engine):
    soprano = hymn_steps()
    first = engine.harmonize(soprano, Settings(seed=7, temperature=1.0)).pitches
    assert np.array_equal(first, engine.harmonize(soprano, Settings(seed=7, temperature=1.0)).pitches)
    assert not np.array_equal(first, engine.harmonize(soprano, Settings(seed=8, temperature=1.0)).pitches)


def test_key_constraint_is_never_broken(engine):
    roll = engine.harmonize(hymn_steps(), Settings(seed=3, key="G", temperature=1.5)).pitches
    g_major = {7, 9, 11, 0, 2, 4, 6}
    assert set(np.unique(roll[:, 1:] % 12)) <= g_major


def test_inpaint_keeps_every_known_cell(engine):
    rng = np.random.default_rng(0)
    roll = np.stack([hymn_steps(), hymn_steps(-5), hymn_steps(-12), hymn_steps(-24)], axis=1)
    known = rng.random(roll.shape) < 0.5
    for candidates in (1, 3):
        out = engine.inpaint(roll, known, Settings(seed=5, candidates=candidates))
        assert np.array_equal(out[known], roll[known])
        assert np.all(out[~known] >= 0)


def test_low_melody_keeps_its_register(engine):
    """A melody an octave below the soprano range is harmonized an octave down, not moved."""
    low = hymn_steps(-12)
    roll = engine.harmonize(low, Settings(seed=4)).pitches
    assert np.array_equal(roll[:, 0], low)
    b_lo, b_hi = DEFAULT_VOICE_RANGES[3]
    assert roll[:, 3].min() >= b_lo - 12 and roll[:, 3].max() <= b_hi - 12


def test_a_melody_at_the_bottom_of_midi_gets_voices_folded_into_midi(engine):
    """Most notes at MIDI 0 (a file fuzzed so): the model works five octaves up; the voices moved
    back below 0 are folded up by octaves, not passed on as negative pitches."""
    melody = np.repeat(np.array([0, 0, 0, 65, 0, 67, 0, 69, 0], dtype=np.int16), 4)
    roll = engine.harmonize(melody, Settings(seed=1)).pitches
    assert np.array_equal(roll[:, 0], melody)
    assert roll[:, 1:].min() >= 0 and roll[:, 1:].max() <= 127


def test_a_check_deep_in_the_engine_names_the_file(tmp_path, engine, monkeypatch):
    """A BadInput that knows no file (a Score's own check), raised while converting one, names it."""
    from bridge.convert import harmonize_file
    from bridge.errors import BadInput

    def refuse(*args, **kwargs):
        raise BadInput("a score's pitches must be MIDI 0..127 or -1 (silent)")

    monkeypatch.setattr(engine, "harmonize", refuse)
    with pytest.raises(BadInput) as caught:
        harmonize_file(EXAMPLE_MELODY, tmp_path / "out.mid", engine, Settings(seed=1))
    assert str(caught.value).startswith(f"{EXAMPLE_MELODY}: a score's pitches")
    assert not (tmp_path / "out.mid").exists()


def test_cli_harmonize_writes_four_monophonic_tracks(tmp_path, tiny_model):
    out = tmp_path / "chorale.mid"
    result = run_cli("harmonize", EXAMPLE_MELODY, "-o", out, "--model", tiny_model, "--seed", 11)
    assert result.returncode == 0, result.stderr
    midi = mido.MidiFile(out)
    assert midi.type == 1
    tracks = notes_by_track(out)
    assert [name for name, _, _ in tracks] == ["Soprano", "Alto", "Tenor", "Bass"]
    assert [channels for _, channels, _ in tracks] == [{0}, {1}, {2}, {3}]
    melody = read_melody(EXAMPLE_MELODY)
    assert tracks[0][2] == [(n.start, n.end, n.pitch, n.velocity) for n in melody.notes]
    assert all(len(notes) > 0 for _, _, notes in tracks[1:])
    tempos = [m.tempo for m in mido.MidiFile(EXAMPLE_MELODY).tracks[0] if m.type == "set_tempo"]
    assert [m.tempo for m in midi.tracks[0] if m.type == "set_tempo"] == tempos
    score = read_voices(out)
    soprano, _ = quantize(melody)
    assert np.array_equal(score.pitches[:len(soprano), :1], soprano.pitches)
    assert np.array_equal(score.onsets[:len(soprano), :1], soprano.onsets)   # its repeated notes too


def test_cli_seed_reproduces_the_file(tmp_path, tiny_model):
    a, b = tmp_path / "a.mid", tmp_path / "b.mid"
    for target in (a, b):
        assert run_cli("harmonize", EXAMPLE_MELODY, "-o", target, "--model", tiny_model, "--seed", 5).returncode == 0
    assert a.read_bytes() == b.read_bytes()


def test_cli_harmonize_loads_nothing_it_does_not_need(tmp_path, tiny_model):
    """A one-file harmonize starts in well under a second: not the live bridge, torch, Qt or rtmidi."""
    import subprocess
    import sys

    from conftest import ROOT

    code = ("import sys; from bridge.cli import main; code = main(sys.argv[1:]); "
            "print(sorted(m for m in ('bridge.live', 'torch', 'PyQt6', 'rtmidi', 'mido.backends.rtmidi') if m in sys.modules)); "
            "sys.exit(code)")
    result = subprocess.run([sys.executable, "-c", code, "harmonize", str(EXAMPLE_MELODY), "-o", str(tmp_path / "a.mid"),
                             "--model", str(tiny_model), "--seed", "1"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("content", [b"", b"MThd\x00\x00", b"not a midi file at all" * 10])
def test_cli_bad_file_is_one_line_exit_2_and_no_output(tmp_path, tiny_model, content):
    bad = tmp_path / "bad.mid"
    bad.write_bytes(content)
    out = tmp_path / "out.mid"
    result = run_cli("harmonize", bad, "-o", out, "--model", tiny_model)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "bad.mid" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [bad]


@pytest.mark.parametrize("args, words", [
    (["--temperature", "-1"], "temperature"),
    (["--key", "H"], "key"),
    (["--steps", "zero"], "--steps"),
    (["--model", "missing.onnx"], "missing.onnx"),
])
def test_cli_bad_argument_is_one_line_exit_2(tmp_path, tiny_model, args, words):
    model = [] if "--model" in args else ["--model", tiny_model]
    result = run_cli("harmonize", EXAMPLE_MELODY, "-o", tmp_path / "o.mid", *model, *args)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and words in result.stderr
    assert not (tmp_path / "o.mid").exists()


def test_cli_missing_input(tmp_path, tiny_model):
    result = run_cli("harmonize", tmp_path / "nope.mid", "-o", tmp_path / "o.mid", "--model", tiny_model)
    assert result.returncode == 2 and "nope.mid" in result.stderr


def make_batch_folder(root):
    (root / "sub").mkdir(parents=True)
    write_melody(root / "one.mid", hymn_steps())
    write_melody(root / "sub" / "two.MIDI", hymn_steps(2))
    write_melody(root / "sub" / "three.mid", hymn_steps(-3)[:40])
    (root / "broken.mid").write_bytes(b"MThd garbage")
    (root / "notes.txt").write_text("not midi, not looked at")


def test_batch_converts_skips_and_goes_on_past_bad_files(tmp_path, tiny_model):
    src, dst = tmp_path / "in", tmp_path / "out"
    make_batch_folder(src)
    first = run_cli("batch", src, dst, "--model", tiny_model, "--seed", 1, "--jobs", 2)
    assert first.returncode == 1, first.stderr
    assert "3 converted, 0 skipped (already there), 1 failed" in first.stdout
    assert "broken.mid" in first.stdout
    made = sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*") if p.is_file())
    assert made == ["one.mid", "sub/three.mid", "sub/two.MIDI"]
    stamp = (dst / "one.mid").stat().st_mtime_ns

    again = run_cli("batch", src, dst, "--model", tiny_model, "--seed", 1)
    assert "0 converted, 3 skipped (already there), 1 failed" in again.stdout
    assert (dst / "one.mid").stat().st_mtime_ns == stamp

    redo = run_cli("batch", src, dst, "--model", tiny_model, "--seed", 1, "--overwrite")
    assert "3 converted, 0 skipped (already there), 1 failed" in redo.stdout
    assert (dst / "one.mid").stat().st_mtime_ns != stamp


def test_batch_result_does_not_depend_on_jobs(tmp_path, tiny_model):
    src = tmp_path / "in"
    make_batch_folder(src)
    (src / "broken.mid").unlink()
    for jobs, dst in ((1, tmp_path / "a"), (2, tmp_path / "b")):
        result = run_cli("batch", src, dst, "--model", tiny_model, "--seed", 9, "--jobs", jobs)
        assert result.returncode == 0, result.stderr
    for made in (tmp_path / "a").rglob("*.mid*"):
        assert made.read_bytes() == (tmp_path / "b" / made.relative_to(tmp_path / "a")).read_bytes()


def test_batch_missing_folder_is_exit_2(tmp_path, tiny_model):
    result = run_cli("batch", tmp_path / "none", tmp_path / "out", "--model", tiny_model)
    assert result.returncode == 2 and "none" in result.stderr


def test_eval_reports_notewise_and_masked_nll(tiny_model, jsb_npz):
    import json

    result = run_cli("eval", "--data", jsb_npz, "--split", "test", "--limit", 2, "--json", "--model", tiny_model)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["chorales"] == 2 and figures["notes"] > 500
    # a trained model beats the uniform guess over 46 pitches (log 46 = 3.83 nats)
    assert 0 < figures["notewise_nll"] < 3.5 and 0 < figures["masked50_nll"] < 3.5


def test_short_melody_gaps_are_held_through_long_rests_silence_all(engine):
    soprano = hymn_steps()
    soprano[7] = REST          # a 16th gap between two notes: detached playing
    soprano[40:48] = REST      # two beats of rest
    roll = engine.harmonize(soprano, Settings(seed=2)).pitches
    assert roll[7, 0] == REST and np.all(roll[7, 1:] >= 0)
    assert np.all(roll[40:48] == REST)
