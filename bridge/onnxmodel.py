"""An exported model in an onnxruntime session, with the metadata the export stored inside it."""
from __future__ import annotations

import json
import os
from pathlib import Path

import onnxruntime as ort

from bridge.errors import BadInput
from bridge.settings import checked_model_knobs


def default_threads() -> int:
    """Threads for one session: the cores this process may use (2 on the reference machine)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


class OnnxModel:
    """One onnxruntime session over one exported `.onnx` file.

    Threads are set deliberately: `threads` intra-op threads (default: the cores we may use), one
    inter-op thread (the graphs are a single chain), and no spinning when several processes share
    the cores (`spin=False`, used by `batch --jobs N`), where spinning threads would steal them.
    """

    def __init__(self, path: str | Path, threads: int | None = None, spin: bool = True):
        self.path = Path(path)
        if not self.path.is_file():
            raise BadInput("no such model file", self.path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types for bad files
            raise BadInput(f"not a loadable ONNX model ({str(error).splitlines()[0][:120]})", self.path) from None
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        if "engine" not in self.metadata:
            raise BadInput("ONNX model has no bachbridge metadata (export it with export_onnx.py)", self.path)
        self.output_names = [o.name for o in self.session.get_outputs()]
        try:
            self._sampling_defaults = checked_model_knobs(json.loads(self.metadata.get("sampling_defaults", "{}")))
        except (ValueError, BadInput) as error:
            raise BadInput(f"the model's sampling defaults are not valid ({error})", self.path) from None

    @property
    def engine(self) -> str:
        return self.metadata["engine"]

    @property
    def name(self) -> str:
        return self.metadata.get("name", self.path.stem)

    def meta_int(self, key: str) -> int:
        return int(self.metadata[key])

    def figures(self) -> dict:
        return json.loads(self.metadata.get("figures", "{}"))

    def sampling_defaults(self) -> dict:
        """The knobs this model plays best at, where they differ from `Settings()`'s (stored by
        `export_onnx.py --sampling-defaults`; checked when the model loads): {} for most models."""
        return dict(self._sampling_defaults)

    def run(self, feeds: dict):
        return self.session.run(self.output_names, feeds)
