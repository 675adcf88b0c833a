"""The RNN-RBM engine: its numba kernels against exact enumeration on tiny RBMs, training, ONNX
export and parity, the engine (harmonize, inpaint, generate, eval) through the command line, and
the live bridge's note mode, all on a real (tiny, freshly trained) model."""
from __future__ import annotations

import csv
import itertools
import json
import math
import shutil
import time

import mido
import numpy as np
import pytest

from bridge import rbm_kernels
from bridge.engines import REST, load_engine
from bridge.engines import assign_by_pitch_order
from bridge.settings import Settings
from conftest import (EXAMPLE_MELODY, HYMN, TINY_RNNRBM_ARGS, hymn_played_live, hymn_steps, lower_voices_of_the_hymn,
                      run_cli, run_module)

NOTE_ON, NOTE_OFF = 0x90, 0x80



# ------------------------------------------------------------- tiny RBMs, enumerated exactly

def random_rbm(visible: int, hidden: int, seed: int, scale: float = 1.0):
    rng = np.random.default_rng(seed)
    return (scale * rng.normal(size=(visible, hidden)), scale * rng.normal(size=visible) * 0.5,
            scale * rng.normal(size=hidden) * 0.5)


def all_configurations(visible: int) -> np.ndarray:
    return np.array(list(itertools.product([0, 1], repeat=visible)), dtype=np.int8)


def exact_log_unnormalized(weights, visible_bias, hidden_bias, configurations, temperature=1.0):
    """log sum_h exp(-E(v, h) / T) for every configuration v."""
    hidden_input = (hidden_bias + configurations @ weights) / temperature
    return configurations @ visible_bias / temperature + np.logaddexp(0.0, hidden_input).sum(axis=1)


def exact_distribution(weights, visible_bias, hidden_bias, configurations, temperature=1.0):
    log_p = exact_log_unnormalized(weights, visible_bias, hidden_bias, configurations, temperature)
    p = np.exp(log_p - log_p.max())
    return p / p.sum()


def run_chains(weights, visible_bias, hidden_bias, clamp, chains, steps, temperature, seed):
    rng = np.random.default_rng(seed)
    v_count, h_count = weights.shape
    visible = np.zeros((chains, v_count), dtype=np.int8)
    rbm_kernels.gibbs_chains(weights, np.tile(visible_bias, (chains, 1)), np.tile(hidden_bias, (chains, 1)),
                             np.tile(clamp, (chains, 1)), visible, np.full(steps, temperature),
                             rng.random((steps, chains, h_count)), rng.random((steps, chains, v_count)))
    return visible


def frequencies(samples: np.ndarray) -> np.ndarray:
    index = samples @ (2 ** np.arange(samples.shape[1])[::-1])
    return np.bincount(index, minlength=2 ** samples.shape[1]) / len(samples)


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_gibbs_samples_match_the_exact_distribution(temperature):
    weights, visible_bias, hidden_bias = random_rbm(4, 3, seed=1)
    clamp = np.full(4, -1, dtype=np.int8)
    samples = run_chains(weights, visible_bias, hidden_bias, clamp, chains=20_000, steps=30,
                         temperature=temperature, seed=2)
    exact = exact_distribution(weights, visible_bias, hidden_bias, all_configurations(4), temperature)
    total_variation = 0.5 * np.abs(frequencies(samples) - exact).sum()
    # 20,000 draws over 16 states: sampling noise alone gives about 0.01; fixed seeds, no flakes
    assert total_variation < 0.025, total_variation


def test_gibbs_with_clamped_units_samples_the_exact_conditional():
    weights, visible_bias, hidden_bias = random_rbm(5, 3, seed=3)
    clamp = np.array([1, -1, -1, 0, -1], dtype=np.int8)
    samples = run_chains(weights, visible_bias, hidden_bias, clamp, chains=20_000, steps=30, temperature=1.0, seed=4)
    assert np.all(samples[:, 0] == 1) and np.all(samples[:, 3] == 0)
    configurations = all_configurations(5)
    consistent = (configurations[:, 0] == 1) & (configurations[:, 3] == 0)
    exact = exact_distribution(weights, visible_bias, hidden_bias, configurations) * consistent
    exact /= exact.sum()
    assert 0.5 * np.abs(frequencies(samples) - exact).sum() < 0.025


def test_clamped_units_never_change_at_any_temperature():
    weights, visible_bias, hidden_bias = random_rbm(12, 8, seed=5, scale=3.0)
    rng = np.random.default_rng(6)
    chains = 16
    clamp = rng.integers(-1, 2, size=(chains, 12)).astype(np.int8)
    visible = rng.integers(0, 2, size=(chains, 12)).astype(np.int8)
    for step in range(300):
        temperature = np.array([(0.0, 0.3, 1.0, 4.0)[step % 4]])
        rbm_kernels.gibbs_chains(weights, np.tile(visible_bias, (chains, 1)), np.tile(hidden_bias, (chains, 1)),
                                 clamp, visible, temperature, rng.random((1, chains, 8)), rng.random((1, chains, 12)))
        held = clamp >= 0
        assert np.array_equal(visible[held], clamp[held])


def test_free_energy_matches_its_formula():
    weights, visible_bias, hidden_bias = random_rbm(6, 4, seed=7)
    configurations = all_configurations(6)
    out = np.empty(len(configurations))
    rows = len(configurations)
    rbm_kernels.free_energy(weights, np.tile(visible_bias, (rows, 1)), np.tile(hidden_bias, (rows, 1)),
                            configurations, out)
    assert np.allclose(-out, exact_log_unnormalized(weights, visible_bias, hidden_bias, configurations))


def test_ais_matches_the_exact_partition_function():
    configurations = all_configurations(8)
    rows = [random_rbm(8, 5, seed=s, scale=1.5) for s in range(3)]
    weights = rows[0][0]  # one weight matrix, one RBM per row of biases, as in the engine
    visible_bias = np.stack([r[1] for r in rows])
    hidden_bias = np.stack([r[2] for r in rows])
    out = np.empty(3)
    rbm_kernels.ais_log_partition(weights, visible_bias, hidden_bias, np.linspace(0, 1, 500), 200,
                                  np.arange(3, dtype=np.int64), out)
    for f in range(3):
        exact = np.logaddexp.reduce(exact_log_unnormalized(weights, visible_bias[f], hidden_bias[f], configurations))
        assert out[f] == pytest.approx(exact, abs=0.03), (f, out[f], exact)


def test_completing_a_chord_adds_the_free_notes_likeliest_by_the_exact_conditional():
    weights, visible_bias, hidden_bias = random_rbm(6, 4, seed=11, scale=1.5)
    clamp = np.array([[1, -1, -1, 0, -1, -1], [1, -1, -1, 0, -1, -1], [1, 0, 0, 0, 0, -1]], dtype=np.int8)
    visible = np.array([[1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 1, 0], [1, 0, 0, 0, 0, 1]], dtype=np.int8)
    rbm_kernels.complete_chords(weights, np.tile(visible_bias, (3, 1)), np.tile(hidden_bias, (3, 1)), clamp,
                                visible, 2)
    expected = np.array([1, 0, 0, 0, 0, 0], dtype=np.int8)
    for _ in range(2):   # greedy: each time the free unit whose turning on is likeliest
        free = [i for i in range(6) if clamp[0, i] < 0 and not expected[i]]
        with_each = np.array([expected | (np.arange(6) == i) for i in free], dtype=np.int8)
        gain = exact_log_unnormalized(weights, visible_bias, hidden_bias, with_each)
        expected[free[int(np.argmax(gain))]] = 1
    assert np.array_equal(visible[0], expected)
    assert np.array_equal(visible[1], [1, 1, 0, 0, 1, 0])   # two free notes already: unchanged
    assert np.array_equal(visible[2], [1, 0, 0, 0, 0, 1])   # no free unit left off: it stops short


def test_expected_accuracy_of_a_near_certain_frame():
    weights = np.zeros((6, 2))
    visible_bias = np.array([[9.0, 9.0, -9.0, -9.0, 9.0, -9.0]] * 3)  # 0, 1 and 4 are (almost) always on
    hidden_bias = np.zeros((3, 2))
    target = np.array([[1, 1, 0, 0, 1, 0], [1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 1]], dtype=np.int8)
    out = np.empty(3)
    rbm_kernels.expected_accuracy(weights, visible_bias, hidden_bias, target, 5, 50, 2, np.arange(3, dtype=np.int64), out)
    assert out[0] > 0.99 and out[1] == pytest.approx(2 / 3, abs=0.01) and out[2] < 0.01


def test_notes_go_to_voices_by_pitch_order():
    atb = [1, 2, 3]
    assert assign_by_pitch_order([64, 60, 48], atb) == {1: 64, 2: 60, 3: 48}
    assert assign_by_pitch_order([64, 48], atb) == {1: 64, 3: 48}               # no tenor
    assert assign_by_pitch_order([48], atb) == {3: 48}                          # the bass alone
    assert assign_by_pitch_order([67, 64, 60, 55, 48], atb) == {1: 67, 2: 64, 3: 48}
    assert assign_by_pitch_order([], atb) == {}


# ------------------------------------------------------------- training and export

def read_log(run_dir):
    with open(run_dir / "log.csv") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def test_training_log_likelihood_rises_in_a_few_epochs(tiny_rnnrbm_run):
    rows = read_log(tiny_rnnrbm_run)
    assert [r["epoch"] for r in rows] == [3, 6]
    assert rows[-1]["valid_nll"] < rows[0]["valid_nll"]
    assert (tiny_rnnrbm_run / "best.pt").exists() and (tiny_rnnrbm_run / "last.pt").exists()


def test_training_resumes_from_last_checkpoint(tiny_rnnrbm_run, tmp_path, jsb_quarter):
    run_dir = tmp_path / "resumed"
    shutil.copytree(tiny_rnnrbm_run, run_dir)
    result = run_module("models.train_rnnrbm", "--out", run_dir, "--data", jsb_quarter, "--max-epochs", 9,
                        *TINY_RNNRBM_ARGS)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resumed from" in result.stdout and "at epoch 6" in result.stdout
    assert [r["epoch"] for r in read_log(run_dir)] == [3, 6, 9]


def test_checkpoint_keeps_the_optimizer_state(tiny_rnnrbm_run):
    import torch

    checkpoint = torch.load(tiny_rnnrbm_run / "last.pt", weights_only=False)
    assert checkpoint["engine"] == "rnnrbm" and checkpoint["optimizer"]["state"]
    assert checkpoint["config"]["hidden"] == 32 and checkpoint["config"]["recurrent"] == 16


def test_export_writes_metadata_the_runtime_reads(tiny_rnnrbm):
    from bridge.onnxmodel import OnnxModel

    model = OnnxModel(tiny_rnnrbm)
    assert model.engine == "rnnrbm" and model.name == "tiny-rnnrbm"
    assert model.meta_int("min_pitch") == 43 and model.meta_int("num_pitches") == 54   # the data's pitches
    assert model.meta_int("steps_per_frame") == 4 and model.meta_int("hidden") == 32
    assert model.meta_int("recurrent") == 16 and model.meta_int("gibbs_steps") == 25
    assert 80 <= float(model.metadata["soprano_median"]) <= 88
    assert "jsb-chorales-quarter.pkl train split (229 chorales)" in model.metadata["train_data"]


def test_parity_check_catches_a_model_that_differs(tiny_rnnrbm_run):
    import torch

    from export_onnx import PARITY_TOLERANCE, export_rnnrbm, parity

    checkpoint = torch.load(tiny_rnnrbm_run / "best.pt", weights_only=False)
    onnx_bytes, _, inputs, reference = export_rnnrbm(checkpoint, "tiny")
    assert parity(onnx_bytes, inputs, reference) <= PARITY_TOLERANCE
    # only the RBM's weights changed: the parity of that output alone must catch it
    perturbed = dict(checkpoint, model={k: (v + 0.01 if k == "weights" else v) for k, v in checkpoint["model"].items()})
    _, _, _, other_reference = export_rnnrbm(perturbed, "tiny")
    assert parity(onnx_bytes, inputs, other_reference) > PARITY_TOLERANCE


def test_onnx_step_replays_the_torch_recurrence(tiny_rnnrbm_run, tiny_rnnrbm, jsb_quarter):
    """The engine's frame-by-frame biases equal the training graph's over a whole chorale."""
    import torch

    from models.data import frames_to_roll, load_jsb_quarter
    from models.rnnrbm import RnnRbm, RnnRbmConfig

    checkpoint = torch.load(tiny_rnnrbm_run / "best.pt", weights_only=False)
    model = RnnRbm(RnnRbmConfig.from_dict(checkpoint["config"]))
    model.load_state_dict(checkpoint["model"])
    model.eval()   # no dropout
    frames = frames_to_roll(load_jsb_quarter(jsb_quarter, "test")[0], 43, 54)
    with torch.no_grad():
        want_visible, want_hidden = model.biases(torch.from_numpy(frames)[None])
    got_visible, got_hidden = load_engine(tiny_rnnrbm).sequence_biases(frames)
    assert np.max(np.abs(got_visible - want_visible[0].numpy())) < 1e-4
    assert np.max(np.abs(got_hidden - want_hidden[0].numpy())) < 1e-4


# ------------------------------------------------------------- the engine

@pytest.fixture(scope="module")
def engine(tiny_rnnrbm):
    return load_engine(tiny_rnnrbm, threads=1)


def test_harmonize_keeps_the_melody_on_top_and_is_reproducible(engine):
    soprano = hymn_steps()
    roll = engine.harmonize(soprano, Settings(seed=1)).pitches
    assert roll.shape == (len(soprano), 4) and np.array_equal(roll[:, 0], soprano)
    lower = roll[:, 1:]
    assert np.all((lower < roll[:, :1]) | (lower == REST))           # every pitch above the melody is off
    for row in lower:                                                 # by pitch order, fewer voices allowed
        sounding = row[row >= 0]
        assert np.all(np.diff(sounding) < 0)
    for t in range(0, len(roll), 4):                                  # a frame's harmony holds for the frame
        assert np.all(lower[t:t + 4] == lower[t])
    assert np.array_equal(roll, engine.harmonize(soprano, Settings(seed=1)).pitches)
    other = [engine.harmonize(soprano, Settings(seed=s, temperature=1.0)).pitches for s in (2, 3)]
    assert not np.array_equal(other[0], other[1])


def test_inpaint_keeps_every_known_cell_and_the_key(engine):
    rng = np.random.default_rng(0)
    soprano = hymn_steps()
    roll = np.stack([soprano, soprano - 5, soprano - 12, soprano - 24], axis=1)
    known = rng.random(roll.shape) < 0.5
    for candidates in (1, 3):
        out = engine.inpaint(roll, known, Settings(seed=5, candidates=candidates))
        assert np.array_equal(out[known], roll[known])
    out = engine.harmonize(soprano, Settings(seed=3, key="G", temperature=1.5)).pitches
    assert set(np.unique(out[:, 1:][out[:, 1:] >= 0] % 12)) <= {7, 9, 11, 0, 2, 4, 6}


def test_transposed_melody_gets_the_transposed_harmony(engine):
    """The engine moves the melody to the data's key (C) and back: a melody a tone up, in its
    own key, is harmonized a tone up with the same draws."""
    soprano = hymn_steps()
    settings = Settings(seed=4, key="G")
    low = engine.harmonize(soprano, settings).pitches
    high = engine.harmonize(soprano + 2, settings.replace(key="A")).pitches
    assert np.array_equal(np.where(low >= 0, low + 2, REST), high)


def test_generate_continues_a_prime_and_keeps_it(engine):
    prime = np.stack([hymn_steps()[:32], hymn_steps()[:32] - 5, hymn_steps()[:32] - 12, hymn_steps()[:32] - 24], 1)
    out = engine.generate(prime, np.ones(prime.shape, dtype=bool), 64, Settings(seed=0, temperature=1.0)).pitches
    assert out.shape == (96, 4) and np.array_equal(out[:32], prime)
    assert np.mean(out[32:] >= 0) > 0.3   # it plays


def test_live_note_mode_works_with_the_rnnrbm_engine(engine):
    """The live bridge's note mode, as test_live drives it, with nothing that knows the engine."""
    from bridge.live import LIVE_SETTINGS, LiveConfig, LiveStats, NoteMode, Outlet, Snapshot, warm_up
    from bridge.sounding import Sounding

    config = LiveConfig(clock="free")
    warm_up(Snapshot(config, LIVE_SETTINGS, engine))
    sent: list[bytes] = []
    mode = NoteMode(Outlet(Sounding(sent.append)), LiveStats())
    mode.apply(Snapshot(config, LIVE_SETTINGS, engine), 0)
    times = []
    for k, pitch in enumerate(HYMN * 2):
        before = len(sent)
        started = time.perf_counter()
        mode.handle(bytes([NOTE_ON, pitch, 80]), 10 * k)
        times.append(time.perf_counter() - started)
        harmony = [m for m in sent[before:] if m[0] & 0xF0 == NOTE_ON and m[2] > 0 and m[0] & 0x0F != 0]
        assert all(m[1] < pitch for m in harmony)   # below the melody
        mode.handle(bytes([NOTE_OFF, pitch, 0]), 10 * k + 5)
    mode.release_all(10**9)
    assert mode.stats.notes_in == 2 * len(HYMN) and mode.stats.engine_errors == 0
    assert mode.stats.harmony_notes_out > 0   # (held voices are not sounded again: no count to expect)
    assert float(np.median(times)) < 0.05, times   # a few ms on the reference machine


def test_melody_candidates_are_in_the_soprano_range(engine):
    roll = np.stack([hymn_steps()[:33]] * 4, axis=1) - np.array([0, 5, 12, 24])
    known = np.ones(roll.shape, dtype=bool)
    known[-1] = False
    candidates = engine.melody_candidates(roll, known, Settings(seed=0), 8)
    low, high = Settings().voice_ranges[0]
    assert 1 <= len(candidates) <= 8 and len(set(candidates)) == len(candidates)
    assert all(low <= p <= high for p in candidates)


# ------------------------------------------------------------- the command line

def tracks_of(path):
    midi = mido.MidiFile(path)
    names = [next((m.name for m in t if m.type == "track_name"), "") for t in midi.tracks]
    notes = [[m.note for m in t if m.type == "note_on" and m.velocity > 0] for t in midi.tracks]
    return names, notes


def test_cli_harmonize_and_generate_end_to_end(tiny_rnnrbm, tmp_path):
    out = tmp_path / "chorale.mid"
    result = run_cli("harmonize", EXAMPLE_MELODY, "-o", out, "--model", tiny_rnnrbm, "--seed", 1)
    assert result.returncode == 0, result.stderr
    names, notes = tracks_of(out)
    assert names == ["Soprano", "Alto", "Tenor", "Bass"] and notes[0] and notes[3]

    generated = tmp_path / "generated.mid"
    result = run_cli("generate", "--model", tiny_rnnrbm, "--bars", 4, "-o", generated, "--seed", 2,
                     "--temperature", 1.0)
    assert result.returncode == 0, result.stderr
    names, notes = tracks_of(generated)
    assert names == ["Soprano", "Alto", "Tenor", "Bass"] and sum(map(len, notes)) > 8
    assert mido.MidiFile(generated).length == pytest.approx(4 * 4 * 60 / 100, abs=0.01)  # 4 bars at 100 bpm

    continued = tmp_path / "continued.mid"
    result = run_cli("generate", "--model", tiny_rnnrbm, "--prime", EXAMPLE_MELODY, "--bars", 2, "-o", continued,
                     "--seed", 3)
    assert result.returncode == 0, result.stderr
    _, prime_notes = tracks_of(EXAMPLE_MELODY)
    _, notes = tracks_of(continued)
    melody = [p for track in prime_notes for p in track]
    assert notes[0][:len(melody)] == melody   # the prime's melody, then the continuation

    result = run_cli("generate", "--model", tiny_rnnrbm, "--bars", 0, "-o", tmp_path / "none.mid")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "none.mid").exists()


def test_cli_eval_reports_loglikelihood_and_accuracy(tiny_rnnrbm, jsb_quarter, jsb_npz):
    result = run_cli("eval", "--model", tiny_rnnrbm, "--data", jsb_quarter, "--split", "test", "--limit", 1, "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["chorales"] == 1 and figures["frames"] == 84
    assert -30 < figures["log_likelihood"] < -3 and math.isfinite(figures["log_likelihood_seed_std"])
    assert 0 < figures["accuracy"] < 1
    assert figures["ais_chains"] > 1 and figures["ais_temperatures"] > 10
    # the wrong kind of file: exit status 2, one line naming it (after the progress bar), no traceback
    result = run_cli("eval", "--model", tiny_rnnrbm, "--data", jsb_npz, "--split", "test")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"bachbridge: {jsb_npz}")


# ------------------------------------------------------------- the shipped model

def test_shipped_rnnrbm_is_there_small_and_described():
    from bridge.onnxmodel import OnnxModel
    from models import SHIPPED_MODELS, shipped_model

    assert "rnnrbm" in SHIPPED_MODELS
    path = shipped_model("rnnrbm")
    assert path.exists(), f"{path} missing: train and export it (README, 'RNN-RBM')"
    assert path.stat().st_size < 10 * 1024 * 1024
    model = OnnxModel(path)
    assert model.engine == "rnnrbm" and model.name == "rnnrbm"
    assert model.meta_int("hidden") == 150 and model.meta_int("recurrent") == 100
    assert "jsb-chorales-quarter.pkl train split (229 chorales)" in model.metadata["train_data"]
    assert int(model.metadata["train_steps"]) > 1000


def test_shipped_rnnrbm_harmonizes_in_three_voices_below_the_melody():
    lower = lower_voices_of_the_hymn("rnnrbm")
    # a trained model sings mostly full chords: three voices under the melody most of the time
    assert np.mean(np.all(lower >= 0, axis=1)) > 0.7


def test_the_shipped_rnnrbm_never_leaves_a_melody_note_bare(monkeypatch):
    """Played live (the present step's lower voices unknown, its own answers as the past), one
    chain a frame at a high temperature: some draws hold no note below the melody; each such
    onset still gets its likeliest one."""
    engine = load_engine("rnnrbm")
    settings = Settings(temperature=1.6, parallel_penalty=0, candidates=1)
    complete = rbm_kernels.complete_chords
    bare_draws = 0
    for k, rows, known in hymn_played_live(200):
        monkeypatch.setattr(rbm_kernels, "complete_chords", lambda *args: None)
        drawn = engine.inpaint(rows, known, settings.replace(seed=k), open_end=True)
        monkeypatch.setattr(rbm_kernels, "complete_chords", complete)
        out = engine.inpaint(rows, known, settings.replace(seed=k), open_end=True)
        bare_draws += bool(np.all(drawn[-1, 1:] == REST))
        lower = out[-1, 1:]
        assert np.any(lower >= 0), (k, rows.tolist())
        assert np.all(lower[lower >= 0] < rows[-1, 0])
        rows[-1] = out[-1]
    assert bare_draws >= 3   # the case is real: without the completion these onsets were bare
