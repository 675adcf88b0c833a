"""Training data: crops, transposition and the masks the loss is taken over (numpy only)."""
from __future__ import annotations

import numpy as np
import pytest

from models import data


def chorale(length=40, low=48, high=79):
    rng = np.random.default_rng(1)
    roll = rng.integers(low, high + 1, size=(length, 4)).astype(np.int16)
    roll[5] = data.REST
    return roll


def test_crops_stay_in_range_keep_rests_and_pad_short_chorales():
    rng = np.random.default_rng(0)
    crops = data.random_crops([chorale(), chorale(10)], batch=64, length=32, rng=rng)
    assert crops.shape == (64, 32, 4)
    sounding = crops[crops != data.REST]
    assert sounding.min() >= 0 and sounding.max() < data.NUM_PITCHES
    assert np.any(np.all(crops[:, 10:] == data.REST, axis=(1, 2)))   # a 10-step chorale, padded


def test_transposition_covers_both_directions_within_range():
    rng = np.random.default_rng(0)
    c = chorale(32, 60, 64)
    crops = data.random_crops([c], batch=200, length=32, rng=rng, max_transpose=6)
    shifts = {int(x) for x in crops[:, 0, 0] - (c[0, 0] - data.MIN_PITCH)}
    assert min(shifts) == -6 and max(shifts) == 6


@pytest.mark.parametrize("kind", list(data.MASK_KINDS))
def test_targets_are_unknown_cells(kind):
    mask, target = data.MASK_KINDS[kind](50, 32, np.random.default_rng(3))
    assert mask.shape == target.shape == (50, 32, 4)
    assert np.all(target <= mask) and np.all(target.sum(axis=(1, 2)) >= 1)


def test_live_mask_scores_only_the_present_step():
    mask, target = data.chronological_mask(200, 32, np.random.default_rng(4))
    for m, t in zip(mask, target):
        step = int(np.flatnonzero(t.any(axis=1))[0])
        assert np.all(t.any(axis=1).nonzero()[0] == step)        # one step holds every target
        assert np.all(m[:step] == 0) and np.all(m[step + 1:] == 1)  # past known, future unknown
        first = int(np.flatnonzero(m[step])[0])
        assert np.all(m[step, first:] == 1) and np.all(m[step, :first] == 0)


def test_mixed_masks_follow_the_weights():
    mask, target = data.mixed_masks(2000, 16, np.random.default_rng(5), {"melody": 1, "chronological": 1})
    melody_rows = np.all(mask[:, :, 0] == 0, axis=1) & np.all(mask[:, :, 1:] == 1, axis=(1, 2))
    assert 0.4 < melody_rows.mean() < 0.6
