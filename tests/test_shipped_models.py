"""The models that ship in the package: present, small, self-describing, trained on JSB train only."""
from __future__ import annotations

import numpy as np
import pytest

from bridge.engines import load_engine
from bridge.onnxmodel import OnnxModel
from bridge.settings import Settings
from models import SHIPPED_MODELS, shipped_model


# the Coconet models; the RNN-RBM's shipped model is checked in test_rnnrbm.py
COCONET_MODELS = [name for name in SHIPPED_MODELS if name.startswith("coconet")]


@pytest.mark.parametrize("name", COCONET_MODELS)
def test_shipped_model_is_there_small_and_described(name):
    path = shipped_model(name)
    assert path.exists(), f"{path} missing: train and export it (README, 'Training the shipped models')"
    assert path.stat().st_size < 10 * 1024 * 1024
    model = OnnxModel(path)
    assert model.engine == "coconet" and model.name == name
    assert model.meta_int("num_pitches") == 46 and model.meta_int("min_pitch") == 36
    assert "Jsb16thSeparated.npz train split (229 chorales)" in model.metadata["train_data"]
    assert int(model.metadata["train_steps"]) > 1000


@pytest.mark.parametrize("name", COCONET_MODELS)
def test_shipped_model_harmonizes(name):
    engine = load_engine(name)
    soprano = np.repeat(np.array([67, 67, 66, 64, 62, 67, 69, 71], dtype=np.int16), 4)
    roll = engine.harmonize(soprano, Settings(seed=0)).pitches
    assert np.array_equal(roll[:, 0], soprano) and np.all(roll[:, 1:] >= 0)
    # sanity of a trained model: voices stay in order most of the time
    in_order = np.mean((roll[:, 0] >= roll[:, 1]) & (roll[:, 1] >= roll[:, 2]) & (roll[:, 2] >= roll[:, 3]))
    assert in_order > 0.8
