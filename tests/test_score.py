"""The Score every engine reads and writes, and the one register path all engines share."""
from __future__ import annotations

import numpy as np
import pytest

from bridge.engines import ARTICULATE, CONTINUE, FILL, PREDICT_MELODY, load_engine, rest_is_held, settings_moved
from bridge.errors import BadInput
from bridge.score import REST, Score
from bridge.settings import Settings
from conftest import hymn_steps


def test_a_score_strikes_every_new_pitch_and_may_strike_a_held_one_again():
    pitches = np.array([[60], [60], [60], [REST], [62], [62]])
    held = Score.melody(pitches[:, 0])
    assert np.flatnonzero(held.onsets[:, 0]).tolist() == [0, 4]
    assert held.note_runs(0) == [(60, 0, 3), (62, 4, 6)]
    repeated = Score.melody(pitches[:, 0], onsets=np.array([0, 0, 1, 0, 0, 1], dtype=bool))
    assert repeated.note_runs(0) == [(60, 0, 2), (60, 2, 3), (62, 4, 5), (62, 5, 6)]


def test_a_score_is_immutable_and_checked():
    score = Score.of(np.full((2, 4), 60))
    with pytest.raises(ValueError):
        score.pitches[0, 0] = 61
    with pytest.raises(BadInput, match="onset where its voice is silent"):
        Score(np.array([[REST]]), np.array([[True]]), ("soprano",))
    with pytest.raises(BadInput, match="without striking it"):
        Score(np.array([[60], [62]]), np.array([[True], [False]]), ("soprano",))
    with pytest.raises(BadInput, match=r"\(T, 4\)"):
        Score.of(np.zeros((3, 2), dtype=np.int16))
    with pytest.raises(BadInput, match="MIDI 0..127"):
        Score.melody(np.array([128]))


def test_replace_keeps_strikes_where_the_pitch_stays_and_strikes_every_change():
    score = Score.melody(np.array([60, 60, 60]), onsets=np.array([1, 1, 0], dtype=bool))
    changed = score.replace(pitches=np.array([[60], [60], [64]]))
    assert changed.onsets[:, 0].tolist() == [True, True, True]


def test_the_rest_rule_is_one_rule():
    assert [rest_is_held(n) for n in range(6)] == [True, True, True, True, False, False]


def test_settings_move_the_key_and_ranges_and_nothing_else():
    settings = Settings(key="G", temperature=0.7)
    moved = settings_moved(settings, -7, -7)
    assert moved.key == "C" and moved.temperature == 0.7
    assert moved.voice_ranges[3] == (36 - 7, 66 - 7)
    assert settings_moved(settings, 12, 0) is settings          # whole octaves: the same key
    assert settings_moved(Settings(key="F#m"), 3, 0).key == "Am"


# ---- every engine through the one interface -------------------------------------------------

@pytest.fixture(scope="module", params=["coconet", "rnnrbm", "biaxial"])
def engine(request, tiny_model, tiny_rnnrbm, tiny_biaxial):
    return load_engine({"coconet": tiny_model, "rnnrbm": tiny_rnnrbm, "biaxial": tiny_biaxial}[request.param],
                       threads=1)


def test_every_engine_fills_and_says_what_else_it_can_do(engine):
    assert FILL in engine.capabilities and PREDICT_MELODY in engine.capabilities
    assert (CONTINUE in engine.capabilities) == (engine.name == "tiny-biaxial")
    assert (ARTICULATE in engine.capabilities) == (engine.name == "tiny-biaxial")


def test_every_engine_streams_what_generate_draws(engine):
    """feed a prime, extend by 24 rows: the rows generate draws for that prime; extending again
    goes on from there; given cells of an extend are kept."""
    prime = Score.of(np.stack([hymn_steps()[:32] - d for d in (0, 5, 12, 24)], axis=1))
    settings = Settings(seed=2, temperature=1.0)
    stream = engine.stream(settings)
    stream.feed(prime)
    rows = stream.extend(24)
    whole = engine.generate(prime, np.ones(prime.pitches.shape, dtype=bool), 24, settings)
    assert np.array_equal(rows.pitches, whole.pitches[32:]) and np.array_equal(rows.onsets, whole.onsets[32:])
    melody = np.full((16, 4), REST, dtype=np.int16)
    melody[:, 0] = 69
    known = np.zeros(melody.shape, dtype=bool)
    known[:, 0] = True
    more = stream.extend(16, Score.of(melody), known)
    assert (more.pitches[:, 0] == 69).all() and (more.pitches[:, 1:] >= 0).any()   # the melody kept, the rest drawn
    assert len(stream.score) == 32 + 24 + 16 and np.array_equal(stream.score.pitches[:32], prime.pitches)


def test_a_continuing_stream_steps_only_its_new_rows(tiny_biaxial):
    engine = load_engine(tiny_biaxial, threads=1)
    assert CONTINUE in engine.capabilities
    stepped = []
    time_steps = engine.time_steps
    engine.time_steps = lambda notes, *rest: stepped.append(len(notes)) or time_steps(notes, *rest)
    stream = engine.stream(Settings(seed=0))
    stream.feed(Score.of(np.stack([hymn_steps()[:64] - d for d in (0, 5, 12, 24)], axis=1)))
    assert stepped == [64]
    stream.extend(2)
    assert stepped[1:] == [1, 1]        # one time-stack step a row, whatever came before


def test_a_melody_an_octave_up_gets_its_harmony_an_octave_up_with_its_repeated_notes_struck(engine):
    """The register path is the engine's, not the caller's: the same draws an octave up, the
    melody and its onsets exactly as given (a repeated note stays two notes)."""
    melody = hymn_steps()[:48]
    onsets = np.zeros(len(melody), dtype=bool)
    onsets[::4] = True                                   # every quarter struck, repeated pitches too
    settings = Settings(seed=3, temperature=1.0)
    low = engine.harmonize(Score.melody(melody, onsets), settings)
    high = engine.harmonize(Score.melody(melody + 12, onsets), settings)
    assert np.array_equal(np.where(low.pitches >= 0, low.pitches + 12, REST), high.pitches)
    assert np.array_equal(high.pitches[:, 0], melody + 12)
    assert np.array_equal(high.onsets[:, 0], onsets | Score.melody(melody).onsets[:, 0])
    assert np.array_equal(low.onsets[:, 1:], high.onsets[:, 1:])


@pytest.fixture(scope="module", params=["coconet", "rnnrbm", "biaxial"])
def shipped_engine(request):
    # the shipped models: a tiny bi-axial model's time stack barely reads articulation
    return load_engine(request.param, threads=1)


def test_repeated_strikes_reach_the_models_that_articulate_and_only_those(shipped_engine):
    """The same pitches, a repeated note held or struck again: an engine with ARTICULATE hears
    the difference (its draws change), the others cannot (the same draws)."""
    engine = shipped_engine
    melody = hymn_steps()[:48]
    struck = np.zeros(len(melody), dtype=bool)
    struck[::4] = True
    settings = Settings(seed=5, temperature=1.0)
    held = engine.harmonize(Score.melody(melody), settings)
    restruck = engine.harmonize(Score.melody(melody, struck), settings)
    assert (not np.array_equal(held.pitches, restruck.pitches)) == (ARTICULATE in engine.capabilities)


def test_the_live_bridge_asks_only_what_the_engine_says_it_can_do(tiny_model):
    from bridge.live import LIVE_SETTINGS, LiveConfig
    from bridge.live.config import checked_snapshot

    engine = load_engine(tiny_model, threads=1)
    assert checked_snapshot(engine, LiveConfig(), LIVE_SETTINGS).speculating
    assert not checked_snapshot(engine, LiveConfig(speculate=False), LIVE_SETTINGS).speculating
    engine.capabilities = frozenset({FILL})               # cannot name the likely next melody notes
    assert not checked_snapshot(engine, LiveConfig(), LIVE_SETTINGS).speculating
    engine.capabilities = frozenset({CONTINUE})           # a phrase model: continues, does not harmonize
    with pytest.raises(BadInput, match="cannot fill in a harmony"):
        checked_snapshot(engine, LiveConfig(), LIVE_SETTINGS)
