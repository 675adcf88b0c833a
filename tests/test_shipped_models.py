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


def test_the_live_model_computes_the_last_steps_alone_as_the_whole_roll_gives_them(monkeypatch):
    """coconet-live's graph takes `from_step` and runs each layer only where the steps from it on
    see (export_onnx.py): those come out as the whole roll's, and note mode draws the same."""
    engine = load_engine("coconet-live", threads=1)
    assert engine._crops
    rng = np.random.default_rng(0)
    pitches = rng.integers(-1, 46, size=(3, 55, 4)).astype(np.int64)
    mask = (rng.random((3, 55, 4)) < 0.3).astype(np.float32)
    whole = engine.log_probs(pitches, mask)
    last = engine.log_probs(pitches, mask, from_step=50)
    assert whole.shape == (3, 55, 4, 46) and last.shape == (3, 5, 4, 46)
    assert np.max(np.abs(last - whole[:, 50:])) < 1e-4

    soprano = np.array([67, 67, 69, 71, 72, 71, 69, 67] * 6, dtype=np.int16)
    roll = np.stack([soprano, soprano - 4, soprano - 9, soprano - 19], axis=1).astype(np.int16)
    known = np.ones(roll.shape, bool)
    known[-1, 1:] = False
    cropped = [engine.inpaint(roll, known, Settings(seed=seed, temperature=1.0), open_end=True)[-1] for seed in range(20)]
    whole_roll = engine.log_probs
    monkeypatch.setattr(engine, "log_probs", lambda p, m, from_step=0: whole_roll(p, m)[:, from_step:])
    whole = [engine.inpaint(roll, known, Settings(seed=seed, temperature=1.0), open_end=True)[-1] for seed in range(20)]
    assert np.array_equal(cropped, whole)
    assert len({tuple(answer) for answer in whole}) > 1   # the seeds draw different answers


def test_the_shipped_coconet_is_the_int8_export_of_the_shipped_checkpoint(jsb_npz):
    """models/coconet.onnx runs int8 convolutions (export_onnx.py --int8) and answers as the float
    network of models/checkpoints/coconet.pt does, within the export's own check."""
    import torch

    from models.coconet import Coconet, CoconetConfig
    from models.quantize import MAX_MEAN_KL, feeds_from

    model = OnnxModel(shipped_model("coconet"))
    assert model.metadata["weights"] == "int8"
    checkpoint = torch.load(shipped_model("coconet").parent / "checkpoints" / "coconet.pt", weights_only=False)
    net = Coconet(CoconetConfig.from_dict(checkpoint["config"]))
    net.load_state_dict(checkpoint["model"])
    net.eval()
    for feeds in feeds_from("test", 2, seed=3, data=jsb_npz):
        with torch.no_grad():
            want = net(torch.from_numpy(feeds["pitches"]), torch.from_numpy(feeds["mask"])).numpy()
        got = model.run(feeds)[0]
        unknown = feeds["mask"] > 0.5
        kl = np.sum(np.exp(want[unknown]) * (want[unknown] - got[unknown]), axis=1)
        assert kl.mean() <= MAX_MEAN_KL, kl.mean()
