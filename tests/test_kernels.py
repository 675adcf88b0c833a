"""Tests for the Gibbs-sampling kernels and the key/range helpers."""
import numpy as np
import pytest

from bridge.kernels import (
    allowed_pitches,
    choose_resample_cells,
    masked_log_likelihood,
    sample_masked,
    tie_eighths,
    yao_mask_prob,
)
from bridge.keys import estimate_key, parse_key, scale_pitch_classes

P = 46
V = 4
MIN_PITCH = 36


def log_softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(logits):
    e = np.exp(logits - logits.max())
    return e / e.sum()


# --- yao_mask_prob -----------------------------------------------------------------------------

def test_yao_schedule_values():
    # N = 100, alpha = 0.5: falls linearly from 0.9 to 0.1 over 50 steps, then stays at 0.1.
    assert yao_mask_prob(0, 100, 0.9, 0.1, 0.5) == pytest.approx(0.9)
    assert yao_mask_prob(25, 100, 0.9, 0.1, 0.5) == pytest.approx(0.5)
    assert yao_mask_prob(40, 100, 0.9, 0.1, 0.5) == pytest.approx(0.26)
    assert yao_mask_prob(50, 100, 0.9, 0.1, 0.5) == pytest.approx(0.1)
    assert yao_mask_prob(51, 100, 0.9, 0.1, 0.5) == pytest.approx(0.1)
    assert yao_mask_prob(99, 100, 0.9, 0.1, 0.5) == pytest.approx(0.1)


def test_yao_schedule_without_annealing_phase_sits_at_floor():
    assert yao_mask_prob(0, 100, 0.9, 0.1, 0.0) == pytest.approx(0.1)


# --- choose_resample_cells ---------------------------------------------------------------------

def test_choose_resample_cells_respects_free_and_prob():
    rng = np.random.default_rng(1)
    K, T = 3, 2000
    free = rng.random((K, T, V)) < 0.7
    free[:, :, 0] = False  # the given melody
    u = rng.random((K, T, V))
    mask = np.full((K, T, V), 7.0, dtype=np.float32)  # garbage: every cell must be overwritten
    choose_resample_cells(free, 0.3, u, mask)
    assert set(np.unique(mask)) <= {0.0, 1.0}
    assert not mask[~free].any()
    np.testing.assert_array_equal(mask == 1.0, free & (u < 0.3))
    fraction = mask[free].mean()
    assert abs(fraction - 0.3) < 0.02


def test_choose_resample_cells_masks_at_least_one_per_chain():
    rng = np.random.default_rng(2)
    K, T = 3, 16
    free = np.zeros((K, T, V), dtype=bool)
    free[0, :, 1:] = True
    free[1, 5, 2] = True  # a single free cell
    # chain 2 has no free cell at all
    u = rng.random((K, T, V))
    mask = np.zeros((K, T, V), dtype=np.float32)
    choose_resample_cells(free, 0.0, u, mask)  # prob 0: nothing chosen by the threshold
    # Chain 0: exactly the free cell with the smallest uniform.
    assert mask[0].sum() == 1
    masked_u = u[0][mask[0] == 1.0][0]
    assert masked_u == u[0][free[0]].min()
    assert mask[1].sum() == 1 and mask[1, 5, 2] == 1.0
    assert mask[2].sum() == 0


def test_choose_resample_cells_shape_mismatch_raises():
    free = np.ones((1, 4, V), dtype=bool)
    with pytest.raises(ValueError):
        choose_resample_cells(free, 0.5, np.zeros((1, 5, V)), np.zeros((1, 4, V), np.float32))


# --- sample_masked -----------------------------------------------------------------------------

def _repeated_row(row, K=1, T=5000):
    return np.broadcast_to(row.astype(np.float32), (K, T, V, P)).copy()


@pytest.fixture(scope="module")
def peaked_row():
    rng = np.random.default_rng(3)
    return log_softmax(rng.normal(0.0, 2.0, P))


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_sample_masked_matches_tempered_softmax(peaked_row, temperature):
    T = 5000
    log_probs = _repeated_row(peaked_row, T=T)
    mask = np.ones((1, T, V), dtype=np.float32)
    allowed = np.ones((V, P), dtype=bool)
    u = np.random.default_rng(4).random((1, T, V))
    pitches = np.full((1, T, V), -1, dtype=np.int64)
    sample_masked(log_probs, mask, allowed, temperature, u, pitches, 0.0)
    assert pitches.min() >= 0 and pitches.max() < P
    freq = np.bincount(pitches.ravel(), minlength=P) / pitches.size
    expected = softmax(peaked_row.astype(np.float32).astype(np.float64) / temperature)
    assert np.abs(freq - expected).max() < 0.015
    # Make sure the tolerance can tell temperatures apart (the test would fail on the wrong one).
    untempered = softmax(peaked_row * 1.0)
    if temperature != 1.0:
        assert np.abs(freq - untempered).max() > 0.03


def test_sample_masked_argmax_at_zero_temperature(peaked_row):
    log_probs = _repeated_row(peaked_row, T=8)
    allowed = np.ones((V, P), dtype=bool)
    top = int(np.argmax(peaked_row))
    allowed[2, top] = False  # voice 2 must take the best *allowed* pitch
    second = int(np.argsort(peaked_row)[-2])
    u = np.random.default_rng(5).random((1, 8, V))
    pitches = np.zeros((1, 8, V), dtype=np.int64)
    sample_masked(log_probs, np.ones((1, 8, V), np.float32), allowed, 0.0, u, pitches, 0.0)
    assert (pitches[:, :, [0, 1, 3]] == top).all()
    assert (pitches[:, :, 2] == second).all()


def test_sample_masked_never_draws_disallowed_pitches():
    T = 2000
    row = np.full(P, -20.0)
    row[10] = 0.0  # nearly all the probability, but out of range
    row[20] = -3.0
    row[21] = -4.0
    log_probs = _repeated_row(log_softmax(row), T=T)
    log_probs[:, :, :, 30] = -np.inf  # the network rules this one out entirely
    allowed = np.zeros((V, P), dtype=bool)
    allowed[:, 15:35] = True
    u = np.random.default_rng(6).random((1, T, V))
    pitches = np.full((1, T, V), -1, dtype=np.int64)
    sample_masked(log_probs, np.ones((1, T, V), np.float32), allowed, 1.0, u, pitches, 0.0)
    assert allowed[np.arange(V)[None, None, :], pitches].all()
    assert not (pitches == 30).any()
    assert (pitches == 20).mean() > 0.5  # renormalized over the allowed pitches


def test_sample_masked_inverse_cdf_edges():
    row = log_softmax(np.zeros(P))
    log_probs = _repeated_row(row, T=2)
    allowed = np.zeros((V, P), dtype=bool)
    allowed[:, 5:9] = True
    u = np.zeros((1, 2, V))
    u[0, 1, :] = np.nextafter(1.0, 0.0)
    pitches = np.full((1, 2, V), -1, dtype=np.int64)
    sample_masked(log_probs, np.ones((1, 2, V), np.float32), allowed, 1.0, u, pitches, 0.0)
    assert (pitches[0, 0] == 5).all()
    assert (pitches[0, 1] == 8).all()


def test_sample_masked_leaves_unmasked_and_unplayable_cells_alone(peaked_row):
    rng = np.random.default_rng(7)
    T = 64
    log_probs = _repeated_row(peaked_row, T=T)
    mask = (rng.random((1, T, V)) < 0.5).astype(np.float32)
    allowed = np.ones((V, P), dtype=bool)
    allowed[3, :] = False  # bass has nowhere to go
    before = rng.integers(-1, P, (1, T, V))
    pitches = before.copy()
    sample_masked(log_probs, mask, allowed, 1.0, rng.random((1, T, V)), pitches, 0.0)
    np.testing.assert_array_equal(pitches[mask == 0], before[mask == 0])
    np.testing.assert_array_equal(pitches[:, :, 3], before[:, :, 3])
    assert (pitches[:, :, :3][mask[:, :, :3] == 1] >= 0).all()


def test_sample_masked_all_allowed_logits_impossible_falls_back_to_uniform():
    T = 4000
    log_probs = np.full((1, T, V, P), -np.inf, dtype=np.float32)
    log_probs[..., 0] = 0.0  # only a disallowed pitch is possible
    allowed = np.zeros((V, P), dtype=bool)
    allowed[:, 10:14] = True
    pitches = np.full((1, T, V), -1, dtype=np.int64)
    u = np.random.default_rng(8).random((1, T, V))
    sample_masked(log_probs, np.ones((1, T, V), np.float32), allowed, 1.0, u, pitches, 0.0)
    freq = np.bincount(pitches.ravel(), minlength=P)[10:14] / pitches.size
    assert pitches.min() >= 10 and pitches.max() <= 13
    assert np.abs(freq - 0.25).max() < 0.02


def test_sample_masked_is_reproducible(peaked_row):
    K, T = 2, 100
    log_probs = np.broadcast_to(peaked_row.astype(np.float32), (K, T, V, P)).copy()
    allowed = np.ones((V, P), dtype=bool)

    def run(seed):
        rng = np.random.default_rng(seed)
        mask = (rng.random((K, T, V)) < 0.6).astype(np.float32)
        pitches = np.zeros((K, T, V), dtype=np.int64)
        sample_masked(log_probs, mask, allowed, 1.0, rng.random((K, T, V)), pitches, 0.0)
        return pitches

    np.testing.assert_array_equal(run(11), run(11))
    assert (run(11) != run(12)).any()


def test_sample_masked_shape_mismatch_raises(peaked_row):
    log_probs = _repeated_row(peaked_row, T=4)
    with pytest.raises(ValueError):
        sample_masked(log_probs, np.ones((1, 4, V), np.float32), np.ones((V, P - 1), bool), 1.0,
                      np.zeros((1, 4, V)), np.zeros((1, 4, V), np.int64), 0.0)


# --- masked_log_likelihood ---------------------------------------------------------------------

def test_masked_log_likelihood_matches_numpy():
    rng = np.random.default_rng(9)
    K, T = 3, 32
    log_probs = log_softmax(rng.normal(size=(K, T, V, P))).astype(np.float32)
    pitches = rng.integers(-1, P, (K, T, V))
    mask = (rng.random((K, T, V)) < 0.5).astype(np.float32)
    out = np.full(K, np.nan)
    masked_log_likelihood(log_probs, pitches, mask, out)
    picked = np.take_along_axis(log_probs, np.maximum(pitches, 0)[..., None], axis=-1)[..., 0]
    counted = (mask == 1) & (pitches >= 0)
    expected = np.where(counted, picked.astype(np.float64), 0.0).sum(axis=(1, 2))
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert (expected != 0).all()


# --- allowed_pitches, keys ---------------------------------------------------------------------

def test_allowed_pitches_ranges_only():
    ranges = [(60, 81), (53, 74), (48, 69), (36, 62)]
    allowed = allowed_pitches(ranges, None, MIN_PITCH, P)
    assert allowed.shape == (V, P) and allowed.dtype == bool
    for v, (low, high) in enumerate(ranges):
        midi = MIN_PITCH + np.flatnonzero(allowed[v])
        assert midi.min() == low and midi.max() == high
        assert len(midi) == high - low + 1


def test_allowed_pitches_with_key():
    allowed = allowed_pitches([(60, 72), (36, 81)], scale_pitch_classes(0, "major"), MIN_PITCH, P)
    midi0 = MIN_PITCH + np.flatnonzero(allowed[0])
    assert list(midi0) == [60, 62, 64, 65, 67, 69, 71, 72]
    assert not allowed[1][np.array([61, 66, 70]) - MIN_PITCH].any()


def test_allowed_pitches_bad_input():
    with pytest.raises(ValueError):
        allowed_pitches([(70, 60)], None, MIN_PITCH, P)
    with pytest.raises(ValueError):
        allowed_pitches([(60, 70)], [12], MIN_PITCH, P)


def test_scale_pitch_classes():
    assert scale_pitch_classes(0, "major") == (0, 2, 4, 5, 7, 9, 11)
    assert scale_pitch_classes(7, "major") == (0, 2, 4, 6, 7, 9, 11)
    # A minor: natural minor plus F# and G#.
    assert scale_pitch_classes(9, "minor") == (0, 2, 4, 5, 6, 7, 8, 9, 11)
    with pytest.raises(ValueError):
        scale_pitch_classes(0, "dorian")


def test_estimate_key_major_and_minor():
    c_major = np.array([60, 62, 64, 65, 67, 69, 71, 72, -1, 67, 64, 60])
    assert estimate_key(c_major) == (0, "major")
    a_harmonic_minor = np.array([57, 59, 60, 62, 64, 65, 68, 69, -1, 64, 60, 57])
    assert estimate_key(a_harmonic_minor) == (9, "minor")
    # Durations matter: a long G and D over a short C outline G major.
    g_major = np.array([67, 71, 74, 72, 66, 67])
    assert estimate_key(g_major, np.array([4, 2, 2, 1, 1, 4])) == (7, "major")


def test_estimate_key_without_notes():
    with pytest.raises(ValueError):
        estimate_key(np.array([-1, -1]))


@pytest.mark.parametrize("text, expected", [
    ("C", (0, "major")), ("F#", (6, "major")), ("Bb", (10, "major")), ("Am", (9, "minor")),
    ("c#m", (1, "minor")), ("Ebm", (3, "minor")), ("D minor", (2, "minor")),
    ("G major", (7, "major")), ("bm", (11, "minor")), ("bbm", (10, "minor")),
    ("F sharp minor", (6, "minor")), ("Cb", (11, "major")), (" a Minor ", (9, "minor")),
])
def test_parse_key(text, expected):
    assert parse_key(text) == expected


@pytest.mark.parametrize("text", ["H", "", "C##", "Am7", "C dorian", "minor"])
def test_parse_key_rejects(text):
    with pytest.raises(ValueError, match="unrecognised key"):
        parse_key(text)


# --- voice leading ------------------------------------------------------------------------------

def _fifths_setup(bass_prefers):
    """Soprano G4 -> A4 over bass C4 -> ?, the bass masked at step 1 and the network preferring
    `bass_prefers` (pitch index), then F4 (index 29)."""
    pitches = np.full((1, 2, V), -1, np.int64)
    pitches[0, :, 0] = [31, 33]          # G4, A4
    pitches[0, 0, 3] = 24                # C4: a fifth below G4
    log_probs = np.full((1, 2, V, P), -20.0, np.float32)
    log_probs[0, 1, 3, bass_prefers] = -0.1
    log_probs[0, 1, 3, 29] = -2.5
    mask = np.zeros((1, 2, V), np.float32)
    mask[0, 1, 3] = 1
    return log_probs, mask, pitches


@pytest.mark.parametrize("bass_prefers", [26, 14])   # D4 (similar motion), D3 (contrary)
def test_parallel_penalty_steers_away_from_consecutive_fifths(bass_prefers):
    allowed = np.ones((V, P), bool)
    u = np.zeros((1, 2, V))
    log_probs, mask, pitches = _fifths_setup(bass_prefers)
    sample_masked(log_probs, mask, allowed, 0.0, u, pitches, 0.0)
    assert pitches[0, 1, 3] == bass_prefers              # no penalty: the fifths stand
    log_probs, mask, pitches = _fifths_setup(bass_prefers)
    sample_masked(log_probs, mask, allowed, 0.0, u, pitches, 5.0)
    assert pitches[0, 1, 3] == 29                         # penalised: F4, a third below


def test_parallel_penalty_leaves_a_held_voice_alone():
    allowed = np.ones((V, P), bool)
    log_probs, mask, pitches = _fifths_setup(24)          # the bass holds C4 under G4 -> A4
    sample_masked(log_probs, mask, allowed, 0.0, np.zeros((1, 2, V)), pitches, 5.0)
    assert pitches[0, 1, 3] == 24


def test_the_parallel_penalty_counts_what_the_bench_counts():
    """Over random changes of four voices, the sampler's count for each voice's new pitch, summed
    over the voices, is twice (each pair seen from both ends) the bench's consecutive perfects."""
    from bridge.kernels import _consecutive_perfects
    from bridge.musicstats import _count_parallels

    rng = np.random.default_rng(7)
    seen = 0
    for _ in range(400):
        # few pitch classes, so fifths and octaves come often; all sounding, the rows differ
        rows = 48 + rng.choice([0, 7, 12, 19, 24, 2, 5], size=(2, 4)) + rng.integers(0, 2, size=(2, 1)) * 7
        if np.array_equal(rows[0], rows[1]):
            continue
        counts = _count_parallels([rows])
        bench = sum(n for kind, n in counts.items() if kind != "changes")
        index = (rows - 30)[None].astype(np.int64)   # pitch indices: one offset for every voice
        sampler = sum(_consecutive_perfects(index, 0, 1, 1, v, index[0, 1, v]) for v in range(4))
        assert sampler == 2 * bench, rows
        seen += bench
    assert seen > 50


@pytest.mark.parametrize("bass_prefers", [26, 14])
def test_log_probs_of_the_last_steps_only_draw_as_the_whole_rolls_do(bass_prefers):
    """The penalty still sees the step before the ones log_probs covers."""
    allowed = np.ones((V, P), bool)
    log_probs, mask, pitches = _fifths_setup(bass_prefers)
    sample_masked(log_probs[:, 1:], mask, allowed, 0.0, np.zeros((1, 2, V)), pitches, 5.0)
    assert pitches[0, 1, 3] == 29
    log_probs, mask, pitches = _fifths_setup(bass_prefers)
    sample_masked(log_probs[:, 1:], mask, allowed, 0.0, np.zeros((1, 2, V)), pitches, 0.0)
    assert pitches[0, 1, 3] == bass_prefers


# --- whole 8th notes: tie_eighths and sample_masked's tie_next --------------------------------

def test_tie_eighths_masks_both_16ths_of_an_8th_of_a_tied_voice_from_its_phase():
    free = np.ones((2, 6, V), bool)
    free[0, 3, 2] = False                       # chain 0: the tenor's second 8th is half given
    mask = np.zeros((2, 6, V), np.float32)
    mask[:, 2, 2] = mask[:, 2, 3] = 1           # the first 16ths of 8ths in phase 0 ...
    mask[:, 5, 1] = 1                           # ... and a lone second 16th in the alto
    tie_next = np.ones((2, 6, V), bool)         # written over
    tied = np.array([False, False, True, True])
    tie_eighths(free, mask, np.array([0, 1]), tied, tie_next)
    # chain 0, 8ths at steps (0,1) (2,3) (4,5): the bass's second 8th masked whole, the tenor's
    # not (its second 16th is given), the alto untied
    assert mask[0, 3, 3] == 1 and tie_next[0, 2, 3]
    assert mask[0, 3, 2] == 0 and not tie_next[0, 2, 2]
    assert mask[0, 5, 1] == 1 and not tie_next[0, 4, 1]
    assert tie_next[0].sum() == 1
    # chain 1, phase 1: 8ths at (1,2) (3,4): steps 2 are second 16ths, so the 8ths they end are
    # masked only where their first 16ths were (they were not: unmasked)
    assert mask[1, 2, 2] == 0 and mask[1, 2, 3] == 0 and not tie_next[1].any()


def test_a_tied_pair_is_drawn_as_one_note_from_the_mean_of_its_log_probs():
    """The first 16th prefers D4 by a little, the second prefers E4 by a lot: drawn apart they
    differ; tied, E4 (the better mean) for both."""
    log_probs = np.full((1, 2, V, P), -20.0, np.float32)
    log_probs[0, 0, 3, 26], log_probs[0, 0, 3, 28] = -0.5, -1.0
    log_probs[0, 1, 3, 26], log_probs[0, 1, 3, 28] = -6.0, -0.1
    mask = np.zeros((1, 2, V), np.float32)
    mask[0, :, 3] = 1
    allowed = np.ones((V, P), bool)
    apart = np.full((1, 2, V), -1, np.int64)
    sample_masked(log_probs, mask, allowed, 0.0, np.zeros((1, 2, V)), apart, 0.0)
    assert list(apart[0, :, 3]) == [26, 28]
    tie_next = np.zeros((1, 2, V), bool)
    tie_next[0, 0, 3] = True
    tied = np.full((1, 2, V), -1, np.int64)
    sample_masked(log_probs, mask, allowed, 0.0, np.zeros((1, 2, V)), tied, 0.0, tie_next)
    assert list(tied[0, :, 3]) == [28, 28]
    mask[0, 1, 3] = 0
    with pytest.raises(ValueError, match="tied cell"):
        sample_masked(log_probs, mask, allowed, 0.0, np.zeros((1, 2, V)), tied, 0.0, tie_next)


def test_a_tied_pair_is_penalized_for_the_perfects_out_of_its_second_16th():
    """G4 -> G4 -> A4 over a bass drawn for steps 0-1 as one note: C4 makes fifths into A4/D4
    at step 2 only out of the second 16th; the penalty sees them there."""
    pitches = np.full((1, 3, V), -1, np.int64)
    pitches[0, :, 0] = [31, 31, 33]             # G4 G4 A4
    pitches[0, 2, 3] = 26                       # D4 under A4 at step 2: a fifth
    log_probs = np.full((1, 3, V, P), -20.0, np.float32)
    log_probs[0, :2, 3, 24] = -0.1              # C4, a fifth under G4, moving to D4 under A4
    log_probs[0, :2, 3, 28] = -2.5              # E4
    mask = np.zeros((1, 3, V), np.float32)
    mask[0, :2, 3] = 1
    tie_next = np.zeros((1, 3, V), bool)
    tie_next[0, 0, 3] = True
    allowed = np.ones((V, P), bool)
    sample_masked(log_probs, mask, allowed, 0.0, np.zeros((1, 3, V)), pitches, 0.0, tie_next)
    assert list(pitches[0, :2, 3]) == [24, 24]
    pitches[0, :2, 3] = -1
    sample_masked(log_probs, mask, allowed, 0.0, np.zeros((1, 3, V)), pitches, 5.0, tie_next)
    assert list(pitches[0, :2, 3]) == [28, 28]


def test_a_masked_cell_before_the_steps_log_probs_covers_is_an_error():
    log_probs, mask, pitches = _fifths_setup(26)
    mask[0, 0, 2] = 1
    with pytest.raises(ValueError, match="before the steps"):
        sample_masked(log_probs[:, 1:], mask, np.ones((V, P), bool), 0.0, np.zeros((1, 2, V)), pitches, 0.0)
