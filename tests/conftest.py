"""Shared fixtures: the bundled example melody, the JSB data when it is there, and a tiny Coconet
trained and exported for real (a few seconds) so tests do not depend on the shipped weights."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest_jack import fresh_jack, jack_rig, jack_server, outside, realtime_jack  # noqa: F401  (a real JACK server for the port tests)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_MELODY = ROOT / "bridge" / "examples" / "chorale_melody.mid"
# Old Hundredth, in quarter beats
HYMN = [67, 67, 66, 64, 62, 67, 69, 71, 71, 71, 71, 69, 67, 72, 71, 69, 69]
HYMN_BEATS = [1, 1, 1, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1, 2]


def hymn_steps(transpose: int = 0) -> np.ndarray:
    """The hymn on the 16th grid, (T,) int16 MIDI pitches."""
    return np.repeat(np.array(HYMN) + transpose, np.array(HYMN_BEATS) * 4).astype(np.int16)


def lower_voices_of_the_hymn(model: str) -> np.ndarray:
    """A shipped model's (T, 3) alto, tenor, bass under the hymn (seed 0), checked to keep the
    melody exactly and to stay below it (or rest)."""
    from bridge.engines import REST, load_engine
    from bridge.settings import Settings

    soprano = hymn_steps()
    roll = load_engine(model).harmonize(soprano, Settings(seed=0)).pitches
    assert np.array_equal(roll[:, 0], soprano)
    lower = roll[:, 1:]
    assert np.all((lower < roll[:, :1]) | (lower == REST))
    return lower


def hymn_played_live(notes: int, past: int = 16):
    """The windows note mode shows an engine while the hymn is played a note a 16th: yields
    (k, rows, known) with the present's alto, tenor and bass unknown; the caller writes its
    answer into rows[-1], which the windows after it show as the past."""
    from bridge.engines import REST

    rows = np.full((past + 1, 4), REST, dtype=np.int16)
    for k in range(notes):
        rows[:-1] = rows[1:]
        rows[-1] = (HYMN[k % len(HYMN)], REST, REST, REST)
        known = np.ones(rows.shape, dtype=bool)
        known[-1, 1:] = False
        yield k, rows, known


def run_cli(*args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    """`python -m bridge ARGS` in a fresh process, as a user would run `bachbridge ARGS`."""
    return subprocess.run([sys.executable, "-m", "bridge", *map(str, args)], cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=timeout)


def run_module(module: str, *args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def jsb_npz() -> Path:
    from models.data import find_jsb16

    path = find_jsb16(os.environ.get("BACHBRIDGE_JSB_NPZ"))
    if path is None or not path.exists():
        pytest.skip("JSB data not found beside the checkout (../shared/data/jsb/Jsb16thSeparated.npz)")
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, jsb_npz) -> Path:
    """A tiny Coconet trained for 60 steps on the JSB training split (the training smoke run)."""
    out = tmp_path_factory.mktemp("tiny_run")
    result = run_module("models.train_coconet", "--out", out, "--preset", "tiny", "--data", jsb_npz,
                        "--max-steps", 60, "--eval-every", 20, "--threads", 1)
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def export_best(run: Path, name: str) -> Path:
    """A training run's best.pt exported by export_onnx.py to RUN/NAME.onnx (parity checked)."""
    onnx_path = run / f"{name}.onnx"
    result = subprocess.run([sys.executable, str(ROOT / "export_onnx.py"), run / "best.pt",
                             "-o", onnx_path, "--name", name], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    return onnx_path


@pytest.fixture(scope="session")
def tiny_model(tiny_run) -> Path:
    return export_best(tiny_run, "tiny")


@pytest.fixture(scope="session")
def jsb_quarter() -> Path:
    from models.data import find_jsb_quarter

    path = find_jsb_quarter(os.environ.get("BACHBRIDGE_JSB_QUARTER"))
    if path is None or not path.exists():
        pytest.skip("JSB data not found beside the checkout (../shared/data/jsb/jsb-chorales-quarter.pkl)")
    return path


TINY_RNNRBM_ARGS = ("--hidden", 32, "--recurrent", 16, "--eval-every", 3, "--pretrain-epochs", 1,
                    "--valid-chorales", 4, "--valid-chains", 2, "--valid-betas", 20, "--threads", 1)


@pytest.fixture(scope="session")
def tiny_rnnrbm_run(tmp_path_factory, jsb_quarter) -> Path:
    """A tiny RNN-RBM trained for 6 epochs on the JSB training split (the training smoke run)."""
    out = tmp_path_factory.mktemp("tiny_rnnrbm_run")
    result = run_module("models.train_rnnrbm", "--out", out, "--data", jsb_quarter, "--max-epochs", 6,
                        *TINY_RNNRBM_ARGS)
    assert result.returncode == 0, result.stderr[-2000:]
    return out


@pytest.fixture(scope="session")
def tiny_rnnrbm(tiny_rnnrbm_run) -> Path:
    return export_best(tiny_rnnrbm_run, "tiny-rnnrbm")


TINY_BIAXIAL_ARGS = ("--time-sizes", "16,16", "--note-sizes", "12,8", "--batch", 4, "--length", 48,
                     "--epoch-batches", 6, "--threads", 1)


@pytest.fixture(scope="session")
def tiny_biaxial_run(tmp_path_factory, jsb_npz) -> Path:
    """A tiny bi-axial LSTM trained for 3 short epochs on the JSB 16th training split (the
    training smoke run)."""
    out = tmp_path_factory.mktemp("tiny_biaxial_run")
    result = run_module("models.train_biaxial", "--out", out, "--data", jsb_npz, "--max-epochs", 3,
                        *TINY_BIAXIAL_ARGS)
    assert result.returncode == 0, result.stderr[-2000:]
    return out


@pytest.fixture(scope="session")
def tiny_biaxial(tiny_biaxial_run) -> Path:
    return export_best(tiny_biaxial_run, "tiny-biaxial")


TINY_PHRASE_ARGS = ("--no-folk", "--hidden", 24, "--layers", 1, "--batch", 8, "--epoch-batches", 8, "--threads", 1)


@pytest.fixture(scope="session")
def tiny_phrase_run(tmp_path_factory, jsb_npz) -> Path:
    """Tiny phrase nets trained for 3 short epochs on the JSB training sopranos (the training
    smoke run)."""
    out = tmp_path_factory.mktemp("tiny_phrase_run")
    result = run_module("models.train_phrase", "--out", out, "--data", jsb_npz, "--max-epochs", 3, *TINY_PHRASE_ARGS)
    assert result.returncode == 0, result.stderr[-2000:]
    return out


@pytest.fixture(scope="session")
def tiny_phrase(tiny_phrase_run) -> Path:
    return export_best(tiny_phrase_run, "tiny-phrase")
