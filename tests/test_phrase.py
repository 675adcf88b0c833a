"""The phrase engine: events and chords from scores, the numba draw, the Markov baseline, training
and export, `generate` and `bachbridge continue`."""
from __future__ import annotations

import math

import mido
import numpy as np
import pytest

from bridge.engines import load_engine
from bridge.phrase_kernels import draw_tokens
from bridge.score import REST, Score
from bridge.settings import Settings
from models import phrase_data as pd
from models.ngram import MarkovChain
from conftest import EXAMPLE_MELODY, run_cli, run_module

# "Ach Gott, vom Himmel sieh darein"-like opening: quarters and eighths in G major
PRIME = np.repeat(np.array([67, 67, 71, 74, 72, 71, 69, 69]), [4, 4, 4, 4, 2, 2, 4, 8]).astype(np.int16)


def melody_prime(melody: np.ndarray = PRIME, meter=(16, 0)) -> tuple[Score, np.ndarray]:
    pitches = np.full((len(melody), 4), REST, dtype=np.int16)
    pitches[:, 0] = melody
    known = np.zeros(pitches.shape, dtype=bool)
    known[:, 0] = True
    return Score.of(pitches, meter=meter), known


# ---- events and chords ------------------------------------------------------------------------

def test_line_events_cover_the_melody_exactly():
    pitches = np.array([60, 60, 62, REST, REST, 64, 64, 64, 65], dtype=np.int64)
    onsets = np.zeros(len(pitches), dtype=bool)
    onsets[[0, 1, 2, 5, 8]] = True          # 60 struck twice; 64 held three 16ths
    line = pd.line_of(pitches, onsets, bar=4, downbeat=1)
    assert line.pitch.tolist() == [60, 60, 62, REST, 64, 65]
    assert line.onset.tolist() == [0, 1, 2, 3, 5, 8]
    assert line.length.tolist() == [1, 1, 1, 2, 3, 1]
    assert line.position.tolist() == [3, 0, 1, 2, 0, 3]
    assert int(line.length.sum()) == len(pitches)
    inputs, targets = pd.rhythm_sequence(line)
    assert [pd.token_rest_length(t) for t in targets] == [(False, 1), (False, 1), (False, 1), (True, 2),
                                                          (False, 3), (False, 1)]
    assert inputs.shape == (6, pd.RHYTHM_INPUTS) and np.all(inputs.sum(axis=1) == 3)   # token, place, meter


@pytest.mark.parametrize("notes, bass, name", [
    ([60, 64, 67], 0, "C"), ([57, 60, 64], 9, "Am"), ([55, 59, 62, 65], 7, "G7"), ([59, 62, 65], 11, "Bdim"),
    ([62, 65, 69, 72], 2, "Dm7"), ([56, 59, 62, 65], 8, "Abdim7"), ([59, 62, 65, 68], 11, "Bdim7"),
    ([60, 64, 60, 72], 0, "C"),   # no fifth: still C, the bass decides between C and Am
])
def test_chords_are_named_by_their_tones_and_bass(notes, bass, name):
    weights = np.zeros(12)
    for p in notes:
        weights[p % 12] += 1
    assert pd.chord_name(pd.name_chord(weights, bass)) == name


def test_a_passing_tone_between_beats_does_not_make_a_seventh_chord():
    # Eb major on the beat, a passing C in the tenor on its second half (the JSB chorale's second beat)
    beat = np.array([[75, 70, 58, 55], [75, 70, 58, 55], [75, 70, 60, 55], [75, 70, 60, 55]])
    assert [pd.chord_name(c) for c in pd.beat_chords(beat)] == ["Eb"]


def test_transposing_a_line_moves_its_pitches_and_chord_roots():
    line = pd.line_of(np.array([60, 62, REST]), chords=np.array([0 * pd.QUALITIES + 1, pd.NO_CHORD]))
    moved = line.transposed(3)
    assert moved.pitch.tolist() == [63, 65, REST]
    assert [pd.chord_name(c) for c in moved.chords] == ["Ebm", "N"]


def test_folk_tunes_from_abc_keep_their_pickup_ties_and_meter():
    converter = pytest.importorskip("music21.converter", reason="music21 (the train and test extras) reads the folk songs")
    waltz = "X:1\nT:Waltz\nM:3/4\nL:1/8\nK:G\nD2 | G2 A2 B2- | B2 A2 G2 | z2 d2 c2 | B6 |]\n"
    line = pd._music21_line(converter.parse(waltz, format="abc"))
    assert line.bar == 12 and line.downbeat == 4                      # a one-beat pickup in 3/4
    assert line.pitch.tolist() == [62, 67, 69, 71, 69, 67, REST, 74, 72, 71]
    assert line.length.tolist() == [4, 4, 4, 8, 4, 4, 4, 4, 4, 12]     # the tied B is one note
    assert line.position.tolist()[:4] == [8, 0, 4, 8]
    # a tune written in long values (4/2) reads as the same music in 4/4
    hymn = "X:2\nT:Long\nM:4/2\nL:1/4\nK:C\nC2 D2 E2 F2 | G4 z4 | c2 B2 A2 G2 | C8 |]\n"
    line = pd._music21_line(converter.parse(hymn, format="abc"))
    assert line.bar == 16 and line.length.tolist()[:5] == [4, 4, 4, 4, 8]
    # triplets are off the 16th grid: the tune is left out
    assert pd._music21_line(converter.parse("X:3\nT:T\nM:2/4\nL:1/8\nK:C\n(3CDE F2 | G4 |]\n", format="abc")) is None


def test_folk_splits_are_fixed_by_each_tune():
    splits = [pd.essen_split(f"tune {k}", k) for k in range(2000)]
    assert splits == [pd.essen_split(f"tune {k}", k) for k in range(2000)]
    shares = {name: splits.count(name) / len(splits) for name in ("train", "valid", "test")}
    assert 0.75 < shares["train"] < 0.85 and 0.07 < shares["valid"] < 0.13 and 0.07 < shares["test"] < 0.13


# ---- the draw -----------------------------------------------------------------------------------

def draw(logits, allowed=None, history=None, temperature=1.0, top_p=1.0, repeat_limit=0, u=0.5):
    logits = np.asarray(logits, dtype=np.float32)[None]
    allowed = np.ones(logits.shape, dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool)[None]
    history = np.full((1, 4), -1, dtype=np.int64) if history is None else np.asarray(history, dtype=np.int64)[None]
    out = np.empty(1, dtype=np.int64)
    draw_tokens(logits, allowed, history, temperature, top_p, repeat_limit, np.array([u]), out)
    return int(out[0])


def test_draw_at_temperature_zero_is_the_likeliest_allowed_token():
    logits = [0.0, 3.0, 1.0, 2.0]
    assert draw(logits, temperature=0) == 1
    assert draw(logits, allowed=[True, False, True, True], temperature=0) == 3
    assert draw(logits, allowed=[False] * 4, temperature=0) == 1     # nothing allowed: no constraint kept


def test_draws_follow_the_tempered_softmax():
    logits = np.log(np.array([0.1, 0.2, 0.3, 0.4]))
    rng = np.random.default_rng(0)
    counts = np.bincount([draw(logits, u=rng.random()) for _ in range(4000)], minlength=4) / 4000
    assert np.allclose(counts, [0.1, 0.2, 0.3, 0.4], atol=0.03)
    # at temperature 0.5 the shares go as p^2
    counts = np.bincount([draw(logits, temperature=0.5, u=rng.random()) for _ in range(4000)], minlength=4) / 4000
    assert np.allclose(counts, np.array([1, 4, 9, 16]) / 30, atol=0.03)


def test_top_p_keeps_only_the_likeliest_tokens_that_reach_it():
    logits = np.log(np.array([0.05, 0.15, 0.3, 0.5]))
    drawn = {draw(logits, top_p=0.75, u=u) for u in np.linspace(0, 0.999, 200)}
    assert drawn == {2, 3}                   # 0.5 + 0.3 reaches 0.75; 0.15 and 0.05 are cut
    assert {draw(logits, top_p=0.4, u=u) for u in np.linspace(0, 0.999, 50)} == {3}


def test_the_repetition_guard_stops_a_fourth_strike():
    logits = [0.0, 5.0, 0.0]
    assert draw(logits, history=[0, 1, 1, 1], repeat_limit=3, temperature=0) != 1
    assert draw(logits, history=[1, 0, 1, 1], repeat_limit=3, temperature=0) == 1   # only two in a row
    assert draw(logits, history=[0, 1, 1, 1], repeat_limit=0, temperature=0) == 1   # guard off
    assert draw(logits, allowed=[False, True, False], history=[1, 1, 1, 1], repeat_limit=3, temperature=0) == 1


# ---- the baseline ----------------------------------------------------------------------------------

def test_markov_chain_is_a_distribution_and_learns_a_pattern():
    chain = MarkovChain(3, 5).fit([[0, 1, 2, 3] * 10, [4, 4, 1, 2]])
    for context in [(), (0, 1, 2), (3, 3, 3), (4,)]:
        assert math.isclose(sum(chain.probability(context, t) for t in range(5)), 1.0, abs_tol=1e-9)
    assert chain.probability((0, 1, 2), 3) > 0.9
    total, events = chain.nll([[0, 1, 2, 3] * 3])
    assert events == 12 and total / events < MarkovChain(3, 5).fit([[4, 3, 2]]).nll([[0, 1, 2, 3] * 3])[0] / 12


# ---- training, export, the engine ----------------------------------------------------------------

def test_training_writes_checkpoints_a_log_and_resumes(tiny_phrase_run, jsb_npz):
    rows = (tiny_phrase_run / "log.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,net,minutes,train_loss,valid_loss")
    assert len(rows) == 1 + 3 * 3          # three nets, three epochs
    result = run_module("models.train_phrase", "--out", tiny_phrase_run, "--data", jsb_npz, "--max-epochs", 4,
                        "--no-folk", "--hidden", 24, "--layers", 1, "--batch", 8, "--epoch-batches", 2, "--threads", 1)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resumed from" in result.stdout and "epoch 4 melody" in result.stdout
    import torch
    state = torch.load(tiny_phrase_run / "last.pt", weights_only=False)
    assert set(state["optimizers"]) == {"rhythm", "chords", "melody"} and state["epoch"] == 4


def test_generate_keeps_the_prime_and_continues_it(tiny_phrase):
    engine = load_engine(tiny_phrase)
    prime, known = melody_prime()
    settings = Settings(seed=3, temperature=1.0, harmonizer="chords")
    score = engine.generate(prime, known, 32, settings)
    assert len(score) == len(PRIME) + 32
    assert np.array_equal(score.pitches[:len(PRIME), 0], PRIME)
    assert np.array_equal(score.onsets[:len(PRIME), 0], prime.onsets[:, 0])
    new = score.pitches[len(PRIME):, 0]
    assert (new >= 0).any() and np.all((new == REST) | ((new >= 60) & (new <= 81)))   # the soprano's range
    lower = score.pitches[:, 1:]
    assert np.all((lower == REST) | (lower < score.pitches[:, :1]))                     # under the melody
    again = engine.generate(prime, known, 32, settings)
    assert np.array_equal(score.pitches, again.pitches) and np.array_equal(score.onsets, again.onsets)
    other = engine.generate(prime, known, 32, settings.replace(seed=4))
    assert not np.array_equal(score.pitches, other.pitches)


def test_generate_keeps_the_key_and_the_repetition_guard(tiny_phrase):
    engine = load_engine(tiny_phrase)
    prime, known = melody_prime()
    f_sharp_major = {6, 8, 10, 11, 1, 3, 5}
    for seed in range(3):
        score = engine.generate(prime, known, 64, Settings(seed=seed, temperature=0.2 * seed, key="F#",
                                                           harmonizer="chords", repeat_limit=1))
        runs = score.note_runs(0)
        new = [pitch for pitch, start, _ in runs if start >= len(PRIME)]
        assert new and all(p % 12 in f_sharp_major for p in new)
        # repeat_limit 1: no pitch struck twice in a row in the continuation
        pitches = [pitch for pitch, _, _ in runs]
        first_new = len(runs) - len(new)
        assert all(a != b for a, b in zip(pitches[first_new:], pitches[first_new + 1:]))


def test_generate_follows_the_meter_and_register(tiny_phrase):
    engine = load_engine(tiny_phrase)
    low = (PRIME - 24).astype(np.int16)           # two octaves down: a bass player's phrase
    prime, known = melody_prime(low, meter=(12, 4))
    score = engine.generate(prime, known, 24, Settings(seed=1, temperature=1.0, harmonizer="chords"))
    assert score.meter == (12, 4) and len(score) == len(PRIME) + 24
    new = score.pitches[len(PRIME):, 0]
    assert np.all((new == REST) | ((new >= 60 - 24) & (new <= 81 - 24)))


def test_generate_with_a_harmonizer_fills_the_voices_under_the_melody(tiny_phrase, tiny_model, monkeypatch):
    from bridge.engines import phrase as phrase_module

    monkeypatch.setattr(phrase_module, "load_engine", lambda name: load_engine(tiny_model))
    engine = load_engine(tiny_phrase)
    prime, known = melody_prime()
    score = engine.generate(prime, known, 16, Settings(seed=2, temperature=1.0, harmonizer="coconet", steps=2))
    sounding = score.pitches[:, 0] >= 0
    assert np.all(score.pitches[sounding, 1:] >= 0)          # every voice sings where the melody does


def test_the_phrase_engine_says_it_does_not_fill(tiny_phrase):
    from bridge.errors import BadInput

    engine = load_engine(tiny_phrase)
    assert "fill" not in engine.capabilities
    with pytest.raises(BadInput, match="does not fill"):
        engine.harmonize(PRIME, Settings(seed=0))


def test_eval_reports_each_net_beside_its_markov_baseline(tiny_phrase, jsb_npz):
    engine = load_engine(tiny_phrase)
    figures = engine.evaluate(jsb_npz, "test", limit=5)
    for net in ("rhythm", "chords", "melody"):
        assert figures[f"{net}_events"] > 20
        assert 0 < figures[f"{net}_nll"] < 10 and 0 < figures[f"{net}_markov3_nll"] < 10


# ---- bachbridge continue --------------------------------------------------------------------------

def note_events(track):
    tick, out = 0, []
    for msg in track:
        tick += msg.time
        if msg.type in ("note_on", "note_off"):
            out.append((tick, msg.type, msg.note, getattr(msg, "velocity", 0)))
    return out


def test_continue_keeps_the_file_and_appends_bars(tiny_phrase, tmp_path):
    example_midi = EXAMPLE_MELODY
    out = tmp_path / "more.mid"
    result = run_cli("continue", example_midi, "--bars", 2, "-o", out, "--model", tiny_phrase, "--seed", 1,
                     "--harmonizer", "chords", "--variants", 2)
    assert result.returncode == 0, result.stderr
    source = mido.MidiFile(example_midi)
    written = [tmp_path / "more-1.mid", tmp_path / "more-2.mid"]
    assert result.stdout.split() == [str(p) for p in written]
    last_tick = max(max((t for t, *_ in note_events(track)), default=0) for track in source.tracks)
    continuations = []
    for path in written:
        midi = mido.MidiFile(path)
        assert len(midi.tracks) == len(source.tracks) + 1
        for kept, original in zip(midi.tracks, source.tracks):   # every message kept, timing included
            assert list(map(str, kept)) == list(map(str, original))
        notes = note_events(midi.tracks[-1])
        assert notes and min(t for t, *_ in notes) >= last_tick - source.ticks_per_beat // 4
        assert max(t for t, *_ in notes) <= last_tick + 2 * 4 * source.ticks_per_beat
        continuations.append(notes)
    assert continuations[0] != continuations[1]


def test_continue_rejects_bad_input_in_one_line(tiny_phrase, tmp_path):
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"MThd nonsense")
    out = tmp_path / "out.mid"
    result = run_cli("continue", bad, "--bars", 2, "-o", out, "--model", tiny_phrase)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and "bad.mid" in result.stderr
    assert not out.exists()
    result = run_cli("continue", bad, "--bars", 0, "-o", out, "--model", tiny_phrase)
    assert result.returncode == 2 and "--bars" in result.stderr and not out.exists()


# ---- the shipped model ------------------------------------------------------------------------------

def test_the_shipped_phrase_model_is_small_described_and_beats_its_markov_baselines(jsb_npz):
    from bridge.onnxmodel import OnnxModel
    from models import shipped_model

    path = shipped_model("phrase")
    assert path.exists() and path.stat().st_size < 10 * 1024 * 1024
    model = OnnxModel(path)
    assert model.engine == "phrase" and "JSB" in model.metadata["train_data"] and "Essen" in model.metadata["train_data"]
    figures = load_engine("phrase").evaluate(jsb_npz, "test")
    for net in ("rhythm", "chords", "melody"):
        assert figures[f"{net}_nll"] < figures[f"{net}_markov3_nll"], figures


def test_the_shipped_phrase_model_continues_the_example_in_its_key():
    from bridge import keys
    from bridge.convert import read_prime

    prime, known = read_prime(EXAMPLE_MELODY)
    tonic, mode = keys.estimate_key(prime.pitches[:, 0][prime.pitches[:, 0] >= 0])
    scale = keys.scale_pitch_classes(tonic, mode)
    engine = load_engine("phrase")
    in_key = []
    for seed in range(4):
        score = engine.generate(prime, known, 32, Settings(seed=seed, temperature=0.8, harmonizer="chords"))
        new = [p for p, start, _ in score.note_runs(0) if start >= len(prime)]
        assert len(new) >= 4
        in_key += [p % 12 in scale for p in new]
    assert np.mean(in_key) > 0.9


def test_generate_with_the_phrase_engine_writes_the_prime_and_its_continuation(tiny_phrase, tmp_path):
    from bridge.midifile import read_voices

    out = tmp_path / "generated.mid"
    result = run_cli("generate", "--model", tiny_phrase, "--prime", EXAMPLE_MELODY, "--bars", 2, "-o", out,
                     "--harmonizer", "chords", "--seed", 3)
    assert result.returncode == 0, result.stderr
    from bridge.convert import read_prime

    prime, _ = read_prime(EXAMPLE_MELODY)
    score = read_voices(out)
    assert len(prime) < len(score) <= len(prime) + 32          # the file ends with its last note
    assert np.array_equal(score.pitches[:len(prime), 0], prime.pitches[:, 0])
    assert (score.pitches[len(prime):, 0] >= 0).any() and (score.pitches[len(prime):, 3] >= 0).any()
