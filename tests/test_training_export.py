"""Training smoke run, resume, ONNX export with its parity check, and the exact windowed NLL."""
from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest

from conftest import run_module


def read_log(run_dir):
    with open(run_dir / "log.csv") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def test_training_loss_falls_in_a_few_steps(tiny_run):
    rows = read_log(tiny_run)
    assert [r["step"] for r in rows] == [20, 40, 60]
    assert rows[-1]["valid_loss"] < rows[0]["valid_loss"] - 0.1
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert (tiny_run / "best.pt").exists() and (tiny_run / "last.pt").exists()


def test_training_resumes_from_last_checkpoint(tiny_run, tmp_path, jsb_npz):
    run_dir = tmp_path / "resumed"
    shutil.copytree(tiny_run, run_dir)
    result = run_module("models.train_coconet", "--out", run_dir, "--preset", "tiny", "--data", jsb_npz,
                        "--max-steps", 80, "--eval-every", 20, "--threads", 1)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resumed from" in result.stdout and "at step 60" in result.stdout
    assert [r["step"] for r in read_log(run_dir)] == [20, 40, 60, 80]


def test_export_writes_metadata_the_runtime_reads(tiny_model):
    from bridge.onnxmodel import OnnxModel

    model = OnnxModel(tiny_model)
    assert model.engine == "coconet" and model.name == "tiny"
    assert model.meta_int("min_pitch") == 36 and model.meta_int("num_pitches") == 46
    assert model.meta_int("num_voices") == 4
    assert model.meta_int("receptive_radius") == 4   # 4 dense 3x3 layers: 4 steps each side
    assert "JSB" in model.metadata["train_data"]


def test_parity_check_catches_a_model_that_differs(tiny_run):
    import torch

    from export_onnx import PARITY_TOLERANCE, export_coconet, parity

    checkpoint = torch.load(tiny_run / "best.pt", weights_only=False)
    onnx_bytes, _, inputs, reference = export_coconet(checkpoint, "tiny")
    assert parity(onnx_bytes, inputs, reference) <= PARITY_TOLERANCE
    perturbed = dict(checkpoint, model={k: (v + 0.05 if v.is_floating_point() else v)
                                        for k, v in checkpoint["model"].items()})
    _, _, _, other_reference = export_coconet(perturbed, "tiny")
    assert parity(onnx_bytes, inputs, other_reference) > PARITY_TOLERANCE


def test_windowed_chronological_nll_equals_full_length(tiny_model, jsb_npz):
    """The windowed note-wise NLL must be exactly what masking the whole chorale gives."""
    from bridge.engines import load_engine
    from models.data import load_jsb16, to_indices

    engine = load_engine(tiny_model)
    chorale = to_indices(load_jsb16(jsb_npz, "test")[0][:24])
    windowed, count = engine.chronological_nll(chorale, batch=7)
    full = 0.0
    for t in range(len(chorale)):
        for v in range(4):
            if chorale[t, v] < 0:
                continue
            mask = np.zeros((1, *chorale.shape), dtype=np.float32)
            mask[0, t, v:] = 1
            mask[0, t + 1:] = 1
            full -= float(engine.log_probs(chorale[None], mask)[0, t, v, chorale[t, v]])
    assert count == int(np.sum(chorale >= 0))
    assert windowed == pytest.approx(full, rel=1e-5)


@pytest.mark.parametrize("separable, layers, time_dilations", [(False, 6, (1,)), (False, 6, (1, 3)),
                                                               (True, 8, (1, 2, 4, 8))])
def test_receptive_radius_is_exact(separable, layers, time_dilations):
    """A change `radius` steps away reaches a cell's output; one step further it does not."""
    import torch

    from models.coconet import Coconet, CoconetConfig, time_radii

    torch.manual_seed(0)
    config = CoconetConfig(num_layers=layers, channels=8, separable=separable, time_dilations=time_dilations)
    model = Coconet(config).eval()
    radius = time_radii(config)[0]
    steps, centre = 2 * radius + 11, radius + 5
    pitches = torch.randint(0, 46, (1, steps, 4))
    mask = torch.zeros(1, steps, 4)
    with torch.no_grad():
        base = model(pitches, mask)[0, centre]
        for distance, reaches in ((radius, True), (radius + 1, False)):
            changed = pitches.clone()
            changed[0, centre + distance] = (changed[0, centre + distance] + 7) % 46
            moved = (model(changed, mask)[0, centre] - base).abs().max().item()
            assert (moved > 0) == reaches, (distance, moved)


def test_training_starts_a_new_run_from_a_given_checkpoint(tiny_run, tmp_path, jsb_npz):
    result = run_module("models.train_coconet", "--out", tmp_path / "fine", "--resume", tiny_run / "last.pt",
                        "--data", jsb_npz, "--max-steps", 70, "--eval-every", 10, "--threads", 1, "--lr", 1e-4)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "at step 60" in result.stdout
    assert [(r["step"], r["lr"]) for r in read_log(tmp_path / "fine")] == [(70, 1e-4)]
    refused = run_module("models.train_coconet", "--out", tmp_path / "still", "--resume", tiny_run / "last.pt",
                         "--data", jsb_npz, "--max-steps", 70, "--lr", 0)
    assert refused.returncode != 0 and refused.stderr.strip().splitlines()[-1] == "--lr must be > 0, not 0.0"


def test_training_on_longer_crops_starts_the_validation_record_afresh(tiny_run, tmp_path, jsb_npz):
    """The validation crops are as long as the training crops: a loss on 48-step crops is not
    comparable with the checkpoint's best on 32, so the record restarts."""
    result = run_module("models.train_coconet", "--out", tmp_path / "long", "--resume", tiny_run / "last.pt",
                        "--data", jsb_npz, "--crop", 48, "--max-steps", 70, "--eval-every", 10, "--threads", 1)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "crop changed to 48: validation record restarted" in result.stdout


def test_the_live_preset_trains_without_voice_heads_and_on_the_standard_mix_when_asked(tmp_path, jsb_npz):
    import torch

    result = run_module("models.train_coconet", "--out", tmp_path / "plain", "--preset", "live", "--channels", 8,
                        "--voice-heads", 0, "--mask-mix", "standard", "--data", jsb_npz, "--max-steps", 2,
                        "--threads", 1)
    assert result.returncode == 0, result.stderr[-2000:]
    checkpoint = torch.load(tmp_path / "plain" / "last.pt", map_location="cpu", weights_only=False)
    assert checkpoint["config"]["head_channels"] == 0 and checkpoint["config"]["channels"] == 8
    assert checkpoint["mask_weights"] == {"orderless": 0.5, "melody": 0.2, "chronological": 0.3}


def test_training_on_a_gpu_that_is_not_there_says_so(tmp_path, jsb_npz):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = run_module("models.train_coconet", "--out", tmp_path / "gpu", "--preset", "tiny", "--data", jsb_npz,
                        "--device", "cuda", "--max-steps", 1)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == "--device cuda: no CUDA device here"


def test_int8_export_runs_in_the_engine_and_its_check_fails_loudly(tiny_run, tmp_path, jsb_npz, monkeypatch):
    """--int8: QLinearConv in the graph, the metadata kept, the engine harmonizes with it; a check
    bound no quantization can meet writes nothing and exits non-zero."""
    import onnx

    from bridge.engines import load_engine
    from bridge.score import Score
    from bridge.settings import Settings

    out = tmp_path / "tiny-int8.onnx"
    result = run_module("export_onnx", tiny_run / "best.pt", "-o", out, "--name", "tiny", "--int8", "--data", jsb_npz)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "mean KL" in result.stdout and result.stderr == ""
    graph = onnx.load(str(out))
    ops = [node.op_type for node in graph.graph.node if "Conv" in node.op_type]
    # the first (one-hot input) and the last (the logits) stay in float; the first's input too, or
    # onnxruntime would quantize it itself between a DequantizeLinear and a QuantizeLinear
    assert ops[0] == ops[-1] == "Conv" and set(ops[1:-1]) == {"QLinearConv"}, ops
    made_by = {output: node.op_type for node in graph.graph.node for output in node.output}
    first = next(node for node in graph.graph.node if node.op_type == "Conv")
    assert made_by[first.input[0]] != "DequantizeLinear"
    engine = load_engine(out)
    assert engine.model.metadata["weights"] == "int8" and engine.model.name == "tiny"
    melody = np.repeat([67, 69, 71, 72, 74, 72, 71, 69], 4).astype(np.int16)
    harmony = np.asarray(engine.harmonize(Score.melody(melody), Settings(seed=1)).pitches)
    assert np.array_equal(harmony[:, 0], melody) and (harmony[:, 1:] >= 36).all()

    import torch

    from models import quantize
    from export_onnx import export_coconet

    onnx_bytes, *_ = export_coconet(torch.load(tiny_run / "best.pt", weights_only=False), "tiny")
    monkeypatch.setattr(quantize, "MAX_MEAN_KL", -1.0)
    with pytest.raises(SystemExit, match="int8 check FAILED"):
        quantize.quantize_coconet(onnx_bytes, jsb_npz)


def test_a_models_own_sampling_defaults_are_where_every_command_starts(tiny_run, tmp_path):
    """Exported with key=G, the model keeps the lower voices in G major unless told otherwise:
    through `harmonize` and `batch` (which reads them without building an engine), under a
    --temperature given (the other knobs still the model's), and not under an explicit --key off."""
    from bridge.midifile import read_voices
    from bridge.onnxmodel import OnnxModel
    from conftest import EXAMPLE_MELODY, run_cli

    model = tmp_path / "in-g.onnx"
    result = run_module("export_onnx", tiny_run / "best.pt", "-o", model, "--sampling-defaults", "key=G, steps=4")
    assert result.returncode == 0, result.stderr[-2000:]
    assert OnnxModel(model).sampling_defaults() == {"key": "G", "steps": 4}
    g_major = {7, 9, 11, 0, 2, 4, 6}

    def lower_pitch_classes(path) -> set[int]:
        lower = read_voices(path).pitches[:, 1:]
        return set((lower[lower >= 0] % 12).tolist())

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "tune.mid").write_bytes(EXAMPLE_MELODY.read_bytes())
    for args, out in ((("harmonize", EXAMPLE_MELODY, "-o", tmp_path / "own.mid"), tmp_path / "own.mid"),
                      (("batch", tmp_path / "in", tmp_path / "out"), tmp_path / "out" / "tune.mid")):
        result = run_cli(*args, "--model", model, "--temperature", 2, "--seed", 1)
        assert result.returncode == 0, result.stderr[-2000:]
        assert lower_pitch_classes(out) <= g_major, args[0]
    result = run_cli("harmonize", EXAMPLE_MELODY, "-o", tmp_path / "off.mid", "--model", model,
                     "--temperature", 2, "--seed", 1, "--key", "off")
    assert result.returncode == 0, result.stderr[-2000:]
    assert not lower_pitch_classes(tmp_path / "off.mid") <= g_major


def test_bad_sampling_defaults_are_refused_at_export_and_at_load(tiny_model, tmp_path):
    import onnx

    from bridge.errors import BadInput
    from bridge.onnxmodel import OnnxModel
    from bridge.settings import parse_knob_values

    assert parse_knob_values("temperature=0.4,parallel-penalty=8") == {"temperature": 0.4, "parallel_penalty": 8.0}
    for text, says in (("temperature", "knob=value"), ("seed=3", "knob=value"), ("steps=many", "steps takes a whole number"),
                       ("temperature=-1", "temperature must be >= 0")):
        with pytest.raises(BadInput, match=says):
            parse_knob_values(text)
    result = run_module("export_onnx", tiny_model, "-o", tmp_path / "x.onnx", "--sampling-defaults", "pmin=2")
    assert result.returncode == 2 and not (tmp_path / "x.onnx").exists()
    assert result.stderr.strip() == "export_onnx: --sampling-defaults: need 0 <= pmin <= pmax <= 1, not pmin 2.0, pmax 1.0"

    proto = onnx.load(str(tiny_model))
    proto.metadata_props.add(key="sampling_defaults", value='{"temperature": "hot"}')
    onnx.save(proto, str(tmp_path / "bad.onnx"))
    with pytest.raises(BadInput, match="sampling defaults are not valid"):
        OnnxModel(tmp_path / "bad.onnx").sampling_defaults()
