"""Checkpoint -> ONNX, then an onnxruntime-vs-torch parity check that fails loudly.

    python export_onnx.py runs/coconet/best.pt -o models/coconet.onnx --name coconet
    python export_onnx.py runs/rnnrbm/best.pt -o models/rnnrbm.onnx --name rnnrbm
    python export_onnx.py runs/biaxial/best.pt -o models/biaxial.onnx --name biaxial

The ONNX file carries everything the runtime needs in its metadata (engine, pitch range, voices,
receptive field, training data and figures, and with `--sampling-defaults temperature=0.4` the
knobs it plays best at, which every command starts from), so no side file travels with it. The export is
written to a temporary file and only moved into place once the parity check holds (max absolute
difference of log-probabilities <= 1e-4 on random inputs of several batch sizes and lengths; for
the RNN-RBM, of every output of its recurrent step: state, biases and weights; for a Coconet with
voice heads, of every output and of the heads' log-probabilities as the runtime computes them,
onnxruntime's features through bridge.kernels.voice_head_log_probs, against torch's heads).
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import warnings
from pathlib import Path

import numpy as np

from models.quantize import CALIBRATIONS, quantize_coconet

PARITY_TOLERANCE = 1e-4


def export_coconet(checkpoint: dict, name: str):
    """(pitches (B, T, V), mask, from_step ()) -> log_probs (B, T - from_step, V, P): the steps
    from `from_step` on (0: all), each layer computed only where those can see; with voice heads
    also the trunk's features (B, C, T - from_step, P) and the heads' weights (HEAD_WEIGHTS), which
    the runtime reads once (as the RNN-RBM's RBM weights)."""
    import torch
    from bridge.engines.coconet import FEATURES, FROM_STEP, HEAD_WEIGHTS
    from models.coconet import Coconet, CoconetConfig, time_radii

    config = CoconetConfig.from_dict(checkpoint["config"])
    model = Coconet(config)
    model.load_state_dict(checkpoint["model"])
    model.eval()
    heads = model.heads

    class Graph(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, pitches, mask, from_step):
            log_probs, features = self.model.trunk(pitches, mask, from_step)
            if not heads:
                return log_probs
            return (log_probs, features, *(getattr(self.model.heads, w) for w in HEAD_WEIGHTS))

    output_names = ["log_probs", FEATURES, *HEAD_WEIGHTS] if heads else ["log_probs"]
    dynamic_axes = {"pitches": {0: "batch", 1: "time"}, "mask": {0: "batch", 1: "time"},
                    "log_probs": {0: "batch", 1: "steps"}, **({FEATURES: {0: "batch", 2: "steps"}} if heads else {})}
    example = (torch.zeros(1, 32, config.num_voices, dtype=torch.int64),
               torch.ones(1, 32, config.num_voices), torch.tensor(0))
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Graph().eval(), example, buffer, dynamo=False, opset_version=17,
            do_constant_folding=not heads,  # folded, the weights outputs would lose their names
            input_names=["pitches", "mask", FROM_STEP], output_names=output_names, dynamic_axes=dynamic_axes,
        )
    metadata = {
        "engine": "coconet",
        "name": name,
        "min_pitch": config.min_pitch,
        "num_pitches": config.num_pitches,
        "num_voices": config.num_voices,
        "voices": "Soprano,Alto,Tenor,Bass",
        "steps_per_beat": 4,
        "receptive_radius": time_radii(config)[0],
        "voice_heads": config.head_channels,
        "config": json.dumps(config.to_dict()),
    }

    def inputs(rng, batch, time):
        pitches = rng.integers(-1, config.num_pitches, size=(batch, time, config.num_voices))
        mask = (rng.random((batch, time, config.num_voices)) < rng.random()).astype(np.float32)
        # the heads' questions are at the middle step: from_step 0 keeps it
        from_step = 0 if heads else int(rng.integers(0, time))
        return {"pitches": pitches.astype(np.int64), "mask": mask, FROM_STEP: np.array(from_step, np.int64)}

    def reference(feeds):
        # the whole roll's log-probs, from the step on: what the cropped layers must give
        pitches = torch.from_numpy(feeds["pitches"])
        from_step = int(feeds[FROM_STEP])
        with torch.no_grad():
            log_probs, features = model.trunk(pitches, torch.from_numpy(feeds["mask"]))
            if not heads:
                return log_probs[:, from_step:].numpy()
            step, questions = head_questions(feeds)
            told = pitches[:, step]
            heads_out = [heads(features[:, :, step], log_probs[:, step, voice],
                               torch.where(torch.arange(config.num_voices) >= first, told, -1), voice)
                         for first, voice in questions]
            return [t.detach().numpy() for t in (log_probs, features, *(getattr(heads, w) for w in HEAD_WEIGHTS),
                                                 *heads_out)]

    return buffer.getvalue(), metadata, inputs, reference


def head_questions(feeds) -> tuple[int, list[tuple[int, int]]]:
    """The voice heads' parity questions: at the middle step, each voice told the input's pitches
    of the voices from `first` down to it (rests among them tell nothing, as at run time)."""
    voices = feeds["pitches"].shape[2]
    return feeds["pitches"].shape[1] // 2, [(first, voice) for first in range(voices) for voice in range(first + 1, voices)]


def run_as_the_runtime(session, feeds) -> list[np.ndarray]:
    """What the runtime computes from the graph: every output, and for a Coconet with voice heads
    (a 'features' output) the heads' log-probabilities of `head_questions`, by the numba kernel
    bridge.engines.coconet uses."""
    from bridge.engines.coconet import FEATURES
    from bridge.kernels import voice_head_log_probs

    outputs = session.run(None, feeds)
    names = [o.name for o in session.get_outputs()]
    if "time_out" in names:   # the bi-axial LSTM: its note axis, as the engine runs it
        from bridge.engines.biaxial import NoteStack

        weights = dict(zip(names, outputs))
        downward = bool(int(session.get_modelmeta().custom_metadata_map["downward"]))
        time_out, notes = weights["time_out"], feeds["notes"]
        logits = NoteStack(weights, downward).logits(time_out.reshape(-1, *time_out.shape[2:]),
                                                     notes.reshape(-1, *notes.shape[2:]))
        return [*outputs, logits.reshape(notes.shape)]
    if FEATURES not in names:
        return outputs

    log_probs, features, *weights = outputs
    step, questions = head_questions(feeds)
    heads_out = []
    for first, voice in questions:
        out = np.empty((len(features), log_probs.shape[-1]), dtype=np.float32)
        voice_head_log_probs(features, step, log_probs[:, step, voice], feeds["pitches"][:, step],
                             first, voice, *weights, out)
        heads_out.append(out)
    return [*outputs, *heads_out]


def export_rnnrbm(checkpoint: dict, name: str):
    """The RNN-RBM's recurrent step: (notes (B, P) of the previous frame, state (B, U)) ->
    (next_state, visible_bias (B, P), hidden_bias (B, H), weights (P, H)). The RBM's weights
    ride along as an output, so the one file holds the whole model."""
    import torch
    from models.rnnrbm import RnnRbm, RnnRbmConfig

    config = RnnRbmConfig.from_dict(checkpoint["config"])
    model = RnnRbm(config)
    model.load_state_dict(checkpoint["model"])
    model.eval()
    example = (torch.zeros(1, config.num_pitches), torch.zeros(1, config.recurrent))
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, example, buffer, dynamo=False, opset_version=17,
            do_constant_folding=False,  # folded, the weights output would lose its name
            input_names=["notes", "state"],
            output_names=["next_state", "visible_bias", "hidden_bias", "weights"],
            dynamic_axes={name: {0: "batch"} for name in ("notes", "state", "next_state", "visible_bias",
                                                          "hidden_bias")},
        )
    stats = checkpoint.get("data_stats", {})
    metadata = {
        "engine": "rnnrbm",
        "name": name,
        "min_pitch": config.min_pitch,
        "num_pitches": config.num_pitches,
        "num_voices": 4,
        "voices": "Soprano,Alto,Tenor,Bass",
        "hidden": config.hidden,
        "recurrent": config.recurrent,
        "steps_per_frame": config.steps_per_frame,    # 16ths per frame: quarter-note frames
        "gibbs_steps": 25,                            # k of the generation chain
        "tonic": 0,                                   # the training pieces were moved to C
        "soprano_median": stats.get("soprano_median", 84.0),  # MIDI register of the data's top voice
        "config": json.dumps(config.to_dict()),
    }

    def inputs(rng, batch, time):
        notes = (rng.random((batch, config.num_pitches)) < 0.08).astype(np.float32)
        state = rng.uniform(-1, 1, size=(batch, config.recurrent)).astype(np.float32)
        return {"notes": notes, "state": state}

    def reference(feeds):
        with torch.no_grad():
            return [t.numpy() for t in model.step(torch.from_numpy(feeds["notes"]), torch.from_numpy(feeds["state"]))]

    return buffer.getvalue(), metadata, inputs, reference


def export_biaxial(checkpoint: dict, name: str):
    """The bi-axial LSTM's time stack over T steps: (notes (B, T, P, 2) of the step before each,
    step (B, T) their 16ths, hidden and cell (L, B*P, H) states) -> (time_out (B, T, P, Ht),
    next_hidden, next_cell) and the note stack's weights (NOTE_WEIGHTS), which the runtime's numba
    kernel runs along the pitches. Parity: the outputs, and the note axis's logits as the runtime
    computes them (bridge.engines.biaxial.NoteStack on onnxruntime's time_out) against torch's."""
    import torch
    from bridge.engines.biaxial import NOTE_WEIGHTS
    from models.biaxial import Biaxial, BiaxialConfig, TimeStep, note_weights

    config = BiaxialConfig.from_dict(checkpoint["config"])
    if len(config.note_sizes) != 2:
        raise SystemExit("export_onnx: the runtime's note-axis kernel runs two note layers")
    model = Biaxial(config)
    model.load_state_dict(checkpoint["model"])
    model.eval()

    class Step(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stepper = TimeStep(model)

        def forward(self, notes, step, hidden, cell):
            weights = note_weights(self.stepper.model)
            return (*self.stepper(notes, step, hidden, cell), *(weights[w] * 1.0 for w in NOTE_WEIGHTS))

    layers, width = len(config.time_sizes), max(config.time_sizes)
    p = config.num_pitches
    example = (torch.zeros(1, 3, p, 2), torch.zeros(1, 3, dtype=torch.int64), torch.zeros(layers, p, width),
               torch.zeros(layers, p, width))
    step_module = Step().eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            step_module, example, buffer, dynamo=False, opset_version=17,
            do_constant_folding=False,  # folded, the weights outputs would lose their names
            input_names=["notes", "step", "hidden", "cell"],
            output_names=["time_out", "next_hidden", "next_cell", *NOTE_WEIGHTS],
            dynamic_axes={"notes": {0: "batch", 1: "time"}, "step": {0: "batch", 1: "time"},
                          "hidden": {1: "sequences"}, "cell": {1: "sequences"}, "time_out": {0: "batch", 1: "time"},
                          "next_hidden": {1: "sequences"}, "next_cell": {1: "sequences"}},
        )
    metadata = {
        "engine": "biaxial",
        "name": name,
        "min_pitch": config.min_pitch,
        "num_pitches": config.num_pitches,
        "num_voices": 4,
        "voices": "Soprano,Alto,Tenor,Bass",
        "time_layers": layers,
        "state_width": width,
        "downward": int(config.downward),
        "step_16ths": config.step_16ths,
        "articulation": int(config.articulation),
        "config": json.dumps(config.to_dict()),
    }

    def inputs(rng, batch, time):
        time = min(time, 24)   # the recurrence is the same at every step: a few dozen show it
        notes = (rng.random((batch, time, p, 2)) < 0.1).astype(np.float32)
        notes[..., 1] *= notes[..., 0]
        state = lambda: rng.uniform(-1, 1, size=(layers, batch * p, width)).astype(np.float32)  # noqa: E731
        return {"notes": notes, "step": rng.integers(0, 64, size=(batch, time)).astype(np.int64),
                "hidden": state(), "cell": state()}

    def reference(feeds):
        with torch.no_grad():
            tensors = {key: torch.from_numpy(value) for key, value in feeds.items()}
            outputs = step_module(tensors["notes"], tensors["step"], tensors["hidden"], tensors["cell"])
            logits = model.note_logits(outputs[0], tensors["notes"])
            return [t.numpy() for t in outputs] + [logits.numpy()]

    return buffer.getvalue(), metadata, inputs, reference


def export_phrase(checkpoint: dict, name: str):
    """The three phrase nets (models.phrase) in one graph, T steps of each: for each net `x`
    (B, T, I) and `state` (parts, layers, B, H) in; `logits` (B, T, tokens) and `state_out`
    out. The engine steps them one event at a time (T = 1) and primes them on a whole phrase."""
    import torch
    from models import phrase_data
    from models.phrase import NAMES, PhraseNets

    nets = PhraseNets.from_configs(checkpoint["configs"])
    nets.load_state_dict(checkpoint["model"])
    nets.eval()
    example = []
    for net in nets.nets.values():
        example += [torch.zeros(1, 2, net.config.inputs), net.initial_state(1)]
    input_names = [f"{n}_{part}" for n in NAMES for part in ("x", "state")]
    output_names = [f"{n}_{part}" for n in NAMES for part in ("logits", "state_out")]
    axes = {}
    for n in NAMES:
        # each net its own axis names: one call steps one net and gives the others a single step
        batch, time = f"{n}_batch", f"{n}_time"
        axes.update({f"{n}_x": {0: batch, 1: time}, f"{n}_state": {2: batch},
                     f"{n}_logits": {0: batch, 1: time}, f"{n}_state_out": {2: batch}})
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(nets, tuple(example), buffer, dynamo=False, opset_version=17,
                          input_names=input_names, output_names=output_names, dynamic_axes=axes)
    metadata = {
        "engine": "phrase",
        "name": name,
        "min_pitch": phrase_data.MELODY_LOW,         # the melody net's pitches
        "num_pitches": phrase_data.MELODY_TOKENS,
        "num_voices": 4,
        "voices": "Soprano,Alto,Tenor,Bass",
        "configs": json.dumps(checkpoint["configs"]),
        "valid_losses": json.dumps(checkpoint.get("valid_losses", {})),
    }

    def inputs(rng, batch, time):
        feeds = {}
        for n, net in nets.nets.items():
            c = net.config
            batch, time = (batch, min(time, 24)) if n == "melody" else (1 + batch % 2, 1 + time % 5)
            x = np.zeros((batch, time, c.inputs), dtype=np.float32)
            x[rng.random(x.shape) < 0.1] = 1.0
            feeds[f"{n}_x"] = x
            feeds[f"{n}_state"] = rng.uniform(-1, 1, size=(c.state_parts, c.layers, batch, c.hidden)).astype(np.float32)
        return feeds

    def reference(feeds):
        with torch.no_grad():
            return [t.numpy() for t in nets(*(torch.from_numpy(feeds[k]) for k in input_names))]

    return buffer.getvalue(), metadata, inputs, reference


EXPORTERS = {"coconet": export_coconet, "rnnrbm": export_rnnrbm, "biaxial": export_biaxial, "phrase": export_phrase}


def parity(onnx_bytes: bytes, inputs, reference) -> float:
    """Max |difference| between what the runtime computes from the ONNX graph (run_as_the_runtime)
    and torch's `reference(feeds)`, over random inputs of several shapes."""
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    worst = 0.0
    for batch, time in [(1, 32), (3, 17), (2, 240), (1, 1)]:
        feeds = inputs(rng, batch, time)
        want = reference(feeds)
        # a model with several outputs (rnnrbm, coconet with heads) is compared on every one of them
        wanted = list(want) if isinstance(want, (list, tuple)) else [want]
        got_all = run_as_the_runtime(session, feeds)
        if len(got_all) != len(wanted):
            raise SystemExit(f"parity: {len(got_all)} outputs from onnxruntime, {len(wanted)} from torch")
        for got, want in zip(got_all, wanted):
            if got.shape != want.shape:
                raise SystemExit(f"parity: shape {got.shape} from onnxruntime, {want.shape} from torch")
            worst = max(worst, float(np.max(np.abs(got - want))))
    return worst


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Export a training checkpoint to ONNX, with a parity check.")
    p.add_argument("checkpoint", help="a checkpoint written by a training command (best.pt)")
    p.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    p.add_argument("--name", help="model name stored in the metadata (default: the output's stem)")
    p.add_argument("--figures", help="JSON file of evaluation figures to store in the metadata")
    p.add_argument("--int8", action="store_true",
                   help="Coconet without voice heads: int8 convolutions, calibrated on the JSB training "
                        "split and checked against the float graph on the validation split (models/quantize.py)")
    p.add_argument("--data", help="with --int8: Jsb16thSeparated.npz (default: ../shared/data/jsb/ beside the checkout)")
    p.add_argument("--calibration", choices=list(CALIBRATIONS), default=next(iter(CALIBRATIONS)),
                   help="with --int8: activation ranges from the calibration's 99.999th percentiles or its "
                        "extremes (see models/quantize.py; default %(default)s)")
    p.add_argument("--sampling-defaults", metavar="KNOB=VALUE,...",
                   help="the knobs this model plays best at where they differ from bachbridge's defaults "
                        "(e.g. temperature=0.4), stored in its metadata: every command starts from them")
    args = p.parse_args(argv)

    from bridge.errors import BadInput
    from bridge.settings import parse_knob_values

    try:
        sampling_defaults = parse_knob_values(args.sampling_defaults or "")
    except BadInput as error:
        print(f"export_onnx: --sampling-defaults: {error}", file=sys.stderr)
        return 2

    import onnx
    import torch

    if not Path(args.checkpoint).is_file():
        print(f"export_onnx: no checkpoint at {args.checkpoint}", file=sys.stderr)
        return 2
    checkpoint = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    engine = checkpoint.get("engine", "coconet")
    if args.int8 and (engine != "coconet" or checkpoint["config"].get("head_channels", 0)):
        print("export_onnx: --int8 is for Coconet models without voice heads", file=sys.stderr)
        return 2
    output = Path(args.output)
    onnx_bytes, metadata, inputs, reference = EXPORTERS[engine](checkpoint, args.name or output.stem)

    metadata["train_data"] = checkpoint.get("train_data", "")
    metadata["train_steps"] = checkpoint.get("step", 0)
    metadata["valid_loss"] = round(float(checkpoint.get("valid_loss", float("nan"))), 5)
    if args.figures:
        metadata["figures"] = Path(args.figures).read_text()
    if sampling_defaults:
        metadata["sampling_defaults"] = json.dumps(sampling_defaults)
    proto = onnx.load_from_string(onnx_bytes)
    del proto.metadata_props[:]
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=str(value))
    onnx.checker.check_model(proto)
    onnx_bytes = proto.SerializeToString()

    worst = parity(onnx_bytes, inputs, reference)
    if not worst <= PARITY_TOLERANCE:
        print(f"export_onnx: parity check FAILED: max |onnxruntime - torch| = {worst:.3g} "
              f"> {PARITY_TOLERANCE:g}; nothing written", file=sys.stderr)
        return 1
    note = ""
    if args.int8:
        onnx_bytes, check = quantize_coconet(onnx_bytes, args.data, args.calibration)
        note = (f"; int8 against the float graph on {check['cells']} validation cells: mean KL "
                f"{check['mean_kl']:.4f} nats, p99 total variation {check['p99_tv']:.3f}")
    output.parent.mkdir(parents=True, exist_ok=True)
    temp = output.with_suffix(".onnx.tmp")
    temp.write_bytes(onnx_bytes)
    temp.replace(output)
    print(f"{output}: {len(onnx_bytes) / 1e6:.2f} MB, engine {engine}, parity max abs diff {worst:.2e}{note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
