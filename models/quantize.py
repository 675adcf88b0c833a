"""A Coconet graph with int8 weights and activations: the convolutions as QLinearConv, calibrated on
the training split's crops under the training masks, checked against the float graph on the
validation split.

    python export_onnx.py runs/coconet/best.pt -o models/coconet.onnx --name coconet --int8

Why int8: Coconet's offline graph is 16 dense 3x3 convolutions over the whole piano roll, about 99%
of a harmonization's time; onnxruntime's int8 convolutions run it about 3.6x faster on the
reference machine (AVX-512 VNNI) and 1.75x on an AVX2 one, for a change in log-probability the
likelihood barely sees (see the README). Static quantization (activation ranges fixed by
calibration) rather than dynamic: onnxruntime's dynamic quantization leaves convolutions in float.
Weights in 7 bits (`reduce_range`): onnxruntime's int8 kernels on CPUs without VNNI can saturate
with 8-bit weights. Activation ranges are the calibration's 99.999th percentiles (`percentile`, the
default) or its extremes (`minmax`): a sharper network (trained longer) has rarer, larger
activations, and ranges stretched to reach them leave too few steps for the rest (coconet step
6,500, its first convolution in int8: p99 total variation 0.114 with `minmax`, over the check's
bound, and 0.067 with `percentile`; step 11,250: 0.077 and 0.071; the 60-step tiny models of the
tests: about 0.02 either way).

Two convolutions stay in float. The last, which makes the logits: its output's range is wide and
its tail (the unlikely pitches, among which the parallel penalty may send a draw) would be clipped
to the calibrated range. The first, with the nodes that build its input: that input is one-hot
pitches and the mask, so each output sums a handful of weights, whose rounding errors do not
average out, and 7-bit weights cost it most. Its input is left in float as well, since between a
quantized input and a quantized output onnxruntime quantizes a float convolution itself as it
loads the graph (8-bit weights under one scale, which can saturate the AVX2 kernels: three tiny
test models gave 0.0002, 0.026 and 0.018 nats). Coconet step 11,250, percentile calibration,
mean KL on the validation crops' unknown cells and p99 total variation: first convolution in
7-bit int8 0.0037 / 0.101 (fails the check), in float 0.0019 / 0.071, for about 6% more time a
chorale (onnxruntime then adds a layout transpose beside each residual sum).
"""
from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from pathlib import Path

import numpy as np

from models.data import MASK_WEIGHTS, find_jsb16, load_jsb16, mixed_masks, random_crops

CALIBRATION_BATCHES = 24     # batches of the training split's crops
CHECK_BATCHES = 8            # ... and of the validation split's, for the check
BATCH, CROP = 4, 64
# the int8 graph may differ from the float one by this much, on the validation crops' unknown cells
# (which pitch ranks first is no measure: where two pitches are near equal, a rounding swaps them)
MAX_MEAN_KL = 0.01           # nats per cell, KL(float || int8)
MAX_P99_TV = 0.1             # 99th percentile of the total variation distance per cell


def feeds_from(split: str, batches: int, seed: int, data: str | Path | None = None) -> list[dict]:
    """Network inputs as training asks them: random transposed crops of `split`, masked."""
    path = find_jsb16(data)
    if path is None:
        raise SystemExit("int8 calibration needs the JSB chorales (Jsb16thSeparated.npz): pass --data")
    chorales = load_jsb16(path, split)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(batches):
        pitches = random_crops(chorales, BATCH, CROP, rng)      # pitch indices, transposed
        mask, _ = mixed_masks(BATCH, CROP, rng, MASK_WEIGHTS, pitches)
        out.append({"pitches": pitches, "mask": mask, "from_step": np.array(0, np.int64)})   # every step
    return out


# the --calibration choices, the default first: onnxruntime CalibrationMethod member names
CALIBRATIONS = {"percentile": "Percentile", "minmax": "MinMax"}


def quantize_coconet(float_bytes: bytes, data: str | Path | None = None,
                     calibration: str = "percentile") -> tuple[bytes, dict]:
    """The float graph -> (the int8 graph, the check's figures); exits when the check fails."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, feeds):
            self._feeds = iter(feeds)

        def get_next(self):
            return next(self._feeds, None)

    with tempfile.TemporaryDirectory() as folder:
        float_path, prepared, quantized = (Path(folder) / name for name in ("float.onnx", "pre.onnx", "int8.onnx"))
        float_path.write_bytes(float_bytes)
        graph = onnx.load_from_string(float_bytes).graph
        names = [node.name for node in graph.node]   # nodes come in order
        convolutions = [node.name for node in graph.node if node.op_type == "Conv"]
        float_nodes = names[:names.index(convolutions[0]) + 1] + [convolutions[-1]]
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)    # the quantizer warns (on the root logger) of every int input it leaves be
        try:
            with contextlib.redirect_stdout(io.StringIO()):   # the calibrator prints its progress
                quant_pre_process(str(float_path), str(prepared))
                quantize_static(str(prepared), str(quantized),
                                Reader(feeds_from("train", CALIBRATION_BATCHES, 0, data)),
                                quant_format=QuantFormat.QOperator, per_channel=True, reduce_range=True,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                nodes_to_exclude=float_nodes,
                                calibrate_method=CalibrationMethod[CALIBRATIONS[calibration]])
        finally:
            root.setLevel(level)
        proto = onnx.load(str(quantized))
    # the float graph's metadata, not the quantizer's notes
    del proto.metadata_props[:]
    for prop in onnx.load_from_string(float_bytes).metadata_props:
        proto.metadata_props.add(key=prop.key, value=prop.value)
    proto.metadata_props.add(key="weights", value="int8")
    int8_bytes = proto.SerializeToString()

    sessions = [ort.InferenceSession(b, providers=["CPUExecutionProvider"]) for b in (float_bytes, int8_bytes)]
    kl, tv = [], []
    for feeds in feeds_from("valid", CHECK_BATCHES, 1, data):
        want, got = (s.run(["log_probs"], feeds)[0] for s in sessions)   # (B, T, V, P)
        unknown = feeds["mask"] > 0.5
        want, got = want[unknown], got[unknown]                           # (cells, P)
        kl.append(np.sum(np.exp(want) * (want - got), axis=1))
        tv.append(0.5 * np.sum(np.abs(np.exp(want) - np.exp(got)), axis=1))
    kl, tv = np.concatenate(kl), np.concatenate(tv)
    figures = {"mean_kl": float(kl.mean()), "p99_tv": float(np.percentile(tv, 99)), "cells": len(kl)}
    if not (figures["mean_kl"] <= MAX_MEAN_KL and figures["p99_tv"] <= MAX_P99_TV):
        raise SystemExit(f"export_onnx: int8 check FAILED on the validation crops: mean KL "
                         f"{figures['mean_kl']:.4f} nats (<= {MAX_MEAN_KL}), p99 total variation "
                         f"{figures['p99_tv']:.3f} (<= {MAX_P99_TV}); nothing written")
    return int8_bytes, figures
