"""The bi-axial LSTM: the model's invariance along pitch, the numba note axis against torch, the
sampler against the exact distribution, training (and resuming), ONNX export and parity, the
engine (harmonize, inpaint, generate, eval) through the command line, and the live bridge through
real JACK ports, all on a real (tiny, freshly trained) model."""
from __future__ import annotations

import csv
import json
import time

import numpy as np
import pytest
import torch

from bridge.engines import REST, assign_by_pitch_order, load_engine
from bridge.engines.biaxial import CONSERVATIVITY_FLOOR, NoteStack, adapted_conservativity
from bridge.score import Score, pitch_changes
from bridge.settings import Settings
from conftest import (EXAMPLE_MELODY, TINY_BIAXIAL_ARGS, export_best, hymn_played_live, hymn_steps,
                      lower_voices_of_the_hymn, run_cli, run_module)
from test_rnnrbm import tracks_of
from models.biaxial import Biaxial, BiaxialConfig, note_weights




def random_model(seed: int = 0, **config) -> Biaxial:
    torch.manual_seed(seed)
    defaults = dict(time_sizes=[24, 24], note_sizes=[12, 8], num_pitches=40)
    return Biaxial(BiaxialConfig(**{**defaults, **config})).eval()


def random_notes(shape, seed: int = 1) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    notes = (rng.random((*shape, 2)) < 0.12).astype(np.float32)
    notes[..., 1] *= notes[..., 0]
    return torch.from_numpy(notes)


def note_stack(model: Biaxial) -> NoteStack:
    return NoteStack({name: value.detach().numpy() for name, value in note_weights(model).items()},
                     model.config.downward)


# ------------------------------------------------------------- the model

def test_a_transposed_input_gives_transposed_probabilities():
    """The same weights at every pitch, and only relative inputs: the time stack's outputs move
    with the notes exactly; through the note axis, which starts at the range's top, nearly
    (away from the edges). With the absolute pitch among the inputs they do not."""
    notes = random_notes((2, 24, 40))
    notes[:, :, :8] = notes[:, :, 32:] = 0        # music away from the edges, so that all of it moves
    shifted = torch.roll(notes, 3, dims=2)
    for absolute, bound in ((False, 1e-3), (True, None)):
        model = random_model(absolute_pitch=absolute)
        with torch.no_grad():
            here, there = torch.sigmoid(model(notes)), torch.sigmoid(model(shifted))
            moved = (model.time_outputs(notes)[:, :, 14:26] - model.time_outputs(shifted)[:, :, 17:29]).abs().max()
        gap = float((here[:, :, 14:26] - there[:, :, 17:29]).abs().max())
        if bound is None:
            assert moved > 1e-3   # the test can tell
        else:
            assert float(moved) == 0.0 and gap < bound, (float(moved), gap)


@pytest.mark.parametrize("downward", [True, False])
def test_the_numba_note_axis_equals_torchs(downward):
    model = random_model(downward=downward)
    notes = random_notes((3, 10, 40))
    with torch.no_grad():
        want = model(notes).numpy()
        time_out = model.time_outputs(notes).numpy()
    got = note_stack(model).logits(time_out.reshape(30, 40, -1), notes.numpy().reshape(30, 40, 2))
    assert np.abs(got - want.reshape(30, 40, 2)).max() < 1e-5


@pytest.mark.parametrize("temperature, conservativity", [(1.0, 1.0), (0.5, 1.0), (1.0, 0.6)])
def test_the_sampler_draws_the_exact_distribution(temperature, conservativity):
    """The joint distribution of the top two pitches' play, drawn pitch by pitch by the kernel
    with uniforms from a seeded generator, against the exact one from the logits: the top
    pitch's own, the next one's given each outcome of the top (play, articulate); P(play)
    raised to the conservativity, P(articulate | play) not."""
    model = random_model(seed=3)
    with torch.no_grad():
        time_out = model.time_outputs(random_notes((1, 5, 40)))[0, -1].numpy().astype(np.float64)   # (P, Ht)
    stack = note_stack(model)
    top, second = 39, 38
    given = np.zeros((3, 40, 2))
    given[1, top], given[2, top] = (1, 0), (1, 1)
    logits = stack.logits(np.repeat(time_out[None], 3, axis=0), given).astype(np.float64)
    sigmoid = lambda x: 1.0 / (1.0 + np.exp(-x / temperature))  # noqa: E731
    p_play, p_articulate = sigmoid(logits[0, top, 0]) ** conservativity, sigmoid(logits[0, top, 1])
    outcomes = [(1 - p_play, logits[0]), (p_play * (1 - p_articulate), logits[1]), (p_play * p_articulate, logits[2])]
    exact = np.zeros((2, 2))   # [top plays][second plays]
    for k, (weight, row) in enumerate(outcomes):
        p_second = sigmoid(row[second, 0]) ** conservativity
        exact[int(k > 0), 1] += weight * p_second
        exact[int(k > 0), 0] += weight * (1 - p_second)
    draws = 40_000
    clamp = np.full((draws, 40), -1, dtype=np.int8)
    notes, _ = stack.sample(np.repeat(time_out[None], draws, axis=0), clamp, clamp,
                            np.random.default_rng(7).random((draws, 40, 2)), temperature, conservativity)
    observed = np.zeros((2, 2))
    np.add.at(observed, (notes[:, top, 0].astype(int), notes[:, second, 0].astype(int)), 1.0 / draws)
    assert np.abs(observed - exact).max() < 0.012, (observed, exact)
    assert np.all(notes[:, :, 1] <= notes[:, :, 0])   # struck only where it plays


def test_adaptive_conservativity_plays_more_after_rows_that_left_a_voice_out():
    c = 1.0
    for _ in range(10):
        c = adapted_conservativity(c, full=False)
    assert c == pytest.approx(0.8)
    assert adapted_conservativity(c, full=True) == pytest.approx(0.8 + 0.2 * 0.3)
    assert adapted_conservativity(1.3, full=False) == pytest.approx(0.98)      # Johnson's: back to 1 first
    for _ in range(100):
        c = adapted_conservativity(c, full=False)
    assert c == CONSERVATIVITY_FLOOR


def test_clamps_hold_at_any_temperature():
    model = random_model(seed=4)
    with torch.no_grad():
        time_out = model.time_outputs(random_notes((1, 3, 40)))[0, -1].numpy().astype(np.float64)
    rng = np.random.default_rng(0)
    clamp_play = rng.choice(np.array([-1, 0, 1], dtype=np.int8), size=(64, 40))
    clamp_articulate = rng.choice(np.array([-1, 0, 1], dtype=np.int8), size=(64, 40))
    stack = note_stack(model)
    for temperature in (0.0, 0.3, 1.0, 5.0):
        notes, _ = stack.sample(np.repeat(time_out[None], 64, axis=0), clamp_play, clamp_articulate,
                                rng.random((64, 40, 2)), temperature)
        assert np.all(notes[:, :, 0][clamp_play == 1] == 1) and np.all(notes[:, :, 0][clamp_play == 0] == 0)
        plays = notes[:, :, 0] == 1
        assert np.all(notes[:, :, 1][plays & (clamp_articulate == 1)] == 1)
        assert np.all(notes[:, :, 1][plays & (clamp_articulate == 0)] == 0)


# ------------------------------------------------------------- training and export

def test_training_lowers_the_validation_loss_and_keeps_the_optimizer(tiny_biaxial_run):
    rows = list(csv.DictReader(open(tiny_biaxial_run / "log.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert float(rows[-1]["valid_loss"]) < float(rows[0]["valid_loss"])
    state = torch.load(tiny_biaxial_run / "last.pt", weights_only=False)
    assert state["engine"] == "biaxial" and state["optimizer"]["state"] and state["epoch"] == 3


def test_training_resumes_from_its_last_checkpoint(tiny_biaxial_run, tmp_path, jsb_npz):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_biaxial_run, run)
    result = run_module("models.train_biaxial", "--out", run, "--data", jsb_npz, "--max-epochs", 4,
                        *TINY_BIAXIAL_ARGS)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resumed from" in result.stdout and "at epoch 3" in result.stdout
    assert [int(r["epoch"]) for r in csv.DictReader(open(run / "log.csv"))] == [1, 2, 3, 4]


def test_export_carries_what_the_runtime_reads(tiny_biaxial):
    engine = load_engine(tiny_biaxial, threads=1)
    assert engine.model.engine == "biaxial" and engine.num_pitches == 58 and engine.downward
    assert engine.knobs == {"temperature", "candidates", "parallel_penalty", "key", "voice_ranges", "seed"}
    assert engine.note_stack.time_in.shape == (16, 48)   # the time stack's 16 outputs to 4 gates x 12 units


# ------------------------------------------------------------- the engine

@pytest.fixture(scope="module")
def engine(tiny_biaxial):
    return load_engine(tiny_biaxial, threads=1)


def test_harmonize_keeps_the_melody_on_top_in_range_and_is_reproducible(engine):
    soprano = hymn_steps()
    settings = Settings(seed=1, temperature=1.0)
    roll = engine.harmonize(soprano, settings).pitches
    assert roll.shape == (len(soprano), 4) and np.array_equal(roll[:, 0], soprano)
    lower = roll[:, 1:]
    assert np.all((lower < roll[:, :1]) | (lower == REST))
    for voice in (1, 2, 3):
        low, high = settings.voice_ranges[voice]
        sounding = roll[:, voice][roll[:, voice] >= 0]
        assert np.all((sounding >= min(r[0] for r in settings.voice_ranges[1:])) &
                      (sounding <= max(r[1] for r in settings.voice_ranges[1:])))
    assert (lower >= 0).mean() > 0.3   # it plays under the melody
    assert np.array_equal(roll, engine.harmonize(soprano, settings).pitches)
    assert not np.array_equal(engine.harmonize(soprano, settings.replace(seed=2)).pitches, roll)


def test_inpaint_keeps_every_known_cell_and_the_key(engine):
    rng = np.random.default_rng(0)
    soprano = hymn_steps()
    roll = np.stack([soprano, soprano - 5, soprano - 12, soprano - 24], axis=1)
    known = rng.random(roll.shape) < 0.5
    out = engine.inpaint(roll, known, Settings(seed=5, temperature=1.0))
    assert np.array_equal(out[known], roll[known])
    out = engine.harmonize(soprano, Settings(seed=3, key="G", temperature=1.5)).pitches
    assert set(np.unique(out[:, 1:][out[:, 1:] >= 0] % 12)) <= {7, 9, 11, 0, 2, 4, 6}


def test_generate_continues_a_prime_and_keeps_it(engine):
    prime = np.stack([hymn_steps()[:32] - d for d in (0, 5, 12, 24)], 1)
    out = engine.generate(prime, np.ones(prime.shape, dtype=bool), 48, Settings(seed=0, temperature=1.0)).pitches
    assert out.shape == (80, 4) and np.array_equal(out[:32], prime)
    assert np.mean(out[32:] >= 0) > 0.2   # it plays


def test_a_stream_draws_each_row_from_all_the_rows_before_it():
    """Against a path that shares nothing with the engine's stepper: the time stack run over
    the whole prime in one pass (as evaluate runs it), the note axis at temperature 0 at the
    next row, its notes given to the voices by pitch order; the shipped model (a tiny one's
    argmax hardly depends on the past)."""
    engine = load_engine("biaxial", threads=1)
    settings = Settings(temperature=0.0, seed=0)
    for length in (16, 40, 41):
        prime = Score.of(np.stack([hymn_steps()[:length] - d for d in (0, 5, 12, 24)], axis=1))
        stream = engine.stream(settings)
        stream.feed(prime)
        row = stream.extend(1).pitches[0]
        previous = np.concatenate([np.zeros((1, engine.num_pitches, 2), np.float32),
                                   engine.rows_notes(prime.pitches, prime.onsets, 0, length)])
        time_out, _, _ = engine.time_steps(previous, 0, *engine.zero_states(1))
        free = np.where(engine.free_pitches(np.full((1, 4), REST), np.zeros((1, 4), bool), settings), -1, 0)
        free = free.astype(np.int8)[None]
        notes, _ = engine.note_stack.sample(time_out[-1:], free, np.full_like(free, -1), np.zeros((1, engine.num_pitches, 2)), 0.0)
        drawn = sorted((int(i) + engine.min_pitch for i in np.flatnonzero(notes[0, :, 0])), reverse=True)
        expected = assign_by_pitch_order(drawn, [0, 1, 2, 3])
        assert len(expected) == 4 and [int(row[v]) for v in range(4)] == [expected[v] for v in range(4)], (row, drawn)


def test_melody_candidates_are_the_likeliest_top_notes(engine):
    """The exact distribution of the last row's top note against the top notes of 4,000 draws of
    that row by the sampling kernel (every voice free, the range clamps, temperature 1); the
    candidates are its likeliest."""
    roll = np.stack([hymn_steps()[:33] - d for d in (0, 5, 12, 24)], axis=1)
    known = np.ones(roll.shape, dtype=bool)
    known[-1] = False
    settings = Settings(temperature=1.0)
    exact = engine.top_note_probabilities(roll, known, settings)
    given = np.where(known, roll, REST).astype(np.int16)
    time_out, _, _ = engine.time_steps(engine.rows_notes(given, pitch_changes(given), -1, len(given) - 1), 0,
                                       *engine.zero_states(1))
    draws, p = 4000, engine.num_pitches
    clamp = np.repeat(np.where(engine.free_pitches(given, known, settings), -1, 0).astype(np.int8)[None], draws, 0)
    notes, _ = engine.note_stack.sample(np.repeat(time_out[-1:], draws, axis=0), clamp, clamp,
                                        np.random.default_rng(3).random((draws, p, 2)), 1.0)
    observed = np.zeros(p)
    for row in notes[:, :, 0] > 0.5:
        if row.any():
            observed[np.flatnonzero(row).max()] += 1.0 / draws
    assert np.abs(observed - exact).max() < 0.02, (np.round(observed, 3), np.round(exact, 3))
    candidates = engine.melody_candidates(roll, known, settings, 3)
    low, high = settings.voice_ranges[0]
    in_range = [q for q in range(low, high + 1) if 0 <= q - engine.min_pitch < p]
    assert candidates == sorted(in_range, key=lambda q: (-exact[q - engine.min_pitch], q))[:3]


def test_cli_harmonize_generate_and_eval_end_to_end(tiny_biaxial, jsb_npz, tmp_path):
    out = tmp_path / "chorale.mid"
    result = run_cli("harmonize", EXAMPLE_MELODY, "-o", out, "--model", tiny_biaxial, "--seed", 1)
    assert result.returncode == 0, result.stderr
    names, notes = tracks_of(out)
    assert names == ["Soprano", "Alto", "Tenor", "Bass"] and notes[0] and notes[3]
    generated = tmp_path / "generated.mid"
    result = run_cli("generate", "--model", tiny_biaxial, "--bars", 2, "-o", generated, "--seed", 2,
                     "--temperature", 1.0)
    assert result.returncode == 0, result.stderr
    assert sum(map(len, tracks_of(generated)[1])) > 4
    result = run_cli("eval", "--model", tiny_biaxial, "--data", jsb_npz, "--split", "test", "--limit", 2, "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["chorales"] == 2 and figures["steps"] > 100
    assert -80 < figures["log_likelihood"] < 0 and 0 <= figures["accuracy"] <= 1


def test_a_quarter_note_model_trains_on_the_pickle_and_evaluates_there_only(tmp_path, jsb_quarter, jsb_npz):
    """--source jsb-quarter: a model stepping in quarter notes that scores play only; `eval` on the
    pickle gives its figures, anything else one line saying what it is for."""
    out = tmp_path / "run"
    result = run_module("models.train_biaxial", "--out", out, "--source", "jsb-quarter", "--data", jsb_quarter,
                        "--max-epochs", 2, *TINY_BIAXIAL_ARGS)
    assert result.returncode == 0, result.stderr[-2000:]
    model = export_best(out, "tiny-quarter")
    engine = load_engine(model, threads=1)
    assert (engine.step_16ths, engine.articulation) == (4, False)
    result = run_cli("eval", "--model", model, "--data", jsb_quarter, "--split", "test", "--limit", 3, "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["chorales"] == 3 and -60 < figures["log_likelihood"] < 0 and 0 <= figures["accuracy"] <= 1
    result = run_cli("eval", "--model", model, "--data", jsb_npz, "--split", "test", "--limit", 1)
    assert result.returncode != 0 and "steps in quarter notes" in result.stderr and len(result.stderr.splitlines()) == 1
    result = run_cli("harmonize", EXAMPLE_MELODY, "-o", tmp_path / "x.mid", "--model", model)
    assert result.returncode != 0 and "only evaluates" in result.stderr and not (tmp_path / "x.mid").exists()


def test_the_live_bridge_answers_every_onset_through_jack(realtime_jack, tiny_biaxial, tmp_path):
    """`bachbridge live --model` a bi-axial model: jack_midiseq's melody into 'bachbridge in',
    jack_midi_dump on 'bachbridge out': every onset gets its harmony, nothing is left sounding."""
    from jackrig import (MidiDump, MidiSeq, XrunMonitor, answers, harmony_hanging, missing_programs,
                         wait_for_harmony_release)
    from test_live_stock import start_live, stop_live

    if missing_programs(["jack_midiseq", "jack_midi_dump"]):
        pytest.skip("stock JACK programs missing (Debian: jackd2)")
    server = realtime_jack
    # the tiny model plays little: at its own temperature it would often draw nothing below the melody
    live = start_live("--no-echo", "--model", str(tiny_biaxial), "--key", "G", "--temperature", "2.0")
    dump = seq = None
    xruns = XrunMonitor(server)
    try:
        dump = MidiDump(server, "dump")
        server.connect("bachbridge out", "dump:input")
        eighth = 12_000
        notes = [(k * eighth, pitch, 11_000) for k, pitch in enumerate([67, 69, 71, 72, 74, 72, 71, 69])]
        seq = MidiSeq(server, "seq", notes, loop_frames=8 * eighth)
        server.connect("seq:out", "bachbridge in")
        server.connect("seq:out", "dump:input")
        time.sleep(5.0)
        seq.close()
        time.sleep(0.5)
        stop_live(live)
        wait_for_harmony_release(dump)
        events = dump.events()
    finally:
        xruns.close()
        for program in (seq, dump):
            if program is not None:
                program.close()
        if live.poll() is None:
            live.kill()
    got = answers(events, onset_grid=eighth, xruns=[x - dump.start_frame for x in xruns.frames])
    assert got.onsets >= 15 and got.lost_by_sender == [], got.line()   # an xrun's losses are JACK's
    assert harmony_hanging(events, grid=1_000) == {}, (got.line(), f"{len(xruns.frames)} xruns", events[-12:])



# ------------------------------------------------------------- the shipped model

def test_shipped_biaxial_is_there_small_and_described():
    from bridge.onnxmodel import OnnxModel
    from models import shipped_model

    path = shipped_model("biaxial")
    assert path.exists() and path.stat().st_size < 10 * 1024 * 1024
    model = OnnxModel(path)
    assert model.engine == "biaxial" and model.name == "biaxial"
    assert "Jsb16thSeparated.npz train split (229 chorales)" in model.metadata["train_data"]
    figures = model.figures()
    assert figures["split"] == "test" and -3.0 < figures["log_likelihood"] < -1.0


def test_shipped_biaxial_harmonizes_in_three_voices_below_the_melody():
    lower = lower_voices_of_the_hymn("biaxial")
    assert (lower >= 0).mean() > 0.9   # every voice sounds almost everywhere


def test_the_parallel_penalty_redraws_rows_that_make_consecutive_fifths_and_octaves(jsb_npz):
    """Six JSB test sopranos with the shipped model: with the penalty on, far fewer parallels per
    100 chord changes (counted as bench_music counts them) than with it off, the same seeds."""
    from bridge.musicstats import parallels_per_100
    from models.data import load_jsb16

    engine = load_engine("biaxial", threads=1)
    sopranos = [c[:, 0] for c in load_jsb16(jsb_npz, "test")[:6]]
    rates = {penalty: parallels_per_100([engine.harmonize(s, Settings(seed=i, parallel_penalty=penalty)).pitches
                                         for i, s in enumerate(sopranos)]) for penalty in (0.0, 6.0)}
    assert rates[0.0] > 4.0 and rates[6.0] < rates[0.0] / 2, rates


def test_the_live_note_mode_steps_the_time_stack_a_row_at_a_time_and_answers_as_the_window_would():
    """The note mode's Asker keeps the engine's stream between notes: at temperature 0 (the
    likelier choice everywhere, so no randomness between the two) each answer is the one the
    whole window gives, also after a note whose harmony sounded otherwise than drawn, while the
    time stack steps only the rows since the last note; a change of knobs starts it again."""
    from bridge.live import LIVE_SETTINGS, Context, LiveConfig, ask_engine
    from bridge.live.config import checked_snapshot
    from bridge.live.context import STREAM_ROWS, Asker

    engine = load_engine("biaxial", threads=1)
    snapshot = checked_snapshot(engine, LiveConfig(), LIVE_SETTINGS.replace(temperature=0.0))
    stepped = []
    time_steps = engine.time_steps
    engine.time_steps = lambda notes, *rest: stepped.append(len(notes)) or time_steps(notes, *rest)
    context, asker = Context(200), Asker()
    step = 0
    for k, pitch in enumerate(hymn_steps()[::4][:12]):
        context.onset(step, int(pitch))
        roll, known = context.window()
        stepped.clear()
        answer = asker.present(snapshot, roll, known, context.step)
        asked = stepped[:]
        assert np.array_equal(answer, ask_engine(snapshot, roll, known)[-1]), k
        assert k == 0 or sum(asked) <= 4, asked          # the rows since the last note, not the window
        # now and then another harmony sounds (the speculator's, say): the stream revises its row
        context.set_harmony(*(answer if k % 3 else np.where(answer >= 0, answer - 2, answer)))
        step += 4 if k % 3 else 2
    stepped.clear()
    asker._stream.score = Score.of(np.zeros((STREAM_ROWS + 1, 4), dtype=np.int16))   # as after a long evening
    context.onset(step, 67)
    asker.present(snapshot, *context.window(), context.step)
    assert sum(stepped) == len(context.window()[0])     # a long record: the whole window again
    step += 2
    stepped.clear()
    other = checked_snapshot(engine, LiveConfig(), LIVE_SETTINGS.replace(temperature=0.0, parallel_penalty=0.0))
    context.onset(step, 67)
    asker.present(other, *context.window(), context.step)
    assert sum(stepped) == len(context.window()[0])     # new knobs: the whole window again


def test_several_next_notes_over_one_past_draw_what_each_would_alone():
    """The speculator's question (one window, several next melody notes) reads the shared past
    once: the same answers as asking for each alone, the same seed."""
    engine = load_engine("biaxial", threads=1)
    window = np.stack([hymn_steps()[:17] - d for d in (0, 5, 12, 24)], axis=1)
    known = np.ones(window.shape, dtype=bool)
    known[-1, 1:] = False
    rolls = []
    for pitch in (67, 69, 71, 72):
        roll = window.copy()
        roll[-1, 0] = pitch
        rolls.append(roll)
    settings = Settings(seed=4, temperature=1.0)
    together = engine.inpaint_many(rolls, [known] * 4, settings, open_end=True)
    alone = [engine.inpaint(roll, known, settings, open_end=True) for roll in rolls]
    assert all(np.array_equal(a, b) for a, b in zip(together, alone))
    assert len({tuple(r[-1]) for r in together}) > 1


def test_when_every_draw_is_empty_the_likeliest_free_pitch_of_the_kept_one_is_struck():
    from bridge.engines.biaxial import BiaxialEngine

    clamp_play = np.array([1, -1, 0, -1, -1], dtype=np.int8)        # a given note, 3 free pitches, 1 off
    notes = np.zeros((2, 5, 2))
    notes[:, 0] = 1.0                                                 # the given note plays in both
    logits = np.zeros((2, 5, 2))
    logits[0, :, 0] = [5.0, -1.0, 9.0, -0.5, -3.0]                   # pitch 2 is off: not a candidate
    logits[1, :, 0] = [5.0, 2.0, 9.0, -4.0, -3.0]
    drawn, articulated = BiaxialEngine._choose(notes, logits, clamp_play, 3, None, None)
    assert drawn.tolist() == [3] and articulated[3]                   # draw 0 kept (first of equals)
    full = notes.copy()
    full[1, 4] = 1.0
    drawn, _ = BiaxialEngine._choose(full, logits, clamp_play, 3, None, None)
    assert drawn.tolist() == [4]                                      # a draw with a note: as drawn


def test_the_shipped_biaxial_never_leaves_a_melody_note_bare():
    """Played live (the present step's lower voices unknown, its own answers as the past) at a
    low temperature, where every one of a row's draws sometimes holds no free note: each onset
    still gets a voice below the melody."""
    engine = load_engine("biaxial")
    for k, rows, known in hymn_played_live(150):
        out = engine.inpaint(rows, known, Settings(temperature=0.3, seed=k), open_end=True)
        lower = out[-1, 1:]
        assert np.any(lower >= 0), (k, rows.tolist())
        assert np.all(lower[lower >= 0] < rows[-1, 0])
        rows[-1] = out[-1]
